"""Runs on a real worker process: states, failures, outputs, logging, cancel, lost workers, time limits."""
import os
import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum, ReducedDatum

from tests.conftest import make_product, script_product, wait_final, wait_for
from tom_education import runner, services, workdirs
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_FAILED,
    ASYNC_STATUS_PENDING,
    ASYNC_STATUS_RUNNING,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run(target, user, script, flags=None, pipeline='Scripted'):
    return services.start_process(
        user=user, pipeline=pipeline, target=target, input_files=[script_product(target, script)], flags=flags
    )


def logged(process):
    return list(process.log_lines.order_by('seq').values_list('message', flat=True))


def tmpdir_of(process) -> Path:
    return Path(next(line for line in logged(process) if line.startswith('tmpdir='))[len('tmpdir='):])


def media_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(path.relative_to(root)) for path in root.rglob('*') if path.is_file()}


def test_states_and_times_from_pending_to_created(worker, target, user, tmp_path):
    go = tmp_path / 'go'
    process = run(target, user, {'steps': [{'action': 'wait_for_file', 'path': str(go)}]}, flags={'shout': True})
    assert process.state == 'pending' and process.started is None
    wait_for(process, lambda current: current.state == ASYNC_STATUS_RUNNING)
    assert process.started is not None and process.finished is None and process.heartbeat is not None
    go.touch()
    wait_final(process)
    assert (process.state, process.status) == (ASYNC_STATUS_CREATED, ASYNC_STATUS_CREATED)
    assert process.created <= process.started <= process.finished
    assert 'SHOUTING' in logged(process)
    # the worker's monitor thread removes the run's folder just after the run, off the next run's path
    deadline = time.monotonic() + 30
    while tmpdir_of(process).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmpdir_of(process).exists()


def test_crash_fails_with_a_short_message_and_keeps_the_traceback(worker, target, user):
    process = wait_final(run(target, user, {'steps': [{'action': 'crash'}]}))
    assert process.state == ASYNC_STATUS_FAILED
    assert process.failure_message == 'The pipeline crashed: ZeroDivisionError: division by zero'
    assert 'Traceback (most recent call last)' in process.traceback and '1 / 0' in process.traceback
    assert logged(process)[-1] == process.failure_message
    assert not tmpdir_of(process).exists()


def test_python_logging_from_libraries_lands_in_the_log(worker, target, user):
    process = wait_final(run(target, user, {'steps': [{'action': 'logging', 'text': 'hello'}]}))
    assert 'WARNING some.library: library says hello' in logged(process)


def test_many_log_lines_arrive_complete_and_in_order(worker, target, user):
    process = wait_final(run(target, user, {'steps': [{'action': 'log', 'count': 3000, 'text': 'n'}]}))
    assert process.state == ASYNC_STATUS_CREATED
    seqs = list(process.log_lines.order_by('seq').values_list('seq', flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    lines = [line for line in logged(process) if line.startswith('n ')]
    assert lines == [f'n {number}' for number in range(3000)]


def test_log_lines_are_visible_while_the_pipeline_still_runs(worker, target, user, tmp_path):
    go = tmp_path / 'go'
    process = run(target, user, {'steps': [
        {'action': 'log', 'text': 'early'}, {'action': 'wait_for_file', 'path': str(go)},
    ]})
    wait_for(process, lambda current: current.log_lines.filter(message='early 0').exists(), timeout=30)
    assert process.state == ASYNC_STATUS_RUNNING
    go.touch()
    wait_final(process)


def test_outputs_of_every_accepted_form_are_saved(worker, target, user):
    process = wait_final(run(target, user, {'outputs': [
        {'name': 'plain.txt', 'content': 'text 1', 'type': 'ReducedDatum', 'as_tuple': True},
        {'name': 'tagged.csv', 'content': 'a,b', 'type': 'ReducedDatum', 'tag': 'csv_table', 'as_tuple': True},
        {'name': 'image.png', 'content': 'png', 'type': 'DataProduct', 'tag': 'image_file'},
    ]}))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    data = {datum.data_type: datum.value for datum in ReducedDatum.objects.filter(source_location=process.identifier)}
    assert data == {'pipeline_output': {'filename': 'plain.txt', 'text': 'text 1'},
                    'csv_table': {'filename': 'tagged.csv', 'text': 'a,b'}}
    (image,) = process.output_products()
    assert image.data_product_type == 'image_file'
    assert image.product_id == f'{process.identifier}_image.png'


@pytest.mark.parametrize(('outputs', 'message'), [
    ([{'name': 'x.dat', 'content': 'x', 'type': 'DataProduct', 'tag': 'no_such_type'}],
     'Output x.dat has tag "no_such_type", which is not a data product type of this TOM: '
     'add "no_such_type" to DATA_PRODUCT_TYPES in settings.py'),
    ([{'name': 'outside.txt', 'absolute': True, 'path': '/etc/hostname', 'type': 'DataProduct'}],
     'Output /etc/hostname is outside the temporary directory; write outputs under tmpdir'),
    ([{'name': 'never-written.txt', 'type': 'DataProduct'}],
     'Output file never-written.txt does not exist; was it written?'),
    ([{'name': 'latin1.txt', 'bytes': 'e9e8', 'type': 'ReducedDatum'}],
     'Output latin1.txt is not UTF-8 text (byte 0); return binary files as DataProduct outputs'),
])
def test_bad_outputs_fail_the_run_and_save_nothing(worker, target, user, outputs, message):
    good = {'name': 'good.png', 'content': 'png', 'type': 'DataProduct'}
    before = media_files()
    process = wait_final(run(target, user, {'outputs': [good, *outputs]}))
    assert process.state == ASYNC_STATUS_FAILED
    assert process.failure_message == message
    assert process.group is None
    assert not DataProduct.objects.filter(product_id__startswith=process.identifier).exists()
    assert not ReducedDatum.objects.filter(source_location=process.identifier).exists()
    # the script input is the only new file: no orphan output files
    assert len(media_files() - before) == 1


def test_photometry_table_becomes_a_light_curve(worker, target, user):
    table = 'mjd,mag,mag_err,filter\n60000.5,15.1,0.02,V\n60001.5,15.3,0.03,V\n60002.5,,0.1,V\n'
    output = {'name': 'lc.csv', 'content': table, 'type': 'ReducedDatum', 'tag': 'photometry'}
    process = wait_final(run(target, user, {'outputs': [output]}))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    points = PhotometryReducedDatum.objects.filter(target=target).order_by('timestamp')
    assert [(point.brightness, point.brightness_error, point.bandpass) for point in points] == [
        (15.1, 0.02, 'V'), (15.3, 0.03, 'V')
    ]
    assert points[0].timestamp.isoformat() == '2023-02-25T12:00:00+00:00'
    assert any('skipped row 4' in line for line in logged(process))
    # running it again does not double the light curve
    again = wait_final(run(target, user, {'outputs': [output]}))
    assert again.state == ASYNC_STATUS_CREATED
    assert PhotometryReducedDatum.objects.filter(target=target).count() == 2


def test_cancel_running_pipeline_that_never_logs(worker, target, user):
    process = run(target, user, {'steps': [{'action': 'sleep', 'seconds': 60}]})
    wait_for(process, lambda current: current.state == ASYNC_STATUS_RUNNING)
    assert services.cancel_process(process)
    wait_final(process, timeout=20)
    assert process.state == ASYNC_STATUS_CANCELLED
    assert process.finished is not None


def test_cancel_pending_process_never_runs(target, user):
    # on a queue nobody consumes: the suite's worker, if started, would otherwise race the cancel
    process = run(target, user, {}, pipeline='Parked')
    assert services.cancel_process(process)
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_CANCELLED
    assert not services.cancel_process(process)


def test_killed_worker_process_is_retried_as_a_new_attempt_and_completes(worker, target, user, tmp_path):
    marker = tmp_path / 'killed'
    process = wait_final(run(target, user, {'steps': [{'action': 'kill_worker', 'marker': str(marker)}]}), 90)
    assert marker.exists()
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    assert process.attempts == 2
    log = list(process.log_lines.values_list('message', flat=True))
    lost = next(line for line in log if line.startswith('Attempt 1 was lost'))
    # whichever noticed first: the worker's main process seeing its pool process die, or the heartbeat check
    assert re.match(r'Attempt 1 was lost: the worker (process of attempt 1 died|of attempt 1 \(\S+\) stopped '
                    r'responding).*Queued again as attempt 2\.$', lost)
    retried = next(line for line in log if line.startswith('Attempt 2 of 2 on '))
    assert retried.endswith(f'after {process.losses[0]["reason"]}.')


def test_pipeline_killing_every_worker_fails_after_the_cap(worker, target, user, tmp_path):
    script = {'steps': [{'action': 'kill_worker', 'marker': str(tmp_path / 'k'), 'always': True}]}
    process = wait_final(run(target, user, script), 120)
    assert process.state == ASYNC_STATUS_FAILED
    assert process.attempts == 2  # not looping
    lost = r'the worker (process of attempt {n} died|of attempt {n} \(\S+\) stopped responding)'
    assert re.match(rf'The run was lost 2 times through no fault of its pipeline and was not started again '
                    rf'\(attempt 1: {lost.format(n=1)}.*; attempt 2: {lost.format(n=2)}', process.failure_message)


@override_settings(TOM_EDUCATION_SOFT_TIME_LIMIT=2, TOM_EDUCATION_TIME_LIMIT=5)
def test_soft_time_limit_fails_with_timed_out(worker, target, user):
    process = services.start_process(user=user, pipeline='Slow', target=target,
                                     input_files=[make_product(target, 'a.fits')])
    wait_final(process, timeout=60)
    assert process.state == ASYNC_STATUS_FAILED
    assert process.failure_message.startswith('The pipeline timed out after 2 s.')
    assert not tmpdir_of(process).exists()


@override_settings(TOM_EDUCATION_SOFT_TIME_LIMIT=2, TOM_EDUCATION_TIME_LIMIT=5)
def test_hard_time_limit_kills_and_fails_with_timed_out(worker, target, user):
    process = services.start_process(user=user, pipeline='Slow', target=target,
                                     input_files=[make_product(target, 'a.fits')], flags={'ignore_soft_limit': True})
    # another process of this host running a later attempt of the same run (the killed one's heartbeat stopped)
    later_attempt = workdirs.make_workdir(process.pk, 2)
    try:
        wait_final(process, timeout=60)
        assert process.state == ASYNC_STATUS_FAILED
        assert process.failure_message.startswith('The pipeline timed out after 5 s.')
        assert not tmpdir_of(process).parent.exists(), 'the killed attempt\'s folder is removed'
        assert (later_attempt / 'tmp').is_dir(), 'and only its folder'
    finally:
        workdirs.remove_workdir(later_attempt)


def make_lost(process, attempt=1, seconds_ago=30):
    from datetime import timedelta

    from django.utils import timezone

    then = timezone.now() - timedelta(seconds=seconds_ago)
    type(process).objects.filter(pk=process.pk).update(
        state=ASYNC_STATUS_RUNNING, heartbeat=then, started=then, attempts=attempt, worker=f'gone:{attempt}'
    )


def test_lost_runs_are_queued_again_then_failed_at_the_cap(target, user):
    from tom_education import recovery

    process = run(target, user, {}, pipeline='Parked')
    make_lost(process)
    recovery.recover_lost_runs()
    process.refresh_from_db()
    assert (process.state, process.attempts, process.status) == (ASYNC_STATUS_PENDING, 1,
                                                                  'waiting to be retried (attempt 2)')
    assert [loss['attempt'] for loss in process.losses] == [1]
    assert not recovery.recover_lost_runs()  # nothing left to handle: never twice
    make_lost(process, attempt=2)
    recovery.recover_lost_runs()
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_FAILED
    assert process.failure_message.startswith(
        'The run was lost 2 times through no fault of its pipeline and was not started again (attempt 1: the worker '
        'of attempt 1 (gone:1) stopped responding (no heartbeat for more than 4 s); attempt 2: the worker of attempt '
        '2 (gone:2) stopped responding'
    )


def test_a_lost_run_past_its_hard_limit_is_failed_as_timed_out_not_retried(target, user):
    from tom_education import recovery

    process = run(target, user, {}, pipeline='Parked')
    make_lost(process, seconds_ago=3600)
    assert recovery.recover_lost_runs() == 1
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_FAILED and process.failure_message.startswith('The pipeline timed out')


def test_a_lost_run_whose_cancel_was_asked_is_cancelled_not_retried(target, user):
    from tom_education import recovery

    process = run(target, user, {}, pipeline='Parked')
    make_lost(process)
    type(process).objects.filter(pk=process.pk).update(cancel_requested=True)
    recovery.recover_lost_runs()
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_CANCELLED


def test_a_copy_of_a_message_or_one_of_an_older_attempt_is_dropped(target, user):
    process = run(target, user, {}, pipeline='Parked')
    assert runner.claim(process.pk, attempt=2) is None  # not yet: attempt 1 comes first
    assert runner.claim(process.pk, attempt=1).attempt == 1
    assert runner.claim(process.pk, attempt=1) is None  # a second delivery of the same message
    assert runner.claim(process.pk) is None


@pytest.mark.skipif(not settings.DATABASES['default']['ENGINE'].endswith('postgresql'),
                    reason='PostgreSQL\'s commit setting')
def test_only_the_claim_commits_without_waiting_for_the_disk(target, user):
    """A claim that a database crash forgets only leaves its run pending, to be sent again, so its commit does not
    wait for the write-ahead log. That must stay the claim's own: the run's end, its outputs and the next
    submission run on the same connection, and they must still wait."""
    from django.db import connection, transaction

    def commit_setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute('SHOW synchronous_commit')
            return cursor.fetchone()[0]

    assert commit_setting() == 'on'
    process = run(target, user, {}, pipeline='Parked')
    with transaction.atomic():
        assert runner.claim(process.pk, attempt=1).attempt == 1
        assert commit_setting() == 'off', 'the claim\'s transaction waits for the disk'
    assert commit_setting() == 'on', 'the claim changed the setting of the statements after it'
    process.refresh_from_db()
    assert process.state == ASYNC_STATUS_RUNNING and process.attempts == 1


def ended_process_id() -> int:
    """The id of a process that has ended, as a killed worker process's is."""
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    return int(ended.stdout)


def test_cleanup_leaves_the_work_folders_of_another_tom_on_the_host_alone(tmp_path, monkeypatch, target, user):
    """Two TOMs (a site and its staging copy) on one host: each removes only its own dead runs' folders."""
    import tempfile

    from tom_education import recovery

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    process = run(target, user, {}, pipeline='Parked')
    made = workdirs.make_workdir(process.pk, 1)
    ours = made.rename(made.with_name(f'{process.pk}-1-r{ended_process_id()}n0'))  # left by a killed process
    theirs = tmp_path / 'tom_education-runs-0123456789ab' / ours.name  # same name, another database
    theirs.mkdir(parents=True)
    assert ours.parent != theirs.parent and ours.parent.stat().st_mode & 0o077 == 0
    assert recovery.clean_workdirs() == 1
    assert not ours.exists() and theirs.exists()


def test_the_check_removes_a_finished_runs_folder_only_once_its_worker_process_has_ended(
        tmp_path, monkeypatch, target, user):
    """A finished run's folder waits for its worker process to empty it and rename it for its next run. The
    periodic check (in another process) once removed it then because the run no longer ran, and emptied the
    next run's folder under it: the run failed for a missing file. Whose folder it is decides, not the run."""
    import subprocess
    import sys
    import tempfile

    from tom_education import recovery

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    process = run(target, user, {}, pipeline='Parked')  # never ran, like a run that has ended
    owner = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    try:
        made = workdirs.make_workdir(process.pk, 1)
        finished = made.rename(made.with_name(f'{process.pk}-1-r{owner.pid}n0'))
        (finished / 'tmp' / 'photometry_light_curve.csv').write_text('mjd,mag\n')
        spare = finished.with_name(f'spare-{owner.pid}-1')
        spare.mkdir()
        assert recovery.clean_workdirs() == 0
        assert (finished / 'tmp' / 'photometry_light_curve.csv').exists() and spare.exists()
    finally:
        owner.kill()
        owner.wait(timeout=10)
    assert recovery.clean_workdirs() == 2
    assert not finished.exists() and not spare.exists()


def test_an_emptied_work_folder_is_reused_and_a_run_never_sees_what_another_left(tmp_path, monkeypatch):
    """A worker process keeps the folder of a finished run for its next run (a rename instead of making and
    removing two folders); what a run left in it is removed first, never handed to another run."""
    import tempfile

    from tom_education import recovery

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    first = workdirs.make_workdir(1, 1)
    (first / 'tmp' / 'notes.txt').write_text('a student\'s private notes')
    (first / 'inputs').mkdir()
    (first / 'inputs' / 'frame.fits').write_bytes(b'SIMPLE')
    assert workdirs.release_workdir(first) == first, 'a folder with files in it is not kept as it is'
    workdirs.recycle(first)  # what the monitor thread does with it: emptied, then kept
    assert not first.exists()

    second = workdirs.make_workdir(2, 1)
    assert os.listdir(second) == ['tmp'] and not os.listdir(second / 'tmp')
    assert workdirs.release_workdir(second) is None, 'an empty folder is kept as a spare'
    assert not second.exists()
    third = workdirs.make_workdir(3, 1)
    assert workdirs.WORKDIR_PATTERN.match(third.name).groups() == ('3', '1', str(os.getpid()))
    assert not os.listdir(third / 'tmp') and third.parent == second.parent
    assert [path.name for path in third.parent.iterdir()] == [third.name], 'the spare was renamed, not copied'

    # a pool process killed with a spare leaves it behind: the periodic check removes it, and only it
    orphan = third.parent / f'spare-{ended_process_id()}-0'
    orphan.mkdir()
    mine = workdirs.release_workdir(third)
    assert mine is None
    assert recovery.clean_workdirs() == 1
    assert not orphan.exists() and len(list(tmp_path.glob('tom_education-runs-*/spare-*'))) == 1
    workdirs.remove_spares()
    assert not list(tmp_path.glob('tom_education-runs-*/*'))


def test_a_run_asks_for_children_without_reaping_anyone_elses():
    """Before listing /proc for processes to stop, a run asks whether its process has any child at all; the
    question must not reap a child that exited, whose exit status belongs to the code that started it.

    Checked in a forked copy of this process, which starts with no child (this one may have workers)."""
    import subprocess
    import sys

    checks = ['no child at first', 'a running child is seen', 'an exited child not yet waited for is seen',
              'the exit status stayed with the code that started the child', 'no child once it was waited for']
    pid = os.fork()
    if pid == 0:  # the copy: exit with the number of the first check that failed, 0 if none did
        failed = 1
        try:
            if runner.has_children():
                os._exit(1)
            child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.exit(7)'])
            failed = 2
            if runner.has_children():
                failed = 3
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and psutil_status(child.pid) != 'zombie':
                    time.sleep(0.01)
                if runner.has_children():
                    failed = 4
                    if child.wait(timeout=30) == 7:
                        failed = 5
                        if not runner.has_children():
                            failed = 0
        finally:
            os._exit(failed)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, f'failed: {checks[code - 1]}' if 0 < code <= len(checks) else f'the copy exited with {code}'


def psutil_status(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return 'gone'
