"""The built-in science pipelines (issue 6): aperture photometry and timelapse.

Synthetic frames (``demo.frames``) carry the injected flux of their variable star, so recovered
fluxes are checked against the truth within their noise. Real frames nobody here made are
fetched from PyPI at test time (see ``tests/science_data.py``): the NTT frame and Source
Extractor catalogue shipped with ``sep``, and a 0.4 m telescope's r-band frame shipped with
``astroquery``.
"""
from __future__ import annotations

import csv
import io
import random
import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from astropy import units
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyUserWarning
from django.core.management import call_command
from django.test import override_settings
from PIL import Image
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum
from tom_targets.models import Target

from demo.frames import EXPTIME, GAIN, OBJECT_NAME, RDNOISE, SKY_LEVEL, make_frames, variable_flux
from tests import science_data
from tests.conftest import make_product, wait_final
from tom_education import runner, services
from tom_education.models import ASYNC_STATUS_CREATED, ASYNC_STATUS_FAILED, AsyncError
from tom_education.pipelines import photometry, timelapse
from tom_education.pipelines.fitsio import celestial_wcs, observation_time, read_frame_info

PHOTOMETRY = 'Light curve (aperture photometry)'
TIMELAPSE = 'Timelapse'
RA, DEC = 83.8221, -5.3911  # the default position of demo.frames.make_frames
in_database = pytest.mark.django_db(transaction=True)


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def sky_target(db) -> Target:
    return Target.objects.create(name='Synthetic variable', type=Target.SIDEREAL, ra=RA, dec=DEC,
                                 permissions=Target.Permissions.PUBLIC)


def upload(target: Target, paths: list[Path]) -> list[DataProduct]:
    return [make_product(target, path.name, path.read_bytes()) for path in paths]


def run_on_worker(pipeline: str, target: Target, products: list[DataProduct], flags: dict | None = None):
    process = services.start_process(user=None, pipeline=pipeline, target=target, input_files=products, flags=flags)
    return wait_final(process, timeout=120)


def run_here(pipeline: str, target: Target, products: list[DataProduct], flags: dict | None = None,
             options: dict | None = None):
    """Run in the test process (queued where no worker listens), so ``override_settings`` reaches the pipeline."""
    with override_settings(TOM_EDUCATION_CELERY_APP='tests.unused_queue.app'):
        process = services.start_process(user=None, pipeline=pipeline, target=target, input_files=products,
                                         flags=flags, options=options)
    runner.run_process(process.pk)
    process.refresh_from_db()
    return process


def stored_name(product: DataProduct) -> str:
    """The file name the storage gave the upload (it adds a suffix when the name is taken)."""
    return Path(product.data.name).name


def log_of(process) -> list[str]:
    return list(process.log_lines.values_list('message', flat=True))


def output(process, suffix: str) -> DataProduct:
    (product,) = [product for product in process.output_products() if product.data.name.endswith(suffix)]
    return product


def table_of(process) -> list[dict[str, str]]:
    with output(process, '.csv').data.open('rb') as handle:
        return list(csv.DictReader(io.StringIO(handle.read().decode())))


def gif_frames(product: DataProduct) -> list[np.ndarray]:
    with product.data.open('rb') as handle, Image.open(io.BytesIO(handle.read())) as image:
        assert image.format == 'GIF'
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert('L'), dtype=float))
    return frames


def frames_with_rising_sky(folder: Path, count: int, step: float = 4.0) -> list[Path]:
    """Frames whose sky rises by ``step`` ADU per frame in time order, saved under names that sort otherwise."""
    paths = make_frames(folder, count, size=96)
    names = random.Random(3).sample([f'{letter}_frame.fits' for letter in 'qwertyuiopasdfgh'[:count]], count)
    renamed = []
    for index, (path, name) in enumerate(zip(paths, names, strict=True)):
        with fits.open(path) as hdus:
            data = hdus[0].data + np.float32(step * index)
        science_data.rewrite(path, data=data)
        renamed.append(path.rename(path.with_name(name)))
    return renamed


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# --- reading frames ----------------------------------------------------------------------------


def test_observation_time_from_date_obs_time_obs_or_mjd(tmp_path):
    (path,) = make_frames(tmp_path, 1, size=32)
    header = fits.getheader(path)
    assert observation_time(header, 'a.fits').isot == header['DATE-OBS']
    date, clock = header['DATE-OBS'].split('T')
    old = header.copy()
    old['DATE-OBS'], old['TIME-OBS'] = date, clock
    assert observation_time(old, 'a.fits').isot == header['DATE-OBS']
    del old['TIME-OBS']
    # a bare date gives way to the more precise MJD-OBS
    assert abs(observation_time(old, 'a.fits').mjd - header['MJD-OBS']) < 1e-9
    del header['DATE-OBS']
    assert abs(observation_time(header, 'a.fits').mjd - header['MJD-OBS']) < 1e-9
    del header['MJD-OBS']
    with pytest.raises(AsyncError, match=r'a\.fits has no observation time.*DATE-OBS.*MJD-OBS'):
        observation_time(header, 'a.fits')


def test_compressed_frames_are_read_with_the_primary_headers_keys(tmp_path):
    (path,) = make_frames(tmp_path, 1, size=64)
    packed = science_data.compress(path)
    info = read_frame_info(packed, packed.name)
    assert info.hdu_index == 1 and info.shape == (64, 64)
    assert info.isot == fits.getheader(path)['DATE-OBS'] and info.wcs is not None
    not_fits = tmp_path / 'notes.fits'
    not_fits.write_text('not a FITS file')
    with pytest.raises(AsyncError, match='notes.fits'):
        read_frame_info(not_fits, 'notes.fits')


def test_settings_are_checked_when_a_run_starts():
    with override_settings(TOM_EDUCATION_TIMELAPSE={'format': 'avi'}):
        with pytest.raises(AsyncError, match='format'):
            timelapse.timelapse_settings()
    with override_settings(TOM_EDUCATION_PHOTOMETRY={'annulus_inner_fwhm': 6}):
        with pytest.raises(AsyncError, match='annulus_inner_fwhm < annulus_outer_fwhm'):
            photometry.photometry_settings()
    with override_settings(TOM_EDUCATION_PHOTOMETRY={'annulus_inner': 10}):
        with pytest.raises(AsyncError, match=r'\["annulus_inner"\] is no longer used: set "annulus_inner_fwhm"'):
            photometry.photometry_settings()
    # a run's option wins over the site's default; an empty option leaves the site's default
    with override_settings(TOM_EDUCATION_PHOTOMETRY={'limit_snr': 4}):
        assert photometry.photometry_settings({'limit_snr': 5.0})['limit_snr'] == 5.0
        assert photometry.photometry_settings({'limit_snr': None})['limit_snr'] == 4
    with override_settings(TOM_EDUCATION_TIMELAPSE={'fps': 25}):
        assert timelapse.timelapse_settings() == {**timelapse.DEFAULTS, 'fps': 25}


# --- photometry on synthetic frames --------------------------------------------------------------


@in_database
def test_demo_frames_give_the_injected_light_curve_on_the_worker(worker):
    """The demo TOM's seeded frames: the variable star's light curve is recovered within its noise."""
    count = 8
    call_command('seed_demo', '--frames', str(count))
    target = Target.objects.get(name=OBJECT_NAME)
    frames = list(DataProduct.objects.filter(target=target, data_product_type='fits_file'))
    process = run_on_worker(PHOTOMETRY, target, frames)
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message

    rows = table_of(process)
    assert len(rows) == count
    flux = np.array([float(row['flux']) for row in rows])
    error = np.array([float(row['flux_err']) for row in rows])
    injected = np.array([variable_flux(index, count) for index in range(count)])
    # Tolerance: the CCD-equation error from the header's GAIN and RDNOISE (photon noise of star
    # and sky, read noise, the annulus' sky uncertainty) is 0.6-1 % here; a 5-pixel aperture holds
    # 99.95 % of a FWHM-3 Gaussian, a bias 20x smaller. So each point must be within 4 sigma
    # (P < 1e-3 for 8 points) and the reported errors must be the actual scatter (chi2/N ~ 1).
    pulls = (flux - injected) / error
    assert np.all(np.abs(pulls) < 4), pulls
    assert 0.2 < np.mean(pulls ** 2) < 3, pulls
    assert np.all((error / injected > 0.004) & (error / injected < 0.015))

    points = list(PhotometryReducedDatum.objects.filter(target=target).order_by('timestamp'))
    assert len(points) == count
    # DATE-OBS is the start of the exposure; the light curve has its middle
    starts = sorted(fits.getheader(frame.data.path)['DATE-OBS'] for frame in frames)
    middles = [(Time(start) + EXPTIME / 2 * units.s).isot for start in starts]
    assert [Time(point.timestamp).isot for point in points] == middles
    assert {point.exposure_time for point in points} == {EXPTIME}
    assert {point.telescope for point in points} == {fits.getheader(frames[0].data.path)['TELESCOP']}
    assert {point.bandpass for point in points} == {'V'}
    expected_mag = -2.5 * np.log10(flux / EXPTIME)
    assert np.allclose([point.brightness for point in points], expected_mag, atol=1e-4)
    with output(process, '.png').data.open('rb') as plot:
        assert plot.read(8) == b'\x89PNG\r\n\x1a\n'
    assert sum(line.startswith('[') for line in log_of(process)) == count
    assert any(f'gain {GAIN:g} e-/ADU and read noise {RDNOISE:g} e-' in line for line in log_of(process))

    movie = run_on_worker(TIMELAPSE, target, frames)
    assert movie.state == ASYNC_STATUS_CREATED, movie.failure_message
    assert len(gif_frames(output(movie, '.gif'))) == count
    assert output(movie, '.gif').data_product_type == 'timelapse'


@in_database
def test_differential_photometry_follows_the_variable_against_the_ensemble(sky_target, tmp_path):
    count = 8
    paths = make_frames(tmp_path, count, size=128)
    process = run_here(PHOTOMETRY, sky_target, upload(sky_target, paths), {'differential': True})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    rows = table_of(process)
    ratio = 10 ** (-0.4 * np.array([float(row['mag']) for row in rows]))
    relative_error = np.array([float(row['mag_err']) for row in rows]) / photometry.MAG_PER_RELATIVE_ERROR
    injected = np.array([variable_flux(index, count) for index in range(count)])
    # the ensemble is constant, so target/ensemble follows the injected flux up to one scale factor
    scale = np.mean(ratio / injected)
    assert np.all(np.abs(ratio / (scale * injected) - 1) < 4 * relative_error)
    assert {row['comparison_stars'] for row in rows} == {'5'}
    assert any('comparison stars chosen' in line for line in log_of(process))


@in_database
def test_frames_without_wcs_or_with_the_target_off_chip_are_skipped(sky_target, tmp_path):
    good_a, no_wcs, off_chip, good_b = make_frames(tmp_path, 4, size=96)
    science_data.strip_wcs(no_wcs)
    science_data.rewrite(off_chip, add={'CRVAL1': RA + 0.5})
    packed = science_data.compress(good_b)
    products = upload(sky_target, [good_a, no_wcs, off_chip, packed])
    process = run_here(PHOTOMETRY, sky_target, products)
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    names = [stored_name(product) for product in products]
    assert [row['file'] for row in table_of(process)] == [names[0], names[3]]
    log = log_of(process)
    assert any(names[1] in line and 'no celestial WCS' in line for line in log)
    assert any(names[2] in line and 'off the chip' in line for line in log)

    nothing = run_here(PHOTOMETRY, sky_target, [products[1], products[2]])
    assert nothing.state == ASYNC_STATUS_FAILED
    assert 'None of the 2 frames could be measured' in nothing.failure_message


@in_database
@pytest.mark.parametrize('pipeline', [PHOTOMETRY, TIMELAPSE])
def test_a_frame_without_a_date_fails_the_run_naming_the_file(sky_target, tmp_path, pipeline):
    first, second = make_frames(tmp_path, 2, size=48)
    undated = science_data.rewrite(second, drop=('DATE-OBS', 'MJD-OBS'))
    products = upload(sky_target, [first, undated])
    process = run_here(pipeline, sky_target, products)
    assert process.state == ASYNC_STATUS_FAILED
    assert f'{stored_name(products[1])} has no observation time' in process.failure_message


# --- timelapse -----------------------------------------------------------------------------------


@in_database
def test_timelapse_has_every_frame_in_time_order_on_the_worker(worker, sky_target, tmp_path):
    count = 6
    paths = frames_with_rising_sky(tmp_path, count)
    shuffled = random.Random(7).sample(paths, count)
    products = upload(sky_target, shuffled)
    process = run_on_worker(TIMELAPSE, sky_target, products, {'normalise_background': False})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    frames = gif_frames(output(process, '.gif'))
    assert len(frames) == count
    # the sky rises with time: ordered by DATE-OBS, the mean level of the movie's frames rises too
    means = [frame.mean() for frame in frames]
    assert all(later > earlier + 3 for earlier, later in zip(means, means[1:], strict=False)), means
    in_time_order = [line.split()[1] for line in log_of(process) if line.startswith('[')]
    name_of = {path.name: stored_name(product) for path, product in zip(shuffled, products, strict=True)}
    assert in_time_order == [name_of[path.name] for path in paths]


@in_database
def test_normalised_background_gives_frames_one_level(sky_target, tmp_path):
    paths = frames_with_rising_sky(tmp_path, 4, step=10.0)
    process = run_here(TIMELAPSE, sky_target, upload(sky_target, paths), {'normalise_background': True})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    medians = [np.median(frame) for frame in gif_frames(output(process, '.gif'))]
    assert max(medians) - min(medians) <= 3, medians


@in_database
@pytest.mark.parametrize('fmt', ['mp4', 'webm'])
def test_timelapse_as_video(sky_target, tmp_path, fmt):
    paths = make_frames(tmp_path, 5, size=80)
    with override_settings(TOM_EDUCATION_TIMELAPSE={'format': fmt, 'fps': 5, 'size': 160}):
        process = run_here(TIMELAPSE, sky_target, upload(sky_target, paths))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    movie = output(process, f'.{fmt}')
    reader = imageio.get_reader(movie.data.path, format='FFMPEG')
    try:
        assert reader.count_frames() == 5
        frame = reader.get_data(0)
    finally:
        reader.close()
    assert frame.shape[:2] == (160, 160)


def _rotated_half_turn(path: Path) -> Path:
    """The frame as a camera turned by 180 degrees (a meridian flip) records it, with a WCS that says so."""
    with fits.open(path) as hdus:
        header, data = hdus[0].header, hdus[0].data
        size = data.shape[0]
        changes = {'CRPIX1': size + 1 - header['CRPIX1'], 'CRPIX2': size + 1 - header['CRPIX2'],
                   'CDELT1': -header['CDELT1'], 'CDELT2': -header['CDELT2']}
        rotated = data[::-1, ::-1].copy()
    target = path.with_name('flipped_' + path.name)
    science_data.rewrite(path.rename(target), add=changes, data=rotated)
    return target


def _padded(path: Path, border: int) -> Path:
    """The frame inside a larger image (another camera's shape): the WCS shifted by ``border`` pixels."""
    with fits.open(path) as hdus:
        header, data = hdus[0].header, hdus[0].data
        padded = np.pad(data, border, constant_values=SKY_LEVEL).astype(np.float32)
        changes = {'CRPIX1': header['CRPIX1'] + border, 'CRPIX2': header['CRPIX2'] + border}
    target = path.with_name('padded_' + path.name)
    science_data.rewrite(path.rename(target), add=changes, data=padded)
    return target


def test_frames_of_another_orientation_or_shape_are_aligned_by_wcs(tmp_path):
    first, second, third = make_frames(tmp_path, 3, size=64)
    flipped, padded = _rotated_half_turn(second), _padded(third, 9)
    reference = read_frame_info(first, first.name)
    grid = timelapse.Grid(reference.shape, reference.wcs, 64)
    assert grid.out_shape == (64, 64)
    infos = [read_frame_info(path, path.name) for path in (first, flipped, padded)]
    assert timelapse.translation(grid.wcs, infos[1].wcs, grid.shape) is None
    assert timelapse.translation(grid.wcs, infos[2].wcs, grid.shape) == (9, 9)
    placed = []
    for info in infos:
        image, how = grid.place(fits.getdata(info.path).astype(float), info)
        placed.append(image)
    original = fits.getdata(first).astype(float)
    assert np.array_equal(placed[0], original)
    # a half turn maps pixel centres onto pixel centres: resampling restores the frame exactly
    assert np.allclose(placed[1], fits.getdata(second.with_name('flipped_' + second.name))[::-1, ::-1], atol=1e-3)
    assert np.array_equal(placed[2], fits.getdata(third.with_name('padded_' + third.name))[9:-9, 9:-9])


@in_database
def test_crop_to_target_centres_every_frame_on_the_target(sky_target, tmp_path):
    first, second, third, fourth = make_frames(tmp_path, 4, size=96)
    paths = [first, _rotated_half_turn(second), _padded(third, 12), science_data.strip_wcs(fourth)]
    products = upload(sky_target, paths)
    with override_settings(TOM_EDUCATION_TIMELAPSE={'crop_size': 40, 'size': 160}):
        process = run_here(TIMELAPSE, sky_target, products, {'crop_to_target': True})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert f'{stored_name(products[3])}: skipped, it has no celestial WCS to find the target in' in log_of(process)
    frames = gif_frames(output(process, '.gif'))
    assert len(frames) == 3 and frames[0].shape == (160, 160)
    for frame in frames:
        # the variable star (far above the zscale limits: white) is at the centre of the box
        assert frame[76:84, 76:84].mean() > 200
    # the turned frame's field stars are turned back: it looks like the others, not like their mirror image
    assert correlation(frames[1], frames[0]) > 0.8
    assert correlation(frames[1][::-1, ::-1], frames[0]) < correlation(frames[1], frames[0]) - 0.2
    assert any('resampled onto the reference WCS' in line for line in log_of(process))
    assert any('shift of' in line for line in log_of(process))


# --- real data nobody on the team made -----------------------------------------------------------


@pytest.fixture(scope='module')
def sep_data() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', AstropyUserWarning)  # ESO's non-standard 'ESO-LOG' cards
        image = fits.getdata(science_data.pypi_file(*science_data.SEP_IMAGE)).astype(float)
        background = fits.getdata(science_data.pypi_file(*science_data.SEP_BACKGROUND)).astype(float)
    catalogue = science_data.read_sextractor_catalogue(science_data.pypi_file(*science_data.SEP_CATALOGUE))
    # Source Extractor counts pixels from 1, numpy from 0
    positions = np.column_stack([catalogue['X_IMAGE'] - 1, catalogue['Y_IMAGE'] - 1])
    return {'image': image, 'background': background, 'positions': positions,
            'flux': catalogue['FLUX_APER'], 'error': catalogue['FLUXERR_APER']}


def test_aperture_sums_reproduce_the_source_extractor_catalogue_of_seps_ntt_frame(sep_data):
    """Same positions, radius 5 px (its 10 px diameter), its own background map, its 5x5 sub-pixel sampling.

    ``back.fits`` is the BACKGROUND check-image Source Extractor wrote in the same run as the
    catalogue (``default.sex``), so this isolates the aperture sum: all 65 sources agree to the
    7 digits the catalogue prints (measured: 4.4e-7 relative at worst).
    """
    assert len(sep_data['flux']) == 65
    sums, _ = photometry.aperture_sums(sep_data['image'] - sep_data['background'], sep_data['positions'], 5.0,
                                       method='subpixel', subpixels=5)
    assert np.allclose(sums, sep_data['flux'], rtol=2e-6, atol=0)


def test_exact_apertures_differ_from_source_extractor_only_by_its_sub_pixel_sampling(sep_data):
    """The pipeline's default weighs edge pixels by their exact overlap with the circle.

    Source Extractor samples each pixel 5 x 5 times instead, which misplaces the circle's edge
    by up to a tenth of a pixel: measured 0.09 % median, 1.1 % worst, never more than a tenth
    of the catalogue's own error.
    """
    sums, _ = photometry.aperture_sums(sep_data['image'] - sep_data['background'], sep_data['positions'], 5.0)
    relative = np.abs(sums / sep_data['flux'] - 1)
    assert np.median(relative) < 0.002 and relative.max() < 0.015
    assert np.all(np.abs(sums - sep_data['flux']) < 0.1 * sep_data['error'])


def test_pipeline_measurement_agrees_with_source_extractor_within_the_sky_noise(sep_data):
    """The measurement as the pipeline makes it: sky from a local 10-15 px annulus (sigma-clipped median).

    Source Extractor subtracted a global background map (64 px meshes, 3x3 median filter); a
    local annulus of ~390 pixels has its own noise, ~1.25 x 65 / sqrt(390) = 4 ADU per pixel,
    i.e. ~330 ADU over the 78.5-pixel aperture, half of FLUXERR_APER, plus real structure the
    coarse map smooths over. Measured: median difference 0.82 FLUXERR_APER, worst 3.8. Putting
    Source Extractor's sky level back in place of ours removes nearly all of it (worst residual
    54 ADU): what remains between the two is the background, not the aperture photometry.
    """
    image, positions, flux, error = sep_data['image'], sep_data['positions'], sep_data['flux'], sep_data['error']
    measured = photometry.measure_stars(image, positions, radius=5.0, inner=10.0, outer=15.0)
    pulls = np.abs(measured.flux - flux) / error
    assert np.median(pulls) < 1.0 and pulls.max() < 4.5
    rows, columns = np.round(positions[:, 1]).astype(int), np.round(positions[:, 0]).astype(int)
    sky_difference = measured.sky - sep_data['background'][rows, columns]
    residual = measured.flux + sky_difference * measured.area - flux
    assert np.abs(residual).max() < 0.15 * error.min()
    # Without GAIN (the NTT header has none; Source Extractor ran with GAIN 0) both errors are the sky
    # term alone; ours adds the uncertainty of the sky estimate, the CCD equation's (1 + A/n_sky)
    # factor. Measured: our error / FLUXERR_APER has median 1.098 where that factor's root is 1.097.
    ratio = measured.flux_err / error / np.sqrt(1 + measured.area / measured.n_sky)
    assert 0.95 < np.median(ratio) < 1.05


@pytest.fixture
def thumbnail(db) -> tuple[Path, Target]:
    """astroquery's real frame (.fit.gz) and a target at the sky position of its centre, by its own WCS."""
    path = science_data.pypi_file(*science_data.ASTROQUERY_THUMBNAIL)
    header = fits.getheader(path)
    ra, dec = celestial_wcs(header).pixel_to_world_values((header['NAXIS1'] - 1) / 2, (header['NAXIS2'] - 1) / 2)
    target = Target.objects.create(name='astroquery thumbnail centre', type=Target.SIDEREAL, ra=float(ra),
                                   dec=float(dec), permissions=Target.Permissions.PUBLIC)
    return path, target


@in_database
def test_both_pipelines_run_on_astroquerys_real_frame_on_the_worker(worker, thumbnail):
    path, target = thumbnail
    (product,) = upload(target, [path])
    assert product.data.name.endswith('.fit.gz')

    process = run_on_worker(PHOTOMETRY, target, [product])
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    (row,) = table_of(process)
    # DATE-OBS 03:35:22 is the start of a 90 s exposure: the light curve has its middle
    assert row['time'] == '2018-04-17T03:36:07.000' and row['filter'] == 'r' and row['exposure_time'] == '90'
    assert row['centroid'] == 'recentred' and np.isfinite(float(row['mag']))
    (point,) = PhotometryReducedDatum.objects.filter(target=target)
    assert point.bandpass == 'r' and Time(point.timestamp).isot == '2018-04-17T03:36:07.000'
    # an independent measurement at the same position: plain numpy, pixels whose centre is inside the
    # circle, sky the mean of the annulus pixels within 5 x the MAD of its median (not the median itself: this
    # frame holds integers, and the median of integers is off by up to half an ADU per pixel, 0.48 ADU x 90
    # pixels = 43 ADU here, twice the error); agreement within the reported error
    data = fits.getdata(path).astype(float)
    x, y = float(row['x']), float(row['y'])
    rows, columns = np.indices(data.shape)
    distance = np.hypot(columns - x, rows - y)
    radius, fwhm = float(row['aperture']), float(row['fwhm'])
    inside, ring = distance <= radius, (distance >= 3 * fwhm) & (distance <= 5 * fwhm)
    sky = data[ring][np.abs(data[ring] - np.median(data[ring])) < 5 * 1.4826 * np.median(
        np.abs(data[ring] - np.median(data[ring])))].mean()
    plain = data[inside].sum() - sky * inside.sum()
    assert abs(float(row['flux']) - plain) < float(row['flux_err']), (row, plain)
    # the star found is the local maximum nearest to the frame's centre
    assert abs(x - 130) < 1.5 and abs(y - 127.5) < 1.5
    assert any('no GAIN in the header' in line for line in log_of(process))

    movie = run_on_worker(TIMELAPSE, target, [product], {'crop_to_target': True})
    assert movie.state == ASYNC_STATUS_CREATED, movie.failure_message
    (frame,) = gif_frames(output(movie, '.gif'))
    assert frame.shape == (512, 512) and frame.std() > 5
