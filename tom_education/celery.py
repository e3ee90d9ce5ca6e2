"""The Celery app behind ``celery -A tom_education worker``.

A TOM that already runs its own Celery app does not need this one: point
``TOM_EDUCATION_CELERY_APP`` at it and let it autodiscover ``tom_education.tasks``.
"""
import os

from celery import Celery
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if not (os.environ.get('DJANGO_SETTINGS_MODULE') or settings.configured):
    raise ImproperlyConfigured(
        'Set DJANGO_SETTINGS_MODULE to your TOM\'s settings module before starting a worker, e.g. '
        'DJANGO_SETTINGS_MODULE=mytom.settings celery -A tom_education worker'
    )

app = Celery('tom_education')
app.config_from_object('django.conf:settings', namespace='CELERY')


def _defaults() -> dict:
    from tom_education import conf

    return conf.celery_defaults()


app.add_defaults(_defaults)
app.autodiscover_tasks(['tom_education'])
