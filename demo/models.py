"""The demo's pipelines are proxy models: importing them here registers them whenever the app loads,
so ``makemigrations`` always sees them (even with ``--skip-checks``, which skips the registry)."""
from demo.pipelines import CentreLightCurve, FrameStatistics  # noqa: F401
