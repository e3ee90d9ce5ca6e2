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
