"""Helpers for testing and benchmarking with real workers: a ``celery worker`` as a subprocess.

Used by this project's test suite and benchmark, and usable by a TOM's own tests: a worker runs
in its own process group, so stopping it never leaves pool processes behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class WorkerProcess:
    """A prefork ``celery worker`` subprocess logging to ``log_path``; wait for it with :meth:`wait_ready`."""

    def __init__(self, name: str, app: str, queues: str, env: dict[str, str], log_path: Path, *,
                 cwd: Path | None = None, concurrency: int = 2) -> None:
        self.name = name
        self.log_path = log_path
        self.log_file = log_path.open('wb')
        command = [
            sys.executable, '-m', 'celery', '-A', app, 'worker', '-l', 'info', '-P', 'prefork',
            '-c', str(concurrency), '-Q', queues, '-n', f'{name}@%h',
            '--without-gossip', '--without-mingle', '--without-heartbeat',
        ]
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        """Return once the worker says it is ready; stop it and raise with its log's tail if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b' ready.' in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f'the {self.name} worker did not start:\n{self.log()[-3000:]}')

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def stop(self, grace: float = 0) -> None:
        """Stop the worker and its pool: politely for ``grace`` seconds if asked, then with SIGKILL."""
        if self.log_file.closed:
            return
        if grace and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=grace)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            # pool processes that outlived their parent still share its process group
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.log_file.close()
