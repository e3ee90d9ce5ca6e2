"""Row a: submit-to-finish of a no-op pipeline against a raw no-op Celery task's round trip."""
from __future__ import annotations

import time

from bench.harness.common import (
    NOOP,
    PROGRESS,
    Row,
    Sizes,
    fmt_ms,
    percentile,
)
from bench.harness.world import Fixtures, World, wait_final


class Raw:
    """Sends a raw task (the no-op by default) and waits for its worker to say it ran."""

    def __init__(self, world: World) -> None:
        import redis

        from bench import raw_celery

        self.app = raw_celery.app
        self.redis = redis.Redis.from_url(world.broker)
        self.prefix = world.key_prefix
        self.count = 0

    def key(self) -> str:
        self.count += 1
        return f'{self.prefix}:done:{self.count}'

    def send(self, key: str, task: str = 'bench.raw_noop', args: tuple = ()) -> None:
        self.app.send_task(task, args=[key, *args])

    def round_trip(self, task: str = 'bench.raw_noop', args: tuple = ()) -> float:
        """From sending ``task`` to its worker's "done" (``args`` follow the key the task pushes onto)."""
        key = self.key()
        start = time.time()
        self.send(key, task, args)
        reply = self.redis.blpop([key], timeout=60)
        if reply is None:
            raise RuntimeError(f'the raw task {task} did not run within 60 s')
        return float(reply[1].split()[1]) - start

    def stamps(self, key: str) -> list[tuple[float, float]]:
        """(start, end) of every task that pushed onto ``key``."""
        return [(float(start), float(end)) for start, end in
                (item.split() for item in self.redis.lrange(key, 0, -1))]


def ours_round_trip(fixtures: Fixtures, pipeline: str = NOOP) -> float:
    """Submit through the service every page and API call uses; finished when the row says so."""
    from tom_education import services

    start = time.time()
    process = services.start_process(user=fixtures.user, pipeline=pipeline, target=fixtures.target,
                                     input_files=[fixtures.product])
    _, finished = wait_final(process.pk)
    return finished.timestamp() - start


def bench_dispatch(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    raw = Raw(world)
    PROGRESS.show('a. dispatch: warming up the workers')
    for _ in range(5):
        ours_round_trip(fixtures)
        raw.round_trip()
    ours: list[float] = []
    base: list[float] = []
    for number in range(sizes.dispatch_runs):
        PROGRESS.show('a. dispatch (ours and raw, interleaved)', number, sizes.dispatch_runs)
        # alternate which goes first, so a slow moment of the machine hits both alike
        if number % 2:
            base.append(raw.round_trip())
            ours.append(ours_round_trip(fixtures))
        else:
            ours.append(ours_round_trip(fixtures))
            base.append(raw.round_trip())
    rows = []
    for label, fraction in (('p50', 0.5), ('p95', 0.95)):
        mine, theirs = percentile(ours, fraction), percentile(base, fraction)
        rows.append(Row(
            f'a. dispatch {label}: no-op pipeline submit-to-finish vs raw Celery task round trip',
            fmt_ms(mine), fmt_ms(theirs), f'{mine / theirs:.1f}x', 'ours/raw <= 3x', mine / theirs <= 3,
        ))
    rows[0].details = [
        f'{sizes.dispatch_runs} runs each, interleaved, after 5 warm-up runs each',
        f'ours: min {fmt_ms(min(ours))}, p50 {fmt_ms(percentile(ours, .5))}, p95 {fmt_ms(percentile(ours, .95))}, '
        f'max {fmt_ms(max(ours))}',
        f'raw:  min {fmt_ms(min(base))}, p50 {fmt_ms(percentile(base, .5))}, p95 {fmt_ms(percentile(base, .95))}, '
        f'max {fmt_ms(max(base))}',
    ]
    PROGRESS.step(f'a. dispatch done: p50 ours {fmt_ms(percentile(ours, .5))}, raw {fmt_ms(percentile(base, .5))}')
    return rows
