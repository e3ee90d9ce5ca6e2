"""manage.py run_pipeline against a real worker."""
import json
import re

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import make_product, script_product
from tom_education.models import ASYNC_STATUS_PENDING, PipelineProcess

pytestmark = pytest.mark.django_db(transaction=True)


def test_waits_prints_log_and_exits_zero(worker, target, capsys):
    product = make_product(target, 'a.fits')
    call_command('run_pipeline', 'Log example', '--target', target.name, '--product', str(product.pk))
    out = capsys.readouterr().out
    assert 'first sub-step' in out and 'second sub-step' in out
    assert out.index('Status: Doing something important') < out.index('first sub-step')
    assert out.rstrip().endswith('[created] created')


def test_failure_exits_one_with_the_message(worker, target, capsys):
    product = make_product(target, 'a.fits')
    with pytest.raises(SystemExit) as caught:
        call_command('run_pipeline', 'Fails', '--target', str(target.pk), '--all')
    assert caught.value.code == 1
    assert 'failed: Something went terribly wrong' in capsys.readouterr().err
    assert list(PipelineProcess.objects.get().input_files.all()) == [product]


def test_json_summary_on_stdout(worker, target, capsys):
    script = script_product(target, {'outputs': [{'name': 'out.png', 'content': 'x', 'type': 'DataProduct'}]})
    call_command('run_pipeline', 'Scripted', '--target', target.name, '--product', str(script.pk),
                 '--flag', 'shout=true', '--json')
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    process = PipelineProcess.objects.get()
    assert summary['id'] == process.pk
    assert summary['identifier'] == process.identifier
    assert summary['state'] == 'created' and summary['failure_message'] == ''
    assert summary['flags'] == {'shout': True}
    assert [output['product_id'] for output in summary['outputs']['data_products']] == [
        f'{process.identifier}_out.png'
    ]
    assert 'SHOUTING' in captured.err


def test_no_wait_returns_at_once(target, capsys, settings):
    # into a queue no worker consumes: a worker left running by an earlier test would take the run at once
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    product = make_product(target, 'a.fits')
    call_command('run_pipeline', 'Example', '--target', target.name, '--product', str(product.pk), '--no-wait')
    assert PipelineProcess.objects.get().state == ASYNC_STATUS_PENDING
    assert 'Started example_' in capsys.readouterr().out


@pytest.mark.parametrize(('arguments', 'message'), [
    (['Nope', '--target', 'M31 test', '--all'], 'Unknown pipeline "Nope"'),
    (['Example', '--target', 'Andromeda?', '--all'], 'No target named "Andromeda?" (by name, alias or primary key)'),
    (['Scripted', '--target', 'M31 test', '--all', '--flag', 'shout'], "--flag 'shout': write NAME=true or NAME=false"),
    (['Scripted', '--target', 'M31 test', '--all', '--flag', 'shout=maybe'], 'write NAME=true or NAME=false'),
    (['Example', '--target', 'M31 test', '--all'], 'Select at least one data product'),
    (['Example', '--target', 'M31 test', '--all', '--user', 'ghost'], 'No user named "ghost"'),
])
def test_bad_arguments_give_a_clear_error(target, arguments, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command('run_pipeline', *arguments)
    assert not PipelineProcess.objects.exists()


def test_all_takes_only_the_products_the_pipeline_accepts(worker, target, capsys):
    fits = make_product(target, 'frame.fits')
    make_product(target, 'earlier_output.png', 'png')
    call_command('run_pipeline', 'Example', '--target', target.name, '--all')
    process = PipelineProcess.objects.get()
    assert list(process.input_files.all()) == [fits]
    assert process.state == 'created'
