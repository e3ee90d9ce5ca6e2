"""Automatic-run rules: a batch of arrivals makes one run, a chain follows it, and nothing runs twice or in a loop."""
import json
import time

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import make_product, script_product, wait_final
from tests.test_periods import csv_text, simulate, sinusoid
from tom_education import automation, services
from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess, PipelineRule, RuleArrival

pytestmark = pytest.mark.django_db(transaction=True)

PERIOD = 3.3


def rule(owner, **fields) -> PipelineRule:
    made = PipelineRule(name=fields.pop('name', 'rule'), owner=owner, **fields)
    made.full_clean()
    made.save()
    return made


def wait_for_runs(query, count: int, timeout: float = 120) -> list[PipelineProcess]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list(query.order_by('pk'))
        if len(runs) >= count and all(run.is_final for run in runs):
            return runs
        time.sleep(0.2)
    raise AssertionError(f'{query.count()} run(s) after {timeout} s, {count} expected')


def test_a_batch_of_arrivals_makes_one_run_and_the_chain_finds_the_period(worker, target, user, settings, client):
    frames = rule(user, name='light curve', target=target, pipeline='Scripted', suffix='.json', quiet_period=2)
    rule(user, name='period', target=target, pipeline='Period search', trigger=PipelineRule.RUN_SUCCEEDED,
         after_pipeline='Scripted', suffix='.csv', quiet_period=0)
    light_curve = csv_text([simulate(16, PERIOD, sinusoid)])
    first = script_product(target, {'outputs': [{'name': 'curve.csv', 'content': light_curve,
                                                 'type': 'DataProduct'}]}, name='first.json')
    for number in range(9):  # arriving one by one, within the quiet period
        script_product(target, {'steps': [{'action': 'log', 'count': 1, 'text': f'frame {number}'}]},
                       name=f'frame{number}.json')
    (run,) = wait_for_runs(PipelineProcess.objects.filter(triggered_by_rule=frames), 1)
    assert run.state == ASYNC_STATUS_CREATED, run.failure_message
    assert run.input_files.count() == 10 and run.input_files.order_by('pk').first() == first
    assert run.created_by == user
    (chained,) = wait_for_runs(PipelineProcess.objects.filter(triggered_by_process=run), 1)
    assert chained.state == ASYNC_STATUS_CREATED, chained.failure_message
    assert chained.pipeline == 'Period search' and chained.chain_depth == 1
    (datum,) = chained.output_reduced_data()['ReducedDatum']
    result = json.loads(datum.value['text'])
    assert abs(result['period'] - PERIOD) < 4 * result['period_error']
    log = list(chained.log_lines.values_list('message', flat=True))
    assert f'Started by rule "period" after {run.identifier} succeeded.' in log
    # each page links the run to what started it and to what it started
    client.force_login(user)
    assert chained.identifier in client.get(f'/pipeline/{run.pk}').content.decode()
    page = client.get(f'/pipeline/{chained.pk}').content.decode()
    period_rule = PipelineRule.objects.get(name='period')
    assert f'href="/pipeline/{run.pk}"' in page
    assert f'rule “<a href="{period_rule.get_absolute_url()}">period</a>”' in page

    # the same file uploaded again is nothing new: no second run
    script_product(target, {'steps': [{'action': 'log', 'count': 1, 'text': 'frame 0'}]}, name='again.json')
    deadline = time.monotonic() + frames.quiet_period + 5 * settings.TOM_EDUCATION_HEARTBEAT_INTERVAL + 3
    while time.monotonic() < deadline and RuleArrival.objects.exists():
        time.sleep(0.2)
    time.sleep(1)
    assert not RuleArrival.objects.exists(), 'the workers never handled the new arrival'
    assert PipelineProcess.objects.filter(triggered_by_rule=frames).count() == 1


def test_paused_rules_and_owners_who_cannot_view_the_target_fire_nothing(target, private_target, user, other_user):
    # an hour of quiet: a worker left running by an earlier test must not fire them while we look
    paused = rule(user, name='paused', target=target, pipeline='Scripted', quiet_period=3600, paused=True)
    foreign = rule(other_user, name='not mine', pipeline='Scripted', quiet_period=3600)  # every target
    script_product(private_target, {})  # other_user may not view it
    script_product(target, {})  # paused for user; public, so other_user's rule takes it
    assert not RuleArrival.objects.filter(rule=paused).exists()
    assert list(RuleArrival.objects.filter(rule=foreign).values_list('product__target', flat=True)) == [target.pk]


def test_a_chain_that_would_loop_is_refused_when_it_is_saved(user):
    rule(user, name='a', pipeline='Example', trigger=PipelineRule.RUN_SUCCEEDED, after_pipeline='Scripted')
    rule(user, name='b', pipeline='Countdown', trigger=PipelineRule.RUN_SUCCEEDED, after_pipeline='Example')
    with pytest.raises(ValidationError, match='Countdown → Scripted → Example → Countdown'):
        rule(user, name='c', pipeline='Scripted', trigger=PipelineRule.RUN_SUCCEEDED, after_pipeline='Countdown')
    with pytest.raises(ValidationError, match='Example → Example'):
        rule(user, name='self', pipeline='Example', trigger=PipelineRule.RUN_SUCCEEDED, after_pipeline='Example')
    with pytest.raises(ValidationError, match='Unknown pipeline|not registered|no pipeline'):
        rule(user, name='typo', pipeline='Exampel')


def test_a_chain_stops_at_the_depth_limit_and_a_failed_run_fires_nothing(target, user):
    chain = rule(user, name='next', pipeline='Example', trigger=PipelineRule.RUN_SUCCEEDED, after_pipeline='Scripted')
    deep = PipelineProcess.objects.create(pipeline='Scripted', target=target, identifier='deep', state='created',
                                          chain_depth=automation.MAX_CHAIN_DEPTH)
    automation.start_chained_runs(None, process_pk=deep.pk, state='created')
    chain.refresh_from_db()
    assert 'a chain stops after 5 runs' in chain.last_error
    failed = PipelineProcess.objects.create(pipeline='Scripted', target=target, identifier='failed', state='failed')
    automation.start_chained_runs(None, process_pk=failed.pk, state='failed')
    assert not PipelineProcess.objects.filter(triggered_by_rule=chain).exists()


def test_a_refused_start_is_kept_as_the_rules_last_error_not_retried(target, user):
    frames = rule(user, name='frames', target=target, pipeline='Scripted', quiet_period=0)
    # a flag the pipeline dropped after the rule was saved (a deploy): the start is refused
    PipelineRule.objects.filter(pk=frames.pk).update(flag_values={'no_such_flag': True})
    make_product(target, 'frame.json', '{}')
    automation.fire_due_rules()  # here, or already by a worker left running by an earlier test
    frames.refresh_from_db()
    assert 'no_such_flag' in frames.last_error and not RuleArrival.objects.exists()
    assert automation.fire_due_rules() == 0


def test_a_runs_own_outputs_are_not_new_data_so_a_rule_cannot_fire_itself(worker, target, user):
    # the rule takes .json files and its pipeline writes one: that output must not count as an arrival
    loop = rule(user, name='takes its own output', target=target, pipeline='Scripted', quiet_period=3600)
    script = script_product(target, {'outputs': [{'name': 'made.json', 'content': '{}', 'type': 'DataProduct'}]})
    (arrival,) = RuleArrival.objects.filter(rule=loop)
    assert arrival.product == script
    started = wait_final(services.start_process(user=user, pipeline='Scripted', target=target, input_files=[script]))
    assert started.state == ASYNC_STATUS_CREATED, started.failure_message
    (made,) = started.output_files.all()
    assert made.data.name.endswith('.json')
    assert list(RuleArrival.objects.filter(rule=loop)) == [arrival]
