"""The runner called in the test process: storages other than local files, and what log() costs."""
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from tom_dataproducts.models import DataProduct

from tests.conftest import script_product
from tom_education import runner, services
from tom_education.models import ASYNC_STATUS_CREATED, PipelineLogLine

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {
    'default': {'BACKEND': 'django.core.files.storage.InMemoryStorage'},
    'staticfiles': {'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'},
}


def start_without_worker(target, user, script, name='script.json'):
    # queue into a broker nobody listens to: the test runs the process itself
    with override_settings(TOM_EDUCATION_CELERY_APP='tests.unused_queue.app'):
        return services.start_process(
            user=user, pipeline='Scripted', target=target, input_files=[script_product(target, script, name)]
        )


@override_settings(STORAGES=IN_MEMORY)
def test_inputs_and_outputs_go_through_the_storage_api(target, user):
    process = start_without_worker(target, user, {
        'steps': [{'action': 'log', 'text': 'read through storage'}],
        'outputs': [{'name': 'result.png', 'content': 'png bytes', 'type': 'DataProduct'}],
    }, name='kept-in-memory.json')
    # this storage keeps files in memory: nothing exists at the path it reports
    assert not Path(process.input_files.get().data.path).exists()
    runner.run_process(process.pk)
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    (output,) = process.output_products()
    assert output.data.read() == b'png bytes'
    assert process.log_lines.filter(message='read through storage 0').exists()


def test_log_lines_are_written_in_batches_not_one_query_per_line(target, user):
    lines = 5000
    process = start_without_worker(target, user, {'steps': [{'action': 'log', 'count': lines, 'text': 'x'}]})
    with CaptureQueriesContext(connection) as queries:
        runner.run_process(process.pk)
    log_inserts = [query for query in queries if 'INSERT INTO "tom_education_pipelinelogline"' in query['sql']]
    assert PipelineLogLine.objects.filter(process=process, message__startswith='x ').count() == lines
    # the pipeline's thread wrote its lines in multi-row statements (SQLite caps one at ~200 rows);
    # the monitor thread's periodic flushes run on its own connection and are not counted here
    assert len(log_inserts) <= lines // 100
    assert len(queries) - len(log_inserts) < 60


def test_a_line_number_taken_meanwhile_is_an_integrity_error_and_writes_nothing(target, user):
    """The runner renumbers its lines when the engine wrote one meanwhile (or stops, when the run was given to
    another attempt): that relies on a clash raising Django's IntegrityError, however the lines are sent."""
    process = start_without_worker(target, user, {})
    PipelineLogLine.append(process, [('first', 20), ('second', 20)], first_seq=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        PipelineLogLine.append(process, [('new', 20), ('clashes with "second"', 20)], first_seq=2)
    assert list(process.log_lines.values_list('seq', 'message')) == [(1, 'first'), (2, 'second')]
    PipelineLogLine.append(process, [(f'line {number}', 20) for number in range(450)], first_seq=3)
    assert process.log_lines.count() == 452 and process.log_lines.order_by('-seq').first().message == 'line 449'


def test_log_outside_a_worker_writes_at_once(target, user):
    process = start_without_worker(target, user, {})
    process.log('from a shell')
    process.log('second')
    assert list(process.log_lines.values_list('seq', 'message')) == [(1, 'from a shell'), (2, 'second')]


def test_reduced_datum_and_products_reference_the_target(target, user):
    process = start_without_worker(target, user, {
        'outputs': [{'name': 'plot.png', 'content': 'p', 'type': 'DataProduct'}],
    })
    runner.run_process(process.pk)
    product = DataProduct.objects.get(product_id=f'{process.identifier}_plot.png')
    assert product.target == target
    assert process.pk in product.group.values_list('pipeline_processes', flat=True)


def test_with_per_product_permissions_outputs_are_shared_like_their_inputs(target, user, other_user):
    """TARGET_PERMISSIONS_ONLY = False: an output goes to its run's owner and the groups that may view every input."""
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm

    students, teachers = Group.objects.create(name='students'), Group.objects.create(name='teachers')
    other_user.groups.add(students)
    with override_settings(TARGET_PERMISSIONS_ONLY=False):
        process = start_without_worker(target, None, {
            'outputs': [{'name': 'plot.png', 'content': 'p', 'type': 'DataProduct'},
                        {'name': 'lc.csv', 'content': 'mjd,mag,mag_err\n60000,15.1,0.02\n', 'type': 'ReducedDatum',
                         'tag': 'photometry'}],
        })
        (script,) = process.input_files.all()
        assign_perm('tom_dataproducts.view_dataproduct', students, script)
        assign_perm('tom_dataproducts.change_dataproduct', teachers, script)  # not a view permission
        process.created_by = user
        process.save()
        runner.run_process(process.pk)
        (output,) = services.visible_outputs(None, process)
        assert list(services.visible_outputs(user, process)) == [output]
        assert list(services.visible_outputs(other_user, process)) == [output]
        assert other_user.has_perm('tom_dataproducts.view_dataproduct', output)
        (point,) = process.output_photometry.all()
        # the owner sees the light-curve point on tom_base's Photometry tab, which checks this permission
        assert user.has_perm('tom_dataproducts.view_photometryreduceddatum', point)
        outsider = type(user).objects.create_user('outsider')
        outsider.groups.add(teachers)
        assert list(services.visible_outputs(outsider, process)) == []


def test_a_running_pipeline_s_lines_appear_whether_its_monitor_was_dozing_or_just_idle(target, user, monkeypatch):
    """A run does not wake the monitor thread: one idle for less than ``IDLE_CLOSE`` finds the run within a
    round on its own, and one in its long idle sleep (which has no end) must be woken by the run. Either
    way the pipeline's lines are visible while it still runs, within a few flush intervals."""
    import threading
    import time

    monkeypatch.setattr(runner.Monitor, 'IDLE_CLOSE', 1.0)
    runner.Monitor.shutdown()
    monitor = runner.Monitor.current()
    script = {'steps': [{'action': 'log', 'text': 'early'}, {'action': 'sleep', 'seconds': 3.5}]}
    for situation in ('dozing', 'just idle'):
        process = start_without_worker(target, user, script)
        deadline = time.monotonic() + 10
        while monitor._dozing != (situation == 'dozing') and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitor._dozing == (situation == 'dozing'), f'the monitor was not {situation}'
        running = threading.Thread(target=runner.run_process, args=(process.pk,))
        running.start()
        try:
            seen = None
            started = time.monotonic()
            while seen is None and time.monotonic() - started < 3:
                if PipelineLogLine.objects.filter(process=process, message='early 0').exists():
                    seen = time.monotonic() - started
                time.sleep(0.02)
            assert seen is not None, f'a line logged while the monitor was {situation} was not written during the run'
        finally:
            running.join(timeout=30)
        process.refresh_from_db()
        assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    runner.Monitor.shutdown()
