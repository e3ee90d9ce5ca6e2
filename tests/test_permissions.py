"""Nothing leaks: every page and API endpoint of the app, for every kind of user, on visible, invisible and
missing objects. An invisible object answers exactly like a missing one, and no body names anything of it.
"""
import re
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.test import Client
from guardian.shortcuts import assign_perm
from rest_framework.authtoken.models import Token
from tom_dataproducts.models import DataProduct, DataProductGroup
from tom_targets.models import Target

from tests.conftest import make_product
from tom_education import services
from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess

pytestmark = pytest.mark.django_db(transaction=True)

MISSING = 999_999


@dataclass
class Run:
    """A finished process with one input, one output file and a log line, and the words that identify it."""

    process: PipelineProcess
    output: DataProduct
    secrets: list[str]


def finished_run(owner, target, word: str) -> Run:
    """A run as a worker leaves it, made directly so the matrix needs no worker."""
    product = make_product(target, f'{word}-input.fits')
    process = services.start_process(user=owner, pipeline='Example', target=target, input_files=[product])
    output = DataProduct(target=target, product_id=f'{process.identifier}_{word}-output.csv')
    output.data.save(f'{word}-output.csv', ContentFile(f'{word} result\n'), save=False)
    output.save()
    group = DataProductGroup.objects.create(name=f'{process.identifier} outputs')
    output.group.add(group)
    process.output_files.add(output)
    PipelineProcess.objects.filter(pk=process.pk).update(state=ASYNC_STATUS_CREATED, status=ASYNC_STATUS_CREATED,
                                                         group=group)
    process.log(f'{word} log line')
    process.refresh_from_db()
    return Run(process, output, [target.name, process.identifier, f'{word}-input', f'{word}-output', f'{word} log',
                                 f'{word} result'])


@pytest.fixture
def world(settings, user, other_user):
    """Alice (``user``) owns a private and a public target; Bob (``other_user``) a private one."""
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    alice, bob = user, other_user
    alice_private = Target.objects.create(name='Alpha Secretus', type=Target.SIDEREAL, ra=1, dec=2,
                                          permissions=Target.Permissions.PRIVATE)
    assign_perm('tom_targets.view_target', alice, alice_private)
    alice_public = Target.objects.create(name='Public Beacon', type=Target.SIDEREAL, ra=3, dec=4,
                                         permissions=Target.Permissions.PUBLIC)
    bob_private = Target.objects.create(name='Bravo Hiddenus', type=Target.SIDEREAL, ra=5, dec=6,
                                        permissions=Target.Permissions.PRIVATE)
    assign_perm('tom_targets.view_target', bob, bob_private)
    root = get_user_model().objects.create_superuser('root', 'root@example.org', 'root-password')
    return {
        'alice': alice, 'bob': bob, 'root': root,
        'alice_private': finished_run(alice, alice_private, 'alphasecret'),
        'alice_public': finished_run(alice, alice_public, 'publicbeacon'),
        'bob_private': finished_run(bob, bob_private, 'bravosecret'),
    }


#: endpoint name -> (channel, method, URL with {process}, {target}, {output})
ENDPOINTS = {
    'page': ('page', 'get', '/pipeline/{process}'),
    'log feed': ('page', 'get', '/pipeline/{process}/log/'),
    'log.txt': ('page', 'get', '/pipeline/{process}/log.txt'),
    'output download': ('page', 'get', '/pipeline/{process}/outputs/{output}/'),
    'cancel': ('page', 'post', '/pipeline/{process}/cancel/'),
    're-run': ('page', 'post', '/pipeline/{process}/rerun/'),
    'start (tab form)': ('page', 'post', '/pipeline/target/{target}/run/'),
    'tab process list': ('page', 'get', '/pipeline/target/{target}/processes/'),
    'api detail': ('api', 'get', '/api/pipelineprocesses/{process}/'),
    'api log': ('api', 'get', '/api/pipelineprocesses/{process}/log/'),
    'api output': ('api', 'get', '/api/pipelineprocesses/{process}/outputs/{output}/'),
    'api cancel': ('api', 'post', '/api/pipelineprocesses/{process}/cancel/'),
    'api re-run': ('api', 'post', '/api/pipelineprocesses/{process}/rerun/'),
    'api start': ('api', 'post', '/api/pipelineprocesses/'),
}

#: what a user who may view the object gets (owner or superuser; other users may not cancel)
ALLOWED = {
    'page': 200, 'log feed': 200, 'log.txt': 200, 'output download': 200, 'cancel': 302, 're-run': 302,
    'start (tab form)': 302, 'tab process list': 200, 'api detail': 200, 'api log': 200, 'api output': 200,
    'api cancel': 200, 'api re-run': 201, 'api start': 201,
}


def request(user, endpoint: str, run: Run | None):
    """Send the endpoint's request for ``run`` (None: objects that do not exist) as ``user`` (None: anonymous)."""
    channel, method, template = ENDPOINTS[endpoint]
    ids = {'process': MISSING, 'target': MISSING, 'output': MISSING, 'input': MISSING}
    if run is not None:
        ids = {'process': run.process.pk, 'target': run.process.target_id, 'output': run.output.pk,
               'input': run.process.input_files.get().pk}
    url = template.format(**ids)
    client = Client()
    if channel == 'api' and user is not None:
        client.defaults['HTTP_AUTHORIZATION'] = f'Token {Token.objects.get_or_create(user=user)[0].key}'
    elif user is not None:
        client.force_login(user)
    if endpoint == 'start (tab form)':
        return client.post(url, {'pipeline': 'Example', 'product_ids': str(ids['input'])}), url, ids
    if endpoint == 'api start':
        body = {'pipeline': 'Example', 'target': ids['target'], 'input_files': [ids['input']]}
        return client.post(url, body, content_type='application/json'), url, ids
    return getattr(client, method)(url), url, ids


def body(response) -> str:
    if getattr(response, 'streaming', False):
        return b''.join(response.streaming_content).decode(errors='replace')
    return response.content.decode(errors='replace')


def normalised(response, url: str, ids: dict) -> str:
    """The body without what differs by request alone (the URL, the target's id in a message, the CSRF token),
    to compare an invisible object's answer with a missing one's."""
    text = body(response).replace(url, 'URL').replace(f'Target {ids["target"]} ', 'Target ID ')
    return re.sub(r'name="csrfmiddlewaretoken" value="\w+"', 'CSRF', text)


def assert_no_secret(response, run: Run, case: str):
    text = body(response)
    for secret in run.secrets:
        assert secret not in text, f'{case}: the body names {secret!r}'


@pytest.mark.parametrize('endpoint', ENDPOINTS)
def test_invisible_objects_answer_exactly_like_missing_ones(world, endpoint):
    for viewer, invisible in (('bob', 'alice_private'), ('alice', 'bob_private')):
        run = world[invisible]
        hidden, hidden_url, hidden_ids = request(world[viewer], endpoint, run)
        missing, missing_url, missing_ids = request(world[viewer], endpoint, None)
        case = f'{endpoint} as {viewer} on {invisible}'
        # starting through the API names the target field: 400, for a missing target as for a hidden one
        expected = 400 if endpoint == 'api start' else 404
        assert hidden.status_code == expected, case
        assert missing.status_code == expected, case
        assert normalised(hidden, hidden_url, hidden_ids) == normalised(missing, missing_url, missing_ids), case
        assert_no_secret(hidden, run, case)
    # nothing was started, cancelled or re-run on objects the user may not view
    assert PipelineProcess.objects.count() == 3
    assert not PipelineProcess.objects.filter(cancel_requested=True).exists()


@pytest.mark.parametrize('endpoint', ENDPOINTS)
def test_owner_and_superuser_reach_what_they_may_view(world, endpoint):
    for viewer in ('alice', 'root'):
        response, url, _ = request(world[viewer], endpoint, world['alice_private'])
        assert response.status_code == ALLOWED[endpoint], f'{endpoint} as {viewer}: {url} {body(response)[:300]}'


@pytest.mark.parametrize('endpoint', ENDPOINTS)
def test_other_users_see_public_runs_but_cannot_cancel_them(world, endpoint):
    response, url, _ = request(world['bob'], endpoint, world['alice_public'])
    expected = {'cancel': 302, 'api cancel': 403}.get(endpoint, ALLOWED[endpoint])
    assert response.status_code == expected, f'{url}: {body(response)[:300]}'
    if endpoint == 'cancel':  # tom_base turns the 403 into a redirect to the login page
        assert response['Location'].startswith('/accounts/login/')
    assert not PipelineProcess.objects.filter(cancel_requested=True).exists()


@pytest.mark.parametrize('endpoint', ENDPOINTS)
def test_anonymous_users_go_to_login_or_get_401_whatever_the_object(world, endpoint):
    channel = ENDPOINTS[endpoint][0]
    for run in (world['alice_private'], world['alice_public'], None):
        response, url, _ = request(None, endpoint, run)
        if channel == 'page':
            assert response.status_code == 302 and response['Location'].startswith('/accounts/login/'), url
        else:
            assert response.status_code == 401, url
        if run is not None:
            assert_no_secret(response, run, f'{endpoint} anonymous')
    assert PipelineProcess.objects.count() == 3


def test_lists_name_and_count_only_visible_runs(world):
    bob, alice_private = world['bob'], world['alice_private']
    client = Client()
    client.force_login(bob)
    public_target = world['alice_public'].process.target_id
    for url in ('/pipelines/', '/pipelines/?state=created', f'/pipeline/target/{public_target}/processes/'):
        response = client.get(url)
        assert response.status_code == 200
        assert_no_secret(response, alice_private, url)
    api = Client(HTTP_AUTHORIZATION=f'Token {Token.objects.get_or_create(user=bob)[0].key}')
    listed = api.get('/api/pipelineprocesses/').json()
    assert listed['count'] == 2  # Bob's own run and Alice's public one
    assert {entry['identifier'] for entry in listed['results']} == {
        world['bob_private'].process.identifier, world['alice_public'].process.identifier,
    }
    filtered = api.get('/api/pipelineprocesses/', {'target': alice_private.process.target_id}).json()
    assert filtered['count'] == 0
    assert_no_secret(api.get('/api/pipelineprocesses/'), alice_private, 'api list')


def test_a_product_added_to_a_runs_group_is_not_its_output(world):
    """The finding: Bob adds Alice's private product to his run's group with tom_base's form, then downloads it."""
    bob, alice_output = world['bob'], world['alice_private'].output
    bob_run = world['bob_private'].process
    client = Client()
    client.force_login(bob)
    response = client.post('/dataproducts/data/group/add/', {'products': [alice_output.pk], 'group': bob_run.group_id})
    assert response.status_code in (200, 302)
    assert bob_run.group.dataproduct_set.filter(pk=alice_output.pk).exists(), 'tom_base no longer allows the trick'
    api = Client(HTTP_AUTHORIZATION=f'Token {Token.objects.get_or_create(user=bob)[0].key}')
    for url in (f'/api/pipelineprocesses/{bob_run.pk}/outputs/{alice_output.pk}/',
                f'/pipeline/{bob_run.pk}/outputs/{alice_output.pk}/'):
        leaked = (api if url.startswith('/api') else client).get(url)
        assert leaked.status_code == 404, url
        assert_no_secret(leaked, world['alice_private'], url)
    detail = api.get(f'/api/pipelineprocesses/{bob_run.pk}/').json()
    assert [product['id'] for product in detail['outputs']['data_products']] == [world['bob_private'].output.pk]
    page = client.get(f'/pipeline/{bob_run.pk}')
    assert_no_secret(page, world['alice_private'], 'process page')
    # even a superuser's view of Bob's run does not count Alice's product as its output
    root = Client()
    root.force_login(world['root'])
    assert root.get(f'/pipeline/{bob_run.pk}/outputs/{alice_output.pk}/').status_code == 404


def test_pages_link_outputs_through_the_checked_download_never_the_media_url(world, settings):
    run = world['alice_private']
    client = Client()
    client.force_login(world['alice'])
    page = body(client.get(f'/pipeline/{run.process.pk}'))
    download = f'/pipeline/{run.process.pk}/outputs/{run.output.pk}/'
    assert f'href="{download}"' in page
    assert settings.MEDIA_URL + run.output.data.name not in page
    response = client.get(download)
    assert response['Content-Disposition'] == f'attachment; filename="{services.product_file_name(run.output)}"'
    assert response['Content-Type'] == 'text/csv; charset=utf-8'
    assert response['X-Content-Type-Options'] == 'nosniff'
    assert body(response) == 'alphasecret result\n'
    assert Client().get(download).status_code == 302  # anonymous: to the login page


@pytest.mark.parametrize(('name', 'content_type', 'disposition'), [
    ('plot.png', 'image/png', 'inline'),
    ('movie.mp4', 'video/mp4', 'inline'),
    ('notes.txt', 'text/plain; charset=utf-8', 'inline'),
    ('page.html', 'text/html; charset=utf-8', 'attachment'),
    ('drawing.svg', 'image/svg+xml', 'attachment'),
    ('frame.fits', 'application/fits', 'attachment'),
])
def test_downloads_show_images_and_movies_inline_and_never_run_markup(world, name, content_type, disposition):
    run = world['alice_private']
    product = make_product(run.process.target, name, b'content')
    run.process.output_files.add(product)
    client = Client()
    client.force_login(world['alice'])
    response = client.get(f'/pipeline/{run.process.pk}/outputs/{product.pk}/')
    assert response.status_code == 200
    assert response['Content-Type'] == content_type
    assert response['Content-Disposition'].startswith(disposition)


def test_an_output_whose_file_is_gone_answers_404_with_a_message_and_no_path(world, settings):
    run = world['alice_private']
    run.output.data.storage.delete(run.output.data.name)
    client = Client()
    client.force_login(world['alice'])
    page = client.get(f'/pipeline/{run.process.pk}/outputs/{run.output.pk}/')
    api = Client(HTTP_AUTHORIZATION=f'Token {Token.objects.get_or_create(user=world["alice"])[0].key}')
    answer = api.get(f'/api/pipelineprocesses/{run.process.pk}/outputs/{run.output.pk}/')
    assert page.status_code == 404 and 'missing from the TOM\'s storage' in body(page)
    assert answer.status_code == 404 and 'missing from the TOM\'s storage' in answer.json()['detail']
    for response in (page, answer):
        assert str(settings.MEDIA_ROOT) not in body(response)


def test_with_per_product_permissions_hidden_inputs_are_not_named(world, settings):
    """TARGET_PERMISSIONS_ONLY = False: seeing a public run does not show inputs one may not view."""
    settings.TARGET_PERMISSIONS_ONLY = False
    run = world['alice_public']
    client = Client()
    client.force_login(world['bob'])
    page = body(client.get(f'/pipeline/{run.process.pk}'))
    assert 'publicbeacon-input' not in page
    api = Client(HTTP_AUTHORIZATION=f'Token {Token.objects.get_or_create(user=world["bob"])[0].key}')
    assert api.get(f'/api/pipelineprocesses/{run.process.pk}/').json()['input_files'] == []
    assign_perm('tom_dataproducts.view_dataproduct', world['bob'], run.process.input_files.get())
    assert 'publicbeacon-input' in body(client.get(f'/pipeline/{run.process.pk}'))


def test_submission_target_check_agrees_with_tom_base_for_every_kind_of_user_and_target(db):
    """``services.may_view_target`` is tom_base's ``targets_for_user`` for one target, computed more cheaply:
    for every kind of user and every access level, with permissions held directly, through a group, globally
    or not at all, the two give the same answer; except that a deactivated account sees nothing."""
    from django.contrib.auth.models import AnonymousUser, Group
    from tom_targets.permissions import targets_for_user

    make_user = get_user_model().objects.create_user
    targets = {
        level: Target.objects.create(name=f'{level} star', type=Target.SIDEREAL, ra=1, dec=2, permissions=level)
        for level in Target.Permissions.values
    }
    direct, grouped, global_holder = make_user('direct'), make_user('grouped'), make_user('global')
    inactive = make_user('inactive', is_active=False)
    readers = Group.objects.create(name='readers')
    grouped.groups.add(readers)
    for target in targets.values():
        assign_perm('tom_targets.view_target', direct, target)
        assign_perm('tom_targets.view_target', readers, target)
        assign_perm('tom_targets.view_target', inactive, target)
    assign_perm('tom_targets.view_target', global_holder)
    users = [AnonymousUser(), make_user('nobody'), direct, grouped, global_holder, inactive,
             get_user_model().objects.create_superuser('root', 'root@example.org', 'root-password')]
    answers = set()
    for each in users:
        for level, target in targets.items():
            expected = targets_for_user(each, Target.objects.filter(pk=target.pk), 'view_target').exists() \
                and (each.is_anonymous or each.is_active)
            fresh = each if each.is_anonymous else get_user_model().objects.get(pk=each.pk)  # no cached perms
            assert services.may_view_target(fresh, target) == expected, (each.username, level)
            answers.add(expected)
    assert answers == {True, False}
