"""Settings of the demo TOM: a TOM as ``tom_setup`` would make it, plus tom_education.

It needs no server: SQLite and Celery's embedded filesystem broker by default. Environment
variables switch to real services: ``CELERY_BROKER_URL`` (e.g. ``redis://127.0.0.1:6379/0``) and
``TOM_EDUCATION_DB=postgres`` (with ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``).
"""
import os
from pathlib import Path

from tom_common.default_settings import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get('TOM_EDUCATION_VAR_DIR', BASE_DIR / 'var'))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get('DJANGO_SECRET_KEY', 'demo-only-secret-key-do-not-use-in-production')
DEBUG = os.environ.get('DJANGO_DEBUG', '1') == '1'
ALLOWED_HOSTS = ['127.0.0.1', 'localhost', 'testserver']
TOM_NAME = 'tom_education demo'

INSTALLED_APPS = TOMTOOLKIT_INSTALLED_APPS + [  # noqa: F405
    'tom_education',
    'demo',
]
SITE_ID = 1
# tom_education's UploaderMiddleware lets automatic-run rules ignore uploads by users who may not view the target
MIDDLEWARE = [*TOMTOOLKIT_MIDDLEWARE, 'tom_education.middleware.UploaderMiddleware']  # noqa: F405
ROOT_URLCONF = 'demo.urls'
WSGI_APPLICATION = 'demo.wsgi.application'
TEMPLATES = [
    {
        'BACKEND': 'django.template.backends.django.DjangoTemplates',
        'DIRS': [],
        'APP_DIRS': True,
        'OPTIONS': {
            'context_processors': [
                'django.template.context_processors.debug',
                'django.template.context_processors.request',
                'django.contrib.auth.context_processors.auth',
                'django.contrib.messages.context_processors.messages',
            ],
        },
    },
]
CRISPY_TEMPLATE_PACK = 'bootstrap5'


def _database() -> dict:
    if os.environ.get('TOM_EDUCATION_DB') == 'postgres':
        return {
            'ENGINE': 'django.db.backends.postgresql',
            'NAME': os.environ.get('PGDATABASE', 'test'),
            'USER': os.environ.get('PGUSER', 'postgres'),
            'PASSWORD': os.environ.get('PGPASSWORD', ''),
            'HOST': os.environ.get('PGHOST', '127.0.0.1'),
            'PORT': os.environ.get('PGPORT', '5432'),
        }
    return {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': os.environ.get('TOM_EDUCATION_SQLITE', str(VAR_DIR / 'demo.sqlite3')),
        # a worker and the web server write at the same time: wait for the lock instead of failing,
        # and take it at the start of a write transaction to avoid upgrade deadlocks
        'OPTIONS': {
            'timeout': 30,
            'transaction_mode': 'IMMEDIATE',
            'init_command': 'PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;',
        },
    }


DATABASES = {'default': _database()}
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'

AUTH_PASSWORD_VALIDATORS = []
LOGIN_URL = '/accounts/login/'
LOGIN_REDIRECT_URL = '/'
LOGOUT_REDIRECT_URL = '/'
AUTHENTICATION_BACKENDS = TOMTOOLKIT_AUTHENTICATION_BACKENDS  # noqa: F405

LANGUAGE_CODE = 'en-us'
TIME_ZONE = 'UTC'
USE_I18N = True
USE_TZ = True

STATIC_URL = '/static/'
STATIC_ROOT = str(VAR_DIR / 'static')
MEDIA_ROOT = str(VAR_DIR / 'data')
MEDIA_URL = '/data/'

# scripts/demo and scripts/test fetch Bootstrap into var/vendor so pages render without internet access
VENDOR_DIR = BASE_DIR / 'var' / 'vendor'
if (VENDOR_DIR / 'bootstrap' / 'css' / 'bootstrap.min.css').exists():
    STATICFILES_DIRS = [str(VENDOR_DIR)]
    BOOTSTRAP5 = {
        'css_url': {'url': STATIC_URL + 'bootstrap/css/bootstrap.min.css'},
        'javascript_url': {'url': STATIC_URL + 'bootstrap/js/bootstrap.bundle.min.js'},
    }

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'timestamped': {'format': '[{asctime}] {levelname} {name}: {message}', 'style': '{'}},
    'handlers': {'console': {'class': 'logging.StreamHandler', 'formatter': 'timestamped'}},
    'loggers': {'': {'handlers': ['console'], 'level': 'INFO'}},
}
CACHES = {'default': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}
TASKS = {'default': {'BACKEND': 'django_tasks.backends.immediate.ImmediateBackend'}}

TARGET_TYPE = 'SIDEREAL'
MATCH_MANAGERS = {}
FACILITIES = {}
TOM_FACILITY_CLASSES = []
DATA_PRODUCT_TYPES = {
    'photometry': ('photometry', 'Photometry'),
    'fits_file': ('fits_file', 'FITS File'),
    'spectroscopy': ('spectroscopy', 'Spectroscopy'),
    'image_file': ('image_file', 'Image File'),
    'timelapse': ('timelapse', 'Timelapse'),
}
DATA_PROCESSORS = {
    'photometry': 'tom_dataproducts.processors.photometry_processor.PhotometryProcessor',
    'spectroscopy': 'tom_dataproducts.processors.spectroscopy_processor.SpectroscopyProcessor',
}
EXTRA_FIELDS = []
GENERAL_SEARCH_FUNCTIONS = {}
SELECTION_EXTRA_FIELDS = []
AUTH_STRATEGY = 'READ_ONLY'
OPEN_URLS = []
TARGET_PERMISSIONS_ONLY = True
TARGET_DEFAULT_PERMISSION = 'PRIVATE'
TARGET_LIST_COLUMNS = ['name', 'type', 'observations', 'saved_data']
HOOKS = {
    'target_post_save': 'tom_common.hooks.target_post_save',
    'observation_change_state': 'tom_common.hooks.observation_change_state',
    'data_product_post_upload': 'tom_dataproducts.hooks.data_product_post_upload',
    'data_product_post_save': 'tom_dataproducts.hooks.data_product_post_save',
    'multiple_data_products_post_save': 'tom_dataproducts.hooks.multiple_data_products_post_save',
}
AUTO_THUMBNAILS = False
THUMBNAIL_MAX_SIZE = (0, 0)
THUMBNAIL_DEFAULT_SIZE = (200, 200)
HINTS_ENABLED = False
HINT_LEVEL = 20
REST_FRAMEWORK = {
    'DEFAULT_AUTHENTICATION_CLASSES': [
        'tom_common.accounts.api_auth.TomTokenAuthentication',
        'rest_framework.authentication.SessionAuthentication',
    ],
    'DEFAULT_PERMISSION_CLASSES': [],
    'TEST_REQUEST_DEFAULT_FORMAT': 'json',
    'DEFAULT_PAGINATION_CLASS': 'rest_framework.pagination.LimitOffsetPagination',
    'PAGE_SIZE': 100,
}
PLOTLY_THEME = 'plotly_white'
SHOW_PAGINATION_INFO = True

# --- tom_education ---------------------------------------------------------------------------
TOM_EDUCATION_PIPELINES = {
    'Light curve (aperture photometry)': 'tom_education.pipelines.photometry.AperturePhotometryPipeline',
    'Timelapse': 'tom_education.pipelines.timelapse.TimelapsePipeline',
    'Period search': 'tom_education.pipelines.periods.pipeline.PeriodSearchPipeline',
    'Frame statistics': 'demo.pipelines.FrameStatistics',
    'Light curve (aperture sum)': 'demo.pipelines.CentreLightCurve',
}
CELERY_BROKER_URL = os.environ.get('CELERY_BROKER_URL', '')
TOM_EDUCATION_BROKER_DIR = str(VAR_DIR / 'celery-broker')
