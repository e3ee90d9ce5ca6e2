"""Speed and memory of the science pipelines on 2k x 2k frames; run by hand, not part of the test suite.

    .venv/bin/python bench/bench_science.py [--frames 10] [--size 2048] [--memory 5,10,20]

Prints three tables:

1. frames per second of each pipeline run in-process through ``runner.run_process`` (the path
   a worker takes: claim, status, log, outputs saved to the database and storage);
2. the framework's share: the photometry pipeline against its own measuring functions in a bare
   loop over the same files (open, WCS, sky, FWHM, recentre, aperture, annulus), side by side in one run;
3. peak memory as the number of frames grows, each count measured in a fresh subprocess:
   the Python/numpy allocations (tracemalloc) and the resident set's high-water mark (Linux
   ``VmHWM``, reset just before the run), next to the resident set before the run.

Django is configured here: demo settings, a temporary ``TOM_EDUCATION_VAR_DIR`` (database,
media, broker), ``migrate``. Nothing outside that temporary directory is touched.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOMETRY = 'Light curve (aperture photometry)'
TIMELAPSE = 'Timelapse'


def configure_django(var_dir: Path) -> None:
    """Demo settings on a private temporary directory, with the science pipelines registered."""
    os.environ['TOM_EDUCATION_VAR_DIR'] = str(var_dir)
    os.environ['DJANGO_SETTINGS_MODULE'] = 'demo.settings'
    os.environ.pop('CELERY_BROKER_URL', None)  # the embedded filesystem broker: runs are started here anyway
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    django.setup()
    pipelines = {
        PHOTOMETRY: 'tom_education.pipelines.photometry.AperturePhotometryPipeline',
        TIMELAPSE: 'tom_education.pipelines.timelapse.TimelapsePipeline',
    }
    settings.TOM_EDUCATION_PIPELINES = {**settings.TOM_EDUCATION_PIPELINES, **pipelines}
    from django.core.management import call_command

    call_command('migrate', verbosity=0)


def make_inputs(frames_dir: Path, count: int, size: int) -> list[Path]:
    from demo.frames import make_frames

    return make_frames(frames_dir, count, size=size)


def drifting_copies(paths: list[Path], step: float = 0.37) -> list[Path]:
    """Copies of the frames whose WCS drifts by ``step`` pixel per frame, as separate plate solutions do.

    A drift by a fraction of a pixel is not a whole-pixel shift, so the timelapse resamples every
    frame after the first through both WCSs: the path real frames solved one by one take.
    """
    from astropy.io import fits

    copies = []
    for index, path in enumerate(paths):
        with fits.open(path) as hdus:
            header = hdus[0].header.copy()
            header['CRPIX1'] += step * index
            copy = path.with_name(f'drift_{path.name}')
            fits.PrimaryHDU(data=hdus[0].data, header=header).writeto(copy, overwrite=True)
        copies.append(copy)
    return copies


def upload(paths: list[Path]):
    """A target at the frames' position and one DataProduct per frame (copied into media storage)."""
    from django.core.files import File
    from tom_dataproducts.models import DataProduct
    from tom_targets.models import Target

    target = Target.objects.create(name=f'bench {time.monotonic_ns()}', type=Target.SIDEREAL, ra=83.8221,
                                   dec=-5.3911, permissions=Target.Permissions.PUBLIC)
    products = []
    for path in paths:
        product = DataProduct(target=target, product_id=f'{target.pk}-{path.name}')
        with path.open('rb') as handle:
            product.data.save(path.name, File(handle), save=False)
        product.save()
        products.append(product)
    return target, products


def run_pipeline(pipeline: str, target, products, flags: dict | None = None) -> float:
    """Seconds ``runner.run_process`` takes for one run, the whole of it (outputs saved included)."""
    from tom_education import runner, services
    from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess

    process = services.start_process(user=None, pipeline=pipeline, target=target, input_files=products, flags=flags)
    started = time.perf_counter()
    runner.run_process(process.pk)
    elapsed = time.perf_counter() - started
    process = PipelineProcess.objects.get(pk=process.pk)
    if process.state != ASYNC_STATUS_CREATED:
        raise SystemExit(f'{pipeline} failed: {process.failure_message}')
    return elapsed


def bare_photometry(paths: list[Path]) -> float:
    """The photometry pipeline's measuring functions, in a plain loop: no database, no log, no outputs.

    The same steps per frame as the pipeline: read, WCS, sky and noise near the target, stars and
    FWHM there, recentring, aperture and annulus.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    from tom_education.pipelines.photometry import centring, seeing
    from tom_education.pipelines.photometry.apertures import measure_stars

    started = time.perf_counter()
    for path in paths:
        with fits.open(path) as hdus:
            header, data = hdus[0].header, np.array(hdus[0].data, dtype=np.float64)
        x, y = (float(value) for value in WCS(header).celestial.world_to_pixel_values(83.8221, -5.3911))
        row, column = int(round(y)), int(round(x))
        region = data[max(row - 64, 0):row + 65, max(column - 64, 0):column + 65]
        sky = seeing.frame_sky(region)
        stars = seeing.find_stars(region, 4.0, 10.0, border=10, sky=sky)
        brightest = np.argsort(-stars.significance)[:7]
        fwhm = seeing.measure_fwhm(region, stars.x[brightest], stars.y[brightest], 4.0) or 4.0
        centre = centring.recentre(data, x, y, fwhm=fwhm, max_shift=5.0, sky=sky[0], noise=sky[1], threshold=5.0)
        measure_stars(data, np.array([[centre.x, centre.y]]), radius=1.5 * fwhm, inner=3 * fwhm, outer=5 * fwhm)
    return time.perf_counter() - started


def _import_heavy_modules() -> None:
    import imageio.v2  # noqa: F401
    import matplotlib.backends.backend_agg  # noqa: F401
    import photutils.aperture  # noqa: F401
    import photutils.centroids  # noqa: F401
    import photutils.detection  # noqa: F401
    import scipy.ndimage  # noqa: F401
    from astropy import visualization  # noqa: F401


def _status_bytes(field: str) -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise SystemExit(f'/proc/self/status has no {field}: the memory table needs Linux')


def reset_peak_rss() -> int:
    """Reset the kernel's high-water mark of resident memory (VmHWM) to the current RSS, and return it.

    ``getrusage``'s ``ru_maxrss`` cannot be used: it never goes down and Linux carries it across
    ``execve``, so a child would report its parent's peak.
    """
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')
    return _status_bytes('VmRSS')


def peak_rss() -> int:
    return _status_bytes('VmHWM')


def memory_child(pipeline: str, frames_dir: Path, count: int, fmt: str) -> None:
    """In a fresh process: run ``pipeline`` on the first ``count`` frames of ``frames_dir``, print its peak memory.

    The frames were made by the parent, so making them (several full-size arrays) does not count.
    """
    import logging

    logging.disable(logging.WARNING)
    var_dir = Path(tempfile.mkdtemp(prefix='tom_education-bench-'))
    try:
        configure_django(var_dir)
        from django.test.utils import override_settings

        target, products = upload(sorted(frames_dir.glob('*.fits'))[:count])
        _import_heavy_modules()  # their one-off import is not what is measured
        baseline = reset_peak_rss()
        tracemalloc.start()
        with override_settings(TOM_EDUCATION_TIMELAPSE={'format': fmt}):
            elapsed = run_pipeline(pipeline, target, products)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(json.dumps({'peak_traced': peak, 'rss_before': baseline, 'peak_rss': peak_rss(), 'seconds': elapsed}))
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def measure_memory(pipeline: str, frames_dir: Path, count: int, fmt: str = 'gif') -> dict:
    command = [sys.executable, __file__, '--child', pipeline, str(frames_dir), str(count), fmt]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
    if result.returncode or not lines:
        raise SystemExit(f'the memory run of {pipeline} on {count} frames failed:\n{result.stderr[-3000:]}')
    return json.loads(lines[-1])


def machine() -> str:
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30
    load = ', '.join(f'{value:.2f}' for value in os.getloadavg())
    return (f'{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}; '
            f'load average {load} (other work on the machine skews the figures)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=10, help='frames in the speed runs')
    parser.add_argument('--size', type=int, default=2048, help='side of the square frames, in pixels')
    parser.add_argument('--memory', default='5,10,20', help='frame counts of the memory runs')
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        pipeline, frames_dir, count, fmt = options.child
        memory_child(pipeline, Path(frames_dir), int(count), fmt)
        return

    import logging

    logging.disable(logging.WARNING)  # the runner's per-run INFO lines would interleave with the tables
    var_dir = Path(tempfile.mkdtemp(prefix='tom_education-bench-'))
    try:
        configure_django(var_dir)
        from django.test.utils import override_settings

        size, count = options.size, options.frames
        print(f'Machine: {machine()}')
        print(f'Frames: {count} synthetic {size} x {size} float32 frames (demo.frames), '
              f'{size * size * 4 / 2 ** 20:.0f} MiB each on disk\n')
        paths = make_inputs(var_dir / 'frames', count, size)
        target, products = upload(paths)

        _import_heavy_modules()  # one-off imports are not part of any timing
        bare_photometry(paths[:1])  # warm-up: the first file read
        runs = [
            ('photometry', PHOTOMETRY, None, {}),
            ('photometry, differential', PHOTOMETRY, {'differential': True}, {}),
            ('timelapse, GIF 512 px', TIMELAPSE, None, {'format': 'gif'}),
            ('timelapse, MP4 512 px', TIMELAPSE, None, {'format': 'mp4'}),
            ('timelapse, crop 128 px, GIF', TIMELAPSE, {'crop_to_target': True}, {'format': 'gif'}),
        ]
        print(f'{"pipeline (through runner.run_process, best of 2)":<50}{"seconds":>10}{"frames/s":>10}')
        for label, pipeline, flags, timelapse_settings in runs:
            with override_settings(TOM_EDUCATION_TIMELAPSE=timelapse_settings):
                elapsed = min(run_pipeline(pipeline, target, products, flags) for _ in range(2))
            print(f'{label:<50}{elapsed:>10.2f}{count / elapsed:>10.2f}')
        drift_target, drifting = upload(drifting_copies(paths))
        elapsed = min(run_pipeline(TIMELAPSE, drift_target, drifting) for _ in range(2))
        print(f'{"timelapse, sub-pixel drift (resampled), GIF 512 px":<50}{elapsed:>10.2f}{count / elapsed:>10.2f}')

        print('\nFramework share (photometry, same frames, same run, best of 3):')
        pipeline_all = min(run_pipeline(PHOTOMETRY, target, products) for _ in range(3))
        pipeline_one = min(run_pipeline(PHOTOMETRY, target, products[:1]) for _ in range(3))
        bare_all = min(bare_photometry(paths) for _ in range(3))
        per_frame = (pipeline_all - pipeline_one) / (count - 1)
        fixed = pipeline_one - per_frame
        print(f'{"":<44}{"seconds":>10}{"frames/s":>10}')
        print(f'{f"pipeline via runner.run_process, {count} frames":<44}{pipeline_all:>10.3f}'
              f'{count / pipeline_all:>10.2f}')
        print(f'{"pipeline via runner.run_process, 1 frame":<44}{pipeline_one:>10.3f}')
        print(f'{f"same measuring calls, bare loop, {count} frames":<44}{bare_all:>10.3f}{count / bare_all:>10.2f}')
        print(f'pipeline per frame: {per_frame * 1000:.1f} ms (bare loop: {bare_all / count * 1000:.1f} ms); '
              f'fixed cost per run: {fixed * 1000:.0f} ms (light-curve plot, CSV, saving outputs, status rows)')
        print(f'framework share of the {count}-frame run: {(pipeline_all - bare_all) / pipeline_all:.0%}; '
              f'of the per-frame cost: {max(per_frame - bare_all / count, 0) / per_frame:.0%}')

        counts = [int(value) for value in options.memory.split(',') if value]
        many = make_inputs(var_dir / 'memory-frames', max(counts), size) if counts else []
        print(f'\nPeak memory by number of frames (each in a fresh process; one frame is '
              f'{size * size * 8 / 2 ** 20:.0f} MiB as float64):')
        print(f'{"pipeline":<22}{"frames":>7}{"traced peak MiB":>17}{"RSS before MiB":>16}{"peak RSS MiB":>14}'
              f'{"s, traced":>11}')
        for label, pipeline, fmt in (('photometry', PHOTOMETRY, 'gif'), ('timelapse, MP4', TIMELAPSE, 'mp4'),
                                     ('timelapse, GIF', TIMELAPSE, 'gif')):
            for frames in counts:
                result = measure_memory(pipeline, many[0].parent, frames, fmt)
                print(f'{label:<22}{frames:>7}{result["peak_traced"] / 2 ** 20:>17.1f}'
                      f'{result["rss_before"] / 2 ** 20:>16.1f}{result["peak_rss"] / 2 ** 20:>14.1f}'
                      f'{result["seconds"]:>11.2f}')
        print(f'\nLoad average at the end: {", ".join(f"{value:.2f}" for value in os.getloadavg())}')
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == '__main__':
    main()
