"""What every benchmark shares: the sizes, a result row, the progress line and number formatting."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RUN_SCRIPT = ROOT / 'bench' / 'run.py'
DEFAULT_BROKER = 'redis://127.0.0.1:6379/14'
NOOP = 'Bench no-op'
LOGGING_PIPELINE = 'Bench logging'
BIG_OUTPUT = 'Bench big output'
GIB = 1024 ** 3
MIB = 1024 ** 2
INPUT_COUNTS = (1, 10, 100, 1000)


@dataclass
class Sizes:
    """How much each benchmark does; ``--quick`` shrinks every one of them."""

    dispatch_runs: int = 50
    throughput_tasks: int = 500
    throughput_rounds: int = 2
    log_lines: int = 10_000
    log_paced_runs: int = 5
    baseline_budget_s: float = 150.0
    poll_requests: int = 200
    poll_big_log: int = 100_000
    big_output_bytes: int = 2 * GIB
    worker_kills: int = 20
    check_table_rows: int = 100_000
    check_rounds: int = 20

    @classmethod
    def quick(cls) -> Sizes:
        return cls(dispatch_runs=15, throughput_tasks=100, throughput_rounds=1, log_paced_runs=1,
                   baseline_budget_s=20.0, poll_requests=50, big_output_bytes=256 * MIB,
                   worker_kills=5, check_rounds=5)


@dataclass
class Row:
    """One line of the result table; ``met`` is None when the benchmark could not be measured."""

    benchmark: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None
    details: list[str] = field(default_factory=list)


# --- console -------------------------------------------------------------------------------------

class Progress:
    """One status line on a terminal (rewritten in place), plain lines otherwise (e.g. piped to a file)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_plain = ''

    def show(self, text: str, done: int | None = None, total: int | None = None) -> None:
        elapsed = time.monotonic() - self.started
        count = f' {done}/{total}' if total else ''
        line = f'[bench {elapsed:5.0f} s] {text}{count}'
        if self.tty:
            sys.stderr.write('\r\033[K' + line)
            sys.stderr.flush()
        elif done is None or total is None or done in (0, total) or done % max(total // 4, 1) == 0:
            if line != self.last_plain:
                sys.stderr.write(line + '\n')
                self.last_plain = line

    def step(self, text: str) -> None:
        """A line that stays on screen: a finished step or a note."""
        elapsed = time.monotonic() - self.started
        sys.stderr.write(('\r\033[K' if self.tty else '') + f'[bench {elapsed:5.0f} s] {text}\n')
        sys.stderr.flush()


PROGRESS = Progress()


def fmt_ms(seconds: float) -> str:
    return f'{seconds * 1000:.1f} ms'


def fmt_s(seconds: float) -> str:
    return f'{seconds:.2f} s' if seconds < 100 else f'{seconds:.0f} s'


def fmt_bytes(count: float) -> str:
    if abs(count) >= GIB:
        return f'{count / GIB:.2f} GiB'
    if abs(count) >= MIB:
        return f'{count / MIB:.1f} MiB'
    return f'{count / 1024:.0f} KiB' if abs(count) >= 1024 else f'{count:.0f} B'


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile: no numpy needed for a few hundred numbers."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
