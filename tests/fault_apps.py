"""Where a fault test puts the Celery app of its private broker (with monkeypatch), for
``TOM_EDUCATION_CELERY_APP = 'tests.fault_apps.app'``."""
app = None
