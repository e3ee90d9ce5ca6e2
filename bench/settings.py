"""Settings of the benchmark (``bench/run.py``): the demo TOM, pointed at a private temporary world.

``bench/run.py`` sets the environment before anything imports this module, and the Celery workers
it starts inherit that environment, so the bench process and the workers share one database, one
media folder, one broker and one queue without any of them touching the demo's ``var/`` folder.

Environment (all set by ``bench/run.py``):

``TOM_EDUCATION_VAR_DIR``   the temporary directory (media files, SQLite database)
``TOM_EDUCATION_BENCH_BROKER``   Redis URL of the broker
``TOM_EDUCATION_BENCH_QUEUE``    a queue name used by this run only
``TOM_EDUCATION_DB`` / ``PG*``   PostgreSQL instead of SQLite (``--db postgres``), as in the demo
"""
import os

os.environ.setdefault('TOM_EDUCATION_SQLITE', os.path.join(os.environ['TOM_EDUCATION_VAR_DIR'], 'bench.sqlite3'))

from demo.settings import *  # noqa: E402,F403

# measure what a production TOM runs: no query log kept in memory, no debug pages
DEBUG = False
# the bench prints its own progress; only problems are worth a line on the console
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'console': {'class': 'logging.StreamHandler'}},
    'loggers': {'': {'handlers': ['console'], 'level': 'WARNING'}},
}

CELERY_BROKER_URL = os.environ['TOM_EDUCATION_BENCH_BROKER']
CELERY_TASK_DEFAULT_QUEUE = os.environ['TOM_EDUCATION_BENCH_QUEUE']

TOM_EDUCATION_PIPELINES = {
    **TOM_EDUCATION_PIPELINES,  # noqa: F405
    'Bench no-op': 'bench.pipelines.NoOp',
    'Bench logging': 'bench.pipelines.LogLines',
    'Bench big output': 'bench.pipelines.BigOutput',
    'Bench small run': 'bench.pipelines.SmallRun',
    'Bench sleep': 'bench.pipelines.Sleep',
}
