"""Row c: 10,000 ``log()`` calls in a real run against the 2020 original's way (rewrite and commit a
growing text field per line), and how soon a reader sees the lines."""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.harness.common import (
    LOGGING_PIPELINE,
    PROGRESS,
    Row,
    Sizes,
    fmt_ms,
    fmt_s,
    percentile,
)
from bench.harness.world import Fixtures, create_process
from bench.lines import log_message


class FlushRecorder:
    """Wraps ``RunContext.flush`` to record when each write of the log buffer ran and which lines it wrote."""

    def __init__(self) -> None:
        self.flushes: list[tuple[float, float, int, int]] = []  # start, end, lines written, last seq

    @contextmanager
    def recording(self) -> Iterator[None]:
        from tom_education.runner import RunContext

        original = RunContext.flush
        recorder = self

        def timed_flush(context: RunContext) -> None:
            before = context._next_seq
            start = time.perf_counter()
            original(context)
            written = context._next_seq - before
            if written:
                recorder.flushes.append((start, time.perf_counter(), written, context._next_seq - 1))

        RunContext.flush = timed_flush
        try:
            yield
        finally:
            RunContext.flush = original


class Reader(threading.Thread):
    """What a user's browser does, as fast as a poller can: look for the newest line every 10 ms."""

    def __init__(self, process_pk: int) -> None:
        super().__init__(daemon=True)
        self.process_pk = process_pk
        self.samples: list[tuple[float, int]] = []  # (perf_counter, highest seq visible), when it changes
        self.stop = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django.db.models import Max

        from tom_education.models import PipelineLogLine

        lines = PipelineLogLine.objects.filter(process_id=self.process_pk)
        highest = 0
        try:
            while not self.stop.is_set():
                seen = lines.aggregate(last=Max('seq'))['last'] or 0
                if seen != highest:
                    highest = seen
                    self.samples.append((time.perf_counter(), seen))
                time.sleep(0.01)
        finally:
            connection.close()

    def first_seen(self, seq: int) -> float | None:
        return next((when for when, seen in self.samples if seen >= seq), None)


@dataclass
class LoggedRun:
    block_calls: list[float]      # seconds spent in the log() calls of each block
    block_flushes: list[float]    # seconds the monitor spent writing each block's lines
    latencies: list[float]        # per block: first line logged -> last line visible to the reader
    wall: float                   # run_process from start to end


def logged_run(fixtures: Fixtures, plan: Any, read: bool) -> LoggedRun:
    """Run a ``LogLines`` process in this process, through ``runner.run_process`` as a worker does."""
    from bench import pipelines
    from tom_education import runner
    from tom_education.models import PipelineLogLine, PipelineProcess

    pipelines.LOG_PLAN = plan
    process = create_process(LOGGING_PIPELINE, fixtures)
    recorder = FlushRecorder()
    reader = Reader(process.pk) if read else None
    if reader:
        reader.start()
    start = time.perf_counter()
    with recorder.recording():
        runner.run_process(process.pk)
    wall = time.perf_counter() - start
    if reader:
        time.sleep(0.05)
        reader.stop.set()
        reader.join()
    state = PipelineProcess.objects.filter(pk=process.pk).values_list('state', flat=True).get()
    if state != 'created':
        raise RuntimeError(f'the logging run ended {state}')
    first = PipelineLogLine.objects.get(process=process, message=log_message(0)).seq
    blocks = pipelines.LOG_BLOCKS
    calls, flushes, latencies = [], [], []
    for index, (block_start, block_end) in enumerate(blocks):
        low = first + index * plan.block
        high = low + plan.block - 1
        calls.append(block_end - block_start)
        share = 0.0
        for flush_start, flush_end, written, last in recorder.flushes:
            overlap = min(high, last) - max(low, last - written + 1) + 1
            if overlap > 0:
                share += (flush_end - flush_start) * overlap / written
        flushes.append(share)
        if reader:
            seen = reader.first_seen(high)
            latencies.append((seen if seen is not None else float('inf')) - block_start)
    return LoggedRun(calls, flushes, latencies, wall)


def baseline_log(fixtures: Fixtures, lines: int, block: int, budget: float) -> tuple[list[float], float]:
    """The 2020 way, block by block, until done or until the next block would overrun ``budget``."""
    from bench import original_log

    process = original_log.new_process(fixtures.target.pk)
    blocks: list[float] = []
    started = time.perf_counter()
    number = 0
    while number < lines:
        elapsed = time.perf_counter() - started
        if blocks and elapsed + blocks[-1] * 1.2 > budget:
            break
        block_start = time.perf_counter()
        for _ in range(block):
            process.log(log_message(number))
            number += 1
        blocks.append(time.perf_counter() - block_start)
        PROGRESS.show('c. logging: baseline (rewrite the growing text per line), lines', number, lines)
    return blocks, time.perf_counter() - started


def extrapolate(blocks: list[float], wanted: int) -> float:
    """Total time of ``wanted`` blocks when only the first ones ran: a line costs a + b * (its number),
    since each save rewrites all the text before it, so block times grow linearly: fit and sum."""
    if len(blocks) >= wanted:
        return sum(blocks[:wanted])
    if len(blocks) < 2:
        return blocks[0] * wanted
    xs = list(range(len(blocks)))
    slope, intercept = statistics.linear_regression(xs, blocks)
    predicted = [max(intercept + slope * index, blocks[-1]) for index in range(len(blocks), wanted)]
    return sum(blocks) + sum(predicted)


def bench_logging(fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    from bench.pipelines import LogPlan

    block = 1000
    block_count = sizes.log_lines // block
    PROGRESS.show('c. logging: ours, 10,000 lines back to back')
    logged_run(fixtures, LogPlan(blocks=1, block=1000), read=False)  # warm up imports and the table
    bursts = [logged_run(fixtures, LogPlan(blocks=block_count, block=block), read=False).wall for _ in range(3)]
    burst_wall = statistics.median(bursts)
    paced: list[LoggedRun] = []
    for number in range(sizes.log_paced_runs):
        PROGRESS.show('c. logging: ours, paced (a block every 0.6 s) with a reader', number, sizes.log_paced_runs)
        paced.append(logged_run(fixtures, LogPlan(blocks=block_count, block=block, pause=0.6), read=True))
    base_blocks, base_spent = baseline_log(fixtures, sizes.log_lines, block, sizes.baseline_budget_s)
    PROGRESS.show('c. logging: summing up')

    # the fastest of the runs for each block: a busy machine only ever adds time, it never removes any
    costs = [min(run.block_calls[i] + run.block_flushes[i] for run in paced) for i in range(block_count)]
    calls_only = [min(run.block_calls[i] for run in paced) for i in range(block_count)]
    growth = costs[-1] / costs[0]
    base_growth = base_blocks[-1] / base_blocks[0] if len(base_blocks) == block_count else None
    base_total = extrapolate(base_blocks, block_count)
    measured_lines = len(base_blocks) * block
    full = measured_lines >= sizes.log_lines
    speedup = base_total / burst_wall
    latencies = [value for run in paced for value in run.latencies]
    latency = max(latencies)
    base_line_cost = base_blocks[-1] / block

    rows = [
        Row('c. logging: cost of the last 1,000 log() lines vs the first 1,000',
            f'{costs[-1] * 1000:.1f} ms', f'{costs[0] * 1000:.1f} ms (first 1,000)', f'{growth:.2f}x',
            'last/first <= 1.2x', growth <= 1.2,
            [
                'per block: the log() calls plus the time the monitor thread spent writing that block '
                f'(fastest of {len(paced)} paced run(s) for each block: a block every 0.6 s, so each is flushed '
                'on its own)',
                'blocks (ms, calls+write): ' + ', '.join(f'{cost * 1000:.1f}' for cost in costs),
                'blocks (ms, log() calls alone): ' + ', '.join(f'{cost * 1000:.2f}' for cost in calls_only),
                ('baseline last/first 1,000: ' + (f'{base_growth:.1f}x' if base_growth else
                                                  f'not reached ({measured_lines} lines measured)')),
            ]),
        Row(f'c. logging: {sizes.log_lines:,} lines, total time, vs rewriting a growing text field per line',
            fmt_s(burst_wall), fmt_s(base_total) + ('' if full else ' (extrapolated)'), f'{speedup:.0f}x faster',
            'baseline/ours >= 100x', speedup >= 100,
            [
                'ours: the whole runner.run_process() of a pipeline logging the lines back to back (claim, '
                'monitor thread, every line committed, final state); median of 3 runs: '
                + ', '.join(fmt_s(wall) for wall in bursts),
                f'baseline: OriginalPipelineProcess.log() (bench/original_log.py), {measured_lines:,} lines '
                f'measured in {fmt_s(base_spent)}' + ('' if full else
                f'; the remaining blocks extrapolated from a linear fit of the block times '
                f'(time budget {sizes.baseline_budget_s:.0f} s)'),
                'baseline blocks (s): ' + ', '.join(f'{seconds:.2f}' for seconds in base_blocks),
            ]),
        Row('c. logging: a line visible to a reader (max over all blocks)',
            fmt_ms(latency), f'{fmt_ms(base_line_cost)} (commit per line)', '-',
            'ours <= 1 s', latency <= 1.0,
            [f'a reader thread polls the newest seq every 10 ms; latency from a block\'s first log() call to its '
             f'last line being visible; flush interval {flush_interval():.1f} s',
             f'latency over {len(latencies)} blocks: p50 {fmt_ms(percentile(latencies, .5))}, '
             f'p95 {fmt_ms(percentile(latencies, .95))}, max {fmt_ms(latency)}']),
    ]
    PROGRESS.step(f'c. logging done: {sizes.log_lines} lines in {fmt_s(burst_wall)}, baseline {fmt_s(base_total)}')
    return rows


def flush_interval() -> float:
    """The monitor thread's log flush interval: the figure a reader's latency is bounded by."""
    from tom_education import conf

    return conf.log_flush_interval()
