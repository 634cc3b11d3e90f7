"""Column helpers shared by the apps' admin lists."""

from __future__ import annotations

from django.utils.html import format_html


def short_path_html(path: str) -> str:
    """Return the last two parts of `path`, with the full path as the tooltip.

    Full paths push the other columns past the page, and the last two parts identify the folder.
    """
    return format_html('<span title="{}">…/{}</span>', path, "/".join(path.split("/")[-2:]))
