"""Aperture sums and the sky around them: fluxes with their errors at given pixel positions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tom_education.pipelines.photometry.noise import (
    flux_error,
    pixel_variance,
    robust_level_and_noise,
    sky_gain,
)


@dataclass
class StarMeasurements:
    """Aperture photometry of N positions in one frame; every field is an array of length N (ADU)."""

    flux: np.ndarray
    flux_err: np.ndarray
    sky: np.ndarray       # sky level per pixel from the annulus
    sky_std: np.ndarray   # scatter of the sky pixels, never below the rounding noise
    area: np.ndarray      # pixels in the aperture (fractional at its edge)
    n_sky: np.ndarray     # sky pixels used after clipping
    gain: float | None    # the gain the errors used (the header's, or the sky's estimate)


def aperture_sums(data: np.ndarray, positions: np.ndarray, radius: float, *, method: str = 'exact',
                  subpixels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``data`` in circles of ``radius`` around ``positions`` (N x 2, x then y, 0-based), and their areas.

    ``method='exact'`` weighs each pixel by its exact overlap with the circle: the most accurate.
    ``method='subpixel'`` with ``subpixels=5`` samples each pixel 5 x 5 times, as Source Extractor
    does, which is how the tests reproduce its catalogue to the last digit.
    """
    from photutils.aperture import CircularAperture, aperture_photometry

    aperture = CircularAperture(np.atleast_2d(positions), r=radius)
    table = aperture_photometry(data, aperture, method=method, subpixels=subpixels)
    areas = np.atleast_1d(aperture.area_overlap(data, method=method, subpixels=subpixels))
    return np.asarray(table['aperture_sum'], dtype=float), np.asarray(areas, dtype=float)


def annulus_pixels(data: np.ndarray, x: float, y: float, inner: float, outer: float) -> np.ndarray:
    """The values of the pixels whose centres lie between ``inner`` and ``outer`` from ``(x, y)``."""
    top, bottom = max(int(np.floor(y - outer)), 0), min(int(np.ceil(y + outer)) + 1, data.shape[0])
    left, right = max(int(np.floor(x - outer)), 0), min(int(np.ceil(x + outer)) + 1, data.shape[1])
    rows, columns = np.ogrid[top:bottom, left:right]
    distance_squared = (columns - x) ** 2 + (rows - y) ** 2
    ring = (distance_squared >= inner ** 2) & (distance_squared <= outer ** 2)
    return data[top:bottom, left:right][ring]


def annulus_sky(data: np.ndarray, positions: np.ndarray, inner: float, outer: float) -> tuple[np.ndarray, ...]:
    """Sky level, scatter and pixel count in annuli around ``positions``, stars clipped out.

    See :func:`~tom_education.pipelines.photometry.noise.robust_level_and_noise`: the scatter
    stays above the rounding noise on integer frames, and the level is not rounded to an ADU.
    """
    results = [robust_level_and_noise(annulus_pixels(data, float(x), float(y), inner, outer))
               for x, y in np.atleast_2d(positions)]
    level, noise, count = (np.array(column, dtype=float) for column in zip(*results, strict=True))
    return level, noise, count


def measure_stars(data: np.ndarray, positions: np.ndarray, *, radius: float, inner: float, outer: float,
                  gain: float | None = None, read_noise: float | None = None) -> StarMeasurements:
    """Sky-subtracted aperture fluxes at ``positions`` with their errors, the sky from an annulus around each.

    Without ``gain`` the photon noise of the stars is estimated with the gain the sky implies
    (:func:`~tom_education.pipelines.photometry.noise.sky_gain`, from the median sky of the
    positions), so bright stars do not get the error of a faint one.
    """
    sums, area = aperture_sums(data, positions, radius)
    sky, sky_std, n_sky = annulus_sky(data, positions, inner, outer)
    flux = sums - sky * area
    used_gain = gain or sky_gain(float(np.nanmedian(sky)), float(np.nanmedian(sky_std)))
    variance = pixel_variance(sky, sky_std, gain, read_noise)
    return StarMeasurements(flux, flux_error(flux, area, n_sky, variance, used_gain), sky, sky_std, area, n_sky,
                            used_gain)


def aperture_inside(shape: tuple[int, int], x: float, y: float, radius: float) -> bool:
    """Whether a circle of ``radius`` around ``(x, y)`` lies wholly on the image (else its flux is partial)."""
    rows, columns = shape
    return radius - 0.5 <= x <= columns - 0.5 - radius and radius - 0.5 <= y <= rows - 0.5 - radius


def on_chip(shape: tuple[int, int], x: float, y: float) -> bool:
    """Whether the point ``(x, y)`` falls on the image at all."""
    return -0.5 <= x <= shape[1] - 0.5 and -0.5 <= y <= shape[0] - 0.5
