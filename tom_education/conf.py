"""Every setting tom_education reads, with its default, in one place.

Other modules ask this module rather than ``django.conf.settings`` so that defaults are
documented once (see ``docs/settings.rst``) and tests can override any of them with
``override_settings``: values are read on each call, never cached at import.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

# the host part is never used by the filesystem transport, but without it kombu warns on every connection
EMBEDDED_BROKER_URL = 'filesystem://localhost/'


def pipelines() -> dict[str, str]:
    """``TOM_EDUCATION_PIPELINES``: display name -> dotted path of a ``PipelineProcess`` subclass."""
    configured = getattr(settings, 'TOM_EDUCATION_PIPELINES', {}) or {}
    # a malformed setting is reported by the system check E001; pages then simply offer no pipeline
    return dict(configured) if isinstance(configured, dict) else {}


def option_defaults(pipeline: str) -> dict[str, Any]:
    """``TOM_EDUCATION_OPTION_DEFAULTS[pipeline]``: this site's defaults for the options of a registered pipeline.

    Keyed by the name the pipeline is registered under, e.g.
    ``{'Light curve (aperture photometry)': {'aperture_radius': 8.0}}``; checked by ``manage.py check``.
    """
    configured = getattr(settings, 'TOM_EDUCATION_OPTION_DEFAULTS', {}) or {}
    overrides = configured.get(pipeline) if isinstance(configured, dict) else None
    return dict(overrides) if isinstance(overrides, dict) else {}


def soft_time_limit() -> int:
    """Seconds a run may take before it is stopped and failed as timed out."""
    return int(getattr(settings, 'TOM_EDUCATION_SOFT_TIME_LIMIT', 3600))


def hard_time_limit() -> int:
    """Seconds after which the worker kills a run that ignored the soft limit (e.g. stuck in C code)."""
    return int(getattr(settings, 'TOM_EDUCATION_TIME_LIMIT', soft_time_limit() + 60))


def max_attempts() -> int:
    """How many times a run may be started before a run that keeps killing its worker is failed."""
    return int(getattr(settings, 'TOM_EDUCATION_MAX_ATTEMPTS', 3))


def heartbeat_interval() -> float:
    """Seconds between two heartbeats a running process writes on its row."""
    return float(getattr(settings, 'TOM_EDUCATION_HEARTBEAT_INTERVAL', 5.0))


def heartbeat_timeout() -> float:
    """A running process whose last heartbeat is older than this is considered lost."""
    return float(getattr(settings, 'TOM_EDUCATION_HEARTBEAT_TIMEOUT', 60.0))


def check_interval() -> float:
    """Seconds between two of each worker's checks for lost runs, lost messages and leftover folders.

    Each worker adds up to 20 % of random jitter, so that several workers do not query in lockstep.
    """
    return float(getattr(settings, 'TOM_EDUCATION_CHECK_INTERVAL', heartbeat_interval()))


def resend_pending_after() -> float:
    """A pending run whose message the broker no longer holds is sent again after this many seconds."""
    return float(getattr(settings, 'TOM_EDUCATION_RESEND_PENDING_AFTER', 60.0))


def shutdown_grace() -> float:
    """On a warm shutdown (SIGTERM), runs still going after this many seconds are handed to another worker."""
    return float(getattr(settings, 'TOM_EDUCATION_SHUTDOWN_GRACE', 20.0))


def log_flush_interval() -> float:
    """Longest time a log line waits in the worker's buffer before it is written."""
    return float(getattr(settings, 'TOM_EDUCATION_LOG_FLUSH_INTERVAL', 0.5))


def max_text_output_bytes() -> int:
    """Largest file saved as the text of a ReducedDatum (larger files belong in a DataProduct)."""
    return int(getattr(settings, 'TOM_EDUCATION_MAX_TEXT_OUTPUT_BYTES', 10 * 1024 * 1024))


def celery_app_path() -> str:
    """Dotted path of the Celery app used to enqueue runs; a TOM with its own app points this at it."""
    return getattr(settings, 'TOM_EDUCATION_CELERY_APP', 'tom_education.celery.app')


def broker_url() -> str:
    """``CELERY_BROKER_URL``, or the embedded filesystem broker that needs no server."""
    return getattr(settings, 'CELERY_BROKER_URL', None) or EMBEDDED_BROKER_URL


def broker_dir() -> Path:
    """Folder shared by the web process and the worker when the embedded filesystem broker is used."""
    configured = getattr(settings, 'TOM_EDUCATION_BROKER_DIR', None)
    if configured:
        return Path(configured)
    base_dir = getattr(settings, 'BASE_DIR', None)
    if base_dir:
        return Path(base_dir) / 'var' / 'celery-broker'
    return Path(tempfile.gettempdir()) / 'tom_education-celery-broker'


def work_root() -> Path:
    """The folder in which runs make their work folders: one per database, in the system's temporary folder.

    Workers remove the folders of runs that no longer run; named after the database, two TOMs on one
    host (a site and its staging copy, two test runs) never take each other's runs for dead ones.
    """
    database = settings.DATABASES['default']
    identity = repr((database.get('ENGINE'), str(database.get('NAME')), database.get('HOST'), database.get('PORT')))
    return Path(tempfile.gettempdir()) / f'tom_education-runs-{hashlib.sha256(identity.encode()).hexdigest()[:12]}'


def broker_transport_options() -> dict[str, Any]:
    """Transport options matching :func:`broker_url`.

    For Redis, the visibility timeout must outlast the hard time limit: otherwise Redis hands a
    still-running job to a second worker and it runs twice.
    """
    url = broker_url()
    if url.startswith('filesystem:'):
        root = broker_dir()
        folders = {
            'data_folder_in': root / 'queue',
            'data_folder_out': root / 'queue',
            'control_folder': root / 'control',
            'processed_folder': root / 'processed',
        }
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {name: str(folder) for name, folder in folders.items()}
    if url.startswith(('redis:', 'rediss:')):
        return {'visibility_timeout': hard_time_limit() + 600}
    return {}


def celery_defaults() -> dict[str, Any]:
    """Celery settings tom_education needs for long jobs; a TOM's ``CELERY_*`` settings win over these."""
    return {
        'broker_url': broker_url(),
        'broker_transport_options': broker_transport_options(),
        'broker_connection_retry_on_startup': True,
        'task_acks_late': True,
        'task_ignore_result': True,
        'worker_prefetch_multiplier': 1,
        # a run still healthy on its worker goes on through a broker blip; every message names its attempt,
        # so a redelivered copy is dropped at once instead of running twice
        'worker_cancel_long_running_tasks_on_connection_loss': False,
        'broker_connection_timeout': enqueue_timeout(),
        # Celery's Django fixup closes the database connection around every task unless this is set; a new
        # connection costs more than a short run, and runner.discard_broken_connections() replaces a dead one
        'CELERY_DB_REUSE_MAX': 1000,
    }


def enqueue_timeout() -> float:
    """Seconds the web process waits for the broker before it reports the queue as unavailable."""
    return float(getattr(settings, 'TOM_EDUCATION_ENQUEUE_TIMEOUT', 5.0))
