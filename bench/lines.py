"""What the bench pipelines and their baselines share, in a module free of Django and Celery."""

#: size of the small output of ``bench.pipelines.SmallRun`` and of the raw baseline's file (bench/raw_celery.py)
SMALL_OUTPUT_BYTES = 4096
#: lines ``bench.pipelines.SmallRun`` logs, and the raw baseline writes
SMALL_RUN_LINES = 100


def log_message(number: int) -> str:
    """A log line of a realistic length; the bench's baselines log exactly the same text."""
    return f'bench line {number:05d}: reduced frame 2048x2048, median 1234.5 ADU, 17 stars matched'
