"""Row h: what ``services.start_process`` costs beyond the permission check it contains.

Measured in this process, with no worker listening (a run's message waits in the queue, which is
emptied afterwards, and the runs are deleted, so no later row runs them). The target is private
and the user holds django-guardian's object permission on it: the dearest path of the check.
Three figures, interleaved: the whole submission; tom_base's ``targets_for_user`` for that user and
target (what a TOM's own pages ask); and ``services.may_view_target``, the same rule on the one
target, which is the check ``start_process`` actually makes.
"""
from __future__ import annotations

import time
from typing import Any

from bench.harness.common import NOOP, PROGRESS, Row, Sizes, fmt_ms, percentile
from bench.harness.world import Fixtures, World


def private_target(fixtures: Fixtures) -> tuple[Any, Any]:
    """A private target the fixtures' user may view through an object permission, with one input product."""
    from django.core.files.base import ContentFile
    from guardian.shortcuts import assign_perm
    from tom_dataproducts.models import DataProduct
    from tom_targets.models import Target

    target = Target.objects.create(name=f'{fixtures.target.name} (private)', type=Target.SIDEREAL, ra=10.0,
                                   dec=41.0, permissions=Target.Permissions.PRIVATE)
    assign_perm('tom_targets.view_target', fixtures.user, target)
    product = DataProduct(target=target, product_id=f'{fixtures.product.product_id}-private')
    product.data.save('bench_private_input.json', ContentFile(b'{}'), save=False)
    product.save()
    return target, product


def bench_submission(world: World, fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    import redis
    from tom_targets.models import Target
    from tom_targets.permissions import targets_for_user

    from tom_education import services
    from tom_education.models import PipelineProcess

    target, product = private_target(fixtures)
    user = fixtures.user

    def submit() -> None:
        pks.append(services.start_process(user=user, pipeline=NOOP, target=target, input_files=[product]).pk)

    def tom_base_check() -> None:
        if not targets_for_user(user, Target.objects.filter(pk=target.pk), 'view_target').exists():
            raise RuntimeError('tom_base refuses the bench user its private target')

    def our_check() -> None:
        if not services.may_view_target(user, target):
            raise RuntimeError('may_view_target refuses the bench user its private target')

    pks: list[int] = []
    timings: dict[str, list[float]] = {'submit': [], 'tom_base': [], 'ours': []}
    actions = {'submit': submit, 'tom_base': tom_base_check, 'ours': our_check}
    count = sizes.dispatch_runs * 2
    try:
        for number in range(count + 5):
            PROGRESS.show('h. submission: start_process vs the permission check', number, count + 5)
            for name, action in actions.items():
                start = time.perf_counter()
                action()
                if number >= 5:  # the first rounds fill Django's caches
                    timings[name].append(time.perf_counter() - start)
    finally:
        redis.Redis.from_url(world.broker).delete(world.queue)
        PipelineProcess.objects.filter(pk__in=pks).delete()
    rows = []
    for label, fraction in (('p50', .5), ('p95', .95)):
        whole, check = percentile(timings['submit'], fraction), percentile(timings['tom_base'], fraction)
        rows.append(Row(
            f'h. submission {label}: services.start_process alone vs tom_base\'s targets_for_user check',
            fmt_ms(whole), fmt_ms(check), f'{whole / check:.1f}x', 'report (no goal)', None,
        ))
    beyond = percentile(timings['submit'], .5) - percentile(timings['ours'], .5)
    rows[0].details = [
        f'{count} of each, interleaved, in this process (no worker), private target with an object permission',
        f'services.may_view_target (the check start_process makes): p50 {fmt_ms(percentile(timings["ours"], .5))}, '
        f'p95 {fmt_ms(percentile(timings["ours"], .95))}; the submission beyond it: {fmt_ms(beyond)} at the median '
        '(product check, INSERTs of the run and its input link, the commit, the message to Redis)',
    ]
    PROGRESS.step(f'h. submission done: start_process p50 {fmt_ms(percentile(timings["submit"], .5))}, '
                  f'targets_for_user {fmt_ms(percentile(timings["tom_base"], .5))}')
    return rows
