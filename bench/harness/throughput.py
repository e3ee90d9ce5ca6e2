"""Row b: many no-op pipelines on 2 worker processes against as many raw Celery tasks,
end to end and draining a full queue."""
from __future__ import annotations

import time
from typing import Any

from bench.harness.common import (
    NOOP,
    PROGRESS,
    Row,
    Sizes,
    fmt_s,
)
from bench.harness.dispatch import Raw
from bench.harness.world import Fixtures, World, start_workers, stop_workers


def ours_throughput(fixtures: Fixtures, count: int) -> tuple[float, float]:
    """(runs per second, seconds spent submitting): submitting is part of the cost, as for a user."""
    from tom_education.models import PipelineProcess

    start = time.time()
    pks = submit_ours(fixtures, count, 'ours, submitting while the workers run')
    submitted = time.time() - start
    batch = PipelineProcess.objects.filter(pk__gte=min(pks), pk__lte=max(pks), pipeline=NOOP)
    wait_rows(batch, count, 'b. throughput: ours, running')
    last = max(batch.values_list('finished', flat=True))
    return count / (last.timestamp() - start), submitted


def raw_throughput(raw: Raw, count: int) -> tuple[float, float]:
    key = raw.key()
    start = time.time()
    for _ in range(count):
        raw.send(key)
    submitted = time.time() - start
    wait_list(raw, key, count, 'b. throughput: raw Celery')
    last = max(end for _, end in raw.stamps(key))
    return count / (last - start), submitted


def submit_ours(fixtures: Fixtures, count: int, label: str) -> list[int]:
    from tom_education import services

    pks = []
    for number in range(count):
        pks.append(services.start_process(user=fixtures.user, pipeline=NOOP, target=fixtures.target,
                                          input_files=[fixtures.product]).pk)
        if number % 25 == 0:
            PROGRESS.show(f'b. throughput: {label}', number, count)
    return pks


def ours_drain(world: World, fixtures: Fixtures, count: int) -> float:
    """Rate at which 2 worker processes empty a queue already holding ``count`` no-op runs.

    The runs are queued with no worker listening, then the worker starts: the rate runs from the
    first run's ``started`` to the last one's ``finished``, so neither submitting nor starting the
    worker is counted, only what each run costs on the worker.
    """
    from tom_education.models import PipelineProcess

    pks = submit_ours(fixtures, count, 'ours, queueing with no worker')
    worker = start_workers(world, 'ours')[0]
    batch = PipelineProcess.objects.filter(pk__gte=min(pks), pk__lte=max(pks), pipeline=NOOP)
    wait_rows(batch, count, 'b. throughput: ours, draining the queue')
    worker.stop()
    first, last = min(batch.values_list('started', flat=True)), max(batch.values_list('finished', flat=True))
    return count / (last - first).total_seconds()


def raw_drain(world: World, raw: Raw, count: int) -> float:
    """The same for the raw task: from the first task's start to the last one's end."""
    key = raw.key()
    for _ in range(count):
        raw.send(key)
    worker = start_workers(world, 'raw')[0]
    wait_list(raw, key, count, 'b. throughput: raw, draining the queue')
    worker.stop()
    stamps = raw.stamps(key)
    return count / (max(end for _, end in stamps) - min(start for start, _ in stamps))


def wait_rows(batch: Any, count: int, label: str) -> None:
    """Until every process of ``batch`` is final; all of them must have succeeded."""
    from tom_education.models import FINAL_STATES

    deadline = time.monotonic() + max(120, count)
    done = 0
    while time.monotonic() < deadline:
        done = batch.filter(state__in=FINAL_STATES).count()
        PROGRESS.show(label, done, count)
        if done == count:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f'only {done} of {count} no-op processes finished')
    failed = batch.exclude(state='created').count()
    if failed:
        raise RuntimeError(f'{failed} of {count} no-op processes did not succeed')


def wait_list(raw: Raw, key: str, count: int, label: str) -> None:
    deadline = time.monotonic() + max(120, count)
    done = 0
    while time.monotonic() < deadline:
        done = raw.redis.llen(key)
        PROGRESS.show(label, done, count)
        if done == count:
            return
        time.sleep(0.02)
    raise RuntimeError(f'only {done} of {count} raw tasks ran')


def bench_throughput(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    """Two views of throughput: end to end with one client submitting while the workers run (what a
    class submitting at once sees), and the drain rate of a full queue (what the workers alone cost)."""
    raw = Raw(world)
    count = sizes.throughput_tasks
    ours: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    for _ in range(sizes.throughput_rounds):
        base.append(raw_throughput(raw, count))
        ours.append(ours_throughput(fixtures, count))
    stop_workers(world)
    ours_drained: list[float] = []
    base_drained: list[float] = []
    for _ in range(sizes.throughput_rounds):
        base_drained.append(raw_drain(world, raw, count))
        ours_drained.append(ours_drain(world, fixtures, count))
    best_ours, best_raw = max(ours), max(base)
    ratio = best_ours[0] / best_raw[0]
    drain_ratio = max(ours_drained) / max(base_drained)
    rounds = f'best of {sizes.throughput_rounds} round(s) each, alternating raw then ours'
    rows = [
        Row(f'b. throughput, end to end: {count} no-op pipelines vs raw tasks, 2 worker processes',
            f'{best_ours[0]:.0f}/s', f'{best_raw[0]:.0f}/s', f'{ratio:.2f}x', 'ours/raw >= 0.5x', ratio >= 0.5,
            [
                f'{rounds}; from the first submission to the last finish, one client (this process) submitting '
                'while the workers run, on the same 2 cores',
                'ours per round: ' + ', '.join(f'{rate:.0f}/s (submitting took {fmt_s(sub)})' for rate, sub in ours),
                'raw per round:  ' + ', '.join(f'{rate:.0f}/s (sending took {fmt_s(sub)})' for rate, sub in base),
            ]),
        Row(f'b. throughput, workers only: draining {count} queued no-op pipelines vs raw tasks',
            f'{max(ours_drained):.0f}/s', f'{max(base_drained):.0f}/s', f'{drain_ratio:.2f}x', 'ours/raw >= 0.5x',
            drain_ratio >= 0.5,
            [
                f'{rounds}; everything queued first with no worker listening, then the worker started: from the '
                'first run\'s start to the last run\'s end',
                'ours per round: ' + ', '.join(f'{rate:.0f}/s' for rate in ours_drained),
                'raw per round:  ' + ', '.join(f'{rate:.0f}/s' for rate in base_drained),
            ]),
    ]
    PROGRESS.step(f'b. throughput done: end to end ours {best_ours[0]:.0f}/s, raw {best_raw[0]:.0f}/s; '
                  f'draining ours {max(ours_drained):.0f}/s, raw {max(base_drained):.0f}/s')
    return rows
