"""The timelapse movie on frames like a small telescope's (issue 12's timelapse findings, issue 11's options).

The frames (``science_data.filtered_movie_frames``) are quantised to 8 bits with 99 % of the sky
in one value and stars 5 to 20 ADU above it, in four filters, drifting by fractions of a pixel.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from astropy.io import fits
from django.test import override_settings
from PIL import Image
from tom_targets.models import Target

from tests import science_data
from tests.conftest import make_product, wait_final
from tom_education import runner, services
from tom_education.models import ASYNC_STATUS_CREATED, ASYNC_STATUS_FAILED
from tom_education.pipelines.fitsio import read_frame_info
from tom_education.pipelines.timelapse import geometry
from tom_education.pipelines.timelapse.caption import caption_height, caption_text, draw_caption
from tom_education.pipelines.timelapse.display import display_scale

TIMELAPSE = 'Timelapse'
in_database = pytest.mark.django_db(transaction=True)


@pytest.fixture
def target(db) -> Target:
    return Target.objects.create(name='Standard field', type=Target.SIDEREAL, ra=83.8221, dec=-5.3911,
                                 permissions=Target.Permissions.PUBLIC)


def run_here(target: Target, paths: list[Path], flags: dict | None = None, options: dict | None = None):
    """Run in the test process (queued where no worker listens), so ``override_settings`` reaches the pipeline."""
    products = [make_product(target, path.name, path.read_bytes()) for path in paths]
    with override_settings(TOM_EDUCATION_CELERY_APP='tests.unused_queue.app'):
        process = services.start_process(user=None, pipeline=TIMELAPSE, target=target, input_files=products,
                                         flags=flags, options=options)
    runner.run_process(process.pk)
    process.refresh_from_db()
    return process


def movies(process) -> dict[str, object]:
    return {Path(product.data.name).name: product for product in process.output_products()}


def gif_frames(product) -> list[np.ndarray]:
    with product.data.open('rb') as handle, Image.open(io.BytesIO(handle.read())) as image:
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert('L'), dtype=int))
    return frames


def log_of(process) -> list[str]:
    return list(process.log_lines.values_list('message', flat=True))


def star_box(frame: np.ndarray, half: int = 6) -> np.ndarray:
    """The pixels around the centre of a movie frame, where the target is."""
    row, column = frame.shape[0] // 2, frame.shape[1] // 2
    return frame[row - half:row + half, column - half:column + half]


# --- 1. a stretch that cannot collapse -----------------------------------------------------------


@in_database
def test_quantised_frames_give_a_grey_movie_not_black_and_white(target, tmp_path):
    paths = science_data.filtered_movie_frames(tmp_path, ('V',), 3, size=128)
    process = run_here(target, paths, {'caption': False}, {'size': 128})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    (movie,) = movies(process).values()
    frame = gif_frames(movie)[0]
    stars, sky = star_box(frame), np.median(frame)
    # the target (12 ADU above the sky) shows its profile in many grey levels, not only black and white
    assert len(np.unique(stars)) >= 8, np.unique(stars)
    assert (stars == 255).mean() < 0.1
    # the sky is a dark grey, so its noise and the stars' faint wings are visible
    assert 10 <= sky <= 100, sky
    assert any('a quantised sky?' in line and 'asinh' in line for line in log_of(process)), log_of(process)


def test_zscale_is_kept_where_the_sky_has_noise_to_show():
    noise = np.random.default_rng(2).normal(100.0, 5.0, (200, 200))
    scale = display_scale(noise, 'zscale')
    assert scale.stretch == 'linear' and 70 < scale.low < 100 < scale.high < 130, scale
    quantised = np.full((200, 200), 40.0)
    quantised[90:110, 90:110] += np.arange(20)[:, None] / 2
    fallback = display_scale(quantised, 'zscale')
    assert fallback.stretch == 'asinh' and fallback.low < 40 < fallback.high, fallback
    assert len(np.unique(fallback.to_bytes(quantised))) > 15


# --- 2. the same resampling for every frame -----------------------------------------------------


@in_database
def test_every_frame_is_resampled_alike(target, tmp_path):
    # the first and last frames identical (not consecutive: a GIF would merge them into one), the one between
    # them the same field drifted by half a pixel, so it is resampled
    first, _, drifted = science_data.filtered_movie_frames(tmp_path, ('V',), 3, size=256, sky=1000.0, sky_noise=20.0,
                                                            quantise=False, drift=0.25)
    copy = shutil.copy(first, tmp_path / 'copy.fits')
    science_data.rewrite(Path(copy), add={'DATE-OBS': '2026-01-01T00:09:00'})
    process = run_here(target, [first, Path(copy), drifted], {'caption': False}, {'size': 64})
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert any(line.endswith('resampled onto the reference WCS') for line in log_of(process))
    one, three, two = gif_frames(*movies(process).values())
    assert np.array_equal(one, two)
    # averaged 4 x 4 like the others, the resampled frame has their sky noise, not that of single pixels
    def noise(frame):
        return np.median(np.abs(frame - np.median(frame)))
    assert 0.7 < noise(three) / noise(one) < 1.3, (noise(one), noise(three))


def test_a_frame_of_another_pixel_scale_is_averaged_over_the_same_area_of_sky():
    from demo.frames import build_wcs

    noise = np.random.default_rng(3).normal(0.0, 10.0, (256, 256))
    binned = noise.reshape(128, 2, 128, 2).mean(axis=(1, 3))  # a camera with pixels twice as large
    reference, coarse = build_wcs(256, 83.8, -5.4), build_wcs(128, 83.8, -5.4)
    coarse.wcs.cdelt = 2 * coarse.wcs.cdelt
    aligned = geometry.resize(noise, (64, 64))
    resampled = geometry.resample(binned, coarse, reference, (256, 256), (64, 64))
    # both average the 4 x 4 reference pixels under each movie pixel: the same noise, the same picture
    assert 0.85 < resampled.std() / aligned.std() < 1.15, (aligned.std(), resampled.std())
    assert np.corrcoef(aligned.ravel(), resampled.ravel())[0, 1] > 0.95


def _sip_wcs(crpix1: float, rotation_deg: float, a_2_0: float):
    """A plate solution like astrometry.net's: TAN with a second-order SIP distortion, slightly rotated."""
    from astropy.wcs import WCS

    angle, scale = np.radians(rotation_deg), 2.8e-4
    header = fits.Header({
        'NAXIS': 2, 'NAXIS1': 1024, 'NAXIS2': 1024, 'CTYPE1': 'RA---TAN-SIP', 'CTYPE2': 'DEC--TAN-SIP',
        'CRVAL1': 83.8, 'CRVAL2': -5.4, 'CRPIX1': crpix1, 'CRPIX2': 515.2,
        'CD1_1': -scale * np.cos(angle), 'CD1_2': scale * np.sin(angle),
        'CD2_1': scale * np.sin(angle), 'CD2_2': scale * np.cos(angle),
        'A_ORDER': 2, 'B_ORDER': 2, 'A_2_0': a_2_0, 'A_0_2': -1e-6, 'A_1_1': 3e-7,
        'B_2_0': 1e-6, 'B_0_2': 2e-6, 'B_1_1': -4e-7,
    })
    return WCS(header).celestial


def test_the_sparse_mapping_between_two_plate_solutions_is_that_through_the_sky():
    reference, other = _sip_wcs(510.3, 0.0, 2e-6), _sip_wcs(510.67, 0.4, 2.5e-6)
    grid_x = (np.arange(256) + 0.5) * 4 - 0.5
    grid_y = (np.arange(200) + 0.5) * 4 - 0.5
    x, y = geometry.pixel_mapping(reference, other, grid_x, grid_y)
    true_x, true_y = other.world_to_pixel_values(*reference.pixel_to_world_values(*np.meshgrid(grid_x, grid_y)))
    assert x.shape == (200, 256)
    assert np.abs(x - true_x).max() < 1e-3 and np.abs(y - true_y).max() < 1e-3


# --- 3. frames grouped by filter ----------------------------------------------------------------


@in_database
def test_one_movie_per_filter_or_the_chosen_filter(target, tmp_path):
    paths = science_data.filtered_movie_frames(tmp_path, ('B', 'V', 'R', 'I'), 2, size=64, drift=0.3)
    process = run_here(target, paths)
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    found = movies(process)
    assert sorted(found) == ['timelapse_B.gif', 'timelapse_I.gif', 'timelapse_R.gif', 'timelapse_V.gif']
    assert all(len(gif_frames(movie)) == 2 for movie in found.values())
    assert 'Frames in 4 filters (B: 2, V: 2, R: 2, I: 2): one movie per filter' in log_of(process)

    chosen = run_here(target, paths, options={'filter': 'r'})
    assert chosen.state == ASYNC_STATUS_CREATED, chosen.failure_message
    (movie,) = movies(chosen).values()
    assert len(gif_frames(movie)) == 2
    assert 'Filter "R" chosen: 2 of 8 frames go into the movie (all frames: B: 2, V: 2, R: 2, I: 2)' in log_of(chosen)

    missing = run_here(target, paths, options={'filter': 'Halpha'})
    assert missing.state == ASYNC_STATUS_FAILED
    assert 'No frame is in filter "Halpha"; the frames are in B: 2, V: 2, R: 2, I: 2.' in missing.failure_message


# --- 4. captions --------------------------------------------------------------------------------


def test_caption_text_comes_from_the_header(tmp_path):
    (path,) = science_data.filtered_movie_frames(tmp_path, ('R',), 1, size=32)
    science_data.rewrite(path, add={'DATE-OBS': '2026-03-04T05:06:07.8'})
    frame = read_frame_info(path, path.name)
    assert caption_text(frame.isot, 'R') == '2026-03-04 05:06:07 UTC  filter R'


@in_database
def test_each_frame_is_captioned_with_its_time_and_filter(target, tmp_path):
    paths = science_data.filtered_movie_frames(tmp_path, ('V',), 2, size=128)
    plain = gif_frames(*movies(run_here(target, paths, {'caption': False}, {'size': 128})).values())
    captioned = gif_frames(*movies(run_here(target, paths, {}, {'size': 128})).values())
    band = caption_height(128)
    for index, (without, with_caption) in enumerate(zip(plain, captioned, strict=True)):
        assert np.array_equal(without[:-band], with_caption[:-band])
        assert not np.array_equal(without[-band:], with_caption[-band:])
        # the band holds exactly the text of this frame's DATE-OBS and FILTER
        stamp = fits.getheader(paths[index])['DATE-OBS'].replace('T', ' ')
        expected = draw_caption(np.zeros((128, 128), np.uint8), f'{stamp} UTC  filter V')
        assert np.array_equal(with_caption[-band:], expected[-band:])
    assert not np.array_equal(captioned[0][-band:], captioned[1][-band:])  # 00:00:00, then 00:03:00


# --- 5. options, 6. progress --------------------------------------------------------------------


@in_database
def test_options_choose_format_speed_size_and_stretch_on_the_worker(worker, target, tmp_path):
    paths = science_data.filtered_movie_frames(tmp_path, ('B', 'V'), 3, size=64)
    products = [make_product(target, path.name, path.read_bytes()) for path in paths]
    process = services.start_process(user=None, pipeline=TIMELAPSE, target=target, input_files=products,
                                     options={'format': 'mp4', 'fps': 4, 'size': 96, 'stretch': 'asinh',
                                              'filter': 'B'})
    process = wait_final(process, timeout=120)
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    (movie,) = movies(process).values()
    reader = imageio.get_reader(movie.data.path, format='FFMPEG')
    try:
        assert reader.count_frames() == 3 and reader.get_meta_data()['fps'] == 4
        assert reader.get_data(0).shape[:2] == (96, 96)
    finally:
        reader.close()
    assert any(line.startswith('Display scale from') and 'asinh' in line for line in log_of(process))
    assert process.progress_report['done'] == process.progress_report['total'] == 3


@in_database
def test_empty_options_take_the_site_settings(target, tmp_path):
    paths = science_data.filtered_movie_frames(tmp_path, ('V',), 2, size=64)
    with override_settings(TOM_EDUCATION_TIMELAPSE={'format': 'webm', 'size': 80}):
        site = run_here(target, paths)
        chosen = run_here(target, paths, options={'format': 'gif'})
    assert [Path(product.data.name).suffix for product in site.output_products()] == ['.webm']
    assert [Path(product.data.name).suffix for product in chosen.output_products()] == ['.gif']
    assert gif_frames(*movies(chosen).values())[0].shape == (80, 80)


def test_a_bad_option_is_refused_before_anything_is_stored(target, tmp_path):
    (path,) = science_data.filtered_movie_frames(tmp_path, ('V',), 1, size=32)
    product = make_product(target, path.name, path.read_bytes())
    with pytest.raises(services.ProcessInputError, match='Option "fps" must be a whole number from 1 to 60'):
        services.start_process(user=None, pipeline=TIMELAPSE, target=target, input_files=[product],
                               options={'fps': 120})
