"""The bad day, with real processes: killed workers, a Redis restart, cancelled subprocesses, a flood.

Each test that breaks something breaks its own: a worker on its own queue, or a private Redis on a
free port; the suite's shared worker and the machine's Redis are never touched.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import redis
import requests
from celery import Celery
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Count
from django.test import override_settings
from rest_framework.authtoken.models import Token
from tom_dataproducts.models import DataProduct

import tests.fault_apps
from tests.conftest import QUEUE, Worker, script_product, wait_for
from tom_education import recovery, services
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_RUNNING,
    PipelineProcess,
)

pytestmark = pytest.mark.django_db(transaction=True)
FAULT_QUEUE = f'{QUEUE}_faults'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, which it may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f'redis://127.0.0.1:{self.port}/0'
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which('redis-server'), '--port', str(self.port), '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no'],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError('private redis-server did not start')

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def fault_worker(worker):
    started = Worker('faults', FAULT_QUEUE)
    yield started
    started.stop()


@pytest.fixture
def two_fault_workers(worker):
    """Two workers on the fault queue: whichever one a run lands on, the other one can take it over."""
    started = [Worker(f'faults-{name}', FAULT_QUEUE, {'TOM_EDUCATION_SHUTDOWN_GRACE': '2'}, concurrency=1)
               for name in ('a', 'b')]
    yield started
    for each in started:
        each.stop()


def wait_final_unwatched(process: PipelineProcess, timeout: float) -> float:
    """Wait for the end reading the row only, as a script would: no page, no reaper. Return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        process.refresh_from_db()
        if process.is_final:
            return time.monotonic() - start
        time.sleep(0.2)
    lines = '\n'.join(process.log_lines.values_list('message', flat=True))
    raise AssertionError(f'{process.identifier} still {process.state} after {timeout} s; log:\n{lines}')


def run_faulty(target, user, script):
    return services.start_process(user=user, pipeline='Fault scripted', target=target,
                                  input_files=[script_product(target, script)])


def worker_running(process: PipelineProcess, workers: list[Worker]) -> Worker:
    process.refresh_from_db()
    pid = int(process.worker.rpartition(':')[2])
    return next(each for each in workers if pid in pool_of(each))


def test_worker_killed_with_sigkill_mid_run_is_finished_by_another(two_fault_workers, target, user, settings):
    """Nobody polls: the surviving worker's own check notices the dead one and runs the next attempt."""
    process = run_faulty(target, user, {
        'steps': [{'action': 'sleep', 'seconds': 3}],
        'outputs': [{'name': 'result.txt', 'content': 'done once', 'type': 'DataProduct'}],
    })
    wait_for(process, lambda current: current.state == ASYNC_STATUS_RUNNING)
    victim = worker_running(process, two_fault_workers)
    pool = pool_of(victim)
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    killed_at = time.monotonic()
    wait_final_unwatched(process, timeout=90)
    elapsed = time.monotonic() - killed_at
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert process.attempts == 2
    # detected within the heartbeat timeout plus a check interval (with jitter), then the 3 s run itself
    limit = settings.TOM_EDUCATION_HEARTBEAT_TIMEOUT + 1.2 * settings.TOM_EDUCATION_HEARTBEAT_INTERVAL + 3
    assert elapsed < limit + 15, f'{elapsed:.1f} s from the kill to the end; the limit is {limit:.1f} s plus slack'
    log = list(process.log_lines.values_list('message', flat=True))
    assert any(line.startswith('Attempt 1 was lost: the worker of attempt 1') for line in log)
    assert any(line.startswith('Attempt 2 of 2 on ') for line in log)
    assert DataProduct.objects.filter(created_by_pipeline_processes=process).count() == 1
    assert not any(_alive(pid) for pid in pool)


def test_sigterm_lets_a_short_run_finish_and_hands_a_long_one_to_another_worker(two_fault_workers, target, user,
                                                                               tmp_path):
    short = run_faulty(target, user, {'steps': [{'action': 'sleep', 'seconds': 1}]})
    wait_for(short, lambda current: current.state == ASYNC_STATUS_RUNNING)
    stopping = worker_running(short, two_fault_workers)
    os.kill(stopping.process.pid, signal.SIGTERM)  # to the main process, as systemd (KillMode=mixed) and k8s do
    wait_final_unwatched(short, timeout=30)
    assert short.state == ASYNC_STATUS_CREATED and short.attempts == 1
    stopping.process.wait(timeout=30)
    survivor = next(each for each in two_fault_workers if each is not stopping)

    long = run_faulty(target, user, {
        'steps': [{'action': 'sleep_once', 'seconds': 120, 'marker': str(tmp_path / 'slept')}],
        'outputs': [{'name': 'result.txt', 'content': 'done once', 'type': 'DataProduct'}],
    })
    wait_for(long, lambda current: current.state == ASYNC_STATUS_RUNNING)
    restarted = Worker('faults-c', FAULT_QUEUE, {'TOM_EDUCATION_SHUTDOWN_GRACE': '2'}, concurrency=1)
    two_fault_workers.append(restarted)
    deploying = worker_running(long, [survivor])
    os.kill(deploying.process.pid, signal.SIGTERM)
    deploying.process.wait(timeout=60)  # the grace period, then the run is handed back and the worker exits
    wait_final_unwatched(long, timeout=60)
    assert long.state == ASYNC_STATUS_CREATED, long.failure_message
    assert long.attempts == 2 and [loss['kind'] for loss in long.losses] == ['handed back']
    assert int(long.worker.rpartition(':')[2]) in pool_of(restarted)
    assert DataProduct.objects.filter(created_by_pipeline_processes=long).count() == 1
    log = list(long.log_lines.values_list('message', flat=True))
    assert any(line.startswith('Attempt 1 was lost: the worker of attempt 1') and 'shut down' in line for line in log)


def test_redis_restarted_mid_run_does_not_stop_a_healthy_run(worker, target, user, monkeypatch):
    broker = PrivateRedis()
    monkeypatch.setattr(tests.fault_apps, 'app', Celery('faults', broker=broker.url))
    private_worker = Worker('redis-restart', FAULT_QUEUE, {'TOM_EDUCATION_TEST_BROKER': broker.url})
    try:
        with override_settings(TOM_EDUCATION_CELERY_APP='tests.fault_apps.app'):
            process = run_faulty(target, user, {
                'steps': [{'action': 'sleep', 'seconds': 4, 'log': True}],
                'outputs': [{'name': 'result.txt', 'content': 'done', 'type': 'DataProduct'}],
            })
        wait_for(process, lambda current: current.state == ASYNC_STATUS_RUNNING)
        broker.stop()
        time.sleep(2)
        broker.start()
        wait_final_unwatched(process, timeout=90)
    finally:
        private_worker.stop()
        broker.stop()
    assert PipelineProcess.objects.count() == 1
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert process.attempts == 1
    assert DataProduct.objects.filter(product_id__startswith=process.identifier).count() == 1


def test_runs_queued_when_redis_restarts_empty_are_sent_again(worker, target, user, monkeypatch):
    broker = PrivateRedis()
    monkeypatch.setattr(tests.fault_apps, 'app', Celery('faults', broker=broker.url))
    with override_settings(TOM_EDUCATION_CELERY_APP='tests.fault_apps.app'):
        processes = [run_faulty(target, user, {'steps': [{'action': 'log', 'text': f'run {number}'}]})
                     for number in range(4)]
    broker.stop()  # its queue, with the four messages, is gone
    broker.start()
    private_worker = Worker('redis-empty', FAULT_QUEUE, {'TOM_EDUCATION_TEST_BROKER': broker.url,
                                                        'TOM_EDUCATION_RESEND_PENDING_AFTER': '2'})
    try:
        for process in processes:
            wait_final_unwatched(process, timeout=60)
    finally:
        private_worker.stop()
        broker.stop()
    for process in processes:
        assert process.state == ASYNC_STATUS_CREATED, process.failure_message
        assert process.log_lines.filter(message__startswith='The broker no longer held this run').count() == 1


def test_a_run_on_a_queue_no_worker_consumes_says_so(worker, target, user, client):
    process = services.start_process(user=user, pipeline='Parked', target=target,
                                     input_files=[script_product(target, {})])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not recovery.consumers_of(QUEUE):
        time.sleep(0.2)  # the suite's worker has reported itself
    assert services.waiting_reason(process) == f'waiting: no worker is consuming queue {QUEUE}_parked'
    client.force_login(user)
    page = client.get(f'/pipeline/{process.pk}').content.decode()
    assert f'waiting: no worker is consuming queue {QUEUE}_parked' in page
    consumed = services.start_process(user=user, pipeline='Scripted', target=target,
                                      input_files=[script_product(target, {})])
    assert services.waiting_reason(consumed) == ''


def test_cancel_stops_the_pipeline_and_its_subprocesses(worker, target, user):
    process = services.start_process(user=user, pipeline='Scripted', target=target,
                                     input_files=[script_product(target, {'steps': [{'action': 'spawn'}]})])
    wait_for(process, lambda current: current.log_lines.filter(message__startswith='child=').exists())
    line = process.log_lines.get(message__startswith='child=').message
    pids = [int(pid) for pid in re.findall(r'\d+', line)]
    assert len(pids) == 2 and all(psutil.pid_exists(pid) for pid in pids)
    services.cancel_process(process)
    wait_for(process, lambda current: current.is_final, timeout=30)
    assert process.state == ASYNC_STATUS_CANCELLED, list(process.log_lines.values_list('message', flat=True))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_load_200_submissions_from_20_clients(live_server, worker, target, user):
    token = Token.objects.get_or_create(user=user)[0].key
    script = script_product(target, {'steps': [{'action': 'log', 'count': 3}]})

    def submit(_: int) -> int:
        response = requests.post(
            f'{live_server.url}/api/pipelineprocesses/',
            json={'pipeline': 'Scripted', 'target': target.pk, 'input_files': [script.pk]},
            headers={'Authorization': f'Token {token}'}, timeout=60,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=20) as clients:
        codes = list(clients.map(submit, range(200)))
    assert codes == [201] * 200
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and PipelineProcess.objects.exclude(state=ASYNC_STATUS_CREATED).exists():
        time.sleep(0.5)
    states = dict(PipelineProcess.objects.values_list('state').annotate(n=Count('pk')))
    assert states == {ASYNC_STATUS_CREATED: 200}
    assert PipelineProcess.objects.values('identifier').distinct().count() == 200
    assert 'database is locked' not in worker.log()


def test_each_pipeline_lands_on_the_workers_of_its_queue(fault_worker, worker, target, user):
    """``queue`` on the class routes runs: the fault worker serves only its queue, the main one the default."""
    routed = run_faulty(target, user, {})
    default = services.start_process(user=user, pipeline='Scripted', target=target,
                                     input_files=[script_product(target, {})])
    for process in (routed, default):
        wait_for(process, lambda current: current.is_final)
        assert process.state == ASYNC_STATUS_CREATED
    assert int(routed.worker.rpartition(':')[2]) in pool_of(fault_worker)
    assert int(default.worker.rpartition(':')[2]) in pool_of(worker)


def pool_of(started: Worker) -> set[int]:
    """The pids of a worker's pool processes, which run the tasks."""
    return {child.pid for child in psutil.Process(started.process.pid).children(recursive=True)}


@pytest.mark.skipif(not django_settings.DATABASES['default']['ENGINE'].endswith('postgresql'),
                    reason='closes a PostgreSQL server connection')
def test_a_kept_connection_the_server_closed_is_noticed_without_a_query(transactional_db):
    """Before each run a worker asks whether the connection it kept still works by polling its socket, not with
    a query: a healthy idle connection must pass (else every run reconnects), a closed one must not."""
    from django.db import connections

    from tom_education import runner

    kept = connections.create_connection('default')
    try:
        kept.ensure_connection()
        with kept.cursor() as cursor:
            cursor.execute('SELECT pg_backend_pid()')
            backend = cursor.fetchone()[0]
        assert runner.looks_usable(kept)
        with connection.cursor() as cursor:
            cursor.execute('SELECT pg_terminate_backend(%s)', [backend])
        deadline = time.monotonic() + 10  # the server ends its backend asynchronously
        while runner.looks_usable(kept) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not runner.looks_usable(kept)
    finally:
        kept.close()


@pytest.mark.skipif(not django_settings.DATABASES['default']['ENGINE'].endswith('postgresql'),
                    reason='closes PostgreSQL server connections')
def test_database_restart_between_two_runs_fails_neither(fault_worker, target, user):
    """Workers keep their database connections between runs; a restarted database must not fail the next run.

    The test closes, from the server side, every connection to the test database but its own: what a
    PostgreSQL restart does to the connections a worker keeps (restarting the server itself would also
    cut off everything else using it).
    """
    script = {'steps': [{'action': 'log', 'count': 3, 'text': 'line'}],
              'outputs': [{'name': 'result.txt', 'content': 'ok', 'type': 'DataProduct'}]}
    first = run_faulty(target, user, script)
    wait_final_unwatched(first, timeout=60)
    assert first.state == ASYNC_STATUS_CREATED, first.failure_message
    with connection.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() '
                       'AND pid <> pg_backend_pid()')
        kept = cursor.fetchone()[0]
        cursor.execute('SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity '
                       'WHERE datname = current_database() AND pid <> pg_backend_pid()')
    assert kept >= 1, 'the worker kept no connection: nothing was reused, so nothing was tested'
    for _ in range(2):  # the worker process that kept the dead connection, and the next one
        process = run_faulty(target, user, script)
        wait_final_unwatched(process, timeout=60)
        assert process.state == ASYNC_STATUS_CREATED, process.failure_message
        assert process.attempts == 1, 'the run was retried: the dead connection failed an attempt'
        assert process.output_files.count() == 1
