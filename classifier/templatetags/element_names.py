"""The ``element_name`` filter: class names as visitors read them."""

from __future__ import annotations

import re

from django import template

register = template.Library()

# "dome(inner)" is how the dataset's folder spells an inner dome.
_QUALIFIED = re.compile(r"^(?P<noun>[\w ]+)\((?P<qualifier>[\w ]+)\)$")


@register.filter
def element_name(class_name: str) -> str:
    """Turn a dataset class name into words: bell_tower to "bell tower", dome(inner) to "inner dome".

    static/js/upload.js applies the same rule to the labels it shows.
    """
    words = str(class_name).replace("_", " ").strip()
    qualified = _QUALIFIED.match(words)
    if qualified:
        return f"{qualified['qualifier'].strip()} {qualified['noun'].strip()}"
    return words
