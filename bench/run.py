"""Performance benchmark of tom_education, each figure measured side by side with its baseline in one run.

    .venv/bin/python bench/run.py [--quick] [--db sqlite|postgres] [--only a,b,c,d,e,f] [--json FILE]

It sets everything up itself and removes it at the end: a temporary directory (SQLite database,
media files, logs), Redis (``redis://127.0.0.1:6379/14``, or a private ``redis-server`` on a free
port when nothing answers there), the bench pipelines (``bench/pipelines.py``, registered by
``bench/settings.py``), ``migrate``, and real ``celery worker`` processes (prefork, 2 processes
each, in their own process group) for tom_education and for a bare Celery app (the baseline).

Benchmarks (the goals of issue 5):

a. dispatch: submit-to-finish of a no-op pipeline against a raw no-op Celery task's round trip;
b. throughput: many no-op pipelines on 2 worker processes against as many raw Celery tasks;
c. logging: 10,000 ``log()`` calls in a real run context against the 2020 original's way
   (rewrite and commit a growing text field per line), and how soon a reader sees the lines;
d. polling: a log poll with no new lines on a 10-line log and on a 100,000-line log;
e. large outputs: peak memory growth of the process that saves a 2 GB output;
f. many inputs: SQL queries to submit and to run with 1, 10, 100 and 1,000 input products.

``--quick`` uses smaller sizes (and says so in the table). The machine may be shared with other
work, so every ratio compares figures taken in the same run, interleaved where that is possible.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tom_education.testing import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BROKER = 'redis://127.0.0.1:6379/14'
NOOP = 'Bench no-op'
LOGGING_PIPELINE = 'Bench logging'
BIG_OUTPUT = 'Bench big output'
GIB = 1024 ** 3
MIB = 1024 ** 2
INPUT_COUNTS = (1, 10, 100, 1000)


@dataclass
class Sizes:
    """How much each benchmark does; ``--quick`` shrinks every one of them."""

    dispatch_runs: int = 50
    throughput_tasks: int = 500
    throughput_rounds: int = 2
    log_lines: int = 10_000
    log_paced_runs: int = 5
    baseline_budget_s: float = 150.0
    poll_requests: int = 200
    poll_big_log: int = 100_000
    big_output_bytes: int = 2 * GIB

    @classmethod
    def quick(cls) -> Sizes:
        return cls(dispatch_runs=15, throughput_tasks=100, throughput_rounds=1, log_paced_runs=1,
                   baseline_budget_s=20.0, poll_requests=50, big_output_bytes=256 * MIB)


@dataclass
class Row:
    """One line of the result table; ``met`` is None when the benchmark could not be measured."""

    benchmark: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None
    details: list[str] = field(default_factory=list)


# --- console -------------------------------------------------------------------------------------

class Progress:
    """One status line on a terminal (rewritten in place), plain lines otherwise (e.g. piped to a file)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_plain = ''

    def show(self, text: str, done: int | None = None, total: int | None = None) -> None:
        elapsed = time.monotonic() - self.started
        count = f' {done}/{total}' if total else ''
        line = f'[bench {elapsed:5.0f} s] {text}{count}'
        if self.tty:
            sys.stderr.write('\r\033[K' + line)
            sys.stderr.flush()
        elif done is None or total is None or done in (0, total) or done % max(total // 4, 1) == 0:
            if line != self.last_plain:
                sys.stderr.write(line + '\n')
                self.last_plain = line

    def step(self, text: str) -> None:
        """A line that stays on screen: a finished step or a note."""
        elapsed = time.monotonic() - self.started
        sys.stderr.write(('\r\033[K' if self.tty else '') + f'[bench {elapsed:5.0f} s] {text}\n')
        sys.stderr.flush()


PROGRESS = Progress()


def fmt_ms(seconds: float) -> str:
    return f'{seconds * 1000:.1f} ms'


def fmt_s(seconds: float) -> str:
    return f'{seconds:.2f} s' if seconds < 100 else f'{seconds:.0f} s'


def fmt_bytes(count: float) -> str:
    if abs(count) >= GIB:
        return f'{count / GIB:.2f} GiB'
    if abs(count) >= MIB:
        return f'{count / MIB:.1f} MiB'
    return f'{count / 1024:.0f} KiB' if abs(count) >= 1024 else f'{count:.0f} B'


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile: no numpy needed for a few hundred numbers."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- the machine and the services ----------------------------------------------------------------

def machine_description() -> dict[str, str]:
    """What the figures were measured on, for the docs; the load average hints at shared use."""
    cpu = 'unknown CPU'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    memory = ''
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                memory = f'{int(line.split()[1]) / 1024 ** 2:.1f} GiB RAM'
    except OSError:
        pass
    return {
        'cpu': f'{os.cpu_count()} x {cpu}',
        'memory': memory,
        'system': f'{platform.system()} {platform.release()}',
        'python': platform.python_version(),
    }


def load_average() -> str:
    try:
        return ', '.join(f'{value:.2f}' for value in os.getloadavg())
    except OSError:
        return 'unknown'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_private_redis(workdir: Path) -> tuple[str, subprocess.Popen]:
    """A throw-away redis-server for machines where none answers on 6379 (no persistence, loopback only)."""
    binary = shutil.which('redis-server')
    if binary is None:
        raise SystemExit('No Redis answers on 127.0.0.1:6379 and redis-server is not installed '
                         '(apt-get install redis-server), or pass --broker redis://HOST:PORT/DB')
    port = free_port()
    server = subprocess.Popen(
        [binary, '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
         '--dir', str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f'redis://127.0.0.1:{port}/14'
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if redis_answers(url):
            return url, server
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit('the private redis-server did not start')


class Postgres:
    """A fresh database on the PostgreSQL server, created for this run and dropped after it."""

    def __init__(self, token: str) -> None:
        self.name = f'tom_education_bench_{token}'
        self.params = {
            'host': os.environ.get('PGHOST', '127.0.0.1'),
            'port': os.environ.get('PGPORT', '5432'),
            'user': os.environ.get('PGUSER', 'postgres'),
            'password': os.environ.get('PGPASSWORD', ''),
        }
        self.admin_db = os.environ.get('PGDATABASE', 'test')

    def _execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(dbname=self.admin_db, autocommit=True, connect_timeout=5, **self.params) as conn:
            conn.execute(statement)

    def create(self) -> None:
        self._execute(f'CREATE DATABASE "{self.name}"')
        os.environ.update({
            'TOM_EDUCATION_DB': 'postgres', 'PGDATABASE': self.name, 'PGHOST': self.params['host'],
            'PGPORT': self.params['port'], 'PGUSER': self.params['user'],
        })

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Worker(WorkerProcess):
    """A worker of the bench: its pool processes are ours to stop at the end, with a grace period."""

    def __init__(self, name: str, app: str, queue: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__(name, app, queue, env, log_path, cwd=ROOT)

    def errors(self) -> list[str]:
        return [line for line in self.log().splitlines() if ' ERROR' in line or 'Traceback' in line]

    def stop(self, grace: float = 10) -> None:
        super().stop(grace)


@dataclass
class World:
    """Everything ``setup`` made, so ``teardown`` can remove exactly that and nothing else."""

    workdir: Path
    keep: bool
    token: str
    broker: str
    queue: str
    raw_queue: str
    redis_server: subprocess.Popen | None = None
    postgres: Postgres | None = None
    workers: list[Worker] = field(default_factory=list)

    @property
    def key_prefix(self) -> str:
        return f'tom_education_bench:{self.token}'


def setup(args: argparse.Namespace) -> World:
    """Environment first (the settings read it at import), then Django, then the database."""
    workdir = Path(tempfile.mkdtemp(prefix='tom_education-bench-'))
    token = uuid.uuid4().hex[:10]
    redis_server = None
    broker = args.broker or DEFAULT_BROKER
    if not redis_answers(broker):
        if args.broker:
            raise SystemExit(f'Redis does not answer at {args.broker}')
        broker, redis_server = start_private_redis(workdir)
        PROGRESS.step(f'no Redis on 127.0.0.1:6379: started a private redis-server ({broker})')
    world = World(workdir=workdir, keep=args.keep, token=token, broker=broker,
                  queue=f'tom_education_bench_{token}', raw_queue=f'tom_education_bench_raw_{token}',
                  redis_server=redis_server)
    os.environ.update({
        'DJANGO_SETTINGS_MODULE': args.settings,
        'TOM_EDUCATION_VAR_DIR': str(workdir),
        'TOM_EDUCATION_SQLITE': str(workdir / 'bench.sqlite3'),
        'TOM_EDUCATION_BENCH_BROKER': broker,
        'TOM_EDUCATION_BENCH_QUEUE': world.queue,
        'TOM_EDUCATION_BENCH_RAW_QUEUE': world.raw_queue,
        'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH', '')])),
    })
    os.environ.pop('CELERY_BROKER_URL', None)
    os.environ.pop('TOM_EDUCATION_DB', None)
    if args.db == 'postgres':
        world.postgres = Postgres(token)
        world.postgres.create()
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    PROGRESS.show('migrating the bench database')
    call_command('migrate', verbosity=0)
    from bench import original_log

    original_log.create_tables()
    return world


def new_worker(world: World, kind: str) -> Worker:
    """Start tom_education's worker (``ours``) or the bare Celery one (``raw``); each start logs to a new file."""
    number = len(world.workers) + 1
    if kind == 'ours':
        worker = Worker(f'bench-{world.token}-{number}', 'tom_education', world.queue, dict(os.environ),
                        world.workdir / f'worker-{number}-ours.log')
    else:
        # no DJANGO_SETTINGS_MODULE: Celery's Django fixup stays out of the baseline
        env = {name: value for name, value in os.environ.items() if name != 'DJANGO_SETTINGS_MODULE'}
        worker = Worker(f'bench-raw-{world.token}-{number}', 'bench.raw_celery', world.raw_queue, env,
                        world.workdir / f'worker-{number}-raw.log')
    world.workers.append(worker)
    return worker


def start_workers(world: World, *kinds: str) -> list[Worker]:
    """Start the workers together, then wait until each says it is ready."""
    workers = [new_worker(world, kind) for kind in kinds]
    for worker in workers:
        worker.wait_ready()
    return workers


def stop_workers(world: World) -> None:
    """Stop every worker still running, after reporting what they logged as errors."""
    for worker in world.workers:
        if worker.process.poll() is None:
            for line in worker.errors()[:5]:
                PROGRESS.step(f'{worker.name} logged: {line}')
        worker.stop()


def teardown(world: World) -> None:
    """Stop what this run started and delete what it created: its Redis keys, database and files."""
    stop_workers(world)
    try:
        forget_redis_keys(world)
    except Exception as exc:  # noqa: BLE001 - cleaning up must not hide the results
        PROGRESS.step(f'could not remove the bench keys from Redis: {exc}')
    from django.db import connections

    connections.close_all()
    if world.postgres is not None:
        try:
            world.postgres.drop()
        except Exception as exc:  # noqa: BLE001
            PROGRESS.step(f'could not drop database {world.postgres.name}: {exc}')
    if world.redis_server is not None:
        os.killpg(world.redis_server.pid, signal.SIGKILL)
        world.redis_server.wait(timeout=30)
    if world.keep:
        PROGRESS.step(f'kept {world.workdir}')
    else:
        shutil.rmtree(world.workdir, ignore_errors=True)


def forget_redis_keys(world: World) -> None:
    """Only keys and set members that name this run's token: the database may be shared."""
    import redis

    client = redis.Redis.from_url(world.broker)
    for key in client.scan_iter(match=f'*{world.token}*'):
        client.delete(key)
    for key in client.scan_iter(match='_kombu.binding.*'):
        members = [member for member in client.smembers(key) if world.token.encode() in member]
        if members:
            client.srem(key, *members)


# --- objects the benchmarks work on --------------------------------------------------------------

@dataclass
class Fixtures:
    user: Any
    target: Any
    product: Any


def make_fixtures(token: str) -> Fixtures:
    """A user who may see a public target, and one small input file, as a TOM user would have."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from tom_dataproducts.models import DataProduct
    from tom_targets.models import Target

    user = get_user_model().objects.create_user(f'bench-{token}', password='bench-password')
    target = Target.objects.create(name=f'Bench target {token}', type=Target.SIDEREAL, ra=10.68, dec=41.27,
                                   permissions=Target.Permissions.PUBLIC)
    product = DataProduct(target=target, product_id=f'bench-{token}-input')
    product.data.save('bench_input.json', ContentFile(b'{}'), save=False)
    product.save()
    return Fixtures(user=user, target=target, product=product)


def create_process(name: str, fixtures: Fixtures, products: list | None = None) -> Any:
    """A pending row made directly (not queued), for benchmarks that run it in this process."""
    from tom_education import registry
    from tom_education.models import new_identifier

    pipeline_class = registry.get(name)
    process = pipeline_class.objects.create(identifier=new_identifier(pipeline_class.short_name), pipeline=name,
                                            target=fixtures.target, created_by=fixtures.user,
                                            task_id=str(uuid.uuid4()))
    process.input_files.set(products or [fixtures.product])
    return process


def wait_final(pk: int, timeout: float = 120) -> tuple[str, Any]:
    """Poll the row every 5 ms; return (state, finished)."""
    from tom_education.models import FINAL_STATES, PipelineProcess

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, finished, message = PipelineProcess.objects.filter(pk=pk).values_list(
            'state', 'finished', 'failure_message').get()
        if state in FINAL_STATES:
            if state != 'created':
                raise RuntimeError(f'process {pk} ended {state}: {message}')
            return state, finished
        time.sleep(0.005)
    raise RuntimeError(f'process {pk} did not finish within {timeout:.0f} s')


# --- a. dispatch -------------------------------------------------------------------------------------

class Raw:
    """Sends the raw no-op task and waits for its worker to say it ran."""

    def __init__(self, world: World) -> None:
        import redis

        from bench import raw_celery

        self.app = raw_celery.app
        self.redis = redis.Redis.from_url(world.broker)
        self.prefix = world.key_prefix
        self.count = 0

    def key(self) -> str:
        self.count += 1
        return f'{self.prefix}:done:{self.count}'

    def send(self, key: str) -> None:
        self.app.send_task('bench.raw_noop', args=[key])

    def round_trip(self) -> float:
        key = self.key()
        start = time.time()
        self.send(key)
        reply = self.redis.blpop([key], timeout=60)
        if reply is None:
            raise RuntimeError('the raw no-op task did not run within 60 s')
        return float(reply[1].split()[1]) - start

    def stamps(self, key: str) -> list[tuple[float, float]]:
        """(start, end) of every task that pushed onto ``key``."""
        return [(float(start), float(end)) for start, end in
                (item.split() for item in self.redis.lrange(key, 0, -1))]


def ours_round_trip(fixtures: Fixtures) -> float:
    """Submit through the service every page and API call uses; finished when the row says so."""
    from tom_education import services

    start = time.time()
    process = services.start_process(user=fixtures.user, pipeline=NOOP, target=fixtures.target,
                                     input_files=[fixtures.product])
    _, finished = wait_final(process.pk)
    return finished.timestamp() - start


def bench_dispatch(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    raw = Raw(world)
    PROGRESS.show('a. dispatch: warming up the workers')
    for _ in range(5):
        ours_round_trip(fixtures)
        raw.round_trip()
    ours: list[float] = []
    base: list[float] = []
    for number in range(sizes.dispatch_runs):
        PROGRESS.show('a. dispatch (ours and raw, interleaved)', number, sizes.dispatch_runs)
        # alternate which goes first, so a slow moment of the machine hits both alike
        if number % 2:
            base.append(raw.round_trip())
            ours.append(ours_round_trip(fixtures))
        else:
            ours.append(ours_round_trip(fixtures))
            base.append(raw.round_trip())
    rows = []
    for label, fraction in (('p50', 0.5), ('p95', 0.95)):
        mine, theirs = percentile(ours, fraction), percentile(base, fraction)
        rows.append(Row(
            f'a. dispatch {label}: no-op pipeline submit-to-finish vs raw Celery task round trip',
            fmt_ms(mine), fmt_ms(theirs), f'{mine / theirs:.1f}x', 'ours/raw <= 3x', mine / theirs <= 3,
        ))
    rows[0].details = [
        f'{sizes.dispatch_runs} runs each, interleaved, after 5 warm-up runs each',
        f'ours: min {fmt_ms(min(ours))}, p50 {fmt_ms(percentile(ours, .5))}, p95 {fmt_ms(percentile(ours, .95))}, '
        f'max {fmt_ms(max(ours))}',
        f'raw:  min {fmt_ms(min(base))}, p50 {fmt_ms(percentile(base, .5))}, p95 {fmt_ms(percentile(base, .95))}, '
        f'max {fmt_ms(max(base))}',
    ]
    PROGRESS.step(f'a. dispatch done: p50 ours {fmt_ms(percentile(ours, .5))}, raw {fmt_ms(percentile(base, .5))}')
    return rows


# --- b. throughput ---------------------------------------------------------------------------------

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


# --- c. logging --------------------------------------------------------------------------------------

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
    first = PipelineLogLine.objects.get(process=process, message=pipelines.log_message(0)).seq
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
    from bench import original_log, pipelines

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
            process.log(pipelines.log_message(number))
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
    from tom_education import conf

    return conf.log_flush_interval()


# --- d. polling -------------------------------------------------------------------------------------

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


# --- e. large outputs --------------------------------------------------------------------------------

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
            [sys.executable, str(Path(__file__).resolve()), '--child-memory', mode, '--size', str(size),
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


# --- f. many inputs ---------------------------------------------------------------------------------

def make_inputs(fixtures: Fixtures, count: int) -> list[int]:
    """``count`` input products in one statement; their files are never read by the no-op pipeline,
    so only their names are stored (the queries counted do not depend on the files' content)."""
    from tom_dataproducts.models import DataProduct

    token = uuid.uuid4().hex[:8]
    products = DataProduct.objects.bulk_create(
        DataProduct(target=fixtures.target, product_id=f'bench-{token}-{number}',
                    data=f'tom_education_bench/{token}/frame_{number:04d}.fits')
        for number in range(count)
    )
    return [product.pk for product in products]


def query_shape(sql: str) -> str:
    """The statement without its values: enough to tell which statement repeats as inputs grow."""
    return ' '.join(sql.split()[:6]).split(' VALUES', 1)[0]


def bench_many_inputs(fixtures: Fixtures) -> list[Row]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tom_education import runner, services
    from tom_education.models import PipelineProcess

    submit: dict[int, int] = {}
    run: dict[int, int] = {}
    shapes: dict[int, Counter[str]] = {}
    # a first submission fills Django's caches (content types, permissions): not counted
    runner.run_process(services.start_process(user=fixtures.user, pipeline=NOOP, target=fixtures.target,
                                              input_files=make_inputs(fixtures, 1)).pk)
    for count in INPUT_COUNTS:
        PROGRESS.show(f'f. many inputs: {count} input(s)')
        pks = make_inputs(fixtures, count)
        with CaptureQueriesContext(connection) as captured:
            process = services.start_process(user=fixtures.user, pipeline=NOOP, target=fixtures.target,
                                             input_files=pks)
        submit[count] = len(captured)
        shapes[count] = Counter(query_shape(query['sql']) for query in captured.captured_queries)
        with CaptureQueriesContext(connection) as captured:
            runner.run_process(process.pk)
        run[count] = len(captured)
        state = PipelineProcess.objects.filter(pk=process.pk).values_list('state', flat=True).get()
        if state != 'created':
            raise RuntimeError(f'the run with {count} inputs ended {state}')
    rows = []
    smallest, largest = INPUT_COUNTS[0], INPUT_COUNTS[-1]
    for label, counts in (('submit (services.start_process)', submit), ('run (runner.run_process)', run)):
        extra = counts[largest] - counts[smallest]
        per_input = extra / (largest - smallest)
        rows.append(Row(
            f'f. many inputs, {label}: SQL queries with ' + '/'.join(f'{n:,}' for n in INPUT_COUNTS) + ' inputs',
            f'{counts[largest]} (' + '/'.join(str(counts[n]) for n in INPUT_COUNTS) + ')',
            f'{counts[smallest]} (1 input)', f'+{per_input:.3f}/input',
            f'no N+1: <= {smallest}-input count + 10', extra <= 10,
            ['counted with CaptureQueriesContext on the calling thread\'s connection; the run\'s monitor '
             'thread (heartbeat, periodic flush) uses its own connection and is not counted'],
        ))
    extra_shapes = shapes[largest] - shapes[smallest]
    if extra_shapes:
        rows[0].details.append(f'extra statements with {largest:,} inputs: ' + '; '.join(
            f'{times} x {shape}' for shape, times in extra_shapes.items()))
    PROGRESS.step('f. many inputs done: submit ' + '/'.join(str(submit[n]) for n in INPUT_COUNTS)
                  + ', run ' + '/'.join(str(run[n]) for n in INPUT_COUNTS) + ' queries')
    return rows


# --- the table ----------------------------------------------------------------------------------------

def print_table(rows: list[Row], header: list[str]) -> None:
    columns = ['benchmark', 'ours', 'baseline', 'ratio', 'goal', 'result']
    cells = [[row.benchmark, row.ours, row.baseline, row.ratio, row.goal,
              'MET' if row.met else ('NOT MEASURED' if row.met is None else 'NOT MET')] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    rule = '  '.join('-' * width for width in widths)
    print()
    for line in header:
        print(line)
    print()
    print('  '.join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    print(rule)
    for line in cells:
        print('  '.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    print(rule)
    print()
    print('Details:')
    for row in rows:
        for detail in row.details:
            print(f'  {row.benchmark.split(":")[0]}: {detail}')


def guarded(name: str, action: Callable[[], list[Row]]) -> list[Row]:
    """A benchmark that breaks is reported as a NOT MET row with its error; the others still run."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the other figures
        PROGRESS.step(f'{name} failed: {type(exc).__name__}: {exc}')
        return [Row(name, 'error', '-', '-', '-', False, [f'{type(exc).__name__}: {exc}'])]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='smaller sizes, for a first look (about 2 minutes)')
    parser.add_argument('--db', choices=['sqlite', 'postgres'], default='sqlite',
                        help='SQLite file in the temporary directory (default), or a fresh database on the '
                             'PostgreSQL at PGHOST:PGPORT (default 127.0.0.1:5432, user postgres)')
    parser.add_argument('--broker', help=f'Redis URL (default {DEFAULT_BROKER}, or a private redis-server)')
    parser.add_argument('--only', default='abcdef', help='benchmarks to run, e.g. "ab" or "c,f" (default all)')
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
        if only & {'a', 'b'}:
            PROGRESS.show('starting the tom_education and raw Celery workers')
            start_workers(world, 'ours', 'raw')
            if 'a' in only:
                rows += guarded('a. dispatch', lambda: bench_dispatch(world, fixtures, sizes))
            if 'b' in only:
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
