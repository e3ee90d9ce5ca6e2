"""Performance benchmark of tom_education, each figure measured side by side with its baseline in one run.

    .venv/bin/python bench/run.py [--quick] [--db sqlite|postgres] [--only abcdefghijk] [--json FILE]

It sets everything up itself and removes it at the end: a temporary directory (SQLite database,
media files, logs), Redis (``redis://127.0.0.1:6379/14``, or a private ``redis-server`` on a free
port when nothing answers there), the bench pipelines (``bench/pipelines.py``, registered by
``bench/settings.py``), ``migrate``, and real ``celery worker`` processes (prefork, 2 processes
each, in their own process group) for tom_education and for a bare Celery app (the baseline).

Benchmarks (the goals of issues 5, 10 and 14), one module of ``bench/harness/`` per family:

a. dispatch: submit-to-finish of a no-op pipeline against a raw no-op Celery task's round trip;
b. throughput: many no-op pipelines on 2 worker processes against as many raw Celery tasks;
c. logging: 10,000 ``log()`` calls in a real run context against the 2020 original's way
   (rewrite and commit a growing text field per line), and how soon a reader sees the lines;
d. polling: a log poll with no new lines on a 10-line log and on a 100,000-line log;
e. large outputs: peak memory growth of the process that saves a 2 GB output;
f. many inputs: SQL queries to submit and to run with 1, 10, 100 and 1,000 input products;
g. a realistic small run: 100 log lines and one small output, against a raw Celery task doing the same;
h. submission: ``services.start_process`` alone against the permission check it contains;
i. the target page: render time with and without tom_education's tab;
j. recovery: time from a worker's kill -9 mid-run to the run restarting on another worker;
k. the periodic check: one round of ``recovery.periodic_check`` on 100,000 processes, and its query plans.

``--quick`` uses smaller sizes (and says so in the table). The machine may be shared with other
work, so every ratio compares figures taken in the same run, interleaved where that is possible.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness.big_output import bench_big_output, memory_child  # noqa: E402
from bench.harness.check_cost import bench_periodic_check  # noqa: E402
from bench.harness.common import (  # noqa: E402
    DEFAULT_BROKER,
    PROGRESS,  # noqa: E402
    Row,
    Sizes,
)
from bench.harness.dispatch import bench_dispatch  # noqa: E402
from bench.harness.logs import bench_logging  # noqa: E402
from bench.harness.many_inputs import bench_many_inputs  # noqa: E402
from bench.harness.polling import bench_polling  # noqa: E402
from bench.harness.small_run import bench_small_run  # noqa: E402
from bench.harness.submission import bench_submission  # noqa: E402
from bench.harness.table import guarded, print_table  # noqa: E402
from bench.harness.target_page import bench_target_page  # noqa: E402
from bench.harness.throughput import bench_throughput  # noqa: E402
from bench.harness.worker_death import bench_worker_death  # noqa: E402
from bench.harness.world import (  # noqa: E402
    load_average,
    machine_description,
    make_fixtures,
    setup,
    start_workers,
    stop_workers,
    teardown,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='smaller sizes, for a first look (about 4 minutes)')
    parser.add_argument('--db', choices=['sqlite', 'postgres'], default='sqlite',
                        help='SQLite file in the temporary directory (default), or a fresh database on the '
                             'PostgreSQL at PGHOST:PGPORT (default 127.0.0.1:5432, user postgres)')
    parser.add_argument('--broker', help=f'Redis URL (default {DEFAULT_BROKER}, or a private redis-server)')
    parser.add_argument('--only', default='abcdefghijk',
                        help='benchmarks to run, e.g. "ab" or "c,f" (default all)')
    parser.add_argument('--json', type=Path, help='also write the rows as JSON to this file')
    parser.add_argument('--settings', default='bench.settings',
                        help='settings module for this process and the workers (default bench.settings); to '
                             'measure a variant, write a module that imports bench.settings and changes one thing')
    parser.add_argument('--keep', action='store_true', help='keep the temporary directory (worker logs, database)')
    parser.add_argument('--child-memory', choices=['ours', 'naive'], help=argparse.SUPPRESS)
    parser.add_argument('--size', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--target', type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_memory:
        print(json.dumps(memory_child(args.child_memory, args.size, args.target)))
        return 0
    sizes = Sizes.quick() if args.quick else Sizes()
    only = set(args.only.replace(',', ''))
    machine = machine_description()
    load_before = load_average()
    world = setup(args)
    rows: list[Row] = []
    try:
        from django.db import connection

        fixtures = make_fixtures(world.token)
        if only & {'a', 'b', 'g'}:
            PROGRESS.show('starting the tom_education and raw Celery workers')
            start_workers(world, 'ours', 'raw')
            if 'a' in only:
                rows += guarded('a. dispatch', lambda: bench_dispatch(world, fixtures, sizes))
            if 'g' in only:
                rows += guarded('g. small run', lambda: bench_small_run(world, fixtures, sizes))
            if 'b' in only:  # last of the three: it stops the workers and starts its own
                rows += guarded('b. throughput', lambda: bench_throughput(world, fixtures, sizes))
            stop_workers(world)
        if 'c' in only:
            rows += guarded('c. logging', lambda: bench_logging(fixtures, sizes))
        if 'd' in only:
            rows += guarded('d. polling', lambda: bench_polling(fixtures, sizes))
        if 'e' in only:
            rows += guarded('e. large output', lambda: bench_big_output(world, fixtures, sizes))
        if 'f' in only:
            rows += guarded('f. many inputs', lambda: bench_many_inputs(fixtures))
        if 'h' in only:
            rows += guarded('h. submission', lambda: bench_submission(world, fixtures, sizes))
        if 'i' in only:
            rows += guarded('i. target page', lambda: bench_target_page(fixtures, sizes))
        if 'j' in only:
            rows += guarded('j. worker death', lambda: bench_worker_death(world, fixtures, sizes))
        if 'k' in only:  # last: it leaves 100,000 processes in the database
            rows += guarded('k. periodic check', lambda: bench_periodic_check(fixtures, sizes))
        database = f'{connection.vendor} {connection.Database.sqlite_version}' if connection.vendor == 'sqlite' \
            else f'{connection.vendor} {connection.pg_version}'
    finally:
        teardown(world)
    header = [
        f'tom_education benchmark ({"--quick" if args.quick else "full"} run), {time.strftime("%Y-%m-%d %H:%M")}',
        f'machine: {machine["cpu"]}, {machine["memory"]}, {machine["system"]}, Python {machine["python"]}',
        f'database: {database}; broker: Redis ({world.broker.rsplit("/", 1)[0]}); workers: prefork, 2 processes',
        f'load average before/after: {load_before} / {load_average()} (the machine may be shared: '
        'ratios compare figures taken side by side)',
    ]
    print_table(rows, header)
    if args.json:
        args.json.write_text(json.dumps({'header': header, 'rows': [asdict(row) for row in rows]}, indent=2))
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
