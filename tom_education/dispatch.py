"""Sending a run to the workers: the one place a task message is made.

Each message carries the process's primary key and the attempt it starts; the time limits travel
with it (so they follow the settings of the process that queued the run).
"""
from __future__ import annotations

import logging

from django.utils.module_loading import import_string

from tom_education import conf, registry
from tom_education.ending import finish
from tom_education.models import ASYNC_STATUS_FAILED, PipelineProcess

logger = logging.getLogger(__name__)

TASK_NAME = 'tom_education.run_pipeline_process'
QUEUE_UNAVAILABLE = 'The pipeline queue is unavailable'


def queue_name(process: PipelineProcess) -> str:
    """The queue the process's runs go to: its pipeline's ``queue``, or the Celery app's default queue.

    ``process`` may be a plain ``PipelineProcess`` row (as pages load them): the registered class decides.
    """
    try:
        queue = registry.get(process.pipeline).queue
    except registry.UnknownPipeline:
        queue = None
    return queue or import_string(conf.celery_app_path()).conf.task_default_queue


def enqueue(process: PipelineProcess, attempt: int = 1, fail_if_unreachable: bool = True) -> bool:
    """Send ``attempt`` of the process to the workers; False if the broker could not be reached.

    A user's submission is then failed (on ``process`` too) with a message saying so: they see why
    instead of a run that never starts. A retry sent by the engine stays pending instead, and the
    workers' periodic check sends it again once the broker answers.
    """
    args, kwargs = [process.pk], {'attempt': attempt}
    try:
        app = import_string(conf.celery_app_path())
        app.send_task(
            TASK_NAME,
            args=args,
            kwargs=kwargs,
            # the arguments as monitoring tools print them: Celery's own saferepr of them cost 0.15 ms, a sixth
            # of sending the message, and gives the same text as repr for a list and a dict of small integers
            argsrepr=repr(args),
            kwargsrepr=repr(kwargs),
            task_id=process.task_id,
            queue=process.queue or None,
            soft_time_limit=conf.soft_time_limit(),
            time_limit=conf.hard_time_limit(),
            retry=True,
            retry_policy={'max_retries': 2, 'interval_start': 0.2, 'interval_step': 0.5, 'interval_max': 1},
        )
    except Exception as exc:  # noqa: BLE001 - any broker error: the user gets a message, not a 500
        logger.warning('Could not queue pipeline process %s: %s', process.pk, exc)
        if not fail_if_unreachable:
            return False
        message = (
            f'{QUEUE_UNAVAILABLE}: the pipeline was not started because the task queue '
            f'could not be reached ({type(exc).__name__}). Try again later, or ask the TOM administrator '
            'to check the Celery broker.'
        )
        finish(process.pk, ASYNC_STATUS_FAILED, message)
        process.refresh_from_db(fields=['state', 'status', 'failure_message', 'finished'])
        return False
    return True
