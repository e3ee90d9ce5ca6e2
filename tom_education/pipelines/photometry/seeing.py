"""Stars in a frame and the seeing: detection by a matched filter, FWHM by a Gaussian fit.

Detection compares each smoothed pixel with the noise of the frame measured robustly (and never
below the rounding noise), so it works on quantised frames where the image-wide clipped scatter
is 0. Both functions are pure: an array in, positions or a number out.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from tom_education.pipelines.photometry.noise import robust_level_and_noise

#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Pixels sampled to measure a frame's sky and noise: a strided subset is as good and much faster.
NOISE_SAMPLE = 20_000


@dataclass
class Stars:
    """Stars found in a frame: pixel positions, peak value above the sky (ADU) and detection significance."""

    x: np.ndarray
    y: np.ndarray
    peak: np.ndarray          # brightest raw pixel near the star, sky included (for saturation)
    significance: np.ndarray  # smoothed peak / its noise


def smoothed_noise(noise: float, fwhm: float) -> float:
    """Noise of a frame smoothed by a Gaussian of ``fwhm``, from its per-pixel ``noise``.

    The sum of the squared weights of a normalised Gaussian kernel of width s is 1 / (4 pi s^2),
    so smoothing divides white noise by ``2 s sqrt(pi)``.
    """
    return noise / (2.0 * (fwhm / FWHM_PER_SIGMA) * math.sqrt(math.pi))


def frame_sky(data: np.ndarray) -> tuple[float, float]:
    """Sky level and per-pixel noise of a whole frame (or cutout), from a strided sample of its pixels."""
    step = max(1, math.ceil(math.sqrt(data.size / NOISE_SAMPLE)))
    level, noise, _ = robust_level_and_noise(data[::step, ::step])
    return level, noise


def find_stars(data: np.ndarray, fwhm: float, threshold: float, *, border: int = 0,
               sky: tuple[float, float] | None = None) -> Stars:
    """Local maxima of the frame smoothed by a Gaussian of ``fwhm``, ``threshold`` sigmas above the sky.

    The smoothing is the matched filter for a star; the noise of the smoothed image follows from
    the pixel noise (:func:`smoothed_noise`). ``border``
    pixels at each edge are ignored; ``sky`` is the ``(level, noise)`` of :func:`frame_sky` when
    the caller has it already.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    level, noise = sky or frame_sky(data)
    sigma = fwhm / FWHM_PER_SIGMA
    clean = np.where(np.isfinite(data), data, level) - level
    smoothed = gaussian_filter(clean, sigma, mode='nearest')
    noise_after = smoothed_noise(noise, fwhm)
    size = 2 * int(math.ceil(fwhm)) + 1
    maxima = (smoothed == maximum_filter(smoothed, size=size, mode='nearest')) & (smoothed > threshold * noise_after)
    if border:
        maxima[:border], maxima[-border:], maxima[:, :border], maxima[:, -border:] = False, False, False, False
    rows, columns = np.nonzero(maxima)
    peaks = np.array([np.nanmax(data[max(row - 1, 0):row + 2, max(column - 1, 0):column + 2])
                      for row, column in zip(rows, columns, strict=True)], dtype=float).reshape(-1)
    return Stars(columns.astype(float), rows.astype(float), peaks, smoothed[rows, columns] / noise_after)


def _gaussian(coordinates: tuple[np.ndarray, np.ndarray], amplitude: float, x0: float, y0: float, sigma: float,
              background: float) -> np.ndarray:
    columns, rows = coordinates
    return background + amplitude * np.exp(-((columns - x0) ** 2 + (rows - y0) ** 2) / (2.0 * sigma ** 2))


def measure_fwhm(data: np.ndarray, xs: np.ndarray, ys: np.ndarray, guess: float) -> float | None:
    """Median FWHM (px) of circular Gaussians fitted to the stars at ``(xs, ys)``; None if no fit is sane.

    Each star is fitted in a cutout of four times the guess, with its centre, amplitude and a
    flat sky free (scipy's least squares: a millisecond a star, fifty times faster than an
    astropy model fit). The 1/12 px^2 a pixel's width adds to the variance of a sampled profile
    is taken off. A fit below 1 px or above 5 times the guess is a hot pixel, a blend or a
    failure, not a star.
    """
    from scipy.optimize import curve_fit

    half = int(math.ceil(2.0 * guess)) + 1
    values = []
    for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys), strict=True):
        column, row = int(round(float(x))), int(round(float(y)))
        cutout = data[max(row - half, 0):row + half + 1, max(column - half, 0):column + half + 1]
        if cutout.shape != (2 * half + 1, 2 * half + 1) or not np.isfinite(cutout).all():
            continue
        rows, columns = np.mgrid[0:cutout.shape[0], 0:cutout.shape[1]]
        edge = float(np.median(np.concatenate([cutout[0], cutout[-1], cutout[1:-1, 0], cutout[1:-1, -1]])))
        start = (float(cutout.max()) - edge, half + float(x) - column, half + float(y) - row,
                 guess / FWHM_PER_SIGMA, edge)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # a poor fit says so through its value, checked below
                fitted, _ = curve_fit(_gaussian, (columns.ravel(), rows.ravel()), cutout.ravel().astype(float),
                                      p0=start, maxfev=400)
        except (RuntimeError, ValueError):
            continue
        variance = fitted[3] ** 2 - 1.0 / 12.0
        fwhm = FWHM_PER_SIGMA * math.sqrt(variance) if variance > 0 else math.nan
        if math.isfinite(fwhm) and 1.0 <= fwhm <= 5.0 * guess:
            values.append(fwhm)
    return float(np.median(values)) if values else None
