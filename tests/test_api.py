"""The REST API with token authentication, against a real worker; and a schema-driven fuzzer on a live server."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from tom_targets.models import Target

from tests.conftest import ROOT, make_product, script_product
from tom_education.models import ASYNC_STATUS_CANCELLED, ASYNC_STATUS_FAILED, PipelineProcess

pytestmark = pytest.mark.django_db(transaction=True)


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f'Token {Token.objects.get_or_create(user=user)[0].key}')
    return client


@pytest.fixture
def api(user):
    return token_client(user)


@pytest.fixture
def other_api(other_user):
    return token_client(other_user)


@pytest.fixture
def no_worker(settings):
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'


def follow(api, process_id, timeout=60):
    """Read the log by cursor until the process is final, as a script would."""
    cursor, lines = 0, []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = api.get(f'/api/pipelineprocesses/{process_id}/log/', {'after': cursor}).json()
        lines += [line['message'] for line in page['lines']]
        cursor = page['next']
        if page['final']:
            return page, lines
        time.sleep(0.2)
    raise AssertionError(f'process {process_id} did not finish: {lines}')


def test_lists_pipelines_with_flags_and_suffixes(api):
    pipelines = {entry['name']: entry for entry in api.get('/api/pipelines/').json()}
    assert pipelines['Flag demo']['flags'] == [
        {'name': 'some_flag', 'default': True, 'long_name': 'Long name to be displayed in the UI'},
        {'name': 'another_flag', 'default': False, 'long_name': 'Another flag'},
    ]
    assert pipelines['Example']['allowed_suffixes'] == ['.fits', '.fz']
    assert pipelines['Example']['short_name'] == 'example'


def test_start_follow_and_download(api, worker, target):
    script = script_product(target, {
        'steps': [{'action': 'log', 'count': 3, 'text': 'step'}],
        'outputs': [{'name': 'result.txt', 'content': 'the result', 'type': 'DataProduct'}],
    })
    response = api.post('/api/pipelineprocesses/', {
        'pipeline': 'Scripted', 'target': target.pk, 'input_files': [script.pk], 'flags': {'shout': True},
    }, format='json')
    assert response.status_code == 201, response.content
    created = response.json()
    assert created['state'] == 'pending' and created['flags'] == {'shout': True}
    assert created['created_by'] == 'owner' and created['page'] == f'/pipeline/{created["id"]}'

    page, lines = follow(api, created['id'])
    assert page['state'] == 'created'
    assert ['step 0', 'step 1', 'step 2'] == [line for line in lines if line.startswith('step')]
    assert 'SHOUTING' in lines

    detail = api.get(f'/api/pipelineprocesses/{created["id"]}/').json()
    (output,) = detail['outputs']['data_products']
    # the storage adds a suffix when an earlier test left a result.txt at the same path
    assert re.fullmatch(r'result(_\w{7})?\.txt', output['file_name'])
    download = api.get(output['download'])
    assert download.status_code == 200
    assert b''.join(download.streaming_content) == b'the result'


@pytest.mark.parametrize(('body', 'field', 'message'), [
    ({'pipeline': 'Nope'}, 'pipeline', 'Unknown pipeline "Nope"'),
    ({'flags': {'loud': True}}, 'flags', 'Unknown flag "loud"'),
    ({'flags': {'shout': 'yes'}}, 'flags', 'Flag "shout" must be true or false'),
    ({'input_files': []}, 'input_files', 'Select at least one data product'),
    ({'input_files': ['{image}']}, 'input_files', 'cannot be used: this pipeline accepts only files ending in .json'),
    ({'input_files': ['{foreign}']}, 'input_files', 'do not belong to target'),
    ({'target': 999999}, 'target', 'does not exist or you may not view it'),
    ({'target': 'abc'}, 'target', 'A valid integer is required.'),
    ({'input_files': 'x'}, 'input_files', 'Expected a list of items'),
])
def test_bad_input_answers_400_naming_the_field(api, target, no_worker, body, field, message):
    elsewhere = Target.objects.create(name='Elsewhere', type=Target.SIDEREAL, ra=0, dec=0,
                                      permissions=Target.Permissions.PUBLIC)
    ids = {'{image}': make_product(target, 'image.fits').pk, '{foreign}': script_product(elsewhere, {}).pk}
    request = {'pipeline': 'Scripted', 'target': target.pk, 'input_files': [script_product(target, {}).pk], **body}
    if isinstance(request['input_files'], list):
        request['input_files'] = [ids.get(item, item) for item in request['input_files']]
    response = api.post('/api/pipelineprocesses/', request, format='json')
    assert response.status_code == 400
    assert message in ' '.join(response.json()[field])
    assert not PipelineProcess.objects.exists()


def test_queue_down_answers_503_with_the_failed_process(api, target, settings):
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unreachable_broker.app'
    response = api.post('/api/pipelineprocesses/', {
        'pipeline': 'Scripted', 'target': target.pk, 'input_files': [script_product(target, {}).pk],
    }, format='json')
    assert response.status_code == 503
    assert response.json()['detail'].startswith('The pipeline queue is unavailable')
    assert response.json()['process']['state'] == ASYNC_STATUS_FAILED
    assert PipelineProcess.objects.get().state == ASYNC_STATUS_FAILED


def test_another_users_token_cannot_see_or_touch_a_private_process(api, other_api, private_target, no_worker):
    created = api.post('/api/pipelineprocesses/', {
        'pipeline': 'Scripted', 'target': private_target.pk, 'input_files': [script_product(private_target, {}).pk],
    }, format='json').json()
    base = f'/api/pipelineprocesses/{created["id"]}/'
    for response in (other_api.get(base), other_api.get(base + 'log/'), other_api.post(base + 'cancel/'),
                     other_api.post(base + 'rerun/'), other_api.get(base + 'outputs/1/')):
        assert response.status_code == 404
    assert other_api.get('/api/pipelineprocesses/').json()['results'] == []
    assert other_api.get('/api/pipelineprocesses/', {'target': private_target.pk}).json()['results'] == []
    # the same answer as for a target that does not exist: its existence is not leaked
    refused = other_api.post('/api/pipelineprocesses/', {
        'pipeline': 'Scripted', 'target': private_target.pk, 'input_files': [1]}, format='json')
    missing = other_api.post('/api/pipelineprocesses/', {
        'pipeline': 'Scripted', 'target': 999999, 'input_files': [1]}, format='json')
    assert refused.json()['target'][0].replace(str(private_target.pk), 'N') == \
        missing.json()['target'][0].replace('999999', 'N')
    assert PipelineProcess.objects.get().state == 'pending'


def test_cancel_is_for_the_owner_rerun_for_any_viewer(api, other_api, target, no_worker):
    created = api.post('/api/pipelineprocesses/', {
        'pipeline': 'Scripted', 'target': target.pk, 'input_files': [script_product(target, {}).pk],
        'flags': {'shout': True}}, format='json').json()
    base = f'/api/pipelineprocesses/{created["id"]}/'
    assert other_api.post(base + 'cancel/').status_code == 403
    cancelled = api.post(base + 'cancel/')
    assert cancelled.status_code == 200 and cancelled.json()['state'] == ASYNC_STATUS_CANCELLED
    rerun = other_api.post(base + 'rerun/')
    assert rerun.status_code == 201
    assert rerun.json()['flags'] == {'shout': True} and rerun.json()['created_by'] == 'other'
    assert rerun.json()['input_files'] == created['input_files']


def test_filters_and_pagination(api, target, no_worker):
    script = script_product(target, {})
    for _ in range(3):
        api.post('/api/pipelineprocesses/', {'pipeline': 'Scripted', 'target': target.pk,
                                             'input_files': [script.pk]}, format='json')
    api.post('/api/pipelineprocesses/', {'pipeline': 'Example', 'target': target.pk,
                                         'input_files': [make_product(target, 'a.fits').pk]}, format='json')
    first = PipelineProcess.objects.order_by('pk').first()
    api.post(f'/api/pipelineprocesses/{first.pk}/cancel/')
    everything = api.get('/api/pipelineprocesses/', {'limit': 2}).json()
    assert everything['count'] == 4 and len(everything['results']) == 2 and everything['next']
    assert api.get('/api/pipelineprocesses/', {'pipeline': 'Example'}).json()['count'] == 1
    assert api.get('/api/pipelineprocesses/', {'state': 'cancelled'}).json()['count'] == 1
    assert api.get('/api/pipelineprocesses/', {'target': target.pk}).json()['count'] == 4
    assert api.get('/api/pipelineprocesses/', {'state': 'sleeping'}).status_code == 400


def test_log_cursor_and_limits(api, target, no_worker):
    created = api.post('/api/pipelineprocesses/', {'pipeline': 'Scripted', 'target': target.pk,
                                                   'input_files': [script_product(target, {}).pk]},
                       format='json').json()
    process = PipelineProcess.objects.get(pk=created['id'])
    for number in range(5):
        process.log(f'line {number}')
    page = api.get(f'/api/pipelineprocesses/{process.pk}/log/', {'after': 1, 'limit': 2}).json()
    assert [line['message'] for line in page['lines']] == ['line 1', 'line 2'] and page['next'] == 3
    assert page['final'] is False and page['state'] == 'pending'
    assert api.get(f'/api/pipelineprocesses/{process.pk}/log/', {'limit': 0}).status_code == 400
    assert api.get(f'/api/pipelineprocesses/{process.pk}/log/', {'after': 'x'}).status_code == 400


def test_anonymous_requests_are_refused():
    client = APIClient()
    assert client.get('/api/pipelines/').status_code in (401, 403)
    assert client.post('/api/pipelineprocesses/', {}, format='json').status_code in (401, 403)


def test_schema_is_openapi_3_and_describes_every_endpoint(api):
    schema = json.loads(api.get('/api/pipeline-schema/', HTTP_ACCEPT='application/vnd.oai.openapi+json').content)
    assert schema['openapi'].startswith('3.')
    assert set(schema['paths']) == {
        '/api/pipelines/', '/api/pipelineprocesses/', '/api/pipelineprocesses/{id}/',
        '/api/pipelineprocesses/{id}/log/', '/api/pipelineprocesses/{id}/cancel/',
        '/api/pipelineprocesses/{id}/rerun/', '/api/pipelineprocesses/{id}/outputs/{product_pk}/',
        '/api/pipelinerules/', '/api/pipelinerules/{id}/',
    }


def test_fuzzing_the_live_api_finds_no_server_error_and_no_schema_violation(live_server, user, target, no_worker):
    """Schemathesis generates requests from the schema alone and checks every answer against it."""
    token = Token.objects.get_or_create(user=user)[0].key
    script_product(target, {})
    make_product(target, 'frame.fits')
    report = ROOT / 'var' / 'schemathesis'
    command = [
        sys.executable, '-m', 'schemathesis.cli', 'run', f'{live_server.url}/api/pipeline-schema/',
        '--header', f'Authorization: Token {token}',
        '--checks', 'not_a_server_error,response_schema_conformance,status_code_conformance,'
                    'content_type_conformance',
        '--phases', 'examples,coverage,fuzzing', '--max-examples', os.environ.get('TOM_EDUCATION_FUZZ_EXAMPLES', '40'),
        '--workers', '1', '--request-timeout', '30', '--report', 'junit', '--report-dir', str(report),
        '--seed', '1',
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def test_the_documented_client_example_runs(live_server, worker, user, target, tmp_path, capsys):
    """docs/examples/api_client.py, the API page's example, against a live server and a real worker."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('api_client', ROOT / 'docs' / 'examples' / 'api_client.py')
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    script = script_product(target, {
        'steps': [{'action': 'log', 'count': 2, 'text': 'working'}],
        'outputs': [{'name': 'table.csv', 'content': 'a,b\n1,2\n', 'type': 'DataProduct'}],
    })
    token = Token.objects.get_or_create(user=user)[0].key
    process = example.run_pipeline(live_server.url, token, 'Scripted', target.pk, [script.pk],
                                   flags={'shout': True}, download_to=tmp_path)
    assert process['state'] == 'created'
    assert (tmp_path / 'table.csv').read_text() == 'a,b\n1,2\n'
    printed = capsys.readouterr().out
    assert 'working 0' in printed and 'working 1' in printed and 'SHOUTING' in printed


@pytest.mark.parametrize('url', [
    '/api/pipelineprocesses/99999999999999999999/',
    '/api/pipelineprocesses/99999999999999999999/log/',
    '/api/pipelineprocesses/1/outputs/99999999999999999999/',
    '/api/pipelineprocesses/-1/',
    '/api/pipelineprocesses/1.5/',
])
def test_ids_no_database_can_hold_are_not_found_not_server_errors(api, url):
    assert api.get(url).status_code == 404


def test_filter_by_a_huge_target_id_is_a_clear_400(api):
    response = api.get('/api/pipelineprocesses/', {'target': '1892447295707480722505728'})
    assert response.status_code == 400 and 'whole number' in response.json()['target'][0]
