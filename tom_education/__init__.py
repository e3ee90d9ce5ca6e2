"""Data pipelines for the TOM Toolkit, run in the background on Celery workers."""
