"""The pipelines the benchmark runs, registered by ``bench/settings.py``.

They live outside ``INSTALLED_APPS``, as docs/pipelines.rst shows for a TOM's own module: each is a
proxy with an explicit ``app_label``, so registering them needs no migration. What the logging and
big-output pipelines do is set by module attributes that ``bench/run.py`` fills in before it runs
them in its own process; on a worker only ``NoOp`` is ever run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tom_dataproducts.models import DataProduct

from bench.lines import SMALL_OUTPUT_BYTES, SMALL_RUN_LINES, log_message
from tom_education.models import PipelineOutput, PipelineProcess

APP_LABEL = 'tom_education_bench'


class NoOp(PipelineProcess):
    """Does nothing: the time a run of it takes is the engine's own cost."""

    short_name = 'bench_noop'

    class Meta:
        proxy = True
        app_label = APP_LABEL

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list:
        return []


@dataclass
class LogPlan:
    """How ``LogLines`` logs: ``blocks`` blocks of ``block`` lines, sleeping ``pause`` s after each."""

    blocks: int = 10
    block: int = 1000
    pause: float = 0.0


#: set by bench/run.py before it runs a ``LogLines`` process
LOG_PLAN = LogPlan()
#: (start, end) ``time.perf_counter()`` of each block of the last ``LogLines`` run
LOG_BLOCKS: list[tuple[float, float]] = []


class LogLines(PipelineProcess):
    """Calls ``self.log()`` in timed blocks, so the bench can see whether a line costs more as the log grows."""

    short_name = 'bench_log'

    class Meta:
        proxy = True
        app_label = APP_LABEL

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list:
        plan = LOG_PLAN
        LOG_BLOCKS.clear()
        number = 0
        for _ in range(plan.blocks):
            start = time.perf_counter()
            for _ in range(plan.block):
                self.log(log_message(number))
                number += 1
            LOG_BLOCKS.append((start, time.perf_counter()))
            if plan.pause:
                time.sleep(plan.pause)
        return []


#: size in bytes of the file ``BigOutput`` writes; set by bench/run.py
BIG_OUTPUT_BYTES = 1024 * 1024
CHUNK = 1024 * 1024


def write_big_file(path: Path, size: int) -> None:
    """Write ``size`` bytes one chunk at a time: the file never sits in memory, so only saving it can grow it."""
    chunk = bytes(range(256)) * (CHUNK // 256)
    with path.open('wb') as handle:
        remaining = size
        while remaining > 0:
            handle.write(chunk[:min(remaining, CHUNK)])
            remaining -= CHUNK


class BigOutput(PipelineProcess):
    """Returns one large file as a DataProduct: saving it must stream, not read it into memory."""

    short_name = 'bench_big'

    class Meta:
        proxy = True
        app_label = APP_LABEL

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list[Any]:
        path = tmpdir / 'big_output.bin'
        write_big_file(path, BIG_OUTPUT_BYTES)
        return [PipelineOutput(path, DataProduct)]


class SmallRun(PipelineProcess):
    """A realistic small run: 100 log lines and one small file kept as a DataProduct."""

    short_name = 'bench_small'

    class Meta:
        proxy = True
        app_label = APP_LABEL

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list[Any]:
        for number in range(SMALL_RUN_LINES):
            self.log(log_message(number))
        path = tmpdir / 'small_output.txt'
        path.write_bytes(b'x' * SMALL_OUTPUT_BYTES)
        return [PipelineOutput(path, DataProduct)]


#: how long ``Sleep`` runs: long enough to be killed mid-run, short enough for 20 kills
SLEEP_SECONDS = 1.0


class Sleep(PipelineProcess):
    """Sleeps ``SLEEP_SECONDS``: the run whose worker the recovery benchmark kills while it runs."""

    short_name = 'bench_sleep'

    class Meta:
        proxy = True
        app_label = APP_LABEL

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list:
        time.sleep(SLEEP_SECONDS)
        return []
