"""/pipeline/<pk> and its log feed: permissions, escaping, cursor."""
import pytest
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm
from tom_targets.models import Target

from tests.conftest import make_product
from tom_education import services
from tom_education.models import ASYNC_STATUS_FAILED, PipelineProcess

# these tests look at the page of a run cancelled before it started: no worker may take it meanwhile
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures('no_worker_needed')]


@pytest.fixture
def private_process(user):
    target = Target.objects.create(name='Secret <b>', type=Target.SIDEREAL, ra=1, dec=2,
                                   permissions=Target.Permissions.PRIVATE)
    assign_perm('tom_targets.view_target', user, target)
    process = services.start_process(user=user, pipeline='Example', target=target,
                                     input_files=[make_product(target, '<script>x</script>.fits')])
    services.cancel_process(process)
    return process


def test_owner_sees_page_with_and_without_trailing_slash(client, user, private_process):
    client.force_login(user)
    for url in (f'/pipeline/{private_process.pk}', f'/pipeline/{private_process.pk}/'):
        response = client.get(url)
        assert response.status_code == 200
        assert 'role="status"' in response.content.decode()


def test_anonymous_is_sent_to_login(client, private_process):
    response = client.get(f'/pipeline/{private_process.pk}')
    assert response.status_code == 302 and '/accounts/login/' in response['Location']
    assert client.get(f'/pipeline/{private_process.pk}/log/').status_code == 302


def test_other_user_cannot_see_a_private_targets_process(client, other_user, private_process):
    client.force_login(other_user)
    # a process the user may not view answers exactly like one that does not exist
    for url in (f'/pipeline/{private_process.pk}', f'/pipeline/{private_process.pk}/log/'):
        assert client.get(url).status_code == 404
    assert client.get('/pipeline/999999').status_code == 404


def test_superuser_sees_everything(client, private_process):
    admin = get_user_model().objects.create_superuser('root', 'root@example.org', 'pw')
    client.force_login(admin)
    assert client.get(f'/pipeline/{private_process.pk}').status_code == 200


def test_user_text_is_escaped(client, user, private_process):
    PipelineProcess.objects.filter(pk=private_process.pk).update(
        status='<script>alert(1)</script>', failure_message='<img src=x onerror=alert(2)>', state=ASYNC_STATUS_FAILED
    )
    private_process.log('<script>alert(3)</script>')
    client.force_login(user)
    page = client.get(f'/pipeline/{private_process.pk}').content.decode()
    assert '<script>alert(' not in page and '<img src=x' not in page and '<script>x</script>' not in page
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in page
    assert '&lt;script&gt;alert(3)&lt;/script&gt;' in page


def test_log_feed_returns_only_lines_after_the_cursor(client, user, private_process):
    for number in range(5):
        private_process.log(f'line {number}')
    client.force_login(user)
    data = client.get(f'/pipeline/{private_process.pk}/log/?after=3').json()
    assert [line['message'] for line in data['lines']] == ['line 3', 'line 4']
    assert data['next'] == 5
    empty = client.get(f'/pipeline/{private_process.pk}/log/?after=5').json()
    assert empty['lines'] == [] and empty['next'] == 5 and empty['final'] is True


def test_huge_ids_in_page_urls_are_not_found(client, user):
    client.force_login(user)
    assert client.get('/pipeline/99999999999999999999').status_code == 404
    assert client.post('/pipeline/target/99999999999999999999/run/', {'pipeline': 'Example'}).status_code == 404
