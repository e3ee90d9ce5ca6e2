"""The Pipelines tab of the target page, the run form, the process list, cancel and re-run."""
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from tests.conftest import make_product, script_product
from tom_education import services
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_FAILED,
    ASYNC_STATUS_PENDING,
    PipelineProcess,
)

# these tests look at pages, not at runs
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures('no_worker_needed')]


def run_url(target):
    return f'/pipeline/target/{target.pk}/run/'


def test_target_page_has_the_pipelines_tab_with_the_form(client, user, target):
    image = make_product(target, 'frame.fits')
    client.force_login(user)
    page = client.get(f'/targets/{target.pk}/').content.decode()
    assert 'id="pipelines-tab"' in page and 'id="pipelines"' in page
    assert '<label for="tom-education-pipeline" class="form-label">Pipeline</label>' in page
    assert f'value="{image.pk}" id="tom-education-product-{image.pk}"' in page
    assert f'>{services.product_file_name(image)}</label>' in page
    # flags are labelled with their long_name, defaults pre-set
    assert re.search(r'name="flag::Flag demo::some_flag" id="[^"]+" checked>\s*<label[^>]*>Long name to be '
                     r'displayed in the UI</label>', page)
    assert re.search(r'name="flag::Flag demo::another_flag" id="[^"]+">\s*<label', page)
    assert 'data-suffixes="[&quot;.fits&quot;, &quot;.fz&quot;]"' in page
    assert '>Run pipeline</button>' in page


def test_tab_works_with_the_app_listed_before_tom_dataproducts(client, user, target, settings):
    apps = [app for app in settings.INSTALLED_APPS if app != 'tom_education']
    apps.insert(apps.index('tom_dataproducts'), 'tom_education')
    with override_settings(INSTALLED_APPS=apps):
        client.force_login(user)
        page = client.get(f'/targets/{target.pk}/').content.decode()
    assert 'id="pipelines-tab"' in page and '>Run pipeline</button>' in page


def test_run_redirects_to_the_process_page(client, user, target):
    product = make_product(target, 'a.fits')
    client.force_login(user)
    response = client.post(run_url(target), {
        'pipeline': 'Flag demo', 'products': [product.pk], 'flag::Flag demo::another_flag': 'on',
    })
    process = PipelineProcess.objects.get()
    assert response.status_code == 302 and response['Location'] == f'/pipeline/{process.pk}'
    # an unchecked box is False, a checked one True
    assert process.flag_values == {'some_flag': False, 'another_flag': True}
    assert process.created_by == user and process.state == ASYNC_STATUS_PENDING


def test_htmx_run_navigates_the_whole_page(client, user, target):
    product = make_product(target, 'a.fits')
    client.force_login(user)
    response = client.post(run_url(target), {'pipeline': 'Example', 'products': [product.pk]},
                           HTTP_HX_REQUEST='true')
    assert response['HX-Redirect'] == PipelineProcess.objects.get().get_absolute_url()


@pytest.mark.parametrize(('post', 'message'), [
    ({'pipeline': 'Flag demo'}, 'Select at least one data product to run the pipeline on.'),
    ({'pipeline': 'Example', 'products': ['{txt}']}, '{txt_name} cannot be used: this pipeline accepts only files '
                                                     'ending in .fits, .fz.'),
    ({'pipeline': 'Flag demo', 'products': ['{fits}'], 'flag::Flag demo::bogus': 'on'}, 'Unknown flag "bogus"'),
    ({'pipeline': 'No such', 'products': ['{fits}']}, 'Unknown pipeline "No such"'),
])
def test_errors_show_inline_and_keep_the_choices(client, user, target, post, message):
    fits = make_product(target, 'a.fits')
    txt = make_product(target, 'notes.txt', 'x')
    data = {key: [item.format(fits=fits.pk, txt=txt.pk) for item in value] if isinstance(value, list) else value
            for key, value in post.items()}
    message = message.format(txt_name=services.product_file_name(txt))
    client.force_login(user)
    response = client.post(run_url(target), {**data, 'flag::Flag demo::another_flag': 'on'}, HTTP_HX_REQUEST='true')
    fragment = response.content.decode()
    assert response.status_code == 200
    assert 'id="tom-education-run-error"' in fragment and message.replace('"', '&quot;') in fragment
    assert not PipelineProcess.objects.exists()
    for product_pk in data.get('products', []):
        assert f'value="{product_pk}" id="tom-education-product-{product_pk}" checked' in fragment
    if data['pipeline'] == 'Flag demo':
        assert '<option value="Flag demo" data-suffixes="[]" selected>' in fragment
        assert re.search(r'name="flag::Flag demo::another_flag" id="[^"]+" checked>', fragment)


def test_without_htmx_errors_render_a_page_with_the_form(client, user, target):
    client.force_login(user)
    response = client.post(run_url(target), {'pipeline': 'Example'})
    assert response.status_code == 400
    assert 'Select at least one data product' in response.content.decode()


def test_queue_unavailable_shows_inline(client, user, target, settings):
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unreachable_broker.app'
    product = make_product(target, 'a.fits')
    client.force_login(user)
    fragment = client.post(run_url(target), {'pipeline': 'Example', 'products': [product.pk]},
                           HTTP_HX_REQUEST='true').content.decode()
    assert 'The pipeline queue is unavailable' in fragment
    assert PipelineProcess.objects.get().state == ASYNC_STATUS_FAILED


def test_users_who_cannot_view_the_target_cannot_run(client, other_user, private_target):
    product = make_product(private_target, 'a.fits')
    client.post(run_url(private_target), {'pipeline': 'Example', 'products': [product.pk]})
    client.force_login(other_user)
    response = client.post(run_url(private_target), {'pipeline': 'Example', 'products': [product.pk]})
    # exactly like a target that does not exist: the page does not tell that it does
    assert response.status_code == 404
    assert client.get(f'/pipeline/target/{private_target.pk}/processes/').status_code == 404
    assert not PipelineProcess.objects.exists()


def test_anonymous_users_are_sent_to_login(client, target):
    for response in (client.get('/pipelines/'), client.post(run_url(target), {'pipeline': 'Example'})):
        assert response.status_code == 302 and response['Location'].startswith('/accounts/login/')


def test_process_list_shows_only_visible_processes_and_filters(client, user, other_user, target, private_target):
    public = services.start_process(user=user, pipeline='Scripted', target=target,
                                    input_files=[script_product(target, {})])
    private = services.start_process(user=user, pipeline='Example', target=private_target,
                                     input_files=[make_product(private_target, 'a.fits')])
    PipelineProcess.objects.filter(pk=public.pk).update(state=ASYNC_STATUS_CREATED)
    client.force_login(other_user)
    page = client.get('/pipelines/').content.decode()
    assert f'href="/pipeline/{public.pk}"' in page and f'href="/pipeline/{private.pk}"' not in page
    client.force_login(user)
    assert f'href="/pipeline/{private.pk}"' in client.get('/pipelines/').content.decode()
    filtered = client.get('/pipelines/', {'state': 'created'}).content.decode()
    assert f'href="/pipeline/{public.pk}"' in filtered and f'href="/pipeline/{private.pk}"' not in filtered
    by_pipeline = client.get('/pipelines/', {'pipeline': 'Example'}).content.decode()
    assert f'href="/pipeline/{private.pk}"' in by_pipeline and f'href="/pipeline/{public.pk}"' not in by_pipeline


def test_process_list_is_paginated(client, user, target):
    product = script_product(target, {})
    for _ in range(30):
        services.start_process(user=user, pipeline='Scripted', target=target, input_files=[product])
    client.force_login(user)
    first = client.get('/pipelines/').content.decode()
    assert first.count('href="/pipeline/') == 25 and 'Page 1 of 2' in first
    assert client.get('/pipelines/', {'page': 2}).content.decode().count('href="/pipeline/') == 5


def test_target_process_list_refreshes_only_while_active(client, user, target):
    process = services.start_process(user=user, pipeline='Scripted', target=target,
                                     input_files=[script_product(target, {})])
    client.force_login(user)
    url = f'/pipeline/target/{target.pk}/processes/'
    assert 'hx-trigger="every 2s"' in client.get(url).content.decode()
    PipelineProcess.objects.filter(pk=process.pk).update(state=ASYNC_STATUS_CREATED)
    assert 'hx-trigger' not in client.get(url).content.decode()


def test_owner_cancels_others_cannot(client, user, other_user, target):
    process = services.start_process(user=user, pipeline='Scripted', target=target,
                                     input_files=[script_product(target, {})])
    client.force_login(other_user)
    assert 'id="tom-education-cancel"' not in client.get(f'/pipeline/{process.pk}').content.decode()
    response = client.post(f'/pipeline/{process.pk}/cancel/')
    assert response.status_code == 302 and response['Location'].startswith('/accounts/login/')
    client.force_login(user)
    assert 'id="tom-education-cancel"' in client.get(f'/pipeline/{process.pk}').content.decode()
    assert client.post(f'/pipeline/{process.pk}/cancel/')['Location'] == f'/pipeline/{process.pk}'
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_CANCELLED


def test_rerun_starts_the_same_inputs_and_flags(client, user, other_user, target):
    original = services.start_process(user=user, pipeline='Scripted', target=target,
                                      input_files=[script_product(target, {})], flags={'shout': True})
    services.cancel_process(original)
    client.force_login(other_user)
    page = client.get(f'/pipeline/{original.pk}').content.decode()
    assert 'id="tom-education-rerun"' in page
    response = client.post(f'/pipeline/{original.pk}/rerun/')
    rerun = PipelineProcess.objects.exclude(pk=original.pk).get()
    assert response['Location'] == f'/pipeline/{rerun.pk}'
    assert rerun.flag_values == {'shout': True} and rerun.created_by == other_user
    assert list(rerun.input_files.all()) == list(original.input_files.all())


def test_user_controlled_text_is_escaped_everywhere(client, user, target, settings):
    settings.TOM_EDUCATION_PIPELINES = {**settings.TOM_EDUCATION_PIPELINES, '<script>p</script>':
                                        'tests.bad_pipelines.HostileFlag'}
    make_product(target, '<script>f</script>.fits')
    process = services.start_process(user=user, pipeline='<script>p</script>', target=target,
                                     input_files=[make_product(target, 'b.fits')])
    PipelineProcess.objects.filter(pk=process.pk).update(status='<script>s</script>')
    client.force_login(user)
    pages = [client.get(f'/targets/{target.pk}/').content.decode(), client.get('/pipelines/').content.decode(),
             client.get(f'/pipeline/{process.pk}').content.decode()]
    for page in pages:
        for bad in ('<script>p</script>', '<script>f</script>', '<script>s</script>', '<script>flag</script>'):
            assert bad not in page
    assert '&lt;script&gt;flag&lt;/script&gt;' in pages[0]
    assert '&lt;script&gt;p&lt;/script&gt;' in pages[1]


def test_run_form_requires_csrf(user, target):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    product = make_product(target, 'a.fits')
    response = strict.post(run_url(target), {'pipeline': 'Example', 'products': [product.pk]})
    # Django's CSRF 403, which tom_base's middleware turns into a redirect to the login page
    assert response.status_code == 302 and response['Location'].startswith('/accounts/login/')
    assert not PipelineProcess.objects.exists()


def test_superuser_sees_private_processes(client, private_target, user):
    services.start_process(user=user, pipeline='Example', target=private_target,
                           input_files=[make_product(private_target, 'a.fits')])
    admin = get_user_model().objects.create_superuser('boss', 'boss@example.org', 'pw')
    client.force_login(admin)
    assert client.get('/pipelines/').content.decode().count('href="/pipeline/') == 1


def test_status_longer_than_the_field_is_shortened_not_fatal(user, target):
    process = services.start_process(user=user, pipeline='Scripted', target=target,
                                     input_files=[script_product(target, {})])
    process.status = 'x' * 1000
    process.save()
    process.refresh_from_db()
    assert len(process.status) == 255 and process.status.endswith('…')


def test_target_process_list_queues_a_lost_run_again(client, user, target):
    from datetime import timedelta

    from django.utils import timezone

    process = services.start_process(user=user, pipeline='Parked', target=target,
                                     input_files=[script_product(target, {})])
    half_a_minute_ago = timezone.now() - timedelta(seconds=30)
    PipelineProcess.objects.filter(pk=process.pk).update(
        state='running', heartbeat=half_a_minute_ago, started=half_a_minute_ago, attempts=1, worker='gone:1'
    )
    client.force_login(user)
    fragment = client.get(f'/pipeline/target/{target.pk}/processes/').content.decode()
    process.refresh_from_db()
    # the page (or a worker's own check, whichever came first) queued it again: the page shows it waiting
    assert process.state == ASYNC_STATUS_PENDING and process.attempts == 1
    assert process.losses[0]['reason'].startswith('the worker of attempt 1 (gone:1) stopped responding')
    assert 'waiting to be retried (attempt 2)' in fragment
