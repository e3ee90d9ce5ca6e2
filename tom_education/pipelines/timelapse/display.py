"""Display scaling: pixel values to 8-bit grey levels, with limits that cannot collapse.

Real frames are often quantised: a small telescope's 8-bit or heavily binned data holds the same
value in 99 % of its sky pixels. zscale, which fits the slope of the sorted pixel values, then
returns a range of zero width and the movie comes out black and white with every star saturated.
:func:`display_scale` detects such a degenerate range (fewer than :data:`MIN_LEVELS` distinct
data values inside it) and falls back to an asinh scale from just below the sky to the stars'
cores, which shows the sky as a dark grey and the stars with all their levels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Choices of the ``stretch`` option.
STRETCHES = ('zscale', 'percentile', 'asinh')
#: Limits of the ``percentile`` stretch, in percent of the pixels.
PERCENTILES = (0.5, 99.8)
#: A display range holding fewer distinct data values than this would show as a few flat tones.
MIN_LEVELS = 8
#: Pixels looked at first when counting the levels a range holds.
LEVELS_PROBE = 4096
#: Percentile, among the pixels brighter than the sky, that the asinh scale ends at: the stars' cores.
BRIGHT_PERCENTILE = 99.5
#: The sky sits this fraction of the asinh range above its lower limit: dark grey, never black.
SKY_FRACTION = 0.05
#: Softening of the asinh stretch (astropy's ``AsinhStretch(a)``): linear below, logarithmic above.
ASINH_SOFTENING = 0.1
#: Pixels used to choose the limits; more would only cost time.
SAMPLE_SIZE = 250_000


@dataclass(frozen=True)
class DisplayScale:
    """Limits and stretch shared by all frames of a movie, and how they were chosen (for the log)."""

    low: float
    high: float
    stretch: str  # 'linear' or 'asinh'
    how: str

    def to_bytes(self, image: np.ndarray) -> np.ndarray:
        """Grey levels 0..255 of ``image`` (NaN, outside the frame, shown as the lower limit)."""
        scaled = (np.nan_to_num(image, nan=self.low) - self.low) / (self.high - self.low)
        np.clip(scaled, 0.0, 1.0, out=scaled)
        if self.stretch == 'asinh':
            scaled = np.arcsinh(scaled / ASINH_SOFTENING) / np.arcsinh(1.0 / ASINH_SOFTENING)
        return np.round(scaled * 255).astype(np.uint8)


def display_scale(image: np.ndarray, method: str) -> DisplayScale:
    """The display limits for ``image`` by ``method`` (one of :data:`STRETCHES`), never of zero width.

    ``zscale`` and ``percentile`` give linear scales; when their range is degenerate, the asinh
    scale replaces them and ``how`` says so.
    """
    pixels = _sample(image)
    if pixels.size == 0:
        raise ValueError('The image has no valid pixels to scale.')
    if method == 'asinh':
        return asinh_scale(pixels, 'asinh from just below the sky to the stars\' cores')
    if method == 'zscale':
        from astropy.visualization import ZScaleInterval

        low, high = (float(value) for value in ZScaleInterval().get_limits(pixels))
    elif method == 'percentile':
        low, high = (float(value) for value in np.percentile(pixels, PERCENTILES))
    else:
        raise ValueError(f'Unknown stretch {method!r}; one of {", ".join(STRETCHES)}.')
    levels = levels_within(pixels, low, high)
    if levels >= MIN_LEVELS:
        return DisplayScale(low, high, 'linear', f'{method} {low:.4g} to {high:.4g}, linear')
    return asinh_scale(pixels, f'{method} gave {low:.4g} to {high:.4g}, a range of only {levels} distinct '
                               f'pixel value{"s" if levels != 1 else ""} (a quantised sky?), so asinh from just '
                               'below the sky to the stars\' cores')


def asinh_scale(pixels: np.ndarray, why: str) -> DisplayScale:
    """An asinh scale from just below the sky (the median) to the cores of the stars.

    The upper limit is a high percentile of the pixels brighter than the sky, so it follows the
    sources even when nearly every pixel is sky; the lower limit leaves the sky a dark grey.
    """
    sky = float(np.median(pixels))
    brighter = pixels[pixels > sky]
    high = float(np.percentile(brighter, BRIGHT_PERCENTILE)) if brighter.size else sky
    if not high > sky:
        high = sky + max(abs(sky), 1.0) * 1e-3  # a flat image: any positive range shows it as flat
    low = sky - SKY_FRACTION * (high - sky) / (1 - SKY_FRACTION)
    return DisplayScale(low, high, 'asinh', f'{why}: {low:.4g} to {high:.4g}')


def levels_within(pixels: np.ndarray, low: float, high: float) -> int:
    """How many distinct data values lie between ``low`` and ``high``: what a linear scale can show."""
    if high < low:
        return 0
    inside = pixels[(pixels >= low) & (pixels <= high)]
    # continuous data shows its many levels in the first few thousand pixels: no need to sort them all
    first = int(np.unique(inside[:LEVELS_PROBE]).size)
    return first if first >= MIN_LEVELS or inside.size <= LEVELS_PROBE else int(np.unique(inside).size)


def _sample(image: np.ndarray) -> np.ndarray:
    """The finite pixels of ``image``, evenly thinned to at most :data:`SAMPLE_SIZE`."""
    pixels = image[np.isfinite(image)]
    if pixels.size > SAMPLE_SIZE:
        pixels = pixels[:: pixels.size // SAMPLE_SIZE + 1]
    return pixels
