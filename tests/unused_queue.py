"""A Celery app on the test Redis with a queue no worker consumes, for tests that run processes in-process."""
import os
import uuid

from celery import Celery

app = Celery('unused', broker=os.environ['TOM_EDUCATION_TEST_BROKER'])
app.conf.task_default_queue = f'tom_education_unused_{uuid.uuid4().hex[:8]}'
