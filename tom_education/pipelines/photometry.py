"""Light curve of the target by aperture photometry on each frame (photutils).

For every frame: the target's RA/Dec goes through the frame's celestial WCS to a pixel position,
the aperture is recentred on the star (a WCS is rarely better than a pixel or two), the flux is
summed in a circular aperture and the sky, measured in an annulus around it, is subtracted.
Errors follow the CCD equation when the header gives the gain. Optionally the target is measured
against an ensemble of comparison stars found in the field, which cancels thin clouds and
changing airmass.

Frames are loaded one at a time, so memory stays flat however many frames a run has; only a few
numbers per frame are kept.

Heavy libraries (photutils, matplotlib) are imported inside the functions that use them: a web
process that only lists the registered pipelines never pays for them.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from tom_dataproducts.models import DataProduct, ReducedDatum

from tom_education.models import AsyncError, PipelineOutput, PipelineProcess
from tom_education.pipelines.fitsio import (
    FITS_SUFFIXES,
    FrameInfo,
    describe_span,
    header_number,
    read_frames,
    read_pixels,
)

#: Defaults of the ``TOM_EDUCATION_PHOTOMETRY`` setting; lengths are in pixels.
DEFAULTS: dict[str, Any] = {
    'aperture_radius': 5.0,      # radius of the circular aperture
    'annulus_inner': 10.0,       # inner radius of the sky annulus
    'annulus_outer': 15.0,       # outer radius of the sky annulus
    'centroid_box': 11,          # side of the box searched when recentring
    'max_centroid_shift': 4.0,   # a centroid further than this from the WCS position is not trusted
    'fwhm': 3.0,                 # typical stellar FWHM, used to find comparison stars
    'detection_sigma': 10.0,     # comparison stars must peak this many sky sigmas above the sky
    'comparison_stars': 5,       # size of the comparison ensemble (the brightest suitable stars)
    'zero_point': 0.0,           # added to the instrumental magnitude -2.5 log10(flux / exptime)
}

#: Magnitudes per unit of relative flux error: 2.5 / ln(10).
MAG_PER_RELATIVE_ERROR = 2.5 / math.log(10)

GAIN_KEYS = ('GAIN', 'EGAIN', 'CCDGAIN')
READ_NOISE_KEYS = ('RDNOISE', 'READNOIS', 'RON', 'READNOISE', 'RDNOIS')
SATURATION_KEYS = ('SATURATE', 'SATLEVEL', 'SATUR', 'MAXLIN')
EXPOSURE_KEYS = ('EXPTIME', 'EXPOSURE', 'ITIME')

CSV_COLUMNS = [
    'time', 'mjd_utc', 'filter', 'mag', 'mag_err', 'flux', 'flux_err', 'sky', 'x', 'y', 'centroid', 'exptime', 'file',
]
DIFFERENTIAL_COLUMNS = ['ensemble_flux', 'ensemble_flux_err', 'comparison_stars']


def photometry_settings() -> dict[str, Any]:
    """``TOM_EDUCATION_PHOTOMETRY`` merged over :data:`DEFAULTS`, checked.

    Read at run time (never at import) so a TOM, or a test, can change it without a restart of
    anything but the worker; a bad value fails the run with a message naming the key.
    """
    config = {**DEFAULTS, **(getattr(settings, 'TOM_EDUCATION_PHOTOMETRY', None) or {})}
    for key in DEFAULTS:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AsyncError(f'TOM_EDUCATION_PHOTOMETRY["{key}"] must be a number, not {value!r}.')
        if key != 'zero_point' and value <= 0:
            raise AsyncError(f'TOM_EDUCATION_PHOTOMETRY["{key}"] must be positive, not {value!r}.')
    if not config['aperture_radius'] < config['annulus_inner'] < config['annulus_outer']:
        raise AsyncError(
            'TOM_EDUCATION_PHOTOMETRY needs aperture_radius < annulus_inner < annulus_outer; '
            f'got {config["aperture_radius"]}, {config["annulus_inner"]}, {config["annulus_outer"]}.'
        )
    config['centroid_box'] = int(config['centroid_box']) | 1  # odd, so the box has a central pixel
    config['comparison_stars'] = int(config['comparison_stars'])
    return config


# --- measurement: pure functions of an image, unit-tested directly ---------------------------------


@dataclass
class StarMeasurements:
    """Aperture photometry of N positions in one frame; every field is an array of length N (ADU)."""

    flux: np.ndarray
    flux_err: np.ndarray
    sky: np.ndarray       # sky level per pixel from the annulus
    sky_std: np.ndarray   # scatter of the sky pixels
    area: np.ndarray      # pixels in the aperture (fractional at its edge)
    n_sky: np.ndarray     # sky pixels used after clipping


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


def annulus_sky(data: np.ndarray, positions: np.ndarray, inner: float, outer: float) -> tuple[np.ndarray, ...]:
    """Sky level, scatter and pixel count in annuli around ``positions``, clipping stars at 3 sigma.

    The median of the clipped pixels is used: a neighbouring star in the annulus pulls a mean up,
    a median barely notices it.
    """
    from astropy.stats import SigmaClip
    from photutils.aperture import ApertureStats, CircularAnnulus

    annulus = CircularAnnulus(np.atleast_2d(positions), r_in=inner, r_out=outer)
    stats = ApertureStats(data, annulus, sigma_clip=SigmaClip(sigma=3.0, maxiters=10), sum_method='center')
    return (
        np.atleast_1d(np.asarray(stats.median, dtype=float)),
        np.atleast_1d(np.asarray(stats.std, dtype=float)),
        np.atleast_1d(np.asarray(stats.sum_aper_area.value, dtype=float)),
    )


def ccd_flux_error(flux: np.ndarray, area: np.ndarray, n_sky: np.ndarray, sky: np.ndarray, sky_std: np.ndarray,
                   gain: float | None, read_noise: float | None) -> np.ndarray:
    """One-sigma error of a sky-subtracted aperture flux, in ADU.

    With the gain, the CCD equation (Howell, *Handbook of CCD Astronomy*):
    ``sigma_e^2 = F g + A (1 + A / n_sky) (S g + R^2)`` with F and S (sky per pixel) in ADU, g in
    e-/ADU, R the read noise in e-; the data must be bias-subtracted for S g to be the sky's
    photon count. Without the gain the source's photon noise cannot be known, so only the sky
    term is used, measured directly from the scatter of the annulus: the error of a faint star,
    an underestimate for a bright one.
    """
    area = np.asarray(area, dtype=float)
    sky_term = area * (1.0 + area / np.maximum(np.asarray(n_sky, dtype=float), 1.0))
    if gain:
        electrons = np.maximum(np.asarray(flux, dtype=float), 0.0) * gain
        per_pixel = np.maximum(np.asarray(sky, dtype=float), 0.0) * gain + (read_noise or 0.0) ** 2
        return np.sqrt(electrons + sky_term * per_pixel) / gain
    return np.sqrt(sky_term) * np.asarray(sky_std, dtype=float)


def measure_stars(data: np.ndarray, positions: np.ndarray, *, radius: float, inner: float, outer: float,
                  gain: float | None = None, read_noise: float | None = None) -> StarMeasurements:
    """Sky-subtracted aperture fluxes at ``positions`` with their errors, the sky from an annulus around each."""
    sums, area = aperture_sums(data, positions, radius)
    sky, sky_std, n_sky = annulus_sky(data, positions, inner, outer)
    flux = sums - sky * area
    return StarMeasurements(flux, ccd_flux_error(flux, area, n_sky, sky, sky_std, gain, read_noise),
                            sky, sky_std, area, n_sky)


def recentre(data: np.ndarray, x: float, y: float, box: int, max_shift: float) -> tuple[float, float, bool]:
    """Position of the star nearest ``(x, y)``: ``(x, y, True)``, or the input and ``False`` if not trusted.

    A 2-D quadratic is fitted around the brightest pixel of a small box (photutils'
    ``centroid_quadratic``): unlike a centre of mass it ignores a flat sky. A result outside the
    box, further than ``max_shift`` or not finite (no star there, or a brighter neighbour) keeps
    the WCS position, which is then at least where the target should be.
    """
    from photutils.centroids import centroid_quadratic

    half = box // 2
    column, row = int(round(x)), int(round(y))
    top, left = max(row - half, 0), max(column - half, 0)
    cutout = data[top:row + half + 1, left:column + half + 1]
    if cutout.shape[0] < 3 or cutout.shape[1] < 3 or not np.isfinite(cutout).all():
        return x, y, False
    cutout = cutout - np.median(cutout)
    with np.errstate(all='ignore'):
        found = centroid_quadratic(cutout, fit_boxsize=5)
    new_x, new_y = float(found[0]) + left, float(found[1]) + top
    if not (math.isfinite(new_x) and math.isfinite(new_y)) or math.hypot(new_x - x, new_y - y) > max_shift:
        return x, y, False
    return new_x, new_y, True


def aperture_inside(shape: tuple[int, int], x: float, y: float, radius: float) -> bool:
    """Whether a circle of ``radius`` around ``(x, y)`` lies wholly on the image (else its flux is partial)."""
    rows, columns = shape
    return radius - 0.5 <= x <= columns - 0.5 - radius and radius - 0.5 <= y <= rows - 0.5 - radius


def find_comparison_stars(data: np.ndarray, target_xy: tuple[float, float], config: dict[str, Any],
                          saturation: float | None) -> np.ndarray:
    """Pixel positions (N x 2) of the brightest isolated, unsaturated stars away from the target.

    DAOStarFinder finds the stars; a candidate is kept if its sky annulus lies on the image, no
    other detection falls inside its annulus (a blend would make it look variable as the seeing
    changes), it is outside the target's annulus and its peak stays below saturation.
    """
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder
    from photutils.utils.exceptions import NoDetectionsWarning

    _, median, std = sigma_clipped_stats(data, sigma=3.0, maxiters=5)
    if not std > 0:
        return np.empty((0, 2))
    finder = DAOStarFinder(threshold=config['detection_sigma'] * std, fwhm=config['fwhm'], exclude_border=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NoDetectionsWarning)  # an empty result says it; the caller explains
        found = finder(data - median)
    if found is None or len(found) == 0:
        return np.empty((0, 2))
    # photutils 3 names the columns x_centroid/y_centroid; version 2 xcentroid/ycentroid
    x_name = 'x_centroid' if 'x_centroid' in found.colnames else 'xcentroid'
    y_name = 'y_centroid' if 'y_centroid' in found.colnames else 'ycentroid'
    xs, ys = np.asarray(found[x_name], dtype=float), np.asarray(found[y_name], dtype=float)
    peaks = np.asarray(found['peak'], dtype=float) + median
    brightness = np.asarray(found['flux'], dtype=float)
    outer = config['annulus_outer']
    limit = saturation or _flat_top(data)
    distances = np.hypot(xs[:, None] - xs[None, :], ys[:, None] - ys[None, :])
    np.fill_diagonal(distances, np.inf)
    keep = (
        (np.hypot(xs - target_xy[0], ys - target_xy[1]) > 2 * outer)
        & (distances.min(axis=1) > outer)
        & ((peaks < 0.9 * limit) if limit else True)
        & np.array([aperture_inside(data.shape, x, y, outer) for x, y in zip(xs, ys, strict=True)], dtype=bool)
    )
    order = np.argsort(-brightness[keep])[:config['comparison_stars']]
    return np.column_stack([xs[keep][order], ys[keep][order]])


def _flat_top(data: np.ndarray) -> float | None:
    """The saturation level of a frame whose header does not give it: its maximum, if several pixels reach it.

    Saturated stars are clipped to one value; a frame whose maximum is a single pixel shows no
    sign of saturation, and then no star is rejected for being bright.
    """
    top = float(np.nanmax(data))
    return top if np.count_nonzero(data == top) >= 3 else None


def magnitude(flux: float, flux_err: float, exptime: float | None, zero_point: float) -> tuple[float, float]:
    """Instrumental magnitude of a flux (per second when the exposure time is known) and its error."""
    if not flux > 0:
        return math.nan, math.nan
    rate = flux / exptime if exptime else flux
    return zero_point - 2.5 * math.log10(rate), MAG_PER_RELATIVE_ERROR * flux_err / flux


# --- the pipeline ------------------------------------------------------------------------------


@dataclass
class _Point:
    """What is kept of one measured frame: a handful of numbers, never its pixels."""

    frame: FrameInfo
    flux: float
    flux_err: float
    sky: float
    x: float
    y: float
    recentred: bool
    exptime: float | None
    comparison_flux: np.ndarray = field(default_factory=lambda: np.empty(0))
    comparison_err: np.ndarray = field(default_factory=lambda: np.empty(0))


class AperturePhotometryPipeline(PipelineProcess):
    """Light curve of the target: aperture photometry at its RA/Dec on each frame, with errors.

    Saves one photometry point per usable frame (it appears on the target's Photometry tab),
    the table as a CSV data product and a PNG plot of the light curve.
    """

    short_name = 'photometry'
    allowed_suffixes = FITS_SUFFIXES
    flags = {
        'recentre': {
            'default': True,
            'long_name': 'Recentre the aperture on the star (the WCS position can be off by a few pixels)',
        },
        'differential': {
            'default': False,
            'long_name': 'Differential photometry against comparison stars found in the field',
        },
    }

    class Meta:
        proxy = True

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list[PipelineOutput]:
        config = photometry_settings()
        recentre_flag, differential = flags.get('recentre', True), flags.get('differential', False)
        products = list(self.input_files.all())
        with self.update_status(f'Reading the headers of {len(products)} frames'):
            frames = read_frames(self, products)
            self.log(f'Measuring {describe_span(frames)}')

        with self.update_status(f'Measuring the target in {len(frames)} frames'):
            points, comparison_sky = self._measure_frames(frames, config, recentre_flag, differential)
        if not points:
            raise AsyncError(
                f'None of the {len(frames)} frames could be measured: each lacks a celestial WCS or has the target '
                f'(RA {self.target.ra:.5f}, Dec {self.target.dec:.5f}) off the chip. See the log for each frame.'
            )

        with self.update_status('Writing the light curve'):
            rows = self._rows(points, config, differential, comparison_sky)
            table = tmpdir / f'{self.short_name}_light_curve.csv'
            _write_csv(table, rows, CSV_COLUMNS + (DIFFERENTIAL_COLUMNS if differential else []))
            plot = tmpdir / f'{self.short_name}_light_curve.png'
            kind = 'differential' if differential else 'instrumental'
            plot_light_curve(rows, plot, title=f'{self.target.name}: {kind} magnitude', differential=differential)
            self.log(f'Light curve of {len(rows)} points written')
        return [
            PipelineOutput(table, ReducedDatum, 'photometry'),
            PipelineOutput(table, DataProduct),
            PipelineOutput(plot, DataProduct),
        ]

    def _measure_frames(self, frames: list[FrameInfo], config: dict[str, Any], recentre_flag: bool,
                        differential: bool) -> tuple[list[_Point], np.ndarray]:
        """Measure each frame in time order, loading one frame's pixels at a time."""
        ra, dec = float(self.target.ra), float(self.target.dec)
        radius, inner, outer = config['aperture_radius'], config['annulus_inner'], config['annulus_outer']
        comparison_sky: np.ndarray | None = None  # (ra, dec) of the ensemble, chosen in the first usable frame
        points: list[_Point] = []
        noted_error_model = False
        for number, frame in enumerate(frames, start=1):
            prefix = f'[{number}/{len(frames)}] {frame.name}'
            if frame.wcs is None:
                self.log(f'{prefix}: skipped, its header has no celestial WCS to locate the target')
                continue
            x, y = (float(value) for value in frame.wcs.world_to_pixel_values(ra, dec))
            if not aperture_inside(frame.shape, x, y, radius):
                where = 'off the chip' if not _on_chip(frame.shape, x, y) else 'too close to the edge'
                self.log(f'{prefix}: skipped, the target is {where} (pixel {x:.1f}, {y:.1f} of a '
                         f'{frame.shape[1]} x {frame.shape[0]} image)')
                continue
            data = read_pixels(frame)
            recentred = False
            if recentre_flag:
                x, y, recentred = recentre(data, x, y, config['centroid_box'], config['max_centroid_shift'])
                if not recentred:
                    self.log(f'{prefix}: no star found within {config["max_centroid_shift"]:g} px of the WCS '
                             'position; measuring at the WCS position')
            gain = header_number(frame.header, *GAIN_KEYS)
            read_noise = header_number(frame.header, *READ_NOISE_KEYS)
            if not noted_error_model:
                noted_error_model = True
                self.log(_error_model_note(gain, read_noise))
            if differential and comparison_sky is None:
                comparison_sky = self._choose_comparison_stars(data, frame, (x, y), config)
            comparison_xy = self._comparison_positions(data, frame, comparison_sky, config)
            on_image = np.isfinite(comparison_xy[:, 0])
            measured = measure_stars(data, np.vstack([[x, y], comparison_xy[on_image]]), radius=radius, inner=inner,
                                     outer=outer, gain=gain, read_noise=read_noise)
            del data  # the next frame must not find this one still in memory
            comparison_flux = np.full(len(comparison_xy), np.nan)
            comparison_err = np.full(len(comparison_xy), np.nan)
            comparison_flux[on_image], comparison_err[on_image] = measured.flux[1:], measured.flux_err[1:]
            exptime = header_number(frame.header, *EXPOSURE_KEYS)
            point = _Point(frame, float(measured.flux[0]), float(measured.flux_err[0]), float(measured.sky[0]),
                           x, y, recentred, exptime, comparison_flux, comparison_err)
            points.append(point)
            self.log(f'{prefix}: flux {point.flux:.1f} ± {point.flux_err:.1f} ADU at pixel ({x:.2f}, {y:.2f}), '
                     f'sky {point.sky:.1f} ADU/pixel'
                     + (f', {int(on_image.sum())} comparison stars' if differential else ''))
        return points, (comparison_sky if comparison_sky is not None else np.empty((0, 2)))

    def _choose_comparison_stars(self, data: np.ndarray, frame: FrameInfo, target_xy: tuple[float, float],
                                 config: dict[str, Any]) -> np.ndarray:
        """Sky positions of the ensemble, found once, so every frame measures the same stars."""
        found = find_comparison_stars(data, target_xy, config, header_number(frame.header, *SATURATION_KEYS))
        if not len(found):
            raise AsyncError(
                f'No comparison star was found in {frame.name} (isolated, unsaturated, '
                f'{config["detection_sigma"]:g} sigma above the sky); run without differential photometry.'
            )
        ra, dec = frame.wcs.pixel_to_world_values(found[:, 0], found[:, 1])
        described = ', '.join(f'({x:.1f}, {y:.1f})' for x, y in found)
        self.log(f'{len(found)} comparison stars chosen in {frame.name} at pixels {described}')
        return np.column_stack([np.atleast_1d(ra), np.atleast_1d(dec)])

    def _comparison_positions(self, data: np.ndarray, frame: FrameInfo, comparison_sky: np.ndarray | None,
                              config: dict[str, Any]) -> np.ndarray:
        """Recentred pixel positions (M x 2) of the ensemble in this frame; NaN for a star whose annulus is off it."""
        if comparison_sky is None or not len(comparison_sky):
            return np.empty((0, 2))
        xs, ys = frame.wcs.world_to_pixel_values(comparison_sky[:, 0], comparison_sky[:, 1])
        positions = np.full((len(comparison_sky), 2), np.nan)
        for index, (x, y) in enumerate(zip(np.atleast_1d(xs), np.atleast_1d(ys), strict=True)):
            if aperture_inside(frame.shape, float(x), float(y), config['annulus_outer']):
                found_x, found_y, _ = recentre(data, float(x), float(y), config['centroid_box'],
                                               config['max_centroid_shift'])
                positions[index] = found_x, found_y
        return positions

    def _rows(self, points: list[_Point], config: dict[str, Any], differential: bool,
              comparison_sky: np.ndarray) -> list[dict[str, Any]]:
        """One table row per measured frame; in differential mode, against the stars measured in every frame."""
        usable = np.ones(len(comparison_sky), dtype=bool)
        if differential:
            for point in points:
                usable &= np.isfinite(point.comparison_flux) & (point.comparison_flux > 0)
            if not usable.any():
                raise AsyncError(
                    'No comparison star could be measured in every frame (they fall off the chip or fade); '
                    'run without differential photometry.'
                )
            self.log(f'Ensemble: {int(usable.sum())} of {len(usable)} comparison stars, measured in every frame')
        rows = []
        for point in points:
            row: dict[str, Any] = {
                'time': point.frame.isot,
                'mjd_utc': f'{point.frame.time.utc.mjd:.8f}',
                'filter': str(point.frame.header.get('FILTER', '')).strip() or 'unknown',
                'flux': f'{point.flux:.3f}',
                'flux_err': f'{point.flux_err:.3f}',
                'sky': f'{point.sky:.3f}',
                'x': f'{point.x:.3f}',
                'y': f'{point.y:.3f}',
                'centroid': 'recentred' if point.recentred else 'wcs',
                'exptime': '' if point.exptime is None else f'{point.exptime:g}',
                'file': point.frame.name,
            }
            if differential:
                ensemble = float(point.comparison_flux[usable].sum())
                ensemble_err = float(np.sqrt((point.comparison_err[usable] ** 2).sum()))
                mag, mag_err = _differential_magnitude(point.flux, point.flux_err, ensemble, ensemble_err)
                row.update({'ensemble_flux': f'{ensemble:.3f}', 'ensemble_flux_err': f'{ensemble_err:.3f}',
                            'comparison_stars': int(usable.sum())})
            else:
                mag, mag_err = magnitude(point.flux, point.flux_err, point.exptime, config['zero_point'])
            if not math.isfinite(mag):
                self.log(f'{point.frame.name}: the flux is not positive, so it has no magnitude (row kept, mag empty)')
            row['mag'] = f'{mag:.5f}' if math.isfinite(mag) else ''
            row['mag_err'] = f'{mag_err:.5f}' if math.isfinite(mag_err) else ''
            rows.append(row)
        return rows


def _differential_magnitude(flux: float, flux_err: float, ensemble: float, ensemble_err: float) -> tuple[float, float]:
    """Magnitude of the target relative to the summed ensemble, errors of both added in quadrature."""
    if not (flux > 0 and ensemble > 0):
        return math.nan, math.nan
    relative = math.hypot(flux_err / flux, ensemble_err / ensemble)
    return -2.5 * math.log10(flux / ensemble), MAG_PER_RELATIVE_ERROR * relative


def _error_model_note(gain: float | None, read_noise: float | None) -> str:
    if gain and read_noise:
        return f'Errors: CCD equation with gain {gain:g} e-/ADU and read noise {read_noise:g} e- from the header'
    if gain:
        return f'Errors: CCD equation with gain {gain:g} e-/ADU; no read noise in the header (taken as 0)'
    return 'Errors: no GAIN in the header, so from the sky scatter only (the photon noise of the star is not included)'


def _on_chip(shape: tuple[int, int], x: float, y: float) -> bool:
    return -0.5 <= x <= shape[1] - 0.5 and -0.5 <= y <= shape[0] - 0.5


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open('w', newline='', encoding='utf-8') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def plot_light_curve(rows: list[dict[str, Any]], path: Path, *, title: str, differential: bool = False) -> None:
    """Magnitude against time, one colour per filter, brighter upwards, as a PNG.

    Uses matplotlib's object API with the Agg canvas: no pyplot global state, safe in a worker
    that runs several pipelines in threads.
    """
    from astropy.time import Time
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    plotted = [row for row in rows if row['mag'] != '']
    for band in sorted({row['filter'] for row in plotted}):
        selected = [row for row in plotted if row['filter'] == band]
        times = Time([row['time'] for row in selected], scale='utc').to_datetime()
        axes.errorbar(times, [float(row['mag']) for row in selected],
                      yerr=[float(row['mag_err'] or 0) for row in selected],
                      fmt='o', markersize=4, capsize=2, label=band)
    axes.invert_yaxis()  # magnitudes: brighter is smaller
    axes.set_xlabel('Time (UTC)')
    axes.set_ylabel('Magnitude relative to the ensemble' if differential else 'Instrumental magnitude')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if plotted:
        axes.legend(title='Filter')
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    figure.savefig(path, format='png')
