"""Row e: peak memory growth of the process that saves a large output, in a fresh subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness.common import (
    BIG_OUTPUT,
    GIB,
    MIB,
    PROGRESS,
    ROOT,
    RUN_SCRIPT,
    Row,
    Sizes,
    fmt_bytes,
    fmt_s,
)
from bench.harness.world import Fixtures, World, create_process


def read_status(field_name: str) -> int:
    """A ``/proc/self/status`` memory field, in bytes."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field_name + ':'):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field_name} is not in /proc/self/status')


def reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0), so only what follows counts."""
    try:
        Path('/proc/self/clear_refs').write_text('5')
    except OSError:
        return False
    return True


def memory_child(mode: str, size: int, target_pk: int) -> dict[str, Any]:
    """In a fresh process: save a ``size``-byte output and report the peak RSS growth while doing it.

    ``ours`` runs a ``BigOutput`` process through ``runner.run_process``; ``naive`` is what the 2020
    original did with an output: ``ContentFile(path.read_bytes())``.
    """
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.files.base import ContentFile
    from tom_dataproducts.models import DataProduct
    from tom_targets.models import Target

    from bench import pipelines
    from tom_education import runner

    fixtures = Fixtures(user=None, target=Target.objects.get(pk=target_pk), product=None)
    fixtures.product = DataProduct.objects.filter(target_id=target_pk).first()
    from django.contrib.auth import get_user_model

    fixtures.user = get_user_model().objects.filter(username__startswith='bench-').first()

    def run_ours(nbytes: int) -> None:
        pipelines.BIG_OUTPUT_BYTES = nbytes
        process = create_process(BIG_OUTPUT, fixtures)
        runner.run_process(process.pk)
        process.refresh_from_db()
        if process.state != 'created':
            raise RuntimeError(f'the big-output run ended {process.state}: {process.failure_message}')
        for product in process.output_products():
            if product.data.size != nbytes:
                raise RuntimeError(f'saved {product.data.size} bytes instead of {nbytes}')
            product.data.delete(save=False)

    def run_naive(nbytes: int) -> None:
        product = DataProduct(target_id=target_pk, product_id=f'naive-{uuid.uuid4().hex}')
        product.data.save(naive_path.name, ContentFile(naive_path.read_bytes()), save=False)
        product.data.delete(save=False)

    naive_path = Path(os.environ['TOM_EDUCATION_VAR_DIR']) / 'naive-output.bin'
    if mode == 'ours':
        run_ours(MIB)  # warm up: imports, connections, code paths
    else:
        pipelines.write_big_file(naive_path, MIB)
        run_naive(MIB)
        # the baseline's file is written before the measurement: only saving it is measured
        pipelines.write_big_file(naive_path, size)
    resettable = reset_peak()
    before = read_status('VmRSS')
    high_before = read_status('VmHWM')
    start = time.perf_counter()
    if mode == 'ours':
        run_ours(size)
    else:
        run_naive(size)
        naive_path.unlink()
    seconds = time.perf_counter() - start
    growth = read_status('VmHWM') - (before if resettable else max(before, high_before))
    return {'growth': growth, 'seconds': seconds, 'rss_before': before, 'peak_reset': resettable}


def bench_big_output(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    size = sizes.big_output_bytes
    name = f'e. large output: peak memory growth saving a {fmt_bytes(size)} output'
    free = min(shutil.disk_usage(world.workdir).free, shutil.disk_usage(tempfile.gettempdir()).free)
    if free < 2 * size + GIB:
        return [Row(name, 'skipped', '-', '-', 'growth < 64 MiB', None,
                    [f'only {fmt_bytes(free)} free on disk; {fmt_bytes(2 * size + GIB)} needed (file in the '
                     'run\'s tmpdir + its copy in storage)'])]

    def child(mode: str) -> dict[str, Any]:
        PROGRESS.show(f'e. large output: {mode}, {fmt_bytes(size)} in a fresh process')
        done = subprocess.run(
            [sys.executable, str(RUN_SCRIPT), '--child-memory', mode, '--size', str(size),
             '--target', str(fixtures.target.pk)],
            cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=1800,
        )
        if done.returncode != 0:
            raise RuntimeError(f'the {mode} memory child failed:\n{done.stderr[-3000:]}')
        return json.loads(done.stdout.strip().splitlines()[-1])

    ours = child('ours')
    available = _available_memory()
    if available is not None and available < 3 * size:
        naive = None
    else:
        naive = child('naive')
    growth = ours['growth']
    baseline = f'{fmt_bytes(naive["growth"])} (read_bytes)' if naive else 'skipped (not enough free RAM)'
    ratio = f'{naive["growth"] / max(growth, 1):.0f}x less' if naive else '-'
    row = Row(name, fmt_bytes(growth), baseline, ratio, 'growth < 64 MiB', growth < 64 * MIB, [
        f'ours: a BigOutput run through runner.run_process in a fresh process (the pipeline writes the file in '
        f'1 MiB chunks, save_outputs copies it to storage), {fmt_s(ours["seconds"])}; growth = VmHWM after - '
        f'VmRSS before ({"peak reset through /proc/self/clear_refs" if ours["peak_reset"] else "peak not reset"})',
        'baseline: the 2020 original\'s ContentFile(path.read_bytes()), same size, in another fresh process'
        + (f', {fmt_s(naive["seconds"])}' if naive else ''),
    ])
    PROGRESS.step(f'e. large output done: growth {fmt_bytes(growth)}')
    return [row]


def _available_memory() -> int | None:
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
