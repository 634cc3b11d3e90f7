"""Template filters for the training pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """Format seconds as the job page's script does ("1 h 5 min", "3 min 20 s", "45 s"), or an en dash when unknown."""
    if seconds is None:
        return "–"
    total = round(seconds)
    hours, minutes, rest = total // 3600, total % 3600 // 60, total % 60
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {rest} s"
    return f"{rest} s"
