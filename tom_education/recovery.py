"""Runs that heal themselves, with nobody watching: the worker side of recovery.

Every worker runs :class:`CheckLoop`, a thread in its main process that, about every
``TOM_EDUCATION_CHECK_INTERVAL`` seconds (with jitter):

* reports the worker (node, host, queues) in ``PipelineWorker``, so pages can say when no worker
  consumes a run's queue;
* finds running runs whose heartbeat went stale and queues them again as the next attempt (up to
  ``TOM_EDUCATION_MAX_ATTEMPTS``; a run past its hard time limit is failed as timed out instead);
* sends again pending runs whose message the broker no longer holds;
* removes the work folders of this host's runs that are no longer running here;
* fires the automatic-run rules whose new data have been quiet for their quiet period.

Every change of state is a conditional ``UPDATE`` that names the state and attempt it expects, so
several workers checking at once never handle a run twice. Pages and ``run_pipeline`` may call
:func:`recover_lost_runs` early, but nothing depends on them.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import close_old_connections, connections
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string
from tom_dataproducts.models import DataProduct

from tom_education import brokers, conf, registry
from tom_education.automation import fire_due_rules
from tom_education.dispatch import enqueue, queue_name
from tom_education.ending import finish
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_FAILED,
    ASYNC_STATUS_PENDING,
    ASYNC_STATUS_RUNNING,
    PipelineLogLine,
    PipelineProcess,
    PipelineWorker,
)
from tom_education.runner import HANDED_BACK, timed_out_message
from tom_education.workdirs import orphaned_folders

logger = logging.getLogger(__name__)

LOST = 'lost'
DIED = 'died'


def counted_losses(losses: list[dict[str, Any]]) -> int:
    """Losses that count against ``TOM_EDUCATION_MAX_ATTEMPTS``: a run handed back on shutdown is not at fault."""
    return sum(1 for loss in losses if loss.get('kind') != HANDED_BACK)


def lost_too_often_message(losses: list[dict[str, Any]]) -> str:
    attempts = '; '.join(f'attempt {loss["attempt"]}: {loss["reason"]}' for loss in losses)
    return (
        f'The run was lost {counted_losses(losses)} times through no fault of its pipeline and was not started '
        f'again ({attempts}). If a worker keeps dying on this run (out of memory?), ask the TOM administrator to '
        'look at the workers; otherwise re-run it.'
    )


def requeue_or_fail(pk: int, attempt: int, reason: str, kind: str = LOST,
                    stale_before: Any = None, worker: str | None = None) -> bool:
    """Queue a run that ``attempt`` lost again as the next attempt, or fail it once attempts are used up.

    ``reason`` says what happened, in words that follow "after" ("the worker of attempt 1 (host:1)
    stopped responding"). Acts only if the row is still running as ``attempt`` (with a heartbeat
    older than ``stale_before``, and on ``worker``, when given); True if this call handled the run.
    """
    rows = PipelineProcess.objects.filter(pk=pk, state=ASYNC_STATUS_RUNNING, attempts=attempt)
    if stale_before is not None:
        rows = rows.filter(heartbeat__lt=stale_before)
    if worker is not None:
        rows = rows.filter(worker=worker)
    row = rows.values('worker', 'losses', 'cancel_requested', 'uncommitted_files').first()
    if row is None:
        return False
    if not _lost_attempt_cleaned(pk, rows, row['uncommitted_files']):
        return False
    now = timezone.now()
    losses = [*row['losses'], {'attempt': attempt, 'worker': row['worker'], 'kind': kind, 'reason': reason,
                               'at': now.isoformat()}]
    if row['cancel_requested']:
        ended = rows.update(state=ASYNC_STATUS_CANCELLED, status=ASYNC_STATUS_CANCELLED, losses=losses, finished=now,
                            failure_message=f'Cancelled at the user\'s request (and {reason}).')
        return ended > 0
    if counted_losses(losses) >= conf.max_attempts():
        message = lost_too_often_message(losses)
        if not rows.update(state=ASYNC_STATUS_FAILED, status=ASYNC_STATUS_FAILED, failure_message=message,
                           traceback='', finished=now, losses=losses):
            return False
        note(pk, message, logging.ERROR)
        return True
    following = attempt + 1
    if not rows.update(state=ASYNC_STATUS_PENDING, status=f'waiting to be retried (attempt {following})',
                       heartbeat=None, worker='', node='', losses=losses, queued=now, progress_report={}):
        return False
    note(pk, f'Attempt {attempt} was lost: {reason}. Queued again as attempt {following}.', logging.WARNING)
    send(pk, following)
    return True


def _lost_attempt_cleaned(pk: int, rows: Any, names: list[str]) -> bool:
    """Delete the files the lost attempt stored without committing them; False if the run moved on meanwhile."""
    if not names:
        return True
    if not rows.update(uncommitted_files=[]):
        return False
    storage = DataProduct._meta.get_field('data').storage
    for name in names:
        try:
            storage.delete(name)
        except Exception:  # noqa: BLE001 - a file we cannot delete is logged, never a reason to keep a run lost
            logger.warning('tom_education: could not delete %s left by a lost attempt of process %s', name, pk,
                           exc_info=True)
    note(pk, f'Removed {len(names)} output file(s) the lost attempt had stored but not saved.', logging.INFO)
    return True


def note(pk: int, message: str, level: int) -> None:
    """Append a line to a run's log from the engine (no worker of the run is writing any more)."""
    process = PipelineProcess(pk=pk)
    PipelineLogLine.append(process, [(message, level)])


def send(pk: int, attempt: int) -> None:
    """Send ``attempt`` of a pending run; if the broker is down it stays pending and is sent again later."""
    process = PipelineProcess.objects.get(pk=pk)
    try:
        process = registry.get(process.pipeline).objects.get(pk=pk)  # its class says which queue
    except registry.UnknownPipeline as exc:
        finish(pk, ASYNC_STATUS_FAILED, str(exc))
        return
    enqueue(process, attempt, fail_if_unreachable=False)


def resend_unstarted(pk: int, attempt: int) -> bool:
    """Send ``attempt`` again if its message was taken by a pool process that died before it started the run."""
    if not PipelineProcess.objects.filter(pk=pk, state=ASYNC_STATUS_PENDING, attempts=attempt - 1).update(
        queued=timezone.now()
    ):
        return False
    note(pk, f'The worker process that took attempt {attempt} stopped before starting it: sent again.',
         logging.WARNING)
    send(pk, attempt)
    return True


def recover_lost_runs() -> int:
    """Queue again (or fail) every running run whose heartbeat went stale; how many were handled."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=conf.heartbeat_timeout())
    handled = 0
    # no ORDER BY (the model's default ordering): the index on (state, heartbeat) answers it alone
    stale = PipelineProcess.objects.filter(state=ASYNC_STATUS_RUNNING, heartbeat__lt=stale_before).order_by()
    for pk, attempt, started, worker in stale.values_list('pk', 'attempts', 'started', 'worker'):
        if started and (now - started).total_seconds() >= conf.hard_time_limit():
            # it ran out of time before it was lost: the pipeline's fault, not retried
            handled += PipelineProcess.objects.filter(
                pk=pk, state=ASYNC_STATUS_RUNNING, attempts=attempt, heartbeat__lt=stale_before,
            ).update(state=ASYNC_STATUS_FAILED, status=ASYNC_STATUS_FAILED, finished=now,
                     failure_message=timed_out_message(conf.hard_time_limit()))
            continue
        reason = (f'the worker of attempt {attempt} ({worker}) stopped responding '
                  f'(no heartbeat for more than {conf.heartbeat_timeout():g} s)')
        handled += requeue_or_fail(pk, attempt, reason, stale_before=stale_before)
    return handled


def resend_lost_messages() -> int:
    """Send again the pending runs that waited too long and whose message the broker no longer holds."""
    cutoff = timezone.now() - timedelta(seconds=conf.resend_pending_after())
    overdue = list(PipelineProcess.objects.filter(
        Q(queued__lt=cutoff) | Q(queued=None, created__lt=cutoff), state=ASYNC_STATUS_PENDING,
    ).order_by().values_list('pk', 'task_id', 'attempts', 'queued', 'pipeline'))
    if not overdue:
        return 0
    app = import_string(conf.celery_app_path())
    queues = {queue_name(PipelineProcess(pipeline=pipeline)) for *_, pipeline in overdue}
    held = brokers.held_messages(app, queues)
    resent = 0
    for pk, task_id, attempts, queued, _ in overdue:
        if held is not None and task_id in held:
            continue  # still queued behind other work: not lost
        if not PipelineProcess.objects.filter(pk=pk, state=ASYNC_STATUS_PENDING, attempts=attempts,
                                              queued=queued).update(queued=timezone.now()):
            continue  # another worker resent it, or it started
        waited = conf.resend_pending_after()
        note(pk, f'The broker no longer held this run\'s message after {waited:g} s (restarted without its '
                 'data?): sent again.', logging.WARNING)
        send(pk, attempts + 1)
        resent += 1
    return resent


def clean_workdirs(root: Path | None = None) -> int:
    """Remove this host's work and spare folders whose worker process has ended (killed runs and pool
    processes leave them; see ``workdirs``)."""
    orphaned = orphaned_folders(root or conf.work_root())
    for path in orphaned:
        shutil.rmtree(path, ignore_errors=True)
    return len(orphaned)


def register_worker(node: str, queues: list[str]) -> None:
    """Say that ``node`` is alive and which queues it consumes."""
    now = timezone.now()
    updated = PipelineWorker.objects.filter(node=node).update(last_seen=now, queues=queues)
    if not updated:
        PipelineWorker.objects.update_or_create(node=node, defaults={
            'host': socket.gethostname(), 'pid': os.getpid(), 'queues': queues, 'started': now, 'last_seen': now,
        })


def unregister_worker(node: str) -> None:
    PipelineWorker.objects.filter(node=node).delete()


def consumers_of(queue: str) -> list[PipelineWorker]:
    """The workers that reported, within the heartbeat timeout, that they consume ``queue``."""
    alive = timezone.now() - timedelta(seconds=conf.heartbeat_timeout())
    return [worker for worker in PipelineWorker.objects.filter(last_seen__gte=alive) if queue in worker.queues]


def hand_back(node: str) -> int:
    """On shutdown, give the runs still going on ``node`` to other workers (not counted as a lost attempt)."""
    handed = 0
    for pk, attempt, worker in PipelineProcess.objects.filter(
        state=ASYNC_STATUS_RUNNING, node=node
    ).values_list('pk', 'attempts', 'worker'):
        reason = f'the worker of attempt {attempt} ({worker}) shut down before the run finished'
        handed += requeue_or_fail(pk, attempt, reason, kind=HANDED_BACK, worker=worker)
    return handed


def periodic_check(node: str, queues: list[str]) -> None:
    """One round of every check; a check that fails is logged and the others still run."""
    for check, arguments in ((register_worker, (node, queues)), (recover_lost_runs, ()),
                             (resend_lost_messages, ()), (clean_workdirs, ()), (fire_due_rules, ())):
        try:
            check(*arguments)
        except Exception:  # noqa: BLE001 - e.g. the database restarting: try again at the next round
            logger.warning('tom_education: %s failed; trying again at the next check', check.__name__, exc_info=True)
            connections.close_all()


class CheckLoop:
    """A thread in the worker's main process running :func:`periodic_check` until the worker stops."""

    def __init__(self, node: str, queues: list[str]) -> None:
        self.node = node
        self.queues = queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='tom_education-checks', daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            while True:
                close_old_connections()
                periodic_check(self.node, self.queues)
                # jitter: workers that started together do not keep querying in lockstep
                if self._stop.wait(conf.check_interval() * random.uniform(0.8, 1.2)):
                    return
        finally:
            connections.close_all()

