"""Run one process on a worker: claim the row, call ``do_pipeline()``, save the outputs, record the end.

Whatever happens, the row ends in a final state with a message a user can act on, the last log
lines are written before that state, and the temporary directory is emptied (see ``workdirs``).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import select
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from billiard.exceptions import SoftTimeLimitExceeded
from django.db import IntegrityError, connections, router, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from tom_education import conf, registry
from tom_education.ending import end_run, finish, supports_returning
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_FAILED,
    ASYNC_STATUS_PENDING,
    ASYNC_STATUS_RUNNING,
    AsyncError,
    PipelineLogLine,
    PipelineProcess,
    ProcessCancelled,
    progress_report,
)
from tom_education.outputs import check_outputs, save_outputs
from tom_education.run_options import OptionError
from tom_education.signals import run_finished
from tom_education.workdirs import make_workdir, recycle, release_workdir, remove_workdir

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f'{socket.gethostname()}:{os.getpid()}'


class RunLost(Exception):
    """Raised inside a running pipeline whose run was given to another attempt (its worker was presumed lost,
    or handed it back on shutdown): this attempt stops and writes nothing more."""


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
    if not os.path.exists(f'/proc/{pid}/task/{pid}/children'):
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f'/proc/{parent}/task')
        except OSError:  # the process ended while we looked
            continue
        for thread in threads:
            try:
                with open(f'/proc/{parent}/task/{thread}/children') as listing:
                    children = {int(child) for child in listing.read().split()} - found
            except OSError:
                continue
            found |= children
            todo.extend(children)
    return found


def has_children() -> bool:
    """Whether this process has any child process, in one ``waitid`` call that reaps nothing (``WNOWAIT``).

    A process with no child has no descendant of its own: most runs start none, and then neither
    end of the run needs to list ``/proc``. Where ``waitid`` is missing, the answer is yes.
    """
    if not hasattr(os, 'waitid') or not hasattr(os, 'WNOWAIT'):
        return True
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


class RunContext:
    """Worker-side companion of a running process: its log buffer, heartbeat and cancel flag.

    ``log()`` only appends to a list; a monitor thread writes the buffer every
    ``TOM_EDUCATION_LOG_FLUSH_INTERVAL`` seconds in one statement, beats the heart and watches for
    a cancel request. Status changes and the end of the run flush at once.
    """

    #: log lines written per statement; the heartbeat is written between two chunks when it is due
    FLUSH_CHUNK = 5000

    def __init__(self, process: PipelineProcess, attempt: int, next_seq: int | None = None) -> None:
        self.process = process
        self.attempt = attempt
        self.cancel_requested = False
        #: set when the run was given to another attempt: stop, and write nothing more
        self.lost = False
        #: the run's temporary folder (``tmp`` inside it is do_pipeline's ``tmpdir``)
        self.workdir: Path | None = None
        #: the target as the claim loaded it (its name only): see named_target
        self.target: Any = None
        #: once ended: whether a chain rule follows the pipeline (None: the ending statement could not say)
        self.followed: bool | None = None
        self._last_status = process.status
        self._pending: list[tuple[str, int]] = []
        self._progress = ProgressTracker()
        self._next_seq = PipelineLogLine.next_seq(process) if next_seq is None else next_seq
        # held by whoever writes log lines; the pipeline's thread holds it for the whole output transaction
        # (see exclusive_writes), so the monitor never waits for SQLite's lock while holding this one
        self._write_lock = threading.RLock()
        self._interrupt_lock = threading.Lock()
        # the claim has just written the heartbeat: the monitor's first round comes one interval later
        self._next_beat = time.monotonic() + conf.heartbeat_interval()
        #: when the monitor serves this run next (set by the monitor)
        self.next_round = time.monotonic() + round_interval()
        self._pipeline_thread = threading.get_ident()
        self._on_main_thread = threading.current_thread() is threading.main_thread()
        self._previous_handler: Any = None
        self._in_pipeline = False
        # processes that exist before the run are not the run's to stop (a test runner's workers, say)
        self._children_before = descendant_pids(os.getpid()) if has_children() else set()

    # --- called from the pipeline's thread ------------------------------------------------------

    @property
    def staging_dir(self) -> Path:
        """Where inputs from non-local storages are copied; made on first use (most runs read local files)."""
        staging = self.workdir / 'inputs'
        staging.mkdir(exist_ok=True)
        return staging

    @property
    def interrupted(self) -> bool:
        return self.cancel_requested or self.lost

    def log(self, message: str, level: int = logging.INFO) -> None:
        self._pending.append((message, level))
        if self.interrupted:
            self._cancel_here()

    def progress(self, done: int, total: int | None, message: str) -> None:
        """Remember the latest progress; the monitor writes it at its next tick (never a commit per call)."""
        self._progress.report(done, total, message)
        if self.interrupted:
            self._cancel_here()

    def on_status_saved(self, status: str) -> None:
        """Record the change in the log too, so the history of statuses stays readable afterwards."""
        if status != self._last_status:
            self._last_status = status
            self._pending.append((f'Status: {status}', logging.INFO))
        self.flush()
        if self.interrupted:
            self._cancel_here()

    def _cancel_here(self, *signal_args: Any) -> None:
        """Raise ProcessCancelled (or RunLost) in the pipeline, once; later calls (and late signals) do nothing."""
        if self._in_pipeline:
            self._in_pipeline = False
            raise RunLost() if self.lost else ProcessCancelled()

    def flush(self) -> None:
        with self._write_lock:
            if self.lost:
                self._pending.clear()  # the run is another attempt's now: its log is not ours to write
                return
            report = self._progress.unwritten()
            if report is not None:
                PipelineProcess.objects.filter(pk=self.process.pk).update(progress_report=report)
            while self._pending:
                # take a chunk first: log() may append from the pipeline's thread while we write
                lines, self._pending[:self.FLUSH_CHUNK] = self._pending[:self.FLUSH_CHUNK], []
                try:
                    self._append(lines)
                except Exception:
                    self._pending[:0] = lines  # keep them for the next flush
                    raise
                # a run that logs faster than the database writes is busy, not dead
                self.beat_if_due()

    #: at most this many lines go in the ending statement; more are written first like any flush
    LINES_AT_END = 50

    def end(self, state: str, failure_message: str = '', traceback_text: str = '',
            changes: dict[str, Any] | None = None) -> bool:
        """Write the last lines and the final state together (with ``changes`` to the row's other fields);
        False when the run is no longer this attempt's. Inside the outputs' transaction the caller rolls
        back on False.
        """
        with self._write_lock:
            if self.lost:
                self._pending.clear()
                return False
            if len(self._pending) > self.LINES_AT_END or self._progress.unwritten_report:
                self.flush()
            lines, self._pending = self._pending, []
            try:
                ended = end_run(self.process, self.attempt, state, lines, self._next_seq, failure_message,
                                traceback_text, changes)
            except Exception:
                self._pending[:0] = lines  # e.g. the database is restarting: the failure path ends the run
                raise
            if ended is None:
                return False
            self._next_seq += len(lines)
            self.followed = ended.followed
            return True

    def _append(self, lines: list[tuple[str, int]]) -> None:
        if connections[router.db_for_write(PipelineLogLine)].in_atomic_block:
            # in the run's output transaction, where a savepoint would cost two more statements; only the
            # engine numbers lines of a running process, after it gave the run to another attempt
            try:
                PipelineLogLine.append(self.process, lines, first_seq=self._next_seq)
            except IntegrityError:
                raise RunLost() from None
            self._next_seq += len(lines)
            return
        try:
            with transaction.atomic():
                PipelineLogLine.append(self.process, lines, first_seq=self._next_seq)
        except IntegrityError:
            # someone else numbered lines meanwhile (the engine's note on a retried run): continue after theirs
            self._next_seq = PipelineLogLine.next_seq(self.process)
            PipelineLogLine.append(self.process, lines, first_seq=self._next_seq)
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
        if not has_children():
            return
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

    # --- called by the worker process's monitor thread (see Monitor) ------------------------------------

    def start(self) -> None:
        Monitor.current().attach(self)

    def stop(self) -> None:
        Monitor.current().detach(self)
        self.flush()

    def beat_if_due(self) -> bool:
        """Write the heartbeat if an interval has passed; False if the row is no longer this attempt's."""
        now = time.monotonic()
        if now < self._next_beat:
            return True
        self._next_beat = now + conf.heartbeat_interval()
        return bool(self._ours().update(heartbeat=timezone.now()))

    def _ours(self) -> QuerySet[PipelineProcess]:
        return PipelineProcess.objects.filter(pk=self.process.pk, state=ASYNC_STATUS_RUNNING, attempts=self.attempt)

    def tick(self) -> None:
        """One round of the monitor: beat the heart, write the log and progress, look for a cancel or a loss."""
        if not self.beat_if_due():
            self._lose()
            return
        self.flush()
        cancel = self._ours().values_list('cancel_requested', flat=True).first()
        if cancel is None:
            self._lose()
        elif cancel and not self.cancel_requested:
            self.cancel_requested = True
            self._interrupt()

    def _lose(self) -> None:
        """The row no longer belongs to this attempt (recovered as lost, handed back): stop the pipeline.

        Once ``do_pipeline()`` has returned the row may simply have ended (this attempt's own save);
        a save that races with a hand-back is refused by the ending statement and rolled back instead.
        """
        if not self.lost and self._in_pipeline:
            logger.warning('Process %s, attempt %s: the run was given to another attempt; stopping this one',
                           self.process.pk, self.attempt)
            self.lost = True
            self._interrupt()

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
                    ctypes.c_ulong(self._pipeline_thread), ctypes.py_object(RunLost if self.lost else ProcessCancelled)
                )


def round_interval() -> float:
    """Seconds between two rounds of the monitor for one run: it flushes the log and beats the heart in each."""
    return min(conf.log_flush_interval(), conf.heartbeat_interval())


class Monitor:
    """The one long-lived thread of a worker process that serves the runs the process is running.

    It writes each run's buffered log and progress every ``TOM_EDUCATION_LOG_FLUSH_INTERVAL``, beats
    its heart and watches for a cancel, on a database connection of its own that it keeps between
    runs: a thread and a connection per run cost more than many short runs themselves. A failed
    round (the database restarting, say) closes that connection, and the next round opens a new one.
    It also empties the work folders that finished runs left files in, off the path of the next run.
    Idle for ``IDLE_CLOSE`` seconds, it closes its connection so it holds none while nothing runs.

    Waking a thread costs a short run more than anything the thread then does, so a run does not wake
    it: until it has been idle for ``IDLE_CLOSE`` seconds the monitor looks for new runs once a round
    on its own, and a run's first round is due a round after it starts anyway. Only a monitor in its
    long idle sleep is woken by the run that ends it.

    A prefork pool process runs one run at a time; the monitor still serves several (a thread pool,
    tests running runs side by side).
    """

    IDLE_CLOSE = 10.0
    _current: Monitor | None = None
    _creating = threading.Lock()

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._changed = threading.Condition()
        self._contexts: list[RunContext] = []
        self._busy_with: RunContext | None = None
        self._to_recycle: list[Path] = []
        self._stopping = False
        #: in its long idle sleep, where only a notify wakes it in time for a new run's first round
        self._dozing = False
        self._thread = threading.Thread(target=self._serve, name='tom_education-monitor', daemon=True)
        self._thread.start()

    @classmethod
    def current(cls) -> Monitor:
        """This process's monitor, started on first use (a forked pool process starts its own)."""
        with cls._creating:
            monitor = cls._current
            if monitor is None or monitor._pid != os.getpid() or not monitor._thread.is_alive():
                monitor = cls._current = cls()
            return monitor

    @classmethod
    def shutdown(cls) -> None:
        """Stop this process's monitor and close its connection (tests do, before dropping their database)."""
        with cls._creating:
            monitor, cls._current = cls._current, None
        if monitor is not None and monitor._pid == os.getpid():
            with monitor._changed:
                monitor._stopping = True
                monitor._changed.notify_all()
            monitor._thread.join(timeout=10)

    def attach(self, context: RunContext) -> None:
        with self._changed:
            self._contexts.append(context)
            if self._dozing:
                self._changed.notify_all()

    def detach(self, context: RunContext) -> None:
        """Stop serving ``context``; returns once no round for it is in progress."""
        with self._changed:
            if context in self._contexts:
                self._contexts.remove(context)
            while self._busy_with is context:
                self._changed.wait()

    def recycle_later(self, workdir: Path) -> None:
        """Empty a finished run's work folder from this thread, for the process's next run (see
        ``workdirs.recycle``; a folder left by a crash is the periodic check's to remove)."""
        with self._changed:
            self._to_recycle.append(workdir)
            self._changed.notify_all()

    def _next_job(self) -> RunContext | Path | None:
        """Wait for the next thing to do: a folder to remove, or the run whose round is due first."""
        idle_since = time.monotonic()
        with self._changed:
            while not self._stopping:
                if self._to_recycle:
                    return self._to_recycle.pop()
                if not self._contexts:
                    if time.monotonic() - idle_since < self.IDLE_CLOSE:
                        self._changed.wait(timeout=round_interval())  # a run attached meanwhile is due no sooner
                        continue
                    connections.close_all()
                    self._dozing = True
                    self._changed.wait()  # nothing to do until a run, a folder or the shutdown comes
                    self._dozing = False
                    continue
                context = min(self._contexts, key=lambda each: each.next_round)
                remaining = context.next_round - time.monotonic()
                if remaining > 0:  # woken early (a run attached while dozing, a folder, shutdown): look again
                    self._changed.wait(timeout=remaining)
                    continue
                context.next_round = time.monotonic() + round_interval()
                self._busy_with = context
                return context
            return None

    def _serve(self) -> None:
        try:
            while (job := self._next_job()) is not None:
                if isinstance(job, Path):
                    recycle(job)
                    continue
                try:
                    job.tick()
                except Exception:  # noqa: BLE001 - e.g. a locked or restarting database: try again next round
                    logger.exception('tom_education monitor of process %s: round failed', job.process.pk)
                    connections.close_all()
                finally:
                    with self._changed:
                        self._busy_with = None
                        self._changed.notify_all()
        finally:
            for workdir in self._to_recycle:
                remove_workdir(workdir)
            connections.close_all()


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

    @property
    def unwritten_report(self) -> bool:
        """Whether a report is waiting to be written."""
        return self._latest is not None and self._latest != self._written

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


@dataclass(frozen=True)
class Claim:
    """What a worker learns when it takes a run: the loaded process, its attempt, what happened to earlier ones."""

    process: PipelineProcess
    attempt: int
    losses: list[dict[str, Any]]
    #: what the first log line needs: the log's last line number, the number of inputs, the target's name
    last_seq: int
    inputs: int
    target_name: str


def claim(pk: int, attempt: int | None = None, node: str = '') -> Claim | None:
    """Mark the process running here as ``attempt`` and load it; None when this message must not run it.

    Every message names the attempt it starts (``None`` for messages queued before attempts were
    named: they start the next one). A copy of a message, or a message of an attempt that another
    one replaced, finds the row no longer pending with that attempt and is dropped at once; the
    compare-and-swap makes sure that, of several deliveries, exactly one runs.

    Where the database allows (PostgreSQL, SQLite 3.35+) the claim and the load are one
    ``UPDATE ... RETURNING`` statement, which also brings what the run's first log line needs.
    """
    if attempt is None:
        row = PipelineProcess.objects.filter(pk=pk).values('state', 'attempts').first()
        if row is None or row['state'] != ASYNC_STATUS_PENDING:
            return None
        attempt = row['attempts'] + 1
    now = timezone.now()
    changes = {'state': ASYNC_STATUS_RUNNING, 'status': ASYNC_STATUS_RUNNING, 'started': now, 'heartbeat': now,
               'worker': worker_name(), 'node': node}
    if supports_returning(connections[router.db_for_write(PipelineProcess)]):
        loaded = _claim_returning(pk, attempt, changes)
    else:
        loaded = _claim_then_load(pk, attempt, changes)
    if loaded is None:
        return None
    names, values, last_seq, inputs, target_name = loaded
    pipeline = values[names.index('pipeline')]
    try:
        process_class = registry.get(pipeline)
    except registry.UnknownPipeline as exc:
        finish(pk, ASYNC_STATUS_FAILED, str(exc), attempt=attempt)
        return None
    process = process_class.from_db(router.db_for_write(PipelineProcess), names, values)
    return Claim(process, attempt, process.losses, last_seq, inputs, target_name)


def named_target(process: PipelineProcess, name: str) -> Any:
    """The run's target holding only its id and the name the claim read; its other fields load when used.

    Saving an output file needs the name (tom_base's ``data_product_path`` puts the file in a folder
    named after the target): this spares reading the whole target row again for it.
    """
    model = PipelineProcess._meta.get_field('target').related_model
    return model.from_db(router.db_for_read(model), [model._meta.pk.attname, 'name'], [process.target_id, name])


#: Claimed row, as ``(field names, values, last log seq, number of inputs, target name)``.
Loaded = tuple[list[str], list[Any], int, int, str]

@functools.cache
def _claim_statement(alias: str) -> tuple[str, list[str], list[tuple[Any, list[Any]]]]:
    """``UPDATE ... RETURNING`` of the claim, the names of the returned fields and each one's converters.

    Built once per database alias: composing the SQL, and going through ``raw()``, cost more than the
    statement itself.
    """
    connection = connections[alias]
    meta = PipelineProcess._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    log_table = quote(PipelineLogLine._meta.db_table)
    inputs = meta.get_field('input_files').remote_field.through._meta
    target = meta.get_field('target').related_model._meta
    assignments = ', '.join(f'{quote(meta.get_field(name).column)} = %s' for name in CLAIM_CHANGES)
    fields = meta.concrete_fields
    sql = (
        f'UPDATE {table} SET {assignments}, {quote("attempts")} = {quote("attempts")} + 1 '
        f'WHERE {quote("id")} = %s AND {quote("state")} = %s AND {quote("attempts")} = %s '
        f'RETURNING {", ".join(f"{table}.{quote(field.column)}" for field in fields)}, '
        f'(SELECT COALESCE(MAX({quote("seq")}), 0) FROM {log_table} '
        f'WHERE {quote("process_id")} = {table}.{quote("id")}), '
        f'(SELECT COUNT(*) FROM {quote(inputs.db_table)} '
        f'WHERE {quote(inputs.get_field("pipelineprocess").column)} = {table}.{quote("id")}), '
        f'(SELECT {quote("name")} FROM {quote(target.db_table)} '
        f'WHERE {quote(target.pk.column)} = {table}.{quote("target_id")})'
    )
    if connection.vendor == 'postgresql':
        sql += f', {ASYNCHRONOUS_COMMIT}'
    converters = []
    for field in fields:
        column = field.get_col(meta.db_table)
        converters.append((column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)))
    return sql, [field.attname for field in fields], converters


#: Returned by the claim on PostgreSQL, so that its commit does not wait for the write-ahead log to reach
#: the disk, and only its own (``true``: local to the statement's transaction). A database server that
#: crashes within the next fraction of a second can forget the claim: the run is then pending again, its
#: message gone, and the periodic check sends it again (``TOM_EDUCATION_RESEND_PENDING_AFTER``), as for
#: a lost message. The end of a run, its outputs and every submission still wait for the disk.
ASYNCHRONOUS_COMMIT = "set_config('synchronous_commit', 'off', true)"

#: The columns a claim sets besides ``attempts``, in the order of the claim statement.
CLAIM_CHANGES = ('state', 'status', 'started', 'heartbeat', 'worker', 'node')


def _claim_returning(pk: int, attempt: int, changes: dict[str, Any]) -> Loaded | None:
    connection = connections[router.db_for_write(PipelineProcess)]
    sql, names, converters = _claim_statement(connection.alias)
    meta = PipelineProcess._meta
    params = [meta.get_field(name).get_db_prep_save(changes[name], connection) for name in CLAIM_CHANGES]
    params += [pk, ASYNC_STATUS_PENDING, attempt - 1]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row[:len(names)])
    for index, (column, field_converters) in enumerate(converters):
        for converter in field_converters:
            values[index] = converter(values[index], column, connection)
    last_seq, inputs, target_name = row[len(names):len(names) + 3]
    return names, values, last_seq, inputs, target_name


def _claim_then_load(pk: int, attempt: int, changes: dict[str, Any]) -> Loaded | None:
    """The claim on databases without ``UPDATE ... RETURNING``: a conditional update, then the loads."""
    if not PipelineProcess.objects.filter(pk=pk, state=ASYNC_STATUS_PENDING, attempts=attempt - 1).update(
        attempts=F('attempts') + 1, **changes
    ):
        return None
    row = PipelineProcess.objects.select_related('target').get(pk=pk)
    names = [field.attname for field in row._meta.concrete_fields]
    return (names, [getattr(row, name) for name in names], PipelineLogLine.next_seq(row) - 1,
            row.input_files.count(), row.target.name)


def run_process(pk: int, attempt: int | None = None, node: str = '', soft_time_limit: float | None = None) -> None:
    """Run process ``pk`` to a final state (the body of the Celery task).

    ``soft_time_limit`` is the limit the message was sent with, quoted if the run times out.
    """
    discard_broken_connections()
    claimed = claim(pk, attempt, node)
    if claimed is None:
        return
    process = claimed.process
    context = RunContext(process, claimed.attempt, next_seq=claimed.last_seq + 1)
    context.target = named_target(process, claimed.target_name)
    process._run = context
    handler = _ProcessLogHandler(context)
    logging.getLogger().addHandler(handler)
    workdir = make_workdir(process.pk, claimed.attempt)
    tmpdir = workdir / 'tmp'
    context.workdir = workdir
    if claimed.losses:
        context.log(attempt_note(claimed), logging.WARNING)
    context.log(f'Started {process.pipeline} on {claimed.target_name} with {claimed.inputs} input(s)')
    context.start()
    try:
        _run_and_save(process, context, tmpdir, soft_time_limit or conf.soft_time_limit())
    finally:
        logging.getLogger().removeHandler(handler)
        context.stop_new_children()
        context.stop()
        if release_workdir(workdir) is not None:  # the run left files: emptied off its path
            Monitor.current().recycle_later(workdir)
        process._run = None


def discard_broken_connections() -> None:
    """Close the database connections a worker process kept from earlier tasks if they no longer work.

    Workers keep their connections between tasks (``CELERY_DB_REUSE_MAX``): opening one costs more
    than a short run. A database restarted in between has closed them; a run must not fail for that.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not looks_usable(connection):
            connection.close()


def looks_usable(connection: Any) -> bool:
    """Whether a kept connection still works, asked without a round trip where possible.

    An idle PostgreSQL connection has nothing to read: a server that stopped, restarted or dropped
    the session has sent its farewell or closed the socket, and either makes the socket readable.
    One ``poll`` of the socket then replaces ``is_usable()``'s ``SELECT 1`` (a quarter of a short run's
    database time). Anything unexpected to read (a notice) only costs a new connection.
    """
    if connection.vendor != 'postgresql' or connection.in_atomic_block or not hasattr(select, 'poll'):
        return connection.is_usable()
    raw = connection.connection
    if raw.closed or raw.broken:
        return False
    try:
        poller = select.poll()
        poller.register(raw.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def attempt_note(claimed: Claim) -> str:
    """The log line that opens a retried attempt: 'Attempt 2 of 3 on host:pid after the worker of attempt 1 …'."""
    allowed = conf.max_attempts() + sum(1 for loss in claimed.losses if loss.get('kind') == HANDED_BACK)
    return f'Attempt {claimed.attempt} of {allowed} on {worker_name()} after {claimed.losses[-1]["reason"]}.'


#: ``kind`` of a loss that does not count against TOM_EDUCATION_MAX_ATTEMPTS: a run handed back on shutdown.
HANDED_BACK = 'handed back'


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
        if spec.name in process.option_values:
            options[spec.name] = process.option_values[spec.name]
            continue
        try:
            options[spec.name] = spec.clean(spec.default)
        except OptionError:
            options[spec.name] = spec.empty_value
    return {**flags, **options}


def _run_and_save(process: PipelineProcess, context: RunContext, tmpdir: Path, soft_time_limit: float) -> None:
    state, message, trace = ASYNC_STATUS_CREATED, '', ''
    try:
        raw_outputs = context.call_pipeline(tmpdir, pipeline_parameters(process))
        if context.cancel_requested:
            # the cancel arrived as do_pipeline() returned: the user's request still wins
            raise ProcessCancelled()
        outputs = check_outputs(raw_outputs, tmpdir)
        context.log(f'Saving {len(outputs)} output(s)')

        def before_commit(changes: dict[str, Any]) -> None:
            context.log(f'Finished: {len(outputs)} output(s) saved')
            if not context.end(ASYNC_STATUS_CREATED, changes=changes):
                raise RunLost()  # another attempt owns the run now: these outputs must not be saved twice

        if outputs:
            with context.exclusive_writes():
                save_outputs(process, outputs, context.log, before_commit, target=context.target)
        else:
            before_commit({})  # nothing to save: no transaction around the ending statement
        announce_finished(process, ASYNC_STATUS_CREATED, context.followed)
        return
    except RunLost:
        return  # the run goes on elsewhere; this attempt writes nothing more
    except AsyncError as exc:
        state, message = ASYNC_STATUS_FAILED, str(exc) or 'The pipeline failed without a message.'
    except ProcessCancelled:
        state, message = ASYNC_STATUS_CANCELLED, 'Cancelled at the user\'s request.'
    except SoftTimeLimitExceeded:
        if context.lost:
            return
        if context.cancel_requested:
            state, message = ASYNC_STATUS_CANCELLED, 'Cancelled at the user\'s request.'
        else:
            state, message = ASYNC_STATUS_FAILED, timed_out_message(soft_time_limit)
    except Exception as exc:  # noqa: BLE001 - any bug in a pipeline must end as a failed run, not a stuck one
        state = ASYNC_STATUS_FAILED
        message = f'The pipeline crashed: {type(exc).__name__}: {exc}'.strip()[:1000]
        trace = traceback.format_exc()
    context.leave_pipeline()
    if context.lost:
        return  # e.g. the pipeline crashed because it was interrupted: the run belongs to another attempt
    context.log(message, logging.ERROR if state == ASYNC_STATUS_FAILED else logging.WARNING)
    if context.end(state, message, trace):
        announce_finished(process, state, context.followed)


def announce_finished(process: PipelineProcess, state: str, followed: bool | None = None) -> None:
    """Send :data:`tom_education.signals.run_finished`; a failing receiver is logged, the run stays as it ended."""
    for receiver, result in run_finished.send_robust(sender=type(process), process_pk=process.pk, state=state,
                                                     pipeline=process.pipeline, followed_by_rule=followed):
        if isinstance(result, Exception):
            logger.error('tom_education: run_finished receiver %r failed for process %s', receiver, process.pk,
                         exc_info=result)

