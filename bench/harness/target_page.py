"""Row i: the target page's render time with and without tom_education's "Pipelines" tab.

The tab plugs in through tom_base's ``target_detail_tabs`` hook of the app config (``apps.py``):
tom_base calls it on every target page and renders our partial with ``tabs.target_tab_context``.
"Without" patches that hook to return no tab, in this process, so both pages are rendered by the
same code on the same target: a fresh one with a few input products and finished runs, as a
student's target would have. Django's test client, logged in, GET ``/targets/<pk>/``, interleaved.
"""
from __future__ import annotations

import time
from unittest import mock

from bench.harness.common import NOOP, PROGRESS, Row, Sizes, fmt_bytes, fmt_ms, percentile
from bench.harness.world import Fixtures, create_process

PRODUCTS = 5
PROCESSES = 5
#: in our tab's run form only (templates/tom_education/partials/run_form.html)
TAB_MARK = b'id="tom-education-run"'


def page_target(fixtures: Fixtures) -> int:
    """A public target with ``PRODUCTS`` products and ``PROCESSES`` finished runs; its pk."""
    from django.core.files.base import ContentFile
    from django.utils import timezone
    from tom_dataproducts.models import DataProduct
    from tom_targets.models import Target

    target = Target.objects.create(name=f'{fixtures.target.name} (page)', type=Target.SIDEREAL, ra=11.0,
                                   dec=42.0, permissions=Target.Permissions.PUBLIC)
    products = []
    for number in range(PRODUCTS):
        product = DataProduct(target=target, product_id=f'{fixtures.product.product_id}-page-{number}')
        product.data.save(f'bench_page_{number}.json', ContentFile(b'{}'), save=False)
        product.save()
        products.append(product)
    page_fixtures = Fixtures(user=fixtures.user, target=target, product=products[0])
    now = timezone.now()
    for _ in range(PROCESSES):
        process = create_process(NOOP, page_fixtures, products)
        type(process).objects.filter(pk=process.pk).update(state='created', status='created', started=now,
                                                          finished=now)
    return target.pk


def bench_target_page(fixtures: Fixtures, sizes: Sizes) -> list[Row]:
    from django.test import Client

    from tom_education.apps import TomEducationConfig

    pk = page_target(fixtures)
    client = Client()
    client.force_login(fixtures.user)
    url = f'/targets/{pk}/'

    def render(with_tab: bool) -> tuple[float, int]:
        start = time.perf_counter()
        if with_tab:
            response = client.get(url)
        else:
            with mock.patch.object(TomEducationConfig, 'target_detail_tabs', lambda self: []):
                response = client.get(url)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f'GET {url} answered {response.status_code}')
        if with_tab != (TAB_MARK in response.content):
            raise RuntimeError(f'the page {"lacks" if with_tab else "still has"} the Pipelines tab')
        return elapsed, len(response.content)

    count = max(sizes.dispatch_runs // 5, 3)
    PROGRESS.show('i. target page: warming up')
    render(True)
    render(False)
    timings: dict[bool, list[float]] = {True: [], False: []}
    sizes_seen: dict[bool, int] = {}
    for number in range(count):
        PROGRESS.show('i. target page, with and without our tab (interleaved)', number, count)
        for with_tab in ((True, False) if number % 2 == 0 else (False, True)):
            elapsed, size = render(with_tab)
            timings[with_tab].append(elapsed)
            sizes_seen[with_tab] = size
    mine, theirs = percentile(timings[True], .5), percentile(timings[False], .5)
    added = (mine - theirs) / theirs
    row = Row(
        'i. target page p50: GET /targets/<pk>/ with our Pipelines tab vs without it',
        fmt_ms(mine), fmt_ms(theirs), f'{mine / theirs:.2f}x ({added:+.0%})', 'tab adds <= 10%', added <= 0.10,
        [
            f'{count} renders each, interleaved, after one warm-up each; the target has {PRODUCTS} products and '
            f'{PROCESSES} finished runs; "without" patches TomEducationConfig.target_detail_tabs to return []',
            f'with: p50 {fmt_ms(mine)}, max {fmt_ms(max(timings[True]))}, {fmt_bytes(sizes_seen[True])}; '
            f'without: p50 {fmt_ms(theirs)}, max {fmt_ms(max(timings[False]))}, {fmt_bytes(sizes_seen[False])}; '
            f'our tab adds {fmt_ms(mine - theirs)} and {fmt_bytes(sizes_seen[True] - sizes_seen[False])}',
        ],
    )
    PROGRESS.step(f'i. target page done: {fmt_ms(mine)} with our tab, {fmt_ms(theirs)} without')
    return [row]
