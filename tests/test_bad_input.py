"""Bad input the docs' table (docs/bad_input.rst) lists that no other test file covers.

Every row of that table names the test that proves what the user sees.
"""
import pytest

from tests.conftest import make_product, script_product, wait_final
from tom_education import services
from tom_education.models import ASYNC_STATUS_CREATED, ASYNC_STATUS_FAILED

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(('content', 'reason'), [
    (b'SIMPLE  =                    T / not really: the header stops here', 'corrupt'),
    (b'', 'empty'),
])
def test_unreadable_fits_fails_naming_the_file(worker, target, user, content, reason):
    product = make_product(target, f'{reason}.fits', content)
    process = wait_final(services.start_process(
        user=user, pipeline='Light curve (aperture photometry)', target=target, input_files=[product]
    ))
    assert process.state == ASYNC_STATUS_FAILED
    assert process.failure_message.startswith(f'{services.product_file_name(product)} could not be read as a FITS file')
    assert process.traceback == ''


def test_huge_log_completes_and_is_served_in_pieces(worker, target, user, client):
    lines = 100_000
    process = wait_final(services.start_process(
        user=user, pipeline='Scripted', target=target,
        input_files=[script_product(target, {'steps': [{'action': 'log', 'count': lines, 'text': 'n'}]})],
    ), timeout=180)
    assert process.state == ASYNC_STATUS_CREATED
    client.force_login(user)
    page = client.get(f'/pipeline/{process.pk}').content.decode()
    assert page.count('<div class="lvl-20">n ') == 2000 - 2  # the last 2,000 lines: all but two are "n …"
    assert 'earlier lines not shown' in page
    feed = client.get(f'/pipeline/{process.pk}/log/', {'after': 10}).json()
    assert len(feed['lines']) == 1000 and feed['next'] == 1010
    download = client.get(f'/pipeline/{process.pk}/log.txt')
    text = b''.join(download.streaming_content).decode()
    assert text.count('\n') == process.log_lines.count() and f'n {lines - 1}\n' in text


# --- requests too large, too deep or too long: a clear 4xx in the channel's format, never a 500 ---------------

@pytest.fixture
def api(user):
    from tests.test_api import token_client

    return token_client(user)


@pytest.mark.parametrize('raw', [
    '[' * 5000 + ']' * 5000,
    '{"pipeline": "Scripted", "target": 1, "input_files": [], "flags": ' + '{"a": ' * 3000 + '1' + '}' * 3001,
    '{"pipeline": "Scripted", "target": 1, "input_files": [], "options": {"x": ' + '[' * 30 + ']' * 30 + '}}',
])
def test_deeply_nested_json_is_a_400_in_json(api, raw):
    response = api.post('/api/pipelineprocesses/', raw, content_type='application/json')
    assert response.status_code == 400
    assert response.json() == {
        'detail': 'JSON parse error - the body nests arrays or objects more than 20 levels deep.'
    }


def test_a_body_over_djangos_limit_is_a_413_in_json(api, settings):
    body = '{"pipeline": "' + 'x' * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + '"}'
    response = api.post('/api/pipelineprocesses/', body, content_type='application/json')
    assert response.status_code == 413
    assert 'larger than this TOM accepts' in response.json()['detail']


def test_huge_lists_and_names_get_short_messages(api, target, user, settings):
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    unknown = list(range(1_000_000, 1_100_000))
    response = api.post('/api/pipelineprocesses/', {'pipeline': 'Scripted', 'target': target.pk,
                                                     'input_files': unknown}, format='json')
    assert response.status_code == 400
    assert response.json() == {'input_files': ['Ensure this field has no more than 20000 elements.']}
    with pytest.raises(services.ProcessInputError) as caught:
        services.start_process(user=user, pipeline='Scripted', target=target, input_files=unknown[:15_000])
    assert caught.value.message == (
        'Data product(s) 1000000, 1000001, 1000002, 1000003, 1000004, 1000005, 1000006, 1000007, 1000008, 1000009 '
        'and 14990 more do not exist.'
    )
    long_name = 'p' * 100_000
    response = api.post('/api/pipelineprocesses/', {'pipeline': long_name, 'target': target.pk, 'input_files': []},
                        format='json')
    assert response.status_code == 400 and len(response.content) < 300
    with pytest.raises(services.ProcessInputError) as caught:
        services.start_process(user=user, pipeline=long_name, target=target, input_files=[])
    assert caught.value.message.startswith(f'Unknown pipeline "{"p" * 40}…". Registered pipelines: ')
    assert len(caught.value.message) < 1000


def test_the_tab_form_takes_ten_thousand_products_in_one_field(client, user, target, settings):
    """The finding: "Select all" on 1,200 products posted more fields than Django accepts and nothing showed."""
    from tom_dataproducts.models import DataProduct

    from tom_education.models import PipelineProcess

    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    DataProduct.objects.bulk_create(
        DataProduct(target=target, product_id=f'frame-{number}', data=f'frames/frame-{number}.fits')
        for number in range(10_000)
    )
    ids = ','.join(str(pk) for pk in DataProduct.objects.filter(target=target).values_list('pk', flat=True))
    client.force_login(user)
    response = client.post(f'/pipeline/target/{target.pk}/run/', {'pipeline': 'Example', 'product_ids': ids},
                           HTTP_HX_REQUEST='true')
    process = PipelineProcess.objects.get()
    assert response.status_code == 200 and response['HX-Redirect'] == f'/pipeline/{process.pk}'
    assert process.input_files.count() == 10_000


def test_a_form_body_with_too_many_fields_is_a_400_in_json(api, target):
    """The fuzzer's find: 2,000 input_files as form fields got Django's HTML 400 page."""
    response = api.post('/api/pipelineprocesses/', {'pipeline': 'Scripted', 'target': target.pk,
                                                     'input_files': list(range(1, 2001))}, format='multipart')
    assert response.status_code == 400
    assert 'DATA_UPLOAD_MAX_NUMBER_FIELDS' in response.json()['detail']
