"""Synthetic FITS frames for the demo TOM and for the test suite.

Real observatory data is large, licensed in various ways and awkward to ship, yet the
education workflows (upload frames, run aperture photometry, plot a light curve) need
images with a trustworthy WCS and a star whose brightness is known in advance. This
module fabricates such a time series with numpy and astropy alone, so that the demo can
be populated offline and tests can compare recovered fluxes against the injected truth.

Geometry: the target (``ra``, ``dec``) sits at the WCS reference pixel, which is the
geometric centre of the image: FITS pixel ``(size + 1) / 2`` on both axes, i.e. numpy
index ``(size - 1) / 2``. The variable star is drawn exactly there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

# Mean total flux (ADU summed over the PSF) of the variable star and its fractional
# sinusoidal amplitude; the light curve therefore swings between 60% and 140% of the mean.
VARIABLE_MEAN_FLUX = 20000.0
VARIABLE_AMPLITUDE = 0.4
# Number of full cycles across the series, so the period is about a third of the span.
VARIABLE_CYCLES = 3.0

# Constant comparison stars, deliberately brighter than even the variable's maximum so
# differential photometry against them is well conditioned. Offsets are fractions of the
# image size relative to the centre, which keeps them on-chip for any reasonable ``size``.
COMPARISON_STARS = (
    (0.22, 0.15, 45000.0),
    (-0.18, -0.25, 35000.0),
)
FIELD_STAR_COUNT = 13
FIELD_FLUX_RANGE = (1500.0, 30000.0)

SKY_LEVEL = 100.0
FWHM_PIXELS = 3.0
PIXEL_SCALE_DEG = 1.0 / 3600.0
EXPTIME = 60.0
GAIN = 1.5
RDNOISE = 5.0
FILTER_NAME = 'V'
OBJECT_NAME = 'Demo variable'
TELESCOPE_NAME = 'TOM Education demo'
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)

_SIGMA = FWHM_PIXELS / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def variable_flux(index: int, count: int) -> float:
    """Return the total flux injected for the variable star in frame ``index`` of ``count``.

    Exposed separately from :func:`make_frames` so tests can compute the expected light
    curve without opening files. The phase depends only on the position in the series
    (not on the cadence), which keeps the curve shape identical whatever timing is chosen.
    """
    if count < 1:
        raise ValueError('count must be at least 1')
    if not 0 <= index < count:
        raise ValueError(f'index {index} outside series of {count} frames')
    span = max(count - 1, 1)
    phase = VARIABLE_CYCLES * index / span
    return float(VARIABLE_MEAN_FLUX * (1.0 + VARIABLE_AMPLITUDE * np.sin(2.0 * np.pi * phase)))


def variable_period_days(count: int, cadence_minutes: float = 20.0) -> float:
    """The period (days) of the variable star in ``count`` frames taken ``cadence_minutes`` apart."""
    return max(count - 1, 1) / VARIABLE_CYCLES * cadence_minutes / 1440.0


def build_wcs(size: int, ra: float, dec: float) -> WCS:
    """Build the TAN WCS shared by every frame.

    Centring CRPIX on the image means the target lands on the reference pixel, so a
    world-to-pixel round trip for (ra, dec) is exact and easy to assert in tests.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    wcs.wcs.cunit = ['deg', 'deg']
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]
    # RA increases to the left (east) in the conventional sky orientation.
    wcs.wcs.cdelt = [-PIXEL_SCALE_DEG, PIXEL_SCALE_DEG]
    wcs.wcs.radesys = 'ICRS'
    wcs.wcs.equinox = 2000.0
    return wcs


def _field_stars(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose the constant stars (x, y, flux) once, so they stay fixed across frames.

    Field stars are kept away from the edges and from the variable and comparison stars
    so that apertures in tests and the demo are not contaminated by blends.
    """
    centre = (size - 1) / 2.0
    comp = np.array(COMPARISON_STARS)
    comp_x = centre + comp[:, 0] * size
    comp_y = centre + comp[:, 1] * size

    margin = 3.0 * FWHM_PIXELS
    min_separation = 4.0 * FWHM_PIXELS
    candidates = rng.uniform(margin, size - 1 - margin, size=(20 * FIELD_STAR_COUNT, 2))
    avoid = np.column_stack([np.append(comp_x, centre), np.append(comp_y, centre)])
    distance = np.hypot(*(candidates[:, None, :] - avoid[None, :, :]).transpose(2, 0, 1))
    keep = candidates[distance.min(axis=1) > min_separation]

    # Greedily drop candidates that crowd an already accepted field star.
    chosen: list[np.ndarray] = []
    for point in keep:
        if len(chosen) == FIELD_STAR_COUNT:
            break
        if all(np.hypot(*(point - other)) > min_separation for other in chosen):
            chosen.append(point)
    field = np.array(chosen).reshape(-1, 2)

    low, high = FIELD_FLUX_RANGE
    field_flux = np.exp(rng.uniform(np.log(low), np.log(high), size=len(field)))
    xs = np.concatenate([comp_x, field[:, 0]])
    ys = np.concatenate([comp_y, field[:, 1]])
    fluxes = np.concatenate([comp[:, 2], field_flux])
    return xs, ys, fluxes


def render_stars(size: int, xs: np.ndarray, ys: np.ndarray, fluxes: np.ndarray) -> np.ndarray:
    """Render circular Gaussian stars whose summed counts equal ``fluxes``.

    A Gaussian is separable, so each star is the outer product of two 1-D profiles and the
    whole field is one matrix product: no Python loop over pixels or stars.
    """
    grid = np.arange(size, dtype=float)
    norm = 1.0 / (np.sqrt(2.0 * np.pi) * _SIGMA)
    profile_x = norm * np.exp(-0.5 * ((grid[None, :] - np.asarray(xs)[:, None]) / _SIGMA) ** 2)
    profile_y = norm * np.exp(-0.5 * ((grid[None, :] - np.asarray(ys)[:, None]) / _SIGMA) ** 2)
    return (profile_y * np.asarray(fluxes)[:, None]).T @ profile_x


def make_frames(directory: Path, count: int = 12, *, size: int = 128, ra: float = 83.8221, dec: float = -5.3911,
                start: datetime | None = None, cadence_minutes: float = 20.0, seed: int = 1,
                filename_pattern: str = 'frame_{index:03d}.fits') -> list[Path]:
    """Write ``count`` synthetic frames into ``directory`` and return their paths in time order.

    Everything is driven by a single seeded generator so repeated calls give byte-identical
    data, which keeps tests reproducible. Each header carries ``VARFLUX`` (the injected
    variable-star flux) so photometry results can be checked against ground truth. A naive
    ``start`` is interpreted as UTC.
    """
    if count < 0:
        raise ValueError('count must not be negative')
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    if start is None:
        start = DEFAULT_START
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)

    rng = np.random.default_rng(seed)
    centre = (size - 1) / 2.0
    star_x, star_y, star_flux = _field_stars(size, rng)
    constant_image = SKY_LEVEL + render_stars(size, star_x, star_y, star_flux)
    variable_psf = render_stars(size, np.array([centre]), np.array([centre]), np.array([1.0]))
    wcs_header = build_wcs(size, ra, dec).to_header()

    paths = []
    for index in range(count):
        flux = variable_flux(index, count)
        expected = constant_image + flux * variable_psf
        # Photon noise is Poisson in electrons; read noise is Gaussian. Convert back to ADU.
        electrons = rng.poisson(expected * GAIN) + rng.normal(0.0, RDNOISE, size=expected.shape)
        data = (electrons / GAIN).astype(np.float32)

        obs_time = Time(start + timedelta(minutes=cadence_minutes * index), scale='utc')
        header = fits.Header()
        header.update(wcs_header)
        header['DATE-OBS'] = (obs_time.isot, 'UTC start of exposure')
        header['MJD-OBS'] = (obs_time.mjd, 'MJD (UTC) start of exposure')
        header['EXPTIME'] = (EXPTIME, 'exposure time [s]')
        header['FILTER'] = FILTER_NAME
        header['GAIN'] = (GAIN, 'e-/ADU')
        header['RDNOISE'] = (RDNOISE, 'read noise [e-]')
        header['OBJECT'] = OBJECT_NAME
        header['TELESCOP'] = TELESCOPE_NAME
        header['BUNIT'] = 'adu'
        header['VARFLUX'] = (flux, 'injected variable-star flux [ADU]')

        path = directory / filename_pattern.format(index=index)
        fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
        paths.append(path)
    return paths
