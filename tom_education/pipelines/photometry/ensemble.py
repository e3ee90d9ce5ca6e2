"""The comparison ensemble of differential photometry: choosing the stars, rejecting the bad ones.

Clouds and airmass dim every star of a frame by the same factor, so the target's flux divided
by the summed flux of constant stars near it in brightness cancels them. A comparison star that
varies, or falls on a bad column in some frames, would put its own changes into the target's
light curve: such stars are found by their scatter against the others and dropped, one at a time.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from tom_education.pipelines.photometry.apertures import aperture_inside
from tom_education.pipelines.photometry.noise import MAG_PER_RELATIVE_ERROR
from tom_education.pipelines.photometry.seeing import Stars

#: A comparison star whose differential curve scatters more than this many times its errors is dropped.
REJECT_RATIO = 3.0


def choose_comparisons(stars: Stars, shape: tuple[int, int], target_xy: tuple[float, float], *,
                       target_significance: float, count: int, isolation: float,
                       saturation: float | None) -> np.ndarray:
    """Indices into ``stars`` of up to ``count`` comparison stars, closest in brightness to the target first.

    A candidate must keep its whole sky annulus (``isolation`` px) on the image and free of other
    detections, lie outside the target's annulus, and peak below 90 % of ``saturation``.
    Brightness is compared through the detection significance (a matched-filter flux).
    """
    xs, ys = stars.x, stars.y
    if not len(xs):
        return np.empty(0, dtype=int)
    distances = np.hypot(xs[:, None] - xs[None, :], ys[:, None] - ys[None, :])
    np.fill_diagonal(distances, np.inf)
    keep = (
        (np.hypot(xs - target_xy[0], ys - target_xy[1]) > 2 * isolation)
        & (distances.min(axis=1) > isolation)
        & ((stars.peak < 0.9 * saturation) if saturation else True)
        & np.array([aperture_inside(shape, x, y, isolation) for x, y in zip(xs, ys, strict=True)], dtype=bool)
    )
    candidates = np.nonzero(keep)[0]
    # a fainter comparison costs noise, a brighter one does not: fainter ones are ranked as twice as far
    ratio = np.log(stars.significance[candidates] / max(target_significance, 1.0))
    penalty = np.where(ratio < 0, -2.0 * ratio, ratio)
    return candidates[np.argsort(penalty, kind='stable')[:count]]


_NUMBER = r'[+-]?\d+(?:\.\d*)?'


def parse_coordinates(text: str) -> np.ndarray:
    """RA/Dec in degrees (N x 2) from text with one star per line: degrees or sexagesimal, '#' starts a comment.

    Raises ``ValueError`` naming the line that cannot be read.
    """
    from astropy import units
    from astropy.coordinates import SkyCoord

    positions = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split('#', 1)[0].strip().replace(',', ' ')
        if not line:
            continue
        fields = line.split()
        try:
            if len(fields) == 2 and all(re.fullmatch(_NUMBER, field) for field in fields):
                coordinate = SkyCoord(float(fields[0]), float(fields[1]), unit='deg')
            else:
                coordinate = SkyCoord(line, unit=(units.hourangle, units.deg))
        except ValueError:
            raise ValueError(f'line {number} ("{line[:40]}") is not "RA Dec" in degrees or sexagesimal '
                             '(e.g. "83.8221 -5.3911" or "05:35:17.3 -05:23:28")') from None
        positions.append((coordinate.ra.deg, coordinate.dec.deg))
    return np.array(positions, dtype=float).reshape(-1, 2)


@dataclass
class EnsembleChoice:
    """Which comparison stars make the ensemble, and why the others were dropped (one line each)."""

    used: np.ndarray       # boolean, one per comparison star
    rejected: list[str]


def reject_comparisons(flux: np.ndarray, error: np.ndarray, labels: list[str],
                       bands: list[str] | None = None) -> EnsembleChoice:
    """Drop comparison stars missing in any frame, then, one at a time, the one scattering most beyond its errors.

    ``flux`` and ``error`` are frames x stars. Each star's flux is divided by the sum of the other
    kept stars and normalised to its median in each band (``bands``, one per frame: a star
    redder than the others is brighter relative to them in R than in B, which is colour, not
    variability); its scatter is compared with its median relative error. The worst star above
    :data:`REJECT_RATIO` goes, and the rest are measured again.
    """
    flux, error = np.asarray(flux, dtype=float), np.asarray(error, dtype=float)
    band_of_frame = np.asarray(bands if bands is not None else [''] * flux.shape[0])
    used = np.ones(flux.shape[1], dtype=bool)
    rejected = []
    for star in range(flux.shape[1]):
        bad = ~(np.isfinite(flux[:, star]) & (flux[:, star] > 0))
        if bad.any():
            used[star] = False
            rejected.append(f'{labels[star]}: not measured in {int(bad.sum())} of {len(bad)} frames')
    while used.sum() > 2 and flux.shape[0] > 2:
        ratios = {}
        for star in np.nonzero(used)[0]:
            others = used.copy()
            others[star] = False
            relative = flux[:, star] / flux[:, others].sum(axis=1)
            for band in np.unique(band_of_frame):
                in_band = band_of_frame == band
                relative[in_band] /= np.median(relative[in_band])
            expected = float(np.median(error[:, star] / flux[:, star]))
            ratios[star] = (float(np.std(relative)), float(np.std(relative)) / max(expected, 1e-12))
        worst = max(ratios, key=lambda star: ratios[star][1])
        scatter, ratio = ratios[worst]
        if ratio <= REJECT_RATIO:
            break
        used[worst] = False
        rejected.append(f'{labels[worst]}: scatter {scatter:.4f} ({ratio:.1f} x its errors)')
    return EnsembleChoice(used, rejected)


def ensemble_flux(flux: np.ndarray, error: np.ndarray, used: np.ndarray) -> tuple[float, float]:
    """Summed flux of the used comparison stars in one frame and its error (errors added in quadrature)."""
    return float(flux[used].sum()), float(math.sqrt(float((error[used] ** 2).sum())))


def differential_magnitude(flux: float, flux_err: float, ensemble: float,
                           ensemble_err: float) -> tuple[float, float]:
    """Magnitude of the target relative to the summed ensemble; the errors of both added in quadrature."""
    if not (flux > 0 and ensemble > 0):
        return math.nan, math.nan
    relative = math.hypot(flux_err / flux, ensemble_err / ensemble)
    return -2.5 * math.log10(flux / ensemble), MAG_PER_RELATIVE_ERROR * relative
