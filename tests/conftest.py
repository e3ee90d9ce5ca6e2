"""Fixtures: real Celery worker processes on a real Redis broker, sharing the test database."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management.base import CommandError
from django.test import TransactionTestCase
from guardian.shortcuts import assign_perm
from tom_dataproducts.models import DataProduct
from tom_targets.models import Target

from tom_education import runner
from tom_education.models import PipelineProcess
from tom_education.testing import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
QUEUE = os.environ['TOM_EDUCATION_TEST_QUEUE']


@pytest.fixture(scope='session', autouse=True)
def redis_broker() -> None:
    """The suite runs on a real Redis: its absence is an error of the set-up, not a reason to skip."""
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.exit(f'Redis is not reachable at {settings.CELERY_BROKER_URL} ({exc}); run scripts/test', 2)


class Worker(WorkerProcess):
    """A ``celery -A tom_education worker`` with the test settings, sharing the test database; started ready."""

    def __init__(self, name: str, queues: str, extra_env: dict[str, str] | None = None, concurrency: int = 2):
        env = {
            **os.environ,
            'DJANGO_SETTINGS_MODULE': 'tests.settings',
            'TOM_EDUCATION_TEST_WORKER': '1',
            'PYTHONPATH': str(ROOT),
            **(extra_env or {}),
        }
        super().__init__(f'{name}-{QUEUE}', 'tom_education', queues, env,
                         Path(os.environ['TOM_EDUCATION_VAR_DIR']) / f'worker-{name}.log',
                         cwd=ROOT, concurrency=concurrency)
        self.wait_ready(timeout=90)


@pytest.fixture(scope='session', autouse=True)
def flush_tried_again_after_a_deadlock() -> Iterator[None]:
    """Transactional tests end with a TRUNCATE of every table. On PostgreSQL a worker still finishing the test's
    last run (its log lines and its row in one transaction) can deadlock with it, and PostgreSQL cancels the
    TRUNCATE; by the time it is tried again the worker's transaction has ended."""
    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                return original(self)
            except CommandError as exc:
                if 'deadlock detected' not in str(exc.__cause__) or attempt == 4:
                    raise
                time.sleep(0.5)

    with mock.patch.object(TransactionTestCase, '_fixture_teardown', teardown):
        yield


@pytest.fixture(scope='session', autouse=True)
def monitor_stopped_before_the_database_goes(django_db_setup) -> Iterator[None]:
    """Runs made in the test process keep a monitor thread with its own connection; it must not hold the
    test database open when pytest-django drops it."""
    yield
    runner.Monitor.shutdown()


@pytest.fixture(scope='session')
def worker(django_db_setup, django_db_blocker) -> Iterator[Worker]:
    """The suite's main worker; started once, after the test database exists."""
    started = Worker('main', QUEUE)
    yield started
    started.stop()


@pytest.fixture
def no_worker_needed(settings):
    """Queue runs into a queue no worker consumes, for tests of pages and rows rather than of runs: a worker
    left running by an earlier test would otherwise take a run at once and change the row under the test."""
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'


def wait_for(process: PipelineProcess, condition: Callable[[PipelineProcess], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.refresh_from_db()
        if condition(process):
            return
        time.sleep(0.1)
    lines = '\n'.join(process.log_lines.values_list('message', flat=True))
    raise AssertionError(f'process {process.identifier} stuck in {process.state} ({process.status}); log:\n{lines}')


def wait_final(process: PipelineProcess, timeout: float = 60) -> PipelineProcess:
    wait_for(process, lambda current: current.is_final, timeout)
    return process


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user('owner', password='owner-password')


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user('other', password='other-password')


@pytest.fixture
def target(db) -> Target:
    return Target.objects.create(
        name='M31 test', type=Target.SIDEREAL, ra=10.6847, dec=41.2687, permissions=Target.Permissions.PUBLIC
    )


@pytest.fixture
def private_target(user) -> Target:
    """A PRIVATE target that ``user`` (and only they, besides superusers) may view."""
    private = Target.objects.create(name='Private target', type=Target.SIDEREAL, ra=1, dec=2,
                                    permissions=Target.Permissions.PRIVATE)
    assign_perm('tom_targets.view_target', user, private)
    return private


def make_product(target: Target, name: str, content: bytes | str = b'SIMPLE  =                    T') -> DataProduct:
    product = DataProduct(target=target, product_id=f'{target.pk}-{name}-{time.monotonic_ns()}')
    product.data.save(name, ContentFile(content.encode() if isinstance(content, str) else content), save=False)
    product.save()
    return product


def script_product(target: Target, script: dict, name: str = 'script.json') -> DataProduct:
    """An input for the ``Scripted`` test pipeline: the JSON says what the run does."""
    return make_product(target, name, json.dumps(script))
