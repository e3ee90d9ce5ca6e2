"""A caption drawn into each movie frame: when it was taken and through which filter.

A movie without captions cannot be read on its own: a gap in the night, a change of filter or a
repeated frame looks like a change of the sky. The text goes in a dark band along the bottom, in
Pillow's built-in font, so it needs no font on the system.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: Grey level of the band behind the text, and of the text.
BAND, INK = 0, 255


def caption_text(isot: str, filter_name: str | None) -> str:
    """``'2026-01-01 00:20:00 UTC  filter V'`` from an ISO time (UTC) and the frame's filter, if known."""
    stamp = f'{isot[:10]} {isot[11:19]} UTC'
    return f'{stamp}  filter {filter_name}' if filter_name else stamp


def caption_height(rows: int) -> int:
    """Height in pixels of the caption band of a movie ``rows`` high: readable, yet a small part of the frame."""
    return max(10, round(rows / 20))


def draw_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` (8-bit grey, row 0 at the top) with ``text`` in a band along its bottom edge.

    Only the band is drawn (and the frame copied once): the rest of the frame is left as it is.
    """
    from PIL import Image, ImageDraw

    rows, columns = frame.shape
    height = caption_height(rows)
    band = Image.new('L', (columns, height), BAND)
    draw = ImageDraw.Draw(band)
    size = max(8, height - 3)
    # shrink the font until the text fits the width (a narrow movie, a long filter name)
    while size > 6 and draw.textlength(text, font=_font(size)) > columns - 4:
        size -= 1
    draw.text((2, height / 2), text, fill=INK, font=_font(size), anchor='lm')
    captioned = frame.copy()
    captioned[rows - height:] = np.asarray(band)
    return captioned


@lru_cache(maxsize=16)
def _font(size: int) -> Any:
    """Pillow's built-in font at ``size`` pixels, loaded once per size rather than once per frame."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)
