"""Settings for the test suite: the demo TOM plus test pipelines, a real Redis broker and a file-backed DB.

The suite starts real ``celery worker`` processes with these same settings; values they must share
with the test process (database, media folder, queue) travel through environment variables that
the first import fixes, so the worker, started later from the test process, inherits them.
"""
import os
import tempfile
import uuid

os.environ.setdefault('TOM_EDUCATION_VAR_DIR', tempfile.mkdtemp(prefix='tom_education-tests-'))
os.environ.setdefault('TOM_EDUCATION_TEST_QUEUE', f'tom_education_test_{uuid.uuid4().hex[:8]}')
os.environ.setdefault('TOM_EDUCATION_TEST_BROKER', 'redis://127.0.0.1:6379/15')

from demo.settings import *  # noqa: E402,F403

DATABASES['default']['TEST'] = {  # noqa: F405
    'NAME': (
        f'test_tom_education_{os.environ["TOM_EDUCATION_TEST_QUEUE"][-8:]}'
        if DATABASES['default']['ENGINE'].endswith('postgresql')  # noqa: F405
        else os.path.join(os.environ['TOM_EDUCATION_VAR_DIR'], 'test.sqlite3')
    ),
}
if os.environ.get('TOM_EDUCATION_TEST_WORKER'):
    # a worker process connects straight to the database the test run created
    DATABASES['default']['NAME'] = DATABASES['default']['TEST']['NAME']  # noqa: F405

CELERY_TASK_DEFAULT_QUEUE = os.environ['TOM_EDUCATION_TEST_QUEUE']
CELERY_BROKER_URL = os.environ['TOM_EDUCATION_TEST_BROKER']

TOM_EDUCATION_HEARTBEAT_INTERVAL = 0.5
TOM_EDUCATION_HEARTBEAT_TIMEOUT = float(os.environ.get('TOM_EDUCATION_HEARTBEAT_TIMEOUT', 4))
TOM_EDUCATION_SOFT_TIME_LIMIT = 60
TOM_EDUCATION_TIME_LIMIT = 90
TOM_EDUCATION_MAX_ATTEMPTS = 2

TOM_EDUCATION_PIPELINES = {
    **TOM_EDUCATION_PIPELINES,  # noqa: F405
    'Example': 'tests.spec_pipelines.ExamplePipelineProcess',
    'Flag demo': 'tests.spec_pipelines.FlagDemo',
    'Fails': 'tests.spec_pipelines.MyPipeline',
    'Status example': 'tests.spec_pipelines.StatusExample',
    'Log example': 'tests.spec_pipelines.LogExample',
    'Scripted': 'tests.pipelines.Scripted',
    'Slow': 'tests.pipelines.Slow',
    'Countdown': 'tests.pipelines.Countdown',
    'Fault scripted': 'tests.pipelines.FaultScripted',
    'Tunable': 'tests.pipelines.Tunable',
}
DATA_PRODUCT_TYPES = {**DATA_PRODUCT_TYPES, 'csv_table': ('csv_table', 'CSV table')}  # noqa: F405
# the suite creates many users: a fast hasher keeps that from dominating its run time
PASSWORD_HASHERS = ['django.contrib.auth.hashers.MD5PasswordHasher']
