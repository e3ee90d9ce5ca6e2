"""Row f: SQL statements to submit and to run with 1, 10, 100 and 1,000 input products (no N+1)."""
from __future__ import annotations

import uuid
from collections import Counter

from bench.harness.common import (
    INPUT_COUNTS,
    NOOP,
    PROGRESS,
    Row,
)
from bench.harness.world import Fixtures


def make_inputs(fixtures: Fixtures, count: int) -> list[int]:
    """``count`` input products in one statement; their files are never read by the no-op pipeline,
    so only their names are stored (the queries counted do not depend on the files' content)."""
    from tom_dataproducts.models import DataProduct

    token = uuid.uuid4().hex[:8]
    products = DataProduct.objects.bulk_create(
        DataProduct(target=fixtures.target, product_id=f'bench-{token}-{number}',
                    data=f'tom_education_bench/{token}/frame_{number:04d}.fits')
        for number in range(count)
    )
    return [product.pk for product in products]


def query_shape(sql: str) -> str:
    """The statement without its values: enough to tell which statement repeats as inputs grow."""
    return ' '.join(sql.split()[:6]).split(' VALUES', 1)[0]


def bench_many_inputs(fixtures: Fixtures) -> list[Row]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tom_education import runner, services
    from tom_education.models import PipelineProcess

    submit: dict[int, int] = {}
    run: dict[int, int] = {}
    shapes: dict[int, Counter[str]] = {}
    # a first submission fills Django's caches (content types, permissions): not counted
    runner.run_process(services.start_process(user=fixtures.user, pipeline=NOOP, target=fixtures.target,
                                              input_files=make_inputs(fixtures, 1)).pk)
    for count in INPUT_COUNTS:
        PROGRESS.show(f'f. many inputs: {count} input(s)')
        pks = make_inputs(fixtures, count)
        with CaptureQueriesContext(connection) as captured:
            process = services.start_process(user=fixtures.user, pipeline=NOOP, target=fixtures.target,
                                             input_files=pks)
        submit[count] = len(captured)
        shapes[count] = Counter(query_shape(query['sql']) for query in captured.captured_queries)
        with CaptureQueriesContext(connection) as captured:
            runner.run_process(process.pk)
        run[count] = len(captured)
        state = PipelineProcess.objects.filter(pk=process.pk).values_list('state', flat=True).get()
        if state != 'created':
            raise RuntimeError(f'the run with {count} inputs ended {state}')
    rows = []
    smallest, largest = INPUT_COUNTS[0], INPUT_COUNTS[-1]
    for label, counts in (('submit (services.start_process)', submit), ('run (runner.run_process)', run)):
        extra = counts[largest] - counts[smallest]
        per_input = extra / (largest - smallest)
        rows.append(Row(
            f'f. many inputs, {label}: SQL queries with ' + '/'.join(f'{n:,}' for n in INPUT_COUNTS) + ' inputs',
            f'{counts[largest]} (' + '/'.join(str(counts[n]) for n in INPUT_COUNTS) + ')',
            f'{counts[smallest]} (1 input)', f'+{per_input:.3f}/input',
            f'no N+1: <= {smallest}-input count + 10', extra <= 10,
            ['counted with CaptureQueriesContext on the calling thread\'s connection; the run\'s monitor '
             'thread (heartbeat, periodic flush) uses its own connection and is not counted'],
        ))
    extra_shapes = shapes[largest] - shapes[smallest]
    if extra_shapes:
        rows[0].details.append(f'extra statements with {largest:,} inputs: ' + '; '.join(
            f'{times} x {shape}' for shape, times in extra_shapes.items()))
    PROGRESS.step('f. many inputs done: submit ' + '/'.join(str(submit[n]) for n in INPUT_COUNTS)
                  + ', run ' + '/'.join(str(run[n]) for n in INPUT_COUNTS) + ' queries')
    return rows
