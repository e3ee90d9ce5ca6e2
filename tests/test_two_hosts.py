"""The cluster story, proven: two worker "hosts" that share nothing but PostgreSQL, Redis and an S3 object store.

Each host is a worker with its own temporary directory and its own (unused) MEDIA_ROOT; files go
through django-storages' S3 backend to moto's S3 server. One host is killed with SIGKILL mid-run:
the other finishes the run, the outputs land once in the store, and the page shows both attempts.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
from django.conf import settings
from django.test import override_settings
from tom_dataproducts.models import DataProduct

from tests.conftest import QUEUE, Worker, script_product, wait_for
from tests.test_faults import free_port, pool_of, wait_final_unwatched, worker_running
from tom_education import services
from tom_education.models import ASYNC_STATUS_CREATED
from tom_education.workdirs import WORKDIR_PATTERN

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.DATABASES['default']['ENGINE'].endswith('postgresql'),
                       reason='hosts share a database server; SQLite is a file one host would have to share'),
]
BUCKET = 'tom-education-two-hosts'


@pytest.fixture(scope='module')
def object_store():
    """moto's S3 server on a free port, with an empty bucket."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / 'moto_server'), '-H', '127.0.0.1', '-p', str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    s3 = boto3.client('s3', endpoint_url=endpoint, aws_access_key_id='testing', aws_secret_access_key='testing',
                      region_name='us-east-1')
    s3.create_bucket(Bucket=BUCKET)
    yield endpoint, s3
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)


def work_folders(tmp: Path) -> list[Path]:
    """The run folders a host's workers made in its temporary folder ``tmp`` (see ``conf.work_root``)."""
    return [path for root in tmp.glob('tom_education-runs-*') for path in root.iterdir()
            if WORKDIR_PATTERN.match(path.name)]


def s3_storages(endpoint: str) -> dict:
    return {
        'staticfiles': {'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'},
        'default': {'BACKEND': 'storages.backends.s3.S3Storage', 'OPTIONS': {
            'endpoint_url': endpoint, 'bucket_name': BUCKET, 'access_key': 'testing', 'secret_key': 'testing',
            'region_name': 'us-east-1', 'addressing_style': 'path', 'file_overwrite': False,
        }},
    }


def test_a_run_whose_host_dies_is_finished_by_the_other_host(object_store, worker, target, user, tmp_path, client):
    endpoint, s3 = object_store
    hosts, homes = [], []
    for name in ('host-a', 'host-b'):
        home = tmp_path / name
        (home / 'tmp').mkdir(parents=True)
        homes.append(home)
        hosts.append(Worker(name, f'{QUEUE}_faults', {
            'TMPDIR': str(home / 'tmp'), 'TOM_EDUCATION_VAR_DIR': str(home),
            'TOM_EDUCATION_TEST_S3_ENDPOINT': endpoint, 'TOM_EDUCATION_TEST_S3_BUCKET': BUCKET,
        }, concurrency=1))
    try:
        with override_settings(STORAGES=s3_storages(endpoint)):
            script = script_product(target, {
                'steps': [{'action': 'sleep_once', 'seconds': 120, 'marker': str(tmp_path / 'first-attempt')}],
                'outputs': [{'name': 'two-hosts-result.txt', 'content': 'made once', 'type': 'DataProduct'}],
            })
            process = services.start_process(user=user, pipeline='Fault scripted', target=target,
                                             input_files=[script])
            marker = tmp_path / 'first-attempt'
            wait_for(process, lambda current: marker.exists())  # attempt 1 is in the middle of its work
            victim = worker_running(process, hosts)
            survivor = next(host for host in hosts if host is not victim)
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait(timeout=10)
            wait_final_unwatched(process, timeout=90)
            assert process.state == ASYNC_STATUS_CREATED, process.failure_message
            assert int(process.worker.rpartition(':')[2]) in pool_of(survivor)
            (output,) = DataProduct.objects.filter(created_by_pipeline_processes=process)
            assert output.data.read() == b'made once'
    finally:
        for host in hosts:
            host.stop()
    keys = [item['Key'] for item in s3.list_objects_v2(Bucket=BUCKET).get('Contents', [])]
    assert len([key for key in keys if 'two-hosts-result' in key]) == 1, keys
    assert script.data.name in keys
    # nothing was read or written on either host's disk but in its own temporary directory
    for home in homes:
        assert not (home / 'data').exists() or not any((home / 'data').rglob('*.*'))
    assert not work_folders(homes[hosts.index(survivor)] / 'tmp')
    # the killed host left its work folder behind; when it comes back, its own periodic check removes it
    victim_tmp = homes[hosts.index(victim)] / 'tmp'
    assert work_folders(victim_tmp)
    back = Worker('host-a-again', f'{QUEUE}_faults', {
        'TMPDIR': str(victim_tmp), 'TOM_EDUCATION_VAR_DIR': str(homes[hosts.index(victim)]),
        'TOM_EDUCATION_TEST_S3_ENDPOINT': endpoint, 'TOM_EDUCATION_TEST_S3_BUCKET': BUCKET,
    }, concurrency=1)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and work_folders(victim_tmp):
            time.sleep(0.2)
        assert not work_folders(victim_tmp)
    finally:
        back.stop()
    client.force_login(user)
    page = client.get(f'/pipeline/{process.pk}').content.decode()
    assert process.attempts == 2
    assert f'<div>1: lost — the worker of attempt 1 ({process.losses[0]["worker"]}) stopped responding' in page
    assert f'<div>2: finished on {process.worker}</div>' in page
