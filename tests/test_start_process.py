"""start_process: everything is checked before a row exists; a dead queue fails the row, never a 500."""
import re

import pytest
from celery.utils.saferepr import saferepr
from django.test import override_settings
from guardian.shortcuts import assign_perm
from tom_targets.models import Target

from tests.conftest import make_product
from tom_education import services
from tom_education.models import ASYNC_STATUS_FAILED, ASYNC_STATUS_PENDING, PipelineProcess, new_identifier

pytestmark = pytest.mark.django_db(transaction=True)


def start(**overrides):
    return services.start_process(**{'flags': None, **overrides})


@pytest.mark.parametrize(('field', 'change', 'message'), [
    ('pipeline', {'pipeline': 'Nope'}, 'Unknown pipeline "Nope". Registered pipelines: '),
    ('input_files', {'input_files': []}, 'Select at least one data product'),
    ('input_files', {'input_files': [999999]}, 'Data product(s) 999999 do not exist'),
    ('flags', {'flags': {'loud': True}}, 'Unknown flag "loud" for this pipeline. Its flags are: shout.'),
    ('flags', {'flags': {'shout': 'yes'}}, "Flag \"shout\" must be true or false, not 'yes'."),
])
def test_bad_requests_name_the_problem_and_store_nothing(target, user, field, change, message):
    product = make_product(target, 'run.json', '{}')
    request = {'user': user, 'pipeline': 'Scripted', 'target': target, 'input_files': [product], **change}
    with pytest.raises(services.ProcessInputError) as caught:
        start(**request)
    assert caught.value.field == field
    assert message in caught.value.message
    assert not PipelineProcess.objects.exists()


def test_product_of_another_target_is_refused_by_name(target, user):
    elsewhere = Target.objects.create(name='Elsewhere', type=Target.SIDEREAL, ra=0, dec=0,
                                      permissions=Target.Permissions.PUBLIC)
    foreign = make_product(elsewhere, 'foreign.json', '{}')
    with pytest.raises(services.ProcessInputError, match='foreign.json do not belong to target M31 test'):
        start(user=user, pipeline='Scripted', target=target, input_files=[foreign])


def test_wrong_suffix_is_refused_with_allowed_suffixes(target, user):
    image = make_product(target, 'image.fits')
    name = re.escape(services.product_file_name(image))
    with pytest.raises(services.ProcessInputError, match=rf'{name} cannot be used: .* ending in \.json'):
        start(user=user, pipeline='Scripted', target=target, input_files=[image])


def test_private_target_needs_view_permission(private_target, user, other_user):
    product = make_product(private_target, 'run.json', '{}')
    with pytest.raises(services.ProcessInputError, match='does not exist or you may not view it') as caught:
        start(user=other_user, pipeline='Scripted', target=private_target, input_files=[product])
    assert caught.value.field == 'target'
    process = start(user=user, pipeline='Scripted', target=private_target, input_files=[product])
    assert process.created_by == user
    assert list(services.visible_processes(other_user)) == []
    assert list(services.visible_processes(user)) == [process]


def test_flags_defaults_are_filled_in(target, user):
    process = start(user=user, pipeline='Scripted', target=target, input_files=[make_product(target, 'a.json', '{}')])
    assert process.flag_values == {'shout': False}
    assert process.state == ASYNC_STATUS_PENDING
    assert process.task_id


@pytest.mark.usefixtures('no_worker_needed')  # the row is read back as submitted, before any worker runs it
@pytest.mark.parametrize('listening', [False, True], ids=['stored-directly', 'tom-listens-to-post-save'])
def test_the_stored_run_is_what_was_asked_whichever_way_it_is_stored(target, user, listening):
    """A run is stored with hand-written SQL (one statement on PostgreSQL) unless the TOM listens to new rows
    with post_save, which then hears of each run: both ways store the same row and the same inputs."""
    from django.db.models.signals import post_save, pre_save

    products = [make_product(target, f'{name}.json', '{}') for name in ('a', 'b', 'c')]
    heard = []

    def hear(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    if listening:
        post_save.connect(hear, weak=False, dispatch_uid='test-new-runs')
    try:
        process = start(user=user, pipeline='Scripted', target=target, input_files=products[::-1],
                        flags={'shout': True})
    finally:
        post_save.disconnect(dispatch_uid='test-new-runs')
    assert heard == ([(process.pk, True)] if listening else [])
    if not listening:  # nothing else listens: the row went through the hand-written SQL
        assert not post_save.has_listeners(type(process)) and not pre_save.has_listeners(type(process))
    stored = PipelineProcess.objects.get(pk=process.pk)
    assert process.pk is not None and not process._state.adding
    # the target came with the products, in one query: it is the one asked for, with the fields it holds
    assert (process.target.pk, process.target.name, process.target.permissions) == \
        (target.pk, target.name, target.permissions)
    for name in ('identifier', 'pipeline', 'target_id', 'flag_values', 'option_values', 'created_by_id', 'task_id',
                 'state', 'status', 'attempts', 'chain_depth', 'losses', 'uncommitted_files'):
        assert getattr(stored, name) == getattr(process, name), name
    assert stored.queued == process.queued and stored.created == process.created
    assert (stored.flag_values, stored.state, stored.created_by_id) == ({'shout': True}, ASYNC_STATUS_PENDING, user.pk)
    assert sorted(stored.input_files.values_list('pk', flat=True)) == sorted(product.pk for product in products)


def test_identifiers_stay_unique_within_one_second():
    identifiers = {new_identifier('example') for _ in range(5000)}
    assert len(identifiers) == 5000


def test_many_runs_in_the_same_second_get_distinct_rows(target, user):
    product = make_product(target, 'a.json', '{}')
    processes = [
        start(user=user, pipeline='Scripted', target=target, input_files=[product]) for _ in range(30)
    ]
    assert len({process.identifier for process in processes}) == 30


@override_settings(TOM_EDUCATION_CELERY_APP='tests.unused_queue.app')
def test_the_queued_message_shows_its_arguments_as_celery_would(target, user):
    """Monitoring tools (Flower, ``celery inspect``) print a message's arguments from its headers: the text
    the engine writes there itself must be the one Celery would have written."""
    from tests.unused_queue import app

    product = make_product(target, 'a.json', '{}')
    process = start(user=user, pipeline='Scripted', target=target, input_files=[product])
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(app.conf.task_default_queue, no_ack=True)
        message = queue.get(timeout=5)
        while message.headers['id'] != process.task_id:  # runs queued there by earlier tests
            message = queue.get(timeout=5)
    assert message.headers['argsrepr'] == saferepr([process.pk])
    assert message.headers['kwargsrepr'] == saferepr({'attempt': 1})


@override_settings(TOM_EDUCATION_CELERY_APP='tests.unreachable_broker.app')
def test_unreachable_queue_fails_the_row_with_a_message(target, user):
    product = make_product(target, 'a.json', '{}')
    process = start(user=user, pipeline='Scripted', target=target, input_files=[product])
    assert process.state == ASYNC_STATUS_FAILED
    assert process.failure_message.startswith(services.QUEUE_UNAVAILABLE)
    stored = PipelineProcess.objects.get(pk=process.pk)
    assert stored.state == ASYNC_STATUS_FAILED
    assert list(stored.input_files.all()) == [product]


def test_products_of_targets_the_user_cannot_see_are_not_named(private_target, target, other_user):
    secret = make_product(private_target, 'secret-plan.json', '{}')
    with pytest.raises(services.ProcessInputError) as caught:
        start(user=other_user, pipeline='Scripted', target=target, input_files=[secret])
    assert caught.value.message == f'Data product(s) {secret.pk} do not exist.'
    assert 'secret' not in caught.value.message


@override_settings(TARGET_PERMISSIONS_ONLY=False)
def test_with_per_product_permissions_unpermitted_products_are_not_named(target, user):
    hidden = make_product(target, 'no-permission.json', '{}')
    with pytest.raises(services.ProcessInputError) as caught:
        start(user=user, pipeline='Scripted', target=target, input_files=[hidden])
    assert caught.value.message == f'Data product(s) {hidden.pk} do not exist.'
    assign_perm('tom_dataproducts.view_dataproduct', user, hidden)
    assert start(user=user, pipeline='Scripted', target=target, input_files=[hidden]).input_files.get() == hidden
