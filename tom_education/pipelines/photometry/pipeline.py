"""The pipeline class: reads the frames one at a time, calls the measuring functions, logs, writes the outputs."""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
from tom_education.pipelines.photometry import ensemble, timing
from tom_education.pipelines.photometry.apertures import aperture_inside, measure_stars, on_chip
from tom_education.pipelines.photometry.centring import Centre, brightest_point, recentre
from tom_education.pipelines.photometry.config import OPTIONS, photometry_settings, radii
from tom_education.pipelines.photometry.noise import limiting_magnitude, magnitude
from tom_education.pipelines.photometry.output import CSV_COLUMNS, DIFFERENTIAL_COLUMNS, plot_light_curve, write_csv
from tom_education.pipelines.photometry.seeing import find_stars, frame_sky, measure_fwhm, smoothed_noise

GAIN_KEYS = ('GAIN', 'EGAIN', 'CCDGAIN')
READ_NOISE_KEYS = ('RDNOISE', 'READNOIS', 'RON', 'READNOISE', 'RDNOIS')
SATURATION_KEYS = ('SATURATE', 'SATLEVEL', 'SATUR', 'MAXLIN')
EXPOSURE_KEYS = ('EXPTIME', 'EXPOSURE', 'ITIME')
#: Half-side (px) of the region around the target where the seeing and the local sky are measured.
REGION_HALF = 64
#: Stars fitted per frame to measure the seeing.
FWHM_STARS = 7


@dataclass
class _Point:
    """What is kept of one measured frame: a handful of numbers, never its pixels."""

    frame: FrameInfo
    flux: float
    flux_err: float
    sky: float
    sky_noise: float
    fwhm: float
    radius: float
    centre: Centre
    exptime: float | None
    comparison_flux: np.ndarray = field(default_factory=lambda: np.empty(0))
    comparison_err: np.ndarray = field(default_factory=lambda: np.empty(0))


def _region(shape: tuple[int, int], x: float, y: float, half: int) -> tuple[slice, slice]:
    row, column = int(round(y)), int(round(x))
    return (slice(max(row - half, 0), min(row + half + 1, shape[0])),
            slice(max(column - half, 0), min(column + half + 1, shape[1])))


def _flat_top(data: np.ndarray) -> float | None:
    """The saturation level of a frame whose header does not give it: its maximum, if several pixels reach it."""
    top = float(np.nanmax(data))
    return top if np.count_nonzero(data == top) >= 3 else None


class AperturePhotometryPipeline(PipelineProcess):
    """Light curve of the target: aperture photometry at its RA/Dec on each frame, with errors or upper limits.

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
    options = OPTIONS

    class Meta:
        proxy = True

    def do_pipeline(self, tmpdir: Path, **params: Any) -> list[PipelineOutput]:
        config = photometry_settings(params)
        recentre_flag, differential = params.get('recentre', True), params.get('differential', False)
        user_list = self._user_comparisons(params.get('comparison_stars') or '', differential)
        products = list(self.input_files.all())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                with self.update_status(f'Reading the headers of {len(products)} frames'):
                    frames = read_frames(self, products)
                    self.log(f'Measuring {describe_span(frames)}')
                with self.update_status(f'Measuring the target in {len(frames)} frames'):
                    points, comparison_sky = self._measure_frames(frames, config, recentre_flag, differential,
                                                                  user_list)
                if not points:
                    raise AsyncError(
                        f'None of the {len(frames)} frames could be measured: each lacks a celestial WCS or has the '
                        f'target (RA {self.target.ra:.5f}, Dec {self.target.dec:.5f}) off the chip. See the log for '
                        'each frame.'
                    )
                with self.update_status('Writing the light curve'):
                    rows = self._rows(points, config, differential, comparison_sky)
            finally:
                self._summarise_warnings(caught)
        table = tmpdir / f'{self.short_name}_light_curve.csv'
        write_csv(table, rows, CSV_COLUMNS + (DIFFERENTIAL_COLUMNS if differential else []))
        plot = tmpdir / f'{self.short_name}_light_curve.png'
        kind = 'differential' if differential else 'instrumental'
        plot_light_curve(rows, plot, title=f'{self.target.name}: {kind} magnitude', differential=differential)
        limits = sum(row['mag'] == '' and row['limit'] != '' for row in rows)
        self.log(f'Light curve of {len(rows)} points written'
                 + (f' ({limits} of them upper limits, S/N < {config["limit_snr"]:g})' if limits else ''))
        return [
            PipelineOutput(table, ReducedDatum, 'photometry'),
            PipelineOutput(table, DataProduct),
            PipelineOutput(plot, DataProduct),
        ]

    def _user_comparisons(self, text: str, differential: bool) -> np.ndarray | None:
        try:
            positions = ensemble.parse_coordinates(text)
        except ValueError as exc:
            raise AsyncError(f'The comparison-star list cannot be read: {exc}.') from None
        if not len(positions):
            return None
        if not differential:
            self.log('A comparison-star list was given without the differential flag: it is not used')
            return None
        return positions

    def _summarise_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        """One log line per kind of warning the libraries raised, with how often: not one per frame."""
        counts = Counter(f'{item.category.__name__}: {str(item.message).splitlines()[0][:160]}' for item in caught)
        for text, count in counts.most_common(5):
            self.log(f'Library warning ({count} x): {text}')
        if len(counts) > 5:
            self.log(f'... and {len(counts) - 5} other kinds of library warnings')

    def _measure_frames(self, frames: list[FrameInfo], config: dict[str, Any], recentre_flag: bool,
                        differential: bool, user_list: np.ndarray | None) -> tuple[list[_Point], np.ndarray]:
        """Measure each frame in time order, loading one frame's pixels at a time."""
        ra, dec = float(self.target.ra), float(self.target.dec)
        comparison_sky: np.ndarray | None = user_list
        points: list[_Point] = []
        fwhm_guess = float(config['fwhm'])
        noted_error_model = False
        for number, frame in enumerate(frames, start=1):
            self.progress(number - 1, len(frames), f'Measuring {frame.name}')
            prefix = f'[{number}/{len(frames)}] {frame.name}'
            if frame.wcs is None:
                self.log(f'{prefix}: skipped, its header has no celestial WCS to locate the target')
                continue
            x, y = (float(value) for value in frame.wcs.world_to_pixel_values(ra, dec))
            if not aperture_inside(frame.shape, x, y, radii(config, fwhm_guess)[0]):
                where = 'off the chip' if not on_chip(frame.shape, x, y) else 'too close to the edge'
                self.log(f'{prefix}: skipped, the target is {where} (pixel {x:.1f}, {y:.1f} of a '
                         f'{frame.shape[1]} x {frame.shape[0]} image)')
                continue
            data = read_pixels(frame)
            region = _region(data.shape, x, y, REGION_HALF)
            sky, noise = frame_sky(data[region])
            fwhm, seeing_note = self._seeing(data[region], (sky, noise), fwhm_guess, config)
            fwhm_guess = fwhm
            if recentre_flag:
                centre = recentre(data, x, y, fwhm=fwhm, max_shift=config['max_centroid_shift'], sky=sky,
                                  noise=noise, threshold=config['detection_sigma'])
            else:
                centre = Centre(x, y, 'wcs', 'recentring switched off')
            radius, inner, outer = radii(config, fwhm)
            if not aperture_inside(frame.shape, centre.x, centre.y, radius):
                self.log(f'{prefix}: skipped, an aperture of {radius:.1f} px (FWHM {fwhm:.2f} px) around pixel '
                         f'({centre.x:.1f}, {centre.y:.1f}) is cut by the edge of the image')
                continue
            if differential and comparison_sky is None:
                comparison_sky = self._choose_comparison_stars(data, frame, centre, fwhm, sky, noise, config)
            comparison_xy = self._comparison_positions(data, frame, comparison_sky, fwhm, outer, config)
            on_image = np.isfinite(comparison_xy[:, 0])
            gain = header_number(frame.header, *GAIN_KEYS)
            read_noise = header_number(frame.header, *READ_NOISE_KEYS)
            measured = measure_stars(data, np.vstack([[centre.x, centre.y], comparison_xy[on_image]]), radius=radius,
                                     inner=inner, outer=outer, gain=gain, read_noise=read_noise)
            del data  # the next frame must not find this one still in memory
            if not noted_error_model:
                noted_error_model = True
                self.log(_error_model_note(gain, read_noise, measured.gain))
            comparison_flux = np.full(len(comparison_xy), np.nan)
            comparison_err = np.full(len(comparison_xy), np.nan)
            comparison_flux[on_image], comparison_err[on_image] = measured.flux[1:], measured.flux_err[1:]
            point = _Point(frame, float(measured.flux[0]), float(measured.flux_err[0]), float(measured.sky[0]),
                           float(measured.sky_std[0]), fwhm, radius, centre,
                           header_number(frame.header, *EXPOSURE_KEYS), comparison_flux, comparison_err)
            points.append(point)
            self.log(f'{prefix}: flux {point.flux:.1f} ± {point.flux_err:.1f} ADU at pixel ({centre.x:.2f}, '
                     f'{centre.y:.2f}) [{centre.used}: {centre.reason}], FWHM {fwhm:.2f} px{seeing_note}, '
                     f'aperture {radius:.1f} px, sky {point.sky:.1f} ± {point.sky_noise:.2f} ADU/pixel'
                     + (f', {int(on_image.sum())} comparison stars' if differential else ''))
        self.progress(len(frames), len(frames), 'All frames measured')
        return points, (comparison_sky if comparison_sky is not None else np.empty((0, 2)))

    def _seeing(self, region: np.ndarray, sky: tuple[float, float], guess: float,
                config: dict[str, Any]) -> tuple[float, str]:
        """The FWHM of the brightest unsaturated stars near the target; the last value when none can be fitted."""
        stars = find_stars(region, guess, max(config['detection_sigma'], 10.0), border=int(2 * guess) + 2, sky=sky)
        top = _flat_top(region)
        usable = np.nonzero((stars.peak < 0.9 * top) if top else np.ones(len(stars.x), dtype=bool))[0]
        brightest = usable[np.argsort(-stars.significance[usable])[:FWHM_STARS]]
        fwhm = measure_fwhm(region, stars.x[brightest], stars.y[brightest], guess)
        if fwhm is None:
            return guess, ' (no star to fit: the previous value)'
        return fwhm, f' (from {len(brightest)} stars)'

    def _choose_comparison_stars(self, data: np.ndarray, frame: FrameInfo, centre: Centre, fwhm: float, sky: float,
                                 noise: float, config: dict[str, Any]) -> np.ndarray:
        """Sky positions of the ensemble, found once, so every frame measures the same stars."""
        _, _, outer = radii(config, fwhm)
        stars = find_stars(data, fwhm, config['detection_sigma'], border=int(outer) + 1)
        target_peak = brightest_point(data, centre.x, centre.y, 1.0, fwhm, sky)[2] / smoothed_noise(noise, fwhm)
        saturation = header_number(frame.header, *SATURATION_KEYS) or _flat_top(data)
        chosen = ensemble.choose_comparisons(stars, data.shape, (centre.x, centre.y),
                                             target_significance=target_peak, count=config['comparison_count'],
                                             isolation=outer, saturation=saturation)
        if not len(chosen):
            raise AsyncError(
                f'No comparison star was found in {frame.name} ({len(stars.x)} stars detected at '
                f'{config["detection_sigma"]:g} sigma, none isolated and unsaturated with its sky annulus on the '
                'image); give a list of comparison stars, lower the detection threshold, or run without '
                'differential photometry.'
            )
        ra, dec = frame.wcs.pixel_to_world_values(stars.x[chosen], stars.y[chosen])
        described = ', '.join(f'({stars.x[i]:.0f}, {stars.y[i]:.0f}; {stars.significance[i]:.0f} sigma)'
                              for i in chosen)
        self.log(f'{len(chosen)} comparison stars chosen in {frame.name} (target {target_peak:.0f} sigma) '
                 f'at pixels {described}')
        return np.column_stack([np.atleast_1d(ra), np.atleast_1d(dec)])

    def _comparison_positions(self, data: np.ndarray, frame: FrameInfo, comparison_sky: np.ndarray | None,
                              fwhm: float, outer: float, config: dict[str, Any]) -> np.ndarray:
        """Recentred pixel positions (M x 2) of the ensemble in this frame; NaN for a star whose annulus is off it."""
        if comparison_sky is None or not len(comparison_sky):
            return np.empty((0, 2))
        xs, ys = frame.wcs.world_to_pixel_values(comparison_sky[:, 0], comparison_sky[:, 1])
        positions = np.full((len(comparison_sky), 2), np.nan)
        for index, (x, y) in enumerate(zip(np.atleast_1d(xs), np.atleast_1d(ys), strict=True)):
            x, y = float(x), float(y)
            if aperture_inside(frame.shape, x, y, outer):
                sky, noise = frame_sky(data[_region(data.shape, x, y, int(outer) + 1)])
                centre = recentre(data, x, y, fwhm=fwhm, max_shift=config['max_centroid_shift'], sky=sky,
                                  noise=noise, threshold=config['detection_sigma'])
                positions[index] = centre.x, centre.y
        return positions

    def _rows(self, points: list[_Point], config: dict[str, Any], differential: bool,
              comparison_sky: np.ndarray) -> list[dict[str, Any]]:
        """One table row per measured frame; in differential mode, against the ensemble that survived rejection."""
        ra, dec = float(self.target.ra), float(self.target.dec)
        used = np.zeros(len(comparison_sky), dtype=bool)
        if differential:
            labels = [f'comparison star at RA {star_ra:.5f} Dec {star_dec:.5f}' for star_ra, star_dec in comparison_sky]
            choice = ensemble.reject_comparisons(np.array([point.comparison_flux for point in points]),
                                                 np.array([point.comparison_err for point in points]), labels,
                                                 [_band(point.frame) for point in points])
            for line in choice.rejected:
                self.log(f'Ensemble: rejected {line}')
            used = choice.used
            if not used.any():
                raise AsyncError('No comparison star could be measured in every frame (they fall off the chip, '
                                 'fade or vary); give a list of comparison stars or run without differential '
                                 'photometry.')
            self.log(f'Ensemble: {int(used.sum())} of {len(used)} comparison stars used')
        location, source = timing.site_location(points[0].frame.header, config)
        self.log(f'Observatory location from {source}: BJD_TDB and airmass columns filled' if location is not None else
                 'Observatory location unknown (no OBSGEO-X/Y/Z, SITELAT/SITELONG in the header, no site_latitude/'
                 'site_longitude in TOM_EDUCATION_PHOTOMETRY): the BJD_TDB and airmass columns are empty')
        rows = []
        for point in points:
            header = point.frame.header
            middle = timing.mid_exposure(point.frame.time, point.exptime)
            snr = point.flux / point.flux_err if point.flux_err > 0 else math.inf
            row: dict[str, Any] = {
                'time': middle.utc.isot,
                'mjd_utc': f'{middle.utc.mjd:.8f}',
                'filter': _band(point.frame),
                'snr': f'{snr:.2f}',
                'flux': f'{point.flux:.3f}',
                'flux_err': f'{point.flux_err:.3f}',
                'sky': f'{point.sky:.3f}',
                'sky_noise': f'{point.sky_noise:.3f}',
                'fwhm': f'{point.fwhm:.3f}',
                'aperture': f'{point.radius:.3f}',
                'x': f'{point.centre.x:.3f}',
                'y': f'{point.centre.y:.3f}',
                'centroid': point.centre.used,
                'centroid_reason': point.centre.reason,
                'exposure_time': '' if point.exptime is None else f'{point.exptime:g}',
                'telescope': str(header.get('TELESCOP', '')).strip(),
                'instrument': str(header.get('INSTRUME', '')).strip(),
                'file': point.frame.name,
                'bjd_tdb': '', 'airmass': '', 'mag': '', 'mag_err': '', 'limit': '',
            }
            if location is not None:
                bjd, airmass = timing.bjd_tdb_and_airmass(middle, location, ra, dec)
                row['bjd_tdb'], row['airmass'] = f'{bjd:.8f}', (f'{airmass:.4f}' if math.isfinite(airmass) else '')
            if differential:
                total, total_err = ensemble.ensemble_flux(point.comparison_flux, point.comparison_err, used)
                row.update({'ensemble_flux': f'{total:.3f}', 'ensemble_flux_err': f'{total_err:.3f}',
                            'comparison_stars': int(used.sum())})
                mag, mag_err = ensemble.differential_magnitude(point.flux, point.flux_err, total, total_err)
                limit = -2.5 * math.log10(config['limit_snr'] * point.flux_err / total) if total > 0 else math.nan
            else:
                mag, mag_err = magnitude(point.flux, point.flux_err, point.exptime, config['zero_point'])
                limit = limiting_magnitude(point.flux_err, config['limit_snr'], point.exptime, config['zero_point'])
            if snr < config['limit_snr'] or not math.isfinite(mag):
                row['limit'] = f'{limit:.5f}' if math.isfinite(limit) else ''
            else:
                row['mag'], row['mag_err'] = f'{mag:.5f}', f'{mag_err:.5f}'
            rows.append(row)
        return rows


def _band(frame: FrameInfo) -> str:
    """The frame's filter, from ``FILTER``; ``unknown`` without it."""
    return str(frame.header.get('FILTER', '')).strip() or 'unknown'


def _error_model_note(gain: float | None, read_noise: float | None, used_gain: float | None) -> str:
    if gain:
        noise = f'read noise {read_noise:g} e-' if read_noise else 'no read noise in the header (taken as 0)'
        return (f'Errors: CCD equation with gain {gain:g} e-/ADU and {noise} from the header, '
                'plus the rounding noise (1/sqrt(12) ADU per pixel)')
    star = (f'the star\'s photon noise with the gain the sky implies, {used_gain:.3g} e-/ADU (sky level / '
            'sky variance: assumes a bias-subtracted, sky-limited frame)') if used_gain else \
        'no photon noise of the star (the sky level is not positive, so no gain can be inferred)'
    return ('Errors: no GAIN in the header, so from the measured sky scatter (never below the rounding noise '
            f'1/sqrt(12) ADU per pixel) and {star}')
