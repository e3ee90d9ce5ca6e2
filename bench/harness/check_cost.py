"""Row k (issue 10): the cost of one round of ``recovery.periodic_check`` on a table of 100,000 processes.

Every worker runs that round every few seconds for as long as it lives, so it must not grow with
the history a TOM keeps. The round is timed in this process first on the bench's table as it is
(a few hundred runs), then after 100,000 processes are bulk-inserted as a busy TOM would hold
them: 98 % finished, 1 % failed, 0.5 % running with fresh heartbeats, 0.5 % pending and freshly
queued (so nothing is stale or overdue: the round finds nothing to do, as it usually does). The
plans of the two queries that scan the table are shown, after ``ANALYZE`` as a database that has
run for a while would have its statistics, and must use the indexes made for them
(``tom_education_state_beat``: state + heartbeat; ``tom_education_state_queued``: state + queued).
"""
from __future__ import annotations

import time
from datetime import timedelta

from bench.harness.common import NOOP, PROGRESS, Row, Sizes, fmt_ms, percentile
from bench.harness.world import Fixtures

INDEXES = {'running by heartbeat': 'tom_education_state_beat', 'pending by send time': 'tom_education_state_queued'}
BATCH = 2000


def insert_history(fixtures: Fixtures, count: int) -> None:
    """``count`` processes in batches of ``BATCH`` rows, in the shares the module's docstring gives."""
    from django.utils import timezone

    from tom_education.models import PipelineProcess

    now = timezone.now()
    token = fixtures.user.username
    for first in range(0, count, BATCH):
        PROGRESS.show(f'k. periodic check: inserting {count:,} processes', first, count)
        rows = []
        for number in range(first, min(first + BATCH, count)):
            share = number % 200
            state = ('running' if share == 0 else 'pending' if share == 1 else 'failed' if share < 4 else 'created')
            rows.append(PipelineProcess(
                identifier=f'{token}-history-{number}', pipeline=NOOP, target=fixtures.target, state=state,
                status=state, created=now - timedelta(minutes=count - number), queued=now,
                started=None if state == 'pending' else now, heartbeat=now if state == 'running' else None,
                finished=now if state in ('created', 'failed') else None, attempts=0 if state == 'pending' else 1,
                node='bench-history@nowhere' if state == 'running' else '',
            ))
        PipelineProcess.objects.bulk_create(rows)
    PipelineProcess.objects.filter(identifier__startswith=f'{token}-history-', state='running').update(
        heartbeat=timezone.now())


def time_rounds(rounds: int, node: str, queues: list[str]) -> list[float]:
    from tom_education import recovery

    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        recovery.periodic_check(node, queues)
        timings.append(time.perf_counter() - start)
    return timings


def plans() -> dict[str, str]:
    """The plans of the round's two scans of the process table, as the round builds them."""
    from django.db import connection
    from django.db.models import Q
    from django.utils import timezone

    from tom_education import conf
    from tom_education.models import PipelineProcess

    with connection.cursor() as cursor:
        cursor.execute('ANALYZE' if connection.vendor == 'sqlite' else f'ANALYZE {PipelineProcess._meta.db_table}')
    now = timezone.now()
    stale_before = now - timedelta(seconds=conf.heartbeat_timeout())
    cutoff = now - timedelta(seconds=conf.resend_pending_after())
    running = PipelineProcess.objects.filter(state='running', heartbeat__lt=stale_before).values_list(
        'pk', 'attempts', 'started', 'worker')
    pending = PipelineProcess.objects.filter(Q(queued__lt=cutoff) | Q(queued=None, created__lt=cutoff),
                                             state='pending').values_list('pk', 'task_id', 'attempts', 'queued')
    return {'running by heartbeat': running.explain(), 'pending by send time': pending.explain()}


def bench_periodic_check(fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    from tom_education.models import PipelineProcess

    node, queues = 'bench-check@localhost', ['bench-check']
    time_rounds(2, node, queues)  # warm-up: imports, the worker's row
    before = PipelineProcess.objects.count()
    small = time_rounds(sizes.check_rounds, node, queues)
    insert_history(fixtures, sizes.check_table_rows)
    total = PipelineProcess.objects.count()
    PROGRESS.show(f'k. periodic check: timing rounds on {total:,} processes')
    big = time_rounds(sizes.check_rounds, node, queues)
    shown = plans()
    used = {name: INDEXES[name] in plan for name, plan in shown.items()}
    mine, theirs = percentile(big, .5), percentile(small, .5)
    row = Row(
        f'k. periodic check: one round on {total:,} processes vs on {before:,}, p50',
        fmt_ms(mine), fmt_ms(theirs), f'{mine / theirs:.2f}x', '<= 2x, plans use the indexes',
        mine / theirs <= 2 and all(used.values()),
        [
            f'{sizes.check_rounds} rounds each, in this process; max {fmt_ms(max(big))} on {total:,}, '
            f'{fmt_ms(max(small))} on {before:,}',
            *(f'plan, {name} ({INDEXES[name]} {"used" if used[name] else "NOT used"}): '
              + ' | '.join(line.strip() for line in plan.splitlines()) for name, plan in shown.items()),
        ],
    )
    PROGRESS.step(f'k. periodic check done: {fmt_ms(mine)} a round on {total:,} processes, '
                  f'{fmt_ms(theirs)} on {before:,}')
    return [row]
