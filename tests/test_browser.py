"""A real browser (Debian's Chromium driven by Playwright) against a live server and a real worker.

Screenshots of the pages land in ``var/screenshots``; with ``TOM_EDUCATION_UPDATE_DOCS_IMAGES=1``
they also replace the figures in ``docs/images``.
"""
import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect, sync_playwright
from tom_dataproducts.models import DataProduct

from demo.frames import make_frames
from tests.conftest import ROOT, make_product
from tom_education.models import PipelineProcess

pytestmark = pytest.mark.django_db(transaction=True)

# Playwright's sync API keeps an event loop in this thread; the ORM calls made by the tests between
# browser actions are still synchronous, so Django's guard against async contexts does not apply.
os.environ.setdefault('DJANGO_ALLOW_ASYNC_UNSAFE', 'true')

CHROMIUM = os.environ.get('TOM_EDUCATION_CHROMIUM', '/usr/bin/chromium')
SCREENSHOTS = ROOT / 'var' / 'screenshots'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='session')
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f'Chromium is not installed at {CHROMIUM}: run scripts/test, which installs it')
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live_server, user) -> Page:
    """A browser tab logged in as ``user`` (the session cookie of a logged-in test client)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={'width': 1280, 'height': 900}, base_url=live_server.url)
    context.add_cookies([{'name': settings.SESSION_COOKIE_NAME, 'value': client.cookies[settings.SESSION_COOKIE_NAME]
                          .value, 'url': live_server.url}])
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def frames(target, tmp_path) -> list[DataProduct]:
    products = []
    for path in make_frames(tmp_path, 2, ra=target.ra, dec=target.dec, size=64):
        products.append(make_product(target, path.name, path.read_bytes()))
    return products


def screenshot(locator_or_page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    locator_or_page.screenshot(path=str(path))
    if os.environ.get('TOM_EDUCATION_UPDATE_DOCS_IMAGES') == '1':
        shutil.copy(path, ROOT / 'docs' / 'images' / name)


#: tom_base's target page weighs megabytes (plotly inlined three times) and renders in 5 to 10 s on a quiet
#: machine: the tests wait for the document, not for every sub-resource, and give a loaded host time.
TARGET_PAGE_TIMEOUT = 120_000


def open_pipelines_tab(page: Page, target) -> None:
    page.goto(f'/targets/{target.pk}/', wait_until='domcontentloaded', timeout=TARGET_PAGE_TIMEOUT)
    page.locator('#pipelines-tab').click(timeout=TARGET_PAGE_TIMEOUT)
    expect(page.get_by_label('Pipeline', exact=True)).to_be_visible()


def test_run_watch_and_open_outputs(page, worker, target, frames):
    open_pipelines_tab(page, target)
    page.get_by_label('Pipeline', exact=True).select_option('Countdown')
    for product in frames:
        page.get_by_label(Path(product.data.name).name).check()
    flag = page.get_by_label('Take a few seconds')
    expect(flag).to_be_checked()
    screenshot(page.locator('#pipelines'), 'target_pipelines_tab.png')
    page.get_by_role('button', name='Run pipeline').click()

    page.wait_for_url('**/pipeline/*')
    status = page.get_by_role('status')
    # lines arrive while the process is still running
    expect(page.locator('#tom-education-log')).to_contain_text('tick 3', timeout=30_000)
    expect(status).to_have_text('Counting over 2 files')
    expect(status).to_have_text('created', timeout=60_000)
    expect(page.locator('#tom-education-log')).to_contain_text('Finished: 1 output(s) saved')
    # once final, the page reloads to show the outputs and the Re-run button
    expect(page.get_by_role('button', name='Re-run')).to_be_visible(timeout=30_000)
    screenshot(page, 'pipeline_log_view.png')

    page.click('#tom-education-group')
    expect(page.get_by_text('summary.txt')).to_be_visible()


def test_failure_message_is_shown(page, worker, target, frames):
    open_pipelines_tab(page, target)
    page.get_by_label('Pipeline', exact=True).select_option('Fails')
    page.get_by_label(Path(frames[0].data.name).name).check()
    page.get_by_role('button', name='Run pipeline').click()
    page.wait_for_url('**/pipeline/*')
    expect(page.locator('#tom-education-failure')).to_have_text('Something went terribly wrong', timeout=60_000)
    expect(page.get_by_role('status')).to_have_text('failed')


def test_nothing_selected_and_unsuitable_files_are_reported_before_running(page, target, frames):
    make_product(target, 'notes.txt', 'text')
    open_pipelines_tab(page, target)
    page.get_by_label('Pipeline', exact=True).select_option('Countdown')
    unsuitable = page.locator('.tom-education-product', has_text='notes').locator('.tom-education-unsuitable')
    expect(unsuitable).to_be_visible()
    page.get_by_label('Pipeline', exact=True).select_option('Fails')
    expect(unsuitable).to_be_hidden()
    page.get_by_role('button', name='Run pipeline').click()
    expect(page.locator('#tom-education-run-error')).to_have_text(
        'Select at least one data product to run the pipeline on.'
    )
    # the user's choice survives the round trip
    expect(page.get_by_label('Pipeline', exact=True)).to_have_value('Fails')
    assert not PipelineProcess.objects.exists()


def test_cancel_stops_a_running_pipeline(page, worker, target, frames):
    open_pipelines_tab(page, target)
    page.get_by_label('Pipeline', exact=True).select_option('Countdown')
    page.get_by_role('button', name='Select all').click()
    page.get_by_label('Keep counting until cancelled').check()
    page.get_by_role('button', name='Run pipeline').click()
    page.wait_for_url('**/pipeline/*')
    expect(page.locator('#tom-education-log')).to_contain_text('tick 2', timeout=30_000)
    page.get_by_role('button', name='Cancel').click()
    expect(page.get_by_role('status')).to_have_text('cancelled', timeout=30_000)
    assert PipelineProcess.objects.get().state == 'cancelled'
    expect(page.get_by_role('button', name='Re-run')).to_be_visible()


def test_options_are_typed_fields_with_inline_errors_and_the_bar_runs_to_the_end(page, worker, target):
    open_pipelines_tab(page, target)
    page.get_by_label('Pipeline', exact=True).select_option('Tunable')
    form = page.locator('fieldset[data-pipeline="Tunable"]')
    fps = form.get_by_label('Frames per second')
    expect(fps).to_have_attribute('type', 'number')
    expect(fps).to_have_attribute('max', '60')
    expect(fps).to_have_value('10')  # pre-filled with the default
    expect(form.get_by_label('Movie format')).to_have_value('gif')
    expect(form.get_by_label('Comparison stars (one per line)')).to_have_attribute('maxlength', '200')
    # a browser that skips its own checks (or a hand-made request) still meets the server's, shown at the field
    fps.fill('99')
    page.locator('form.tom-education-run-form').evaluate('form => { form.noValidate = true; }')
    page.get_by_role('button', name='Run pipeline').click()
    option = page.locator('.tom-education-option[data-option="fps"]')
    expect(option.get_by_role('alert')).to_contain_text('from 1 to 60, not 99')
    expect(page.get_by_label('Pipeline', exact=True)).to_have_value('Tunable')
    assert not PipelineProcess.objects.exists()

    form = page.locator('fieldset[data-pipeline="Tunable"]')
    form.get_by_label('Frames per second').fill('12')
    form.get_by_label('Steps to count through').fill('20')
    form.get_by_label('Seconds per step').fill('0.4')
    page.get_by_role('button', name='Run pipeline').click()
    page.wait_for_url('**/pipeline/*')
    bar = page.locator('#tom-education-progress [role=progressbar]')
    # part-way: the bar shows a fraction strictly between 0 and 100 %, with the count
    page.wait_for_function(
        "() => { const bar = document.querySelector('#tom-education-progress [aria-valuenow]');"
        " const value = bar && Number(bar.getAttribute('aria-valuenow')); return value > 0 && value < 100; }",
        timeout=60_000,
    )
    expect(page.locator('.tom-education-progress-text')).to_contain_text(' / 20 (')
    # tom_common's CSS hides every .progress (opacity 0): this one must show
    assert bar.evaluate('element => getComputedStyle(element).opacity') == '1'
    page.wait_for_timeout(700)  # for the screenshot only: Bootstrap animates the bar's width for 0.6 s
    screenshot(page, 'pipeline_progress.png')
    expect(page.get_by_role('status')).to_have_text('created', timeout=60_000)
    expect(bar).to_have_attribute('aria-valuenow', '100')
    expect(page.locator('.tom-education-progress-text')).to_contain_text('20 / 20 (100%)')
    assert PipelineProcess.objects.get().option_values['fps'] == 12


def test_a_rule_made_in_the_pipelines_tab_runs_by_itself_when_data_arrive(page, worker, target):
    open_pipelines_tab(page, target)
    page.get_by_role('link', name='New rule').click()
    page.wait_for_url('**/rules/new/')
    page.get_by_label('Name', exact=True).fill('every new frame')
    after = page.get_by_label('After a successful run of')
    expect(after).to_be_hidden()  # only chains follow another pipeline
    page.get_by_label('When', exact=True).select_option('run')
    expect(after).to_be_visible()
    page.get_by_label('When', exact=True).select_option('data')
    page.get_by_label('Pipeline', exact=True).select_option('Tunable')
    options = page.locator('fieldset[data-pipeline="Tunable"]')
    options.get_by_label('Frames per second').fill('15')
    page.get_by_label('File name ends in').fill('.fits')
    page.get_by_label('Quiet period (seconds)').fill('1')
    page.get_by_role('button', name='Save rule').click()
    expect(page.locator('#tom-education-rule-state')).to_have_text('Active')
    expect(page.locator('#tom-education-rule-summary')).to_contain_text('When new files ending in .fits arrive')

    make_product(target, 'night1.fits')  # as a facility module or a script would save it
    # the worker's periodic check fires the rule once the arrivals have been quiet for 1 s
    run = None
    for _ in range(120):
        run = PipelineProcess.objects.filter(triggered_by_rule__name='every new frame').first()
        if run is not None and run.is_final:
            break
        page.wait_for_timeout(500)
    assert run is not None and run.state == 'created', run and run.failure_message
    assert run.option_values['fps'] == 15 and run.created_by.username == 'owner'
    page.reload()
    expect(page.get_by_role('link', name=run.pipeline)).to_be_visible()
    screenshot(page, 'automatic_run_rule.png')
    page.get_by_role('button', name='Pause').click()
    expect(page.locator('#tom-education-rule-state')).to_have_text('Paused')
