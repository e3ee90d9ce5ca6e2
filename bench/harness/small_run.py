"""Row g: a realistic small run (100 log lines, one small output) against a bare Celery task doing the same.

The no-op rows (a, b) measure the engine against a task that does nothing; a real pipeline logs
and keeps a file. Here ours logs 100 lines through ``self.log()`` and returns a 4 KiB file as a
DataProduct; the baseline (``bench.raw_small_run``) writes the same 100 lines to a text file and
the same 4 KiB to a file in the storage folder, with no database at all. The goal chosen is the
round trip's: submit-to-finish p50 at most 3 times the bare task's, interleaved in one run.
"""
from __future__ import annotations

from bench.harness.common import PROGRESS, Row, Sizes, fmt_ms, percentile
from bench.harness.dispatch import Raw, ours_round_trip
from bench.harness.world import Fixtures, World
from bench.lines import SMALL_OUTPUT_BYTES, SMALL_RUN_LINES

SMALL_RUN = 'Bench small run'
RAW_TASK = 'bench.raw_small_run'


def bench_small_run(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    from tom_education.models import PipelineProcess

    raw = Raw(world)
    arguments = (SMALL_RUN_LINES, SMALL_OUTPUT_BYTES)
    PROGRESS.show('g. small run: warming up')
    for _ in range(3):
        ours_round_trip(fixtures, SMALL_RUN)
        raw.round_trip(RAW_TASK, arguments)
    ours: list[float] = []
    base: list[float] = []
    for number in range(sizes.dispatch_runs):
        PROGRESS.show('g. small run (ours and raw, interleaved)', number, sizes.dispatch_runs)
        pair = [lambda: ours.append(ours_round_trip(fixtures, SMALL_RUN)),
                lambda: base.append(raw.round_trip(RAW_TASK, arguments))]
        for measure in (pair if number % 2 == 0 else pair[::-1]):
            measure()
    last = PipelineProcess.objects.filter(pipeline=SMALL_RUN).order_by('-pk').first()
    lines, outputs = last.log_lines.count(), last.output_files.count()
    if lines < SMALL_RUN_LINES or outputs != 1:
        raise RuntimeError(f'the small run kept {lines} log lines and {outputs} outputs, not '
                           f'{SMALL_RUN_LINES} and 1')
    mine, theirs = percentile(ours, .5), percentile(base, .5)
    row = Row(
        f'g. small run p50: {SMALL_RUN_LINES} log lines + one {SMALL_OUTPUT_BYTES // 1024} KiB output, '
        'submit-to-finish vs raw Celery task doing the same',
        fmt_ms(mine), fmt_ms(theirs), f'{mine / theirs:.1f}x', 'ours/raw <= 3x', mine / theirs <= 3,
        [
            f'{sizes.dispatch_runs} runs each, interleaved, after 3 warm-up runs each; ours keeps its lines in '
            'the database and its file as a DataProduct in storage, raw writes a text file and a file',
            f'ours: p50 {fmt_ms(mine)}, p95 {fmt_ms(percentile(ours, .95))}, max {fmt_ms(max(ours))}; '
            f'raw: p50 {fmt_ms(theirs)}, p95 {fmt_ms(percentile(base, .95))}, max {fmt_ms(max(base))}',
        ],
    )
    PROGRESS.step(f'g. small run done: p50 ours {fmt_ms(mine)}, raw {fmt_ms(theirs)}')
    return [row]
