"""Template filters of the pipeline pages."""
from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def time_left(seconds: float | None) -> str:
    """``95`` -> ``"about 1 min 35 s left"``: the estimate shown next to a progress bar ('' when unknown)."""
    if seconds is None:
        return ''
    seconds = round(seconds)
    if seconds < 60:
        return f'about {seconds} s left'
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f'about {minutes} min {seconds} s left' if minutes < 10 else f'about {minutes} min left'
    hours, minutes = divmod(minutes, 60)
    return f'about {hours} h {minutes} min left'


@register.filter
def percent(fraction: float | None) -> str:
    """``0.423`` -> ``"42"``: a bar's width and label."""
    return '0' if fraction is None else f'{fraction * 100:.0f}'
