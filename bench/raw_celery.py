"""The baseline of the dispatch and throughput benchmarks: a bare Celery app with a no-op task.

No Django, no database: only the broker. Its worker is started as ``celery -A bench.raw_celery
worker`` with the same pool and concurrency as the tom_education worker, and it takes the delivery
settings tom_education gives its own app (late acknowledgement, prefetch of one), so that the
difference between the two measures what tom_education adds, not a different Celery configuration.

The task signals that it ran by pushing its start and finishing times onto a Redis list the bench
waits on: a round trip then ends when the worker is done, as a pipeline run ends when its row is
final, and a throughput run starts when the first task starts, as a pipeline run's ``started``.
"""
from __future__ import annotations

import os
import time

import redis
from celery import Celery

from bench.lines import log_message

BROKER = os.environ['TOM_EDUCATION_BENCH_BROKER']
QUEUE = os.environ['TOM_EDUCATION_BENCH_RAW_QUEUE']

app = Celery('bench_raw')
app.conf.update(
    broker_url=BROKER,
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={'visibility_timeout': 3600},
)

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """One Redis connection per worker process, opened on first use (after the pool forks)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(BROKER)
    return _client


@app.task(name='bench.raw_noop', acks_late=True, ignore_result=True)
def raw_noop(done_key: str) -> None:
    """Do nothing but say when: push "start end" (``time.time()`` on entry and on leaving) onto ``done_key``."""
    start = time.time()
    client().rpush(done_key, f'{start!r} {time.time()!r}')


@app.task(name='bench.raw_small_run', acks_late=True, ignore_result=True)
def raw_small_run(done_key: str, lines: int, size: int) -> None:
    """Row g's baseline: write ``lines`` log lines to a file and a ``size``-byte file to the storage folder.

    The lines go to a text file, one ``write`` per line as a logger would, and the output to a
    file under ``TOM_EDUCATION_VAR_DIR``: the cheapest honest way to keep both, with no database.
    """
    start = time.time()
    folder = os.path.join(os.environ['TOM_EDUCATION_VAR_DIR'], 'raw_small_runs')
    os.makedirs(folder, exist_ok=True)
    name = done_key.rsplit(':', 1)[-1]
    with open(os.path.join(folder, f'{name}.log'), 'w') as log:
        for number in range(lines):
            log.write(log_message(number) + '\n')
    with open(os.path.join(folder, f'{name}.txt'), 'wb') as output:
        output.write(b'x' * size)
    client().rpush(done_key, f'{start!r} {time.time()!r}')
