"""Row j (issue 10): time from a worker's death mid-run to the run restarting on another worker.

Two tom_education workers consume the queue, both with ``bench.settings_recovery`` (heartbeat every
0.5 s, stale after 3 s, a check round every 0.5 s +/- 20 %): the figure is dominated by those
settings, which is why they are printed with it. Each kill: submit a run of the ``Bench sleep``
pipeline (1 s), wait until a worker has claimed it, let it run 0.3 s, kill -9 that worker's whole
process group, and time from the kill to the ``started`` of attempt 2 on the other worker. The
killed worker is then replaced, so the next kill again has a survivor.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from bench.harness.common import PROGRESS, Row, Sizes, fmt_s, percentile
from bench.harness.world import Fixtures, World, new_worker, start_workers, stop_workers, wait_final

SLEEP = 'Bench sleep'
SETTINGS = 'bench.settings_recovery'
RUN_BEFORE_KILL = 0.3


def wait_for(pk: int, ready: Callable[[dict], bool], what: str, timeout: float = 60) -> dict:
    """Poll the run's row every 5 ms until ``ready(row)``; the row as a dict."""
    from tom_education.models import PipelineProcess

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = PipelineProcess.objects.filter(pk=pk).values('state', 'attempts', 'started', 'node').get()
        if ready(row):
            return row
        time.sleep(0.005)
    raise RuntimeError(f'run {pk}: {what} did not happen within {timeout:.0f} s (last seen: {row})')


def bench_worker_death(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    from importlib import import_module

    from tom_education import services
    from tom_education.models import PipelineLogLine

    recovery = import_module(SETTINGS)
    tuned = (f'TOM_EDUCATION_HEARTBEAT_INTERVAL={recovery.TOM_EDUCATION_HEARTBEAT_INTERVAL:g} s, '
             f'TOM_EDUCATION_HEARTBEAT_TIMEOUT={recovery.TOM_EDUCATION_HEARTBEAT_TIMEOUT:g} s, '
             f'TOM_EDUCATION_CHECK_INTERVAL={recovery.TOM_EDUCATION_CHECK_INTERVAL:g} s')
    PROGRESS.show('j. worker death: starting two tom_education workers')
    workers = start_workers(world, 'ours', 'ours', settings=SETTINGS)
    delays: list[float] = []
    reasons: list[str] = []
    try:
        for number in range(sizes.worker_kills):
            PROGRESS.show('j. worker death: kill -9 of the worker running a run', number, sizes.worker_kills)
            pk = services.start_process(user=fixtures.user, pipeline=SLEEP, target=fixtures.target,
                                        input_files=[fixtures.product]).pk
            first = wait_for(pk, lambda row: row['state'] == 'running' and row['attempts'] == 1, 'attempt 1 start')
            victim = next((worker for worker in workers if first['node'].startswith(f'{worker.name}@')), None)
            if victim is None:
                raise RuntimeError(f'run {pk} runs on {first["node"]!r}, not on a bench worker')
            time.sleep(RUN_BEFORE_KILL)
            killed_at = time.time()
            victim.stop(grace=0)  # SIGKILL to the whole process group at once: the worker's death
            second = wait_for(pk, lambda row, after=killed_at: row['attempts'] >= 2 and row['started'] is not None
                              and row['started'].timestamp() > after, 'attempt 2 start')
            delays.append(second['started'].timestamp() - killed_at)
            workers.remove(victim)
            replacement = new_worker(world, 'ours', SETTINGS)
            replacement.wait_ready()
            workers.append(replacement)
            wait_final(pk)
            reasons.append(PipelineLogLine.objects.filter(process_id=pk, message__startswith='Attempt 2')
                           .values_list('message', flat=True).first() or 'no attempt note')
    finally:
        stop_workers(world)
    p50, worst = percentile(delays, .5), max(delays)
    bound = recovery.TOM_EDUCATION_HEARTBEAT_TIMEOUT + recovery.TOM_EDUCATION_CHECK_INTERVAL * 1.2
    row = Row(
        f'j. worker death: kill -9 mid-run to attempt 2 started elsewhere, p50 / worst of {len(delays)}',
        f'{fmt_s(p50)} / {fmt_s(worst)}', f'{fmt_s(bound)} (timeout + check interval)', f'{worst / bound:.2f}x',
        'worst <= timeout + interval + 1 s', worst <= bound + 1,
        [
            f'settings of the two workers ({SETTINGS}): {tuned}; the figure scales with them',
            'every delay: ' + ', '.join(fmt_s(delay) for delay in delays),
            f'attempt 2 of the last run says: {reasons[-1]}',
        ],
    )
    PROGRESS.step(f'j. worker death done: p50 {fmt_s(p50)}, worst {fmt_s(worst)}')
    return [row]
