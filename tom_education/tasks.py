"""The Celery task, and the worker's part in keeping runs alive: a thin shell over ``runner`` and ``recovery``.

Options that make long jobs safe (late acknowledgement, time limits) are set on the task itself,
and the worker hooks are Celery *signals*, so all of it holds on a TOM's own Celery app too, as
long as it loads this module (``autodiscover_tasks``).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded
from celery.signals import (
    task_failure,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from tom_education import conf, ending, recovery, runner, workdirs
from tom_education.dispatch import TASK_NAME
from tom_education.models import ASYNC_STATUS_FAILED

logger = logging.getLogger(__name__)


class PipelineTask(Task):
    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The hard time limit kills the child process; the worker's main process records why here.

        A run that times out is the pipeline's fault: it is failed, not retried.
        """
        if isinstance(exc, TimeLimitExceeded) and args:
            seconds = exc.args[0] if exc.args and isinstance(exc.args[0], (int, float)) else conf.hard_time_limit()
            attempt = (kwargs or {}).get('attempt')
            workdirs.remove_workdirs(args[0], attempt)  # the killed child could not clean up after itself
            if not ending.finish(args[0], ASYNC_STATUS_FAILED, runner.timed_out_message(seconds), attempt=attempt) \
                    and attempt is not None:
                recovery.resend_unstarted(args[0], attempt)  # killed before it even started the run


@shared_task(
    base=PipelineTask,
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    # a lost worker process is handled by requeue_when_the_worker_process_died, as a new attempt
    reject_on_worker_lost=False,
    ignore_result=True,
)
def run_pipeline_process(self: Task, process_pk: int, attempt: int | None = None) -> None:
    """Time limits travel with each message (see ``dispatch.enqueue``), so they follow the settings of the
    process that queued the run, and a worker started before a settings change still applies the new ones."""
    soft_time_limit = (self.request.timelimit or (None, None))[1]
    runner.run_process(process_pk, attempt=attempt, node=self.request.hostname or '',
                       soft_time_limit=soft_time_limit)


@task_failure.connect
def requeue_when_the_worker_process_died(sender: Any = None, exception: Exception | None = None, args: Any = None,
                                         kwargs: Any = None, **extra: Any) -> None:
    """A pool process that died mid-run (killed, out of memory) is reported to the worker's main process at
    once: the run is queued again as its next attempt, without waiting for its heartbeat to go stale."""
    if getattr(sender, 'name', None) != TASK_NAME or not isinstance(exception, WorkerLostError) or not args:
        return
    pk, attempt = args[0], (kwargs or {}).get('attempt')
    if attempt is None:
        return  # a message without an attempt number: the periodic check will notice its run
    try:
        recovery.requeue_or_fail(pk, attempt, f'the worker process of attempt {attempt} died ({exception})',
                                 kind=recovery.DIED)
    except Exception:  # noqa: BLE001 - the periodic check will handle the run instead
        logger.warning('tom_education: could not queue process %s again', pk, exc_info=True)


_checks: dict[str, recovery.CheckLoop] = {}


@worker_ready.connect
def start_checks(sender: Any = None, **extra: Any) -> None:
    """Each worker checks for lost runs, lost messages and leftover folders on its own timer."""
    node = sender.hostname
    queues = sorted(queue.name for queue in sender.task_consumer.queues)
    _checks[node] = recovery.CheckLoop(node, queues)
    _checks[node].start()


@worker_shutting_down.connect
def hand_back_on_shutdown(sender: Any = None, how: str = '', **extra: Any) -> None:
    """A warm shutdown (SIGTERM) lets short runs finish; what still runs after the grace period goes elsewhere.

    Runs in a signal handler: it only starts a timer thread.
    """
    if how != 'Warm':
        return
    timer = threading.Timer(conf.shutdown_grace(), _hand_back, args=[sender])
    timer.daemon = True
    timer.start()


def _hand_back(node: str) -> None:
    try:
        handed = recovery.hand_back(node)
        recovery.unregister_worker(node)
    except Exception:  # noqa: BLE001 - the other workers' checks find the runs once their heartbeat stops
        logger.warning('tom_education: could not hand back the runs of %s', node, exc_info=True)
        return
    if handed:
        logger.info('tom_education: handed %s run(s) back to the queue before shutting down', handed)


@worker_shutdown.connect
def stop_checks(sender: Any = None, **extra: Any) -> None:
    node = getattr(sender, 'hostname', None)
    checks = _checks.pop(node, None)
    if checks is not None:
        checks.stop()
    try:
        recovery.unregister_worker(node)
    except Exception:  # noqa: BLE001 - its row simply ages out
        logger.debug('tom_education: could not unregister %s', node, exc_info=True)


@worker_process_shutdown.connect
def stop_monitor(**extra: Any) -> None:
    """A pool process that exits stops its monitor thread, which first removes the folders of its last runs,
    and removes its spare work folders."""
    runner.Monitor.shutdown()
    workdirs.remove_spares()
