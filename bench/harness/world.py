"""The private world a bench run sets up and removes: temporary directory, Redis, database, workers,
and the user, target and input product the benchmarks work on."""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.common import DEFAULT_BROKER, PROGRESS, ROOT
from tom_education.testing import WorkerProcess


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


def new_worker(world: World, kind: str, settings: str | None = None) -> Worker:
    """Start tom_education's worker (``ours``) or the bare Celery one (``raw``); each start logs to a new file.

    ``settings`` gives tom_education's worker another settings module than the bench's own.
    """
    number = len(world.workers) + 1
    if kind == 'ours':
        env = dict(os.environ, **({'DJANGO_SETTINGS_MODULE': settings} if settings else {}))
        worker = Worker(f'bench-{world.token}-{number}', 'tom_education', world.queue, env,
                        world.workdir / f'worker-{number}-ours.log')
    else:
        # no DJANGO_SETTINGS_MODULE: Celery's Django fixup stays out of the baseline
        env = {name: value for name, value in os.environ.items() if name != 'DJANGO_SETTINGS_MODULE'}
        worker = Worker(f'bench-raw-{world.token}-{number}', 'bench.raw_celery', world.raw_queue, env,
                        world.workdir / f'worker-{number}-raw.log')
    world.workers.append(worker)
    return worker


def start_workers(world: World, *kinds: str, settings: str | None = None) -> list[Worker]:
    """Start the workers together, then wait until each says it is ready."""
    workers = [new_worker(world, kind, settings) for kind in kinds]
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
