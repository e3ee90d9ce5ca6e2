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
from django.db.models import Count
from django.test import override_settings
from rest_framework.authtoken.models import Token
from tom_dataproducts.models import DataProduct

import tests.fault_apps
from tests.conftest import QUEUE, Worker, script_product, wait_for
from tom_education import services
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_FAILED,
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


def wait_final_like_a_page(process: PipelineProcess, timeout: float) -> float:
    """Poll as the process page does (which also runs the reaper); return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        services.reap_stale_processes()
        process.refresh_from_db()
        if process.is_final:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f'{process.identifier} still {process.state} after {timeout} s')


def run_faulty(target, user, script):
    return services.start_process(user=user, pipeline='Fault scripted', target=target,
                                  input_files=[script_product(target, script)])


def test_worker_killed_with_sigkill_mid_run_never_stays_running(fault_worker, target, user, settings):
    process = run_faulty(target, user, {'steps': [{'action': 'sleep', 'seconds': 120}]})
    wait_for(process, lambda current: current.state == ASYNC_STATUS_RUNNING)
    pool = pool_of(fault_worker)
    os.killpg(fault_worker.process.pid, signal.SIGKILL)
    fault_worker.process.wait(timeout=10)
    elapsed = wait_final_like_a_page(process, timeout=settings.TOM_EDUCATION_HEARTBEAT_TIMEOUT + 20)
    assert process.state == ASYNC_STATUS_FAILED
    assert 'stopped responding' in process.failure_message
    assert elapsed < settings.TOM_EDUCATION_HEARTBEAT_TIMEOUT + 10
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pool)


def test_redis_restarted_mid_run_loses_and_duplicates_nothing(worker, target, user, monkeypatch):
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
        wait_final_like_a_page(process, timeout=90)
    finally:
        private_worker.stop()
        broker.stop()
    assert PipelineProcess.objects.count() == 1
    outputs = DataProduct.objects.filter(product_id__startswith=process.identifier)
    if process.state == ASYNC_STATUS_CREATED:
        assert outputs.count() == 1
    else:
        assert process.state == ASYNC_STATUS_FAILED and process.failure_message
        assert outputs.count() == 0


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
