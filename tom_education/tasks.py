"""The Celery task: a thin shell that hands the primary key to the runner.

Options that make long jobs safe (late acknowledgement, requeue when the worker process dies,
time limits) are set on the task itself, so they hold on a TOM's own Celery app too.
"""
from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded
from celery.signals import worker_ready

from tom_education import conf, runner, services
from tom_education.models import ASYNC_STATUS_FAILED


class PipelineTask(Task):
    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The hard time limit kills the child process; the worker's main process records why here."""
        if isinstance(exc, TimeLimitExceeded) and args:
            seconds = exc.args[0] if exc.args and isinstance(exc.args[0], (int, float)) else conf.hard_time_limit()
            runner.remove_workdirs(args[0])  # the killed child could not clean up after itself
            runner.finish(args[0], ASYNC_STATUS_FAILED, runner.timed_out_message(seconds))


@shared_task(
    base=PipelineTask,
    bind=True,
    name=services.TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_pipeline_process(self: Task, process_pk: int) -> None:
    """Time limits travel with each message (see ``services.enqueue``), so they follow the settings of the
    process that queued the run, and a worker started before a settings change still applies the new ones."""
    soft_time_limit = (self.request.timelimit or (None, None))[1]
    runner.run_process(process_pk, soft_time_limit=soft_time_limit)


@worker_ready.connect
def reap_when_worker_starts(**kwargs: Any) -> None:
    """A restarted worker fails the runs its predecessor left behind without a heartbeat."""
    services.reap_stale_processes()
