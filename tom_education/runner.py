"""Run one process on a worker: claim the row, call ``do_pipeline()``, save the outputs, record the end.

Whatever happens, the row ends in a final state with a message a user can act on, the last log
lines are written before that state, and the temporary directory is removed.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from billiard.exceptions import SoftTimeLimitExceeded
from django.db import connections
from django.db.models import F
from django.utils import timezone

from tom_education import conf, registry
from tom_education.models import (
    ACTIVE_STATES,
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_FAILED,
    ASYNC_STATUS_RUNNING,
    AsyncError,
    PipelineLogLine,
    PipelineProcess,
    ProcessCancelled,
    progress_report,
)
from tom_education.outputs import check_outputs, save_outputs

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f'{socket.gethostname()}:{os.getpid()}'


def finish(pk: int, state: str, failure_message: str = '', traceback_text: str = '') -> bool:
    """Move an active process to a final state; False when it had already ended."""
    return PipelineProcess.objects.filter(pk=pk, state__in=ACTIVE_STATES).update(
        state=state, status=state, failure_message=failure_message, traceback=traceback_text,
        finished=timezone.now(),
    ) > 0


def workdir_prefix(pk: int) -> str:
    return f'tom_education-{pk}-'


def remove_workdirs(pk: int) -> None:
    """Remove the temporary directories a killed run of process ``pk`` left on this host."""
    for leftover in Path(tempfile.gettempdir()).glob(f'{workdir_prefix(pk)}*'):
        shutil.rmtree(leftover, ignore_errors=True)


def timed_out_message(seconds: float) -> str:
    return (
        f'The pipeline timed out after {seconds:g} s. If it needs longer, ask the TOM administrator to raise '
        'TOM_EDUCATION_SOFT_TIME_LIMIT (and TOM_EDUCATION_TIME_LIMIT).'
    )


CANCEL_SIGNAL = signal.SIGUSR2


def descendant_pids(pid: int) -> set[int]:
    """The processes below ``pid``.

    Linux lists each thread's children in /proc: the cost follows the run's own (usually empty)
    process tree, not every process on the host as a scan of /proc/*/stat does (psutil's way,
    kept for systems without those files).
    """
    if not Path(f'/proc/{pid}/task/{pid}/children').exists():
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    found: set[int] = set()
    todo = [pid]
    while todo:
        for listing in Path(f'/proc/{todo.pop()}/task').glob('*/children'):
            try:
                children = {int(child) for child in listing.read_text().split()} - found
            except OSError:  # the process ended while we looked
                continue
            found |= children
            todo.extend(children)
    return found


class RunContext:
    """Worker-side companion of a running process: its log buffer, heartbeat and cancel flag.

    ``log()`` only appends to a list; a monitor thread writes the buffer every
    ``TOM_EDUCATION_LOG_FLUSH_INTERVAL`` seconds in one statement, beats the heart and watches for
    a cancel request. Status changes and the end of the run flush at once.
    """

    def __init__(self, process: PipelineProcess) -> None:
        self.process = process
        self.cancel_requested = False
        self.staging_dir: Path | None = None
        self._last_status = process.status
        self._pending: list[tuple[str, int]] = []
        self._progress = ProgressTracker()
        self._next_seq = PipelineLogLine.next_seq(process)
        # held by whoever writes log lines; the pipeline's thread holds it for the whole output transaction
        # (see exclusive_writes), so the monitor never waits for SQLite's lock while holding this one
        self._write_lock = threading.RLock()
        self._interrupt_lock = threading.Lock()
        self._stop = threading.Event()
        self._pipeline_thread = threading.get_ident()
        self._on_main_thread = threading.current_thread() is threading.main_thread()
        self._previous_handler: Any = None
        self._in_pipeline = False
        # processes that exist before the run are not the run's to stop (a test runner's workers, say)
        self._children_before = descendant_pids(os.getpid())
        self._monitor = threading.Thread(target=self._watch, name=f'tom_education-{process.pk}', daemon=True)

    # --- called from the pipeline's thread ------------------------------------------------------

    def log(self, message: str, level: int = logging.INFO) -> None:
        self._pending.append((message, level))
        if self.cancel_requested:
            self._cancel_here()

    def progress(self, done: int, total: int | None, message: str) -> None:
        """Remember the latest progress; the monitor writes it at its next tick (never a commit per call)."""
        self._progress.report(done, total, message)
        if self.cancel_requested:
            self._cancel_here()

    def on_status_saved(self, status: str) -> None:
        """Record the change in the log too, so the history of statuses stays readable afterwards."""
        if status != self._last_status:
            self._last_status = status
            self._pending.append((f'Status: {status}', logging.INFO))
        self.flush()
        if self.cancel_requested:
            self._cancel_here()

    def _cancel_here(self, *signal_args: Any) -> None:
        """Raise ProcessCancelled in the pipeline, once; later calls (and late signals) do nothing."""
        if self._in_pipeline:
            self._in_pipeline = False
            raise ProcessCancelled()

    def flush(self) -> None:
        with self._write_lock:
            report = self._progress.unwritten()
            if report is not None:
                PipelineProcess.objects.filter(pk=self.process.pk).update(progress_report=report)
            if not self._pending:
                return
            # swap the list first: log() may append from the pipeline's thread while we write
            lines, self._pending = self._pending, []
            try:
                PipelineLogLine.append(self.process, lines, first_seq=self._next_seq)
            except Exception:
                self._pending[:0] = lines  # keep them for the next flush
                raise
            self._next_seq += len(lines)

    @contextlib.contextmanager
    def exclusive_writes(self) -> Iterator[None]:
        """Keep the monitor's log writes out while the pipeline's thread holds a database transaction.

        On SQLite a transaction locks the whole database: a monitor flush waiting for it while holding
        the log lock, and the transaction's own flush waiting for the log lock, would block each
        other (and every other writer) until SQLite's timeout.
        """
        with self._write_lock:
            yield

    def call_pipeline(self, tmpdir: Path, parameters: dict[str, Any]) -> Any:
        if self._on_main_thread:
            self._previous_handler = signal.signal(CANCEL_SIGNAL, self._cancel_here)
        with self._interrupt_lock:
            self._in_pipeline = True
        try:
            return self.process.do_pipeline(tmpdir, **parameters)
        finally:
            self.leave_pipeline()

    def leave_pipeline(self) -> None:
        """From here on, cancelling no longer interrupts: the run is finishing on its own."""
        with self._interrupt_lock:
            self._in_pipeline = False
        if self._previous_handler is not None:
            signal.signal(CANCEL_SIGNAL, self._previous_handler)
            self._previous_handler = None

    def stop_new_children(self) -> None:
        """Stop every process the run started (and their children): nothing outlives its run."""
        pids = descendant_pids(os.getpid()) - self._children_before
        if not pids:
            return
        children = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                children.append(psutil.Process(pid))
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=3)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()

    # --- the monitor thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._monitor.start()

    def stop(self) -> None:
        self._stop.set()
        self._monitor.join()
        self.flush()

    def _watch(self) -> None:
        tick = min(conf.log_flush_interval(), conf.heartbeat_interval())
        next_beat = 0.0
        try:
            while not self._stop.wait(tick):
                try:
                    next_beat = self._watch_once(next_beat)
                except Exception:  # noqa: BLE001 - e.g. a locked database: try again at the next tick
                    logger.exception('tom_education monitor of process %s: tick failed', self.process.pk)
        finally:
            connections.close_all()

    def _watch_once(self, next_beat: float) -> float:
        self.flush()
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + conf.heartbeat_interval()
            PipelineProcess.objects.filter(pk=self.process.pk).update(heartbeat=timezone.now())
        if not self.cancel_requested and PipelineProcess.objects.filter(
            pk=self.process.pk, cancel_requested=True
        ).exists():
            self.cancel_requested = True
            self._interrupt()
        return next_beat

    def _interrupt(self) -> None:
        """Raise ProcessCancelled inside do_pipeline(), even if it never calls log().

        On a worker the pipeline runs on the main thread: a signal interrupts it even in a blocking
        call (sleep, waiting for a subprocess). Elsewhere an asynchronous exception is raised at its
        next Python instruction. The run's subprocesses are stopped first, so a wait on them ends.
        """
        with self._interrupt_lock:
            if not self._in_pipeline:
                return
            self.stop_new_children()
            if self._on_main_thread:
                signal.pthread_kill(self._pipeline_thread, CANCEL_SIGNAL)
            else:
                self._in_pipeline = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._pipeline_thread), ctypes.py_object(ProcessCancelled)
                )


class ProgressTracker:
    """The latest progress a pipeline reported, and when it should finish at the pace seen so far.

    The estimate is linear from the first report of the current total: the time before the first
    report (reading headers, say) does not distort it.
    """

    def __init__(self) -> None:
        self._latest: tuple[int, int | None, str] | None = None
        self._written: tuple[int, int | None, str] | None = None
        self._first: tuple[float, int] | None = None  # (monotonic time, done) of the first report of this total
        self._finish: float | None = None  # monotonic time the run should finish

    def report(self, done: int, total: int | None, message: str) -> None:
        done, total = int(done), (None if total is None else int(total))
        now = time.monotonic()
        if self._latest is None or self._latest[1] != total or self._first is None or done < self._first[1]:
            self._first, self._finish = (now, done), None
        elif total and done > self._first[1]:
            pace = (now - self._first[0]) / (done - self._first[1])
            self._finish = now + pace * max(0, total - done)
        self._latest = (done, total, str(message))

    def unwritten(self) -> dict[str, Any] | None:
        """The report to write, or None when the row already holds the latest one."""
        if self._latest is None or self._latest == self._written:
            return None
        self._written = self._latest
        finish = None
        if self._finish is not None:
            finish = timezone.now() + timedelta(seconds=max(0.0, self._finish - time.monotonic()))
        return progress_report(*self._latest, finish_estimate=finish)


class _ProcessLogHandler(logging.Handler):
    """Copies Python ``logging`` records emitted by the pipeline's thread into the process log."""

    def __init__(self, context: RunContext) -> None:
        super().__init__()
        self.context = context
        self.thread = threading.get_ident()
        self.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or record.name.startswith(('celery', 'kombu', 'django.db')):
            return
        try:
            self.context._pending.append((self.format(record), record.levelno))
        except Exception:  # noqa: BLE001 - logging must never break the pipeline
            self.handleError(record)


def claim(pk: int) -> str | None:
    """Mark the process running here and return its pipeline's name; None when it must not run here.

    A redelivered message finds the row already running: if the worker that ran it is still
    alive (its heartbeat is fresh) we leave it alone, otherwise we take over, counting attempts
    so a pipeline that kills its worker every time is failed instead of looping.
    """
    # a dead worker's last heartbeat goes stale within this time; a live one keeps it fresh
    deadline = time.monotonic() + conf.heartbeat_timeout() + 2 * conf.heartbeat_interval()
    while True:
        row = PipelineProcess.objects.filter(pk=pk).values(
            'state', 'attempts', 'heartbeat', 'worker', 'pipeline'
        ).first()
        if row is None or row['state'] not in ACTIVE_STATES:
            return None
        if row['state'] == ASYNC_STATUS_RUNNING and not _previous_run_is_gone(row):
            if time.monotonic() >= deadline:
                logger.info('Process %s is still running elsewhere; dropping the duplicate delivery', pk)
                return None
            time.sleep(min(conf.heartbeat_interval(), 1.0))
            continue
        if row['attempts'] >= conf.max_attempts():
            finish(pk, ASYNC_STATUS_FAILED, (
                f'The worker running this pipeline stopped unexpectedly {row["attempts"]} times '
                '(killed, or out of memory); it was not started again.'
            ))
            return None
        if row['attempts']:
            remove_workdirs(pk)  # what the lost attempt left behind, if it ran on this host
        now = timezone.now()
        claimed = PipelineProcess.objects.filter(pk=pk, state=row['state'], attempts=row['attempts']).update(
            state=ASYNC_STATUS_RUNNING, status=ASYNC_STATUS_RUNNING, attempts=F('attempts') + 1,
            started=now, heartbeat=now, worker=worker_name(),
        )
        if claimed:
            return row['pipeline']
        # another worker changed the row between our read and write: look again


def _previous_run_is_gone(row: dict) -> bool:
    heartbeat = row['heartbeat']
    if heartbeat is None or (timezone.now() - heartbeat).total_seconds() > conf.heartbeat_timeout():
        return True
    host, _, pid = row['worker'].rpartition(':')
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()


def run_process(pk: int, soft_time_limit: float | None = None) -> None:
    """Run process ``pk`` to a final state (the body of the Celery task).

    ``soft_time_limit`` is the limit the message was sent with, quoted if the run times out.
    """
    pipeline = claim(pk)
    if pipeline is None:
        return
    try:
        pipeline_class = registry.get(pipeline)
    except registry.UnknownPipeline as exc:
        finish(pk, ASYNC_STATUS_FAILED, str(exc))
        return
    process = pipeline_class.objects.select_related('target').get(pk=pk)
    context = RunContext(process)
    process._run = context
    handler = _ProcessLogHandler(context)
    logging.getLogger().addHandler(handler)
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix(process.pk)))
    tmpdir = workdir / 'tmp'
    tmpdir.mkdir()
    context.staging_dir = workdir / 'inputs'
    context.staging_dir.mkdir()
    context.start()
    try:
        _run_and_save(process, context, tmpdir, soft_time_limit or conf.soft_time_limit())
    finally:
        logging.getLogger().removeHandler(handler)
        context.stop_new_children()
        context.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        process._run = None


def pipeline_parameters(process: PipelineProcess) -> dict[str, Any]:
    """The keyword arguments of ``do_pipeline``: the stored flags and options of the names the class declares.

    A name the class no longer declares (a deploy between queueing and running) is left out, and a new
    one takes its default, so the call never fails on an unexpected keyword.
    """
    flags = {**process.flag_defaults(), **{
        name: value for name, value in process.flag_values.items() if name in (process.flags or {})
    }}
    options = {}
    for spec in process.option_specs(conf.option_defaults(process.pipeline)):
        options[spec.name] = process.option_values.get(spec.name, spec.default)
    return {**flags, **options}


def _run_and_save(process: PipelineProcess, context: RunContext, tmpdir: Path, soft_time_limit: float) -> None:
    state, message, trace = ASYNC_STATUS_CREATED, '', ''
    try:
        context.log(f'Started {process.pipeline} on {process.target.name} with {process.input_files.count()} input(s)')
        raw_outputs = context.call_pipeline(tmpdir, pipeline_parameters(process))
        if context.cancel_requested:
            # the cancel arrived as do_pipeline() returned: the user's request still wins
            raise ProcessCancelled()
        outputs = check_outputs(raw_outputs, tmpdir)
        context.log(f'Saving {len(outputs)} output(s)')

        def before_commit() -> None:
            context.log(f'Finished: {len(outputs)} output(s) saved')
            context.flush()
            if not finish(process.pk, ASYNC_STATUS_CREATED):
                raise ProcessCancelled()

        with context.exclusive_writes():
            save_outputs(process, outputs, context.log, before_commit)
        return
    except AsyncError as exc:
        state, message = ASYNC_STATUS_FAILED, str(exc) or 'The pipeline failed without a message.'
    except ProcessCancelled:
        state, message = ASYNC_STATUS_CANCELLED, 'Cancelled at the user\'s request.'
    except SoftTimeLimitExceeded:
        if context.cancel_requested:
            state, message = ASYNC_STATUS_CANCELLED, 'Cancelled at the user\'s request.'
        else:
            state, message = ASYNC_STATUS_FAILED, timed_out_message(soft_time_limit)
    except Exception as exc:  # noqa: BLE001 - any bug in a pipeline must end as a failed run, not a stuck one
        state = ASYNC_STATUS_FAILED
        message = f'The pipeline crashed: {type(exc).__name__}: {exc}'.strip()[:1000]
        trace = traceback.format_exc()
    context.leave_pipeline()
    context.log(message, logging.ERROR if state == ASYNC_STATUS_FAILED else logging.WARNING)
    context.flush()
    finish(process.pk, state, message, trace)

