"""Recentring the aperture on the star: a search box and a window scaled to the seeing.

A WCS from a plate solve is often off by a pixel or two. The star is looked for in a box a few
FWHM wide around the WCS position (the brightest point after smoothing by the seeing), then its
centre is refined with a Gaussian-windowed centroid, iterated to convergence (Source Extractor's
XWIN): unbiased for a symmetric star, insensitive to a flat sky and to faint neighbours. The
result is used only when the star is detected and the shift is one a WCS error can explain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tom_education.pipelines.photometry.seeing import FWHM_PER_SIGMA, smoothed_noise


@dataclass(frozen=True)
class Centre:
    """Where to put the aperture, and why: ``used`` is ``'recentred'`` or ``'wcs'``; ``reason`` explains."""

    x: float
    y: float
    used: str
    reason: str


def windowed_centroid(data: np.ndarray, x: float, y: float, fwhm: float, sky: float,
                      iterations: int = 20, tolerance: float = 1e-3) -> tuple[float, float, bool]:
    """Centre of the star near ``(x, y)``, Gaussian-weighted with the star's own width, and whether it converged.

    Each step moves the centre by ``2 sum(w I dx) / sum(w I)`` (w a Gaussian of the star's sigma):
    the fixed point of a matched Gaussian is the true centre.
    """
    sigma = fwhm / FWHM_PER_SIGMA
    half = int(math.ceil(4.0 * sigma)) + 1
    for _ in range(iterations):
        column, row = int(round(x)), int(round(y))
        top, left = row - half, column - half
        if top < 0 or left < 0 or row + half >= data.shape[0] or column + half >= data.shape[1]:
            return x, y, False
        cutout = data[top:row + half + 1, left:column + half + 1] - sky
        rows, columns = np.mgrid[top:row + half + 1, left:column + half + 1]
        dx, dy = columns - x, rows - y
        weighted = np.exp(-(dx ** 2 + dy ** 2) / (2.0 * sigma ** 2)) * cutout
        total = float(weighted.sum())
        if not total > 0:
            return x, y, False
        step_x, step_y = 2.0 * float((weighted * dx).sum()) / total, 2.0 * float((weighted * dy).sum()) / total
        step_x, step_y = max(-sigma, min(sigma, step_x)), max(-sigma, min(sigma, step_y))  # damp a wild first step
        x, y = x + step_x, y + step_y
        if math.hypot(step_x, step_y) < tolerance:
            return x, y, True
    return x, y, False


def brightest_point(data: np.ndarray, x: float, y: float, radius: float, fwhm: float,
                    sky: float) -> tuple[float, float, float]:
    """The pixel within ``radius`` of ``(x, y)`` where the frame smoothed by the seeing peaks, and that value."""
    from scipy.ndimage import gaussian_filter

    half = int(math.ceil(radius + fwhm))
    column, row = int(round(x)), int(round(y))
    top, left = max(row - half, 0), max(column - half, 0)
    cutout = data[top:row + half + 1, left:column + half + 1] - sky
    smoothed = gaussian_filter(np.where(np.isfinite(cutout), cutout, 0.0), fwhm / FWHM_PER_SIGMA, mode='nearest')
    rows, columns = np.mgrid[top:top + cutout.shape[0], left:left + cutout.shape[1]]
    smoothed[(columns - x) ** 2 + (rows - y) ** 2 > radius ** 2] = -np.inf
    peak_row, peak_column = np.unravel_index(int(np.argmax(smoothed)), smoothed.shape)
    return float(peak_column + left), float(peak_row + top), float(smoothed[peak_row, peak_column])


def recentre(data: np.ndarray, x: float, y: float, *, fwhm: float, max_shift: float, sky: float, noise: float,
             threshold: float) -> Centre:
    """The star's centre near the WCS position ``(x, y)``, or the WCS position with the reason it was kept.

    Accepted only when the smoothed peak is ``threshold`` times its noise (``noise`` is the
    per-pixel sky noise, see :func:`~.seeing.smoothed_noise`), the windowed centroid
    converges, and the final shift is at most ``max_shift`` pixels.
    """
    peak_x, peak_y, peak = brightest_point(data, x, y, max_shift, fwhm, sky)
    significance = peak / smoothed_noise(noise, fwhm)
    if not significance >= threshold:
        return Centre(x, y, 'wcs', f'no star detected within {max_shift:g} px '
                                   f'(peak {significance:.1f} sigma < {threshold:g})')
    new_x, new_y, converged = windowed_centroid(data, peak_x, peak_y, fwhm, sky)
    if not converged:
        return Centre(x, y, 'wcs', 'the centroid did not converge')
    shift = math.hypot(new_x - x, new_y - y)
    if shift > max_shift:
        return Centre(x, y, 'wcs', f'shift {shift:.1f} px > {max_shift:g} px')
    return Centre(new_x, new_y, 'recentred', f'shift {shift:.2f} px, peak {significance:.0f} sigma')
