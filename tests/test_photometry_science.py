"""Photometry on frames like a small telescope's (issue 12): quantised, no GAIN, FWHM 6 px, clouds, blank sky.

Each test reproduces one finding of the issue on synthetic frames whose truth is known
(``tests.science_data.small_telescope_frames``) and failed on the single-module pipeline.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from django.test import override_settings
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target

from tests import science_data
from tests.test_science_pipelines import PHOTOMETRY, in_database, log_of, run_here, table_of, upload
from tom_education.models import ASYNC_STATUS_CREATED, ASYNC_STATUS_FAILED
from tom_education.pipelines.photometry import QUANTISATION_NOISE, ensemble, noise


@pytest.fixture
def field_target(db) -> Target:
    return Target.objects.create(name='Small-telescope field', type=Target.SIDEREAL, ra=150.0, dec=20.0,
                                 permissions=Target.Permissions.PUBLIC)


def column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(row[name]) for row in rows])


def test_noise_never_collapses_on_a_sky_of_one_value():
    sky = np.full(1000, 40.0)
    sky[:5] = 41.0  # 99.5 % of the pixels hold one value: clipped scatter and MAD are both 0
    level, scatter, count = noise.robust_level_and_noise(sky)
    assert scatter == QUANTISATION_NOISE and count >= 995 and 40.0 <= level < 40.01


def test_comparison_list_is_read_in_degrees_or_sexagesimal_and_a_bad_line_is_named():
    positions = ensemble.parse_coordinates('150.0 20.0\n# a comment\n10:00:00 +20:00:00\n')
    assert np.allclose(positions, [[150.0, 20.0], [150.0, 20.0]])
    with pytest.raises(ValueError, match='line 2 .*not "RA Dec"'):
        ensemble.parse_coordinates('150 20\nnot a star\n')


@in_database
@pytest.mark.parametrize('quantise', [True, False], ids=['8-bit', 'float'])
def test_constant_star_has_honest_errors_without_gain(field_target, tmp_path, quantise):
    """Reduced chi2 of a constant star about its mean in [0.5, 2]; never a zero error; agrees with plain numpy."""
    count = 20
    kwargs = {} if quantise else {'target_flux': 20000.0, 'sky': 100.0, 'gain': 2.0, 'read_noise': 8.0}
    paths, truth = science_data.small_telescope_frames(tmp_path, count, quantise=quantise, **kwargs)
    process = run_here(PHOTOMETRY, field_target, upload(field_target, paths))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    rows = table_of(process)
    mag, error = column(rows, 'mag'), column(rows, 'mag_err')
    assert np.all(error > 0)
    weights = 1 / error ** 2
    mean = (mag * weights).sum() / weights.sum()
    reduced_chi2 = ((mag - mean) ** 2 * weights).sum() / (count - 1)
    assert 0.5 < reduced_chi2 < 2, (reduced_chi2, error)
    stored = PhotometryReducedDatum.objects.filter(target=field_target)
    assert stored.count() == count and all(point.brightness_error > 0 for point in stored)
    assert any('no GAIN in the header' in line for line in log_of(process))
    # an independent measurement: plain numpy at the same positions, pixels whose centre is in the circle,
    # sky the mean of the annulus within 5 MADs of its median
    pulls = []
    for row, path in zip(rows, paths, strict=True):
        data = fits.getdata(path).astype(float)
        rows_, columns_ = np.indices(data.shape)
        distance = np.hypot(columns_ - float(row['x']), rows_ - float(row['y']))
        fwhm, radius = float(row['fwhm']), float(row['aperture'])
        ring = data[(distance >= 3 * fwhm) & (distance <= 5 * fwhm)]
        mad = max(np.median(np.abs(ring - np.median(ring))), QUANTISATION_NOISE)
        sky = ring[np.abs(ring - np.median(ring)) <= 5 * 1.4826 * mad].mean()
        plain = data[distance <= radius].sum() - sky * (distance <= radius).sum()
        pulls.append((float(row['flux']) - plain) / float(row['flux_err']))
    assert np.median(np.abs(pulls)) < 0.2 and np.max(np.abs(pulls)) < 1, pulls  # measured 0.05-0.08, 0.5


@in_database
def test_recentring_finds_the_star_a_wrong_wcs_misses(field_target, tmp_path):
    paths, truth = science_data.small_telescope_frames(tmp_path, 6, wcs_offset=(2.4, -1.8))
    process = run_here(PHOTOMETRY, field_target, upload(field_target, paths))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    rows = table_of(process)
    assert {row['centroid'] for row in rows} == {'recentred'}
    offsets = np.hypot(column(rows, 'x') - truth['x'], column(rows, 'y') - truth['y'])
    assert offsets.max() < 0.3, offsets
    fwhm = column(rows, 'fwhm')
    assert np.all(np.abs(fwhm - 6.0) < 0.6), fwhm  # measured on every frame, logged
    assert np.allclose(column(rows, 'aperture'), 1.5 * fwhm, rtol=1e-3)
    assert (process.progress_report['done'], process.progress_report['total']) == (6, 6)  # one step per frame


@in_database
def test_blank_sky_gives_upper_limits_not_magnitudes(field_target, tmp_path):
    paths, _ = science_data.small_telescope_frames(tmp_path, 5, target_flux=0.0)
    process = run_here(PHOTOMETRY, field_target, upload(field_target, paths))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    rows = table_of(process)
    assert all(row['mag'] == '' and row['limit'] != '' for row in rows)
    assert all(row['centroid'] == 'wcs' and 'no star detected' in row['centroid_reason'] for row in rows)
    stored = list(PhotometryReducedDatum.objects.filter(target=field_target))
    assert len(stored) == 5 and all(point.brightness is None and point.limit is not None for point in stored)
    # the limit is the magnitude of a 3-sigma source: 2.5 log10(3 sigma) below the zero point
    limits, errors = column(rows, 'limit'), column(rows, 'flux_err')
    assert np.allclose(limits, -2.5 * np.log10(3 * errors / 60.0), atol=1e-4)


@in_database
def test_differential_photometry_reaches_the_noise_floor_through_a_cloud(field_target, tmp_path):
    count = 20
    transparency = np.ones(count)
    transparency[8:12] = 0.8  # a 20 % dip in the middle of the sequence
    gain, sky, fwhm = 200.0, 40.0, 6.0
    paths, truth = science_data.small_telescope_frames(tmp_path, count, transparency=transparency, gain=gain,
                                                       sky=sky, fwhm=fwhm)
    products = upload(field_target, paths)
    process = run_here(PHOTOMETRY, field_target, products, {'differential': True})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    rows = table_of(process)
    mag = column(rows, 'mag')
    rms = float(np.std(mag))
    # the floor from the simulation alone: photons, sky and rounding in a 1.5 FWHM aperture with a
    # 3-5 FWHM annulus, for the target and for the summed ensemble, at the mean transparency
    area, n_sky = math.pi * (1.5 * fwhm) ** 2, math.pi * ((5 * fwhm) ** 2 - (3 * fwhm) ** 2)
    pixel = sky / gain + QUANTISATION_NOISE ** 2

    def variance(flux: np.ndarray) -> np.ndarray:
        return flux / gain + area * (1 + area / n_sky) * pixel

    flux = truth['flux'].mean(axis=0)
    used = int(rows[0]['comparison_stars'])
    comparison = np.sort(flux[1:])[::-1][:used] if used == len(flux) - 1 else flux[1:]
    relative = math.hypot(math.sqrt(variance(flux[0])) / flux[0],
                          math.sqrt(variance(comparison).sum()) / comparison.sum())
    floor = 2.5 / math.log(10) * relative
    assert rms < 1.3 * floor, (rms, floor)
    instrumental = run_here(PHOTOMETRY, field_target, products)
    assert np.std(column(table_of(instrumental), 'mag')) > 3 * rms  # the dip is there without the ensemble
    assert any('comparison stars chosen' in line for line in log_of(process))


@in_database
def test_a_variable_comparison_star_is_rejected_and_named_in_the_log(field_target, tmp_path):
    count = 16
    factors = np.ones((count, 1 + len(science_data.FIELD_STARS)))
    factors[:, 3] = 1 + 0.15 * np.sin(np.linspace(0, 2 * np.pi, count))  # the third field star varies by 15 %
    paths, truth = science_data.small_telescope_frames(tmp_path, count, star_factors=factors)
    process = run_here(PHOTOMETRY, field_target, upload(field_target, paths), {'differential': True})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    rejected = [line for line in log_of(process) if line.startswith('Ensemble: rejected')]
    assert len(rejected) == 1 and 'scatter' in rejected[0], rejected
    rows = table_of(process)
    assert np.std(column(rows, 'mag')) < 1.5 * np.median(column(rows, 'mag_err'))


@in_database
def test_a_comparison_star_of_another_colour_is_kept_in_four_filters(field_target, tmp_path):
    """In B, V, R and I a red comparison star is brighter relative to the others in R and I: colour, not variability."""
    count, bands = 16, ('B', 'V', 'R', 'I')
    colour = {'B': 0.6, 'V': 0.8, 'R': 1.2, 'I': 1.5}
    factors = np.ones((count, 1 + len(science_data.FIELD_STARS)))
    factors[:, 2] = [colour[bands[index % 4]] for index in range(count)]
    paths, _ = science_data.small_telescope_frames(tmp_path, count, star_factors=factors, filters=bands)
    process = run_here(PHOTOMETRY, field_target, upload(field_target, paths), {'differential': True})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert not [line for line in log_of(process) if line.startswith('Ensemble: rejected')]
    rows = table_of(process)
    for band in bands:
        mags = np.array([float(row['mag']) for row in rows if row['filter'] == band])
        errors = np.array([float(row['mag_err']) for row in rows if row['filter'] == band])
        assert np.std(mags) < 2 * np.median(errors), (band, mags, errors)


@in_database
def test_a_comparison_list_is_used_and_a_bad_one_fails_naming_the_line(field_target, tmp_path):
    paths, truth = science_data.small_telescope_frames(tmp_path, 4)
    products = upload(field_target, paths)
    wcs_header = fits.getheader(paths[0])
    from astropy.wcs import WCS

    ra, dec = WCS(wcs_header).pixel_to_world_values(truth['positions'][1:3, 0], truth['positions'][1:3, 1])
    listing = '\n'.join(f'{a:.6f} {d:.6f}' for a, d in zip(ra, dec, strict=True))
    process = run_here(PHOTOMETRY, field_target, products, {'differential': True}, {'comparison_stars': listing})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert {row['comparison_stars'] for row in table_of(process)} == {'2'}
    bad = run_here(PHOTOMETRY, field_target, products, {'differential': True}, {'comparison_stars': '150 20\nxyz'})
    assert bad.state == ASYNC_STATUS_FAILED and 'line 2' in bad.failure_message


@in_database
def test_times_are_mid_exposure_with_bjd_and_airmass_when_the_site_is_known(field_target, tmp_path):
    site = {'SITELAT': 31.68, 'SITELONG': -110.88, 'SITEELEV': 2600.0}  # Arizona; the field is up at 02:00 UTC
    paths, _ = science_data.small_telescope_frames(tmp_path, 3, extra_header=site)
    known = run_here(PHOTOMETRY, field_target, upload(field_target, paths))
    assert known.state == ASYNC_STATUS_CREATED, known.failure_message
    rows = table_of(known)
    assert [row['time'] for row in rows] == ['2026-03-01T02:00:30.000', '2026-03-01T02:03:30.000',
                                             '2026-03-01T02:06:30.000']
    jd_utc = column(rows, 'mjd_utc') + 2400000.5
    # BJD_TDB - JD_UTC: 69.2 s of TDB - UTC plus at most 8.4 min of light travel across the Earth's orbit
    assert np.all(np.abs(column(rows, 'bjd_tdb') - jd_utc - 69.2 / 86400) < 8.4 / 1440)
    assert np.all((column(rows, 'airmass') >= 1) & (column(rows, 'airmass') < 3))
    assert {(row['telescope'], row['instrument'], row['exposure_time']) for row in rows} == {
        ('Small 0.4 m', 'CCD', '60')}
    assert any('Observatory location from SITELAT/SITELONG' in line for line in log_of(known))

    for path in paths:
        science_data.rewrite(path, drop=tuple(site))
    unknown = run_here(PHOTOMETRY, field_target, upload(field_target, paths))
    assert all(row['bjd_tdb'] == '' and row['airmass'] == '' for row in table_of(unknown))
    assert any('Observatory location unknown' in line for line in log_of(unknown))


@in_database
def test_run_options_override_the_site_defaults(field_target, tmp_path):
    paths, _ = science_data.small_telescope_frames(tmp_path, 3)
    products = upload(field_target, paths)
    with override_settings(TOM_EDUCATION_PHOTOMETRY={'aperture_fwhm': 1.0}):
        site = run_here(PHOTOMETRY, field_target, products)
        fixed = run_here(PHOTOMETRY, field_target, products, options={'aperture_radius': 7.0, 'limit_snr': 100})
    site_rows, fixed_rows = table_of(site), table_of(fixed)
    assert np.allclose(column(site_rows, 'aperture'), column(site_rows, 'fwhm'), rtol=1e-3)
    assert {row['aperture'] for row in fixed_rows} == {'7.000'}
    assert all(row['mag'] == '' and row['limit'] != '' for row in fixed_rows)  # S/N ~50 is below 100


@in_database
def test_library_warnings_are_summarised_once_not_per_frame(field_target, tmp_path):
    # a date three centuries ahead makes ERFA warn ("dubious year") on every time conversion of every frame
    late = {'SITELAT': 31.68, 'SITELONG': -110.88, 'DATE-OBS': '2400-03-01T02:00:00'}
    paths, _ = science_data.small_telescope_frames(tmp_path, 4, extra_header=late)
    process = run_here(PHOTOMETRY, field_target, upload(field_target, paths))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    summaries = [line for line in log_of(process) if line.startswith('Library warning')]
    assert summaries and len(summaries) <= 5, summaries
    assert any('ErfaWarning' in line and 'dubious year' in line for line in summaries), summaries
    assert not any('dubious' in line for line in log_of(process) if not line.startswith('Library warning'))
