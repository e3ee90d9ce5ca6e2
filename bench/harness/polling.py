"""Row d: a log poll with no new lines on a 10-line log and on a 100,000-line log, page and API."""
from __future__ import annotations

import statistics
import time
from typing import Any

from bench.harness.common import (
    NOOP,
    PROGRESS,
    Row,
    Sizes,
    fmt_ms,
)
from bench.harness.world import Fixtures, create_process


def running_process_with_lines(fixtures: Fixtures, count: int) -> Any:
    """A running process whose log already holds ``count`` lines, written straight into the table."""
    from django.utils import timezone

    from tom_education.models import PipelineLogLine

    process = create_process(NOOP, fixtures)
    now = timezone.now()
    type(process).objects.filter(pk=process.pk).update(state='running', status='running', started=now,
                                                       heartbeat=now, worker='bench:0')
    batch = 5000
    for first in range(0, count, batch):
        PipelineLogLine.objects.bulk_create(
            PipelineLogLine(process_id=process.pk, seq=seq + 1, created=now, message=f'line {seq}')
            for seq in range(first, min(first + batch, count))
        )
        PROGRESS.show(f'd. polling: writing a {count:,}-line log', min(first + batch, count), count)
    return process


def bench_polling(fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from tom_education.models import PipelineProcess

    small = running_process_with_lines(fixtures, 10)
    big = running_process_with_lines(fixtures, sizes.poll_big_log)
    client = Client()
    client.force_login(fixtures.user)
    endpoints = {
        'page': lambda process, last: f'/pipeline/{process.pk}/log/?after={last}',
        'API': lambda process, last: f'/api/pipelineprocesses/{process.pk}/log/?after={last}',
    }
    rows = []
    for label, url in endpoints.items():
        cases = {'small': (small, 10), 'big': (big, sizes.poll_big_log)}
        times: dict[str, list[float]] = {'small': [], 'big': []}
        sizes_seen: dict[str, int] = {}
        queries: dict[str, int] = {}
        for name, (process, last) in cases.items():
            response = client.get(url(process, last))
            body = response.json()
            if response.status_code != 200 or body['lines']:
                raise RuntimeError(f'{label} poll answered {response.status_code}: {response.content[:200]!r}')
            sizes_seen[name] = len(response.content)
            with CaptureQueriesContext(connection) as captured:
                client.get(url(process, last))
            queries[name] = len(captured)
        for _ in range(10):  # warm up
            client.get(url(small, 10))
            client.get(url(big, sizes.poll_big_log))
        for number in range(sizes.poll_requests):
            if number % 20 == 0:
                # keep both "running" with a fresh heartbeat, as a live worker would
                PipelineProcess.objects.filter(pk__in=[small.pk, big.pk]).update(heartbeat=timezone.now())
                PROGRESS.show(f'd. polling: {label} endpoint', number, sizes.poll_requests)
            order = ('small', 'big') if number % 2 else ('big', 'small')
            for name in order:
                process, last = cases[name]
                start = time.perf_counter()
                client.get(url(process, last))
                times[name].append(time.perf_counter() - start)
        mine, theirs = statistics.median(times['big']), statistics.median(times['small'])
        ratio = mine / theirs
        biggest = max(sizes_seen.values())
        rows.append(Row(
            f'd. polling ({label}): empty poll on a {sizes.poll_big_log:,}-line log vs a 10-line log',
            f'{fmt_ms(mine)}, {sizes_seen["big"]} B', f'{fmt_ms(theirs)}, {sizes_seen["small"]} B', f'{ratio:.2f}x',
            'time <= 2x, response < 1 KB', ratio <= 2 and biggest < 1024,
            [f'{label}: median of {sizes.poll_requests} requests each (Django test client, logged in, interleaved); '
             f'SQL queries per poll: {queries["big"]} on the big log, {queries["small"]} on the small one'],
        ))
    PROGRESS.step('d. polling done')
    return rows
