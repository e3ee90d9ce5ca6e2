"""The benchmark's parts: ``bench/run.py`` is the entry point; one module per family of rows."""
