"""The error of an aperture flux: a CCD equation that holds on quantised frames and without a gain.

Real frames from small telescopes are often stored as 8- or 16-bit integers, and many headers
carry no ``GAIN``. On such frames a clipped standard deviation of the sky is 0 (most sky pixels
hold the same value), which made every error bar 0. Here the sky scatter is measured with a
method that works on integer data and is never allowed below the rounding noise of one ADU,
``1/sqrt(12)`` per pixel: the variance of a uniform rounding error.
"""
from __future__ import annotations

import math

import numpy as np

#: Standard deviation of the rounding of a value to whole ADU: the floor of any pixel's noise.
QUANTISATION_NOISE = 1.0 / math.sqrt(12.0)

#: Magnitudes per unit of relative flux error: 2.5 / ln(10).
MAG_PER_RELATIVE_ERROR = 2.5 / math.log(10)


def robust_level_and_noise(values: np.ndarray, clip: float = 3.0, iterations: int = 5) -> tuple[float, float, int]:
    """Level, scatter (ADU) and number of the pixels left after removing stars and hot pixels.

    Starts from the median and the MAD (the plain scatter when the MAD is 0), floors the scale at
    :data:`QUANTISATION_NOISE` so that a sky where nearly every pixel has one value still has a
    width, then clips at ``clip`` scales and takes the plain mean and standard deviation of what
    is left. The mean, not the median,
    is the level: the median of integer pixels is an integer, off by up to half an ADU per pixel,
    which over an aperture of a hundred pixels is a large, frame-to-frame varying bias.
    """
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, 0
    centre = float(np.median(values))
    mad = float(np.median(np.abs(values - centre)))
    # on integer data the MAD is 0 as soon as half the pixels share a value: start from the plain
    # scatter then, and let the clipping bring it down to the sky's
    scale = max(1.4826 * mad if mad > 0 else float(values.std()), QUANTISATION_NOISE)
    kept = values
    for _ in range(iterations):
        selected = values[np.abs(values - centre) <= clip * scale]
        if selected.size < 3 or selected.size == kept.size:
            kept = selected if selected.size >= 3 else kept
            break
        kept = selected
        centre = float(kept.mean())
        scale = max(float(kept.std()), QUANTISATION_NOISE)
    return float(kept.mean()), max(float(kept.std()), QUANTISATION_NOISE), int(kept.size)


def sky_gain(sky_level: float, sky_noise: float) -> float | None:
    """The gain (e-/ADU) implied by the sky when the header gives none: ``S / sigma^2``.

    This treats the sky as pure photon noise on a bias-subtracted frame, which is the documented
    assumption of the pipeline without ``GAIN``; read noise and a bias left in make the estimate
    wrong in opposite directions. ``None`` when the sky is not positive (no photon count to use).
    """
    if not (sky_level > 0 and sky_noise > 0):
        return None
    return sky_level / sky_noise ** 2


def pixel_variance(sky_level: np.ndarray, sky_noise: np.ndarray, gain: float | None,
                   read_noise: float | None) -> np.ndarray:
    """Variance (ADU^2) of one sky pixel: from the CCD equation with the header's gain, else as measured.

    With ``GAIN`` the terms are the sky's photons, the read noise and the rounding,
    ``S/g + (R/g)^2 + 1/12``; without it the measured scatter of the annulus plus ``1/12``: on
    a frame whose sky pixels mostly hold one value the measured scatter misses most of the
    rounding that the star's pixels suffer, and on any other frame 1/12 ADU^2 is negligible.
    """
    measured = np.maximum(np.asarray(sky_noise, dtype=float), QUANTISATION_NOISE) ** 2
    if not gain:
        # the sky's rounding is partly hidden when most of its pixels hold one value, while the
        # star's pixels are rounded at every level: the rounding variance is added once more
        return measured + QUANTISATION_NOISE ** 2
    model = np.maximum(np.asarray(sky_level, dtype=float), 0.0) / gain + ((read_noise or 0.0) / gain) ** 2
    return model + QUANTISATION_NOISE ** 2


def flux_error(flux: np.ndarray, area: np.ndarray, n_sky: np.ndarray, variance_per_pixel: np.ndarray,
               gain: float | None) -> np.ndarray:
    """One-sigma error (ADU) of a sky-subtracted aperture flux (Merline & Howell 1995).

    ``sigma^2 = F/g + A (1 + A/n_sky) v`` with ``v`` the variance of one sky pixel: the star's
    photons, the noise of the ``A`` pixels of the aperture, and the error of the sky level
    measured on ``n_sky`` pixels and subtracted ``A`` times. Without a gain the star's photon
    term is left out (the caller passes :func:`sky_gain` when it can).
    """
    area = np.asarray(area, dtype=float)
    sky_term = area * (1.0 + area / np.maximum(np.asarray(n_sky, dtype=float), 1.0)) * variance_per_pixel
    photons = np.maximum(np.asarray(flux, dtype=float), 0.0) / gain if gain else 0.0
    return np.sqrt(photons + sky_term)


def magnitude(flux: float, flux_err: float, exptime: float | None, zero_point: float) -> tuple[float, float]:
    """Instrumental magnitude of a flux (per second when the exposure time is known) and its error."""
    if not flux > 0:
        return math.nan, math.nan
    rate = flux / exptime if exptime else flux
    return zero_point - 2.5 * math.log10(rate), MAG_PER_RELATIVE_ERROR * flux_err / flux


def limiting_magnitude(flux_err: float, snr: float, exptime: float | None, zero_point: float) -> float:
    """Magnitude of a source whose signal-to-noise ratio would be ``snr``: the upper limit of a non-detection."""
    return magnitude(snr * flux_err, 0.0, exptime, zero_point)[0]
