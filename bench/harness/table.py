"""The result table printed at the end, and the guard that turns a broken benchmark into a row."""
from __future__ import annotations

from collections.abc import Callable

from bench.harness.common import (
    PROGRESS,
    Row,
)


def result(row: Row) -> str:
    """MET / NOT MET; a row with no goal is a figure to report (INFO); otherwise it could not be measured."""
    if row.met is None:
        return 'INFO' if row.goal.startswith('report') else 'NOT MEASURED'
    return 'MET' if row.met else 'NOT MET'


def print_table(rows: list[Row], header: list[str]) -> None:
    columns = ['benchmark', 'ours', 'baseline', 'ratio', 'goal', 'result']
    cells = [[row.benchmark, row.ours, row.baseline, row.ratio, row.goal,
              result(row)] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    rule = '  '.join('-' * width for width in widths)
    print()
    for line in header:
        print(line)
    print()
    print('  '.join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    print(rule)
    for line in cells:
        print('  '.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    print(rule)
    print()
    print('Details:')
    for row in rows:
        for detail in row.details:
            print(f'  {row.benchmark.split(":")[0]}: {detail}')


def guarded(name: str, action: Callable[[], list[Row]]) -> list[Row]:
    """A benchmark that breaks is reported as a NOT MET row with its error; the others still run."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the other figures
        PROGRESS.step(f'{name} failed: {type(exc).__name__}: {exc}')
        return [Row(name, 'error', '-', '-', '-', False, [f'{type(exc).__name__}: {exc}'])]
