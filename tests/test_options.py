"""Run options: typed values next to the flags, judged once in services and refused alike on every channel."""
import json

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from tom_dataproducts.models import ReducedDatum

from tests.conftest import make_product, wait_final
from tests.test_api import token_client
from tom_education import registry, services
from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess

pytestmark = pytest.mark.django_db(transaction=True)

DEFAULTS = {'radius': None, 'fps': 10, 'format': 'gif', 'stars': '', 'steps': 0, 'step_seconds': 0.0}

#: (option values sent, the message every channel answers with)
BAD_VALUES = [
    ({'fps': 0}, 'Option "fps" must be a whole number from 1 to 60, not 0.'),
    ({'fps': '61'}, 'Option "fps" must be a whole number from 1 to 60, not 61.'),
    ({'fps': '2.5'}, 'Option "fps" must be a whole number from 1 to 60, not 2.5.'),
    ({'fps': 'ten'}, 'Option "fps" must be a whole number from 1 to 60, not ten.'),
    ({'fps': ''}, 'Option "fps" needs a value: a whole number from 1 to 60.'),
    ({'radius': '0.1'}, 'Option "radius" must be a number from 0.5 to 100, not 0.1.'),
    ({'radius': 'nan'}, 'Option "radius" must be a number from 0.5 to 100, not nan.'),
    ({'format': 'avi'}, 'Option "format" must be one of "gif", "mp4", "webm", not avi.'),
    ({'stars': 'x' * 201}, 'Option "stars" must be text of at most 200 characters; got 201 characters.'),
    ({'colour': 'red'}, 'Unknown option "colour" for this pipeline. Its options are: radius, fps, format, stars, '
                        'steps, step_seconds.'),
]
BAD_JSON_ONLY = [
    ({'fps': True}, 'Option "fps" must be a whole number from 1 to 60, not true.'),
    ({'stars': ['a']}, 'Option "stars" must be text of at most 200 characters, not ["a"].'),
]


def start(user, target, **kwargs):
    product = make_product(target, 'frame.fits')
    return services.start_process(user=user, pipeline='Tunable', target=target, input_files=[product], **kwargs)


def test_defaults_are_stored_and_good_values_typed(user, target):
    assert start(user, target).option_values == DEFAULTS
    process = start(user, target, options={'radius': '7.5', 'fps': '24', 'format': 'webm', 'stars': '10 20\n30 40'})
    assert process.option_values == {**DEFAULTS, 'radius': 7.5, 'fps': 24, 'format': 'webm', 'stars': '10 20\n30 40'}
    # JSON numbers as well as text, a whole number written as a decimal, and an optional option emptied
    process = start(user, target, options={'radius': None, 'fps': 30.0, 'step_seconds': 1})
    assert process.option_values == {**DEFAULTS, 'fps': 30, 'step_seconds': 1.0}
    assert isinstance(process.option_values['fps'], int)


@pytest.mark.parametrize(('options', 'message'), BAD_VALUES + BAD_JSON_ONLY)
def test_bad_values_are_refused_naming_the_option_and_nothing_is_stored(user, target, options, message):
    with pytest.raises(services.ProcessInputError) as caught:
        start(user, target, options=options)
    assert caught.value.message == message
    assert caught.value.field == 'options'
    assert caught.value.option == (None if 'colour' in options else next(iter(options)))
    assert not PipelineProcess.objects.exists()


def test_values_reach_do_pipeline_on_the_worker(worker, user, target):
    process = start(user, target, flags={'verbose': True},
                    options={'radius': '3', 'format': 'mp4', 'stars': 'a b', 'steps': 3})
    wait_final(process)
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    received = json.loads(ReducedDatum.objects.get(data_type='received').value['text'])
    assert received == {**DEFAULTS, 'verbose': True, 'radius': 3.0, 'format': 'mp4', 'stars': 'a b', 'steps': 3}


def test_api_describes_accepts_and_refuses_options(user, target):
    api = token_client(user)
    described = {entry['name']: entry for entry in api.get('/api/pipelines/').json()}['Tunable']['options']
    by_name = {option['name']: option for option in described}
    assert by_name['fps'] == {
        'name': 'fps', 'type': 'int', 'default': 10, 'long_name': 'Frames per second', 'required': True,
        'min': 1.0, 'max': 60.0, 'step': None, 'choices': [], 'max_length': None, 'help': '',
    }
    assert by_name['radius']['required'] is False and by_name['radius']['default'] is None
    assert by_name['format']['choices'] == ['gif', 'mp4', 'webm']
    assert by_name['stars']['max_length'] == 200
    product = make_product(target, 'frame.fits')
    body = {'pipeline': 'Tunable', 'target': target.pk, 'input_files': [product.pk]}
    created = api.post('/api/pipelineprocesses/', {**body, 'options': {'fps': 5, 'format': 'webm'}}, format='json')
    assert created.status_code == 201, created.content
    assert created.json()['options'] == {**DEFAULTS, 'fps': 5, 'format': 'webm'}
    assert api.get(f'/api/pipelineprocesses/{created.json()["id"]}/').json()['options']['fps'] == 5
    for options, message in BAD_VALUES + BAD_JSON_ONLY:
        refused = api.post('/api/pipelineprocesses/', {**body, 'options': options}, format='json')
        assert refused.status_code == 400
        expected = {'options': [message]} if 'colour' in options else {'options': {next(iter(options)): [message]}}
        assert refused.json() == expected
    assert PipelineProcess.objects.count() == 1


def test_cli_option_sets_values_and_refuses_with_the_same_words(user, target, capsys):
    product = make_product(target, 'frame.fits')
    arguments = ['run_pipeline', 'Tunable', '--target', target.name, '--product', str(product.pk), '--no-wait']
    call_command(*arguments, '--option', 'fps=12', '--option', 'radius=', '--option', 'stars=a=b', '--json')
    summary = json.loads(capsys.readouterr().out)
    assert summary['options'] == {**DEFAULTS, 'fps': 12, 'stars': 'a=b'}
    for options, message in BAD_VALUES:
        name, value = next(iter(options.items()))
        with pytest.raises(CommandError) as caught:
            call_command(*arguments, '--option', f'{name}={value}')
        assert str(caught.value) == message
    with pytest.raises(CommandError, match="--option 'fps': write NAME=VALUE"):
        call_command(*arguments, '--option', 'fps')
    assert PipelineProcess.objects.count() == 1


def test_form_offers_typed_inputs_with_defaults_and_shows_errors_next_to_the_field(client, user, target, settings):
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    product = make_product(target, 'frame.fits')
    client.force_login(user)
    page = client.get(f'/targets/{target.pk}/').content.decode()
    assert 'name="option::Tunable::fps" id="tom-education-option-optiontunablefps" value="10"' in page
    assert 'step="1" min="1" max="60" required>' in page
    assert '<option value="gif" selected>gif</option>' in page
    assert 'name="option::Tunable::stars" id="tom-education-option-optiontunablestars" rows="3" maxlength="200">' \
           '</textarea>' in page
    post = {'pipeline': 'Tunable', 'product_ids': str(product.pk), 'option::Tunable::fps': '90',
            'option::Tunable::format': 'mp4', 'option::Tunable::radius': '', 'option::Tunable::stars': 'a'}
    refused = client.post(f'/pipeline/target/{target.pk}/run/', post, HTTP_HX_REQUEST='true').content.decode()
    # the message sits under the fps field, which keeps what was typed; the other fields keep theirs
    assert 'class="form-control form-control-sm is-invalid" name="option::Tunable::fps" ' \
           'id="tom-education-option-optiontunablefps" value="90"' in refused
    assert '<div class="invalid-feedback d-block" role="alert">Option &quot;fps&quot; must be a whole number from ' \
           '1 to 60, not 90.</div>' in refused
    assert '<option value="mp4" selected>mp4</option>' in refused
    assert not PipelineProcess.objects.exists()
    started = client.post(f'/pipeline/target/{target.pk}/run/', {**post, 'option::Tunable::fps': '25'})
    process = PipelineProcess.objects.get()
    assert started.status_code == 302 and started['Location'] == f'/pipeline/{process.pk}'
    assert process.option_values == {**DEFAULTS, 'fps': 25, 'format': 'mp4', 'stars': 'a'}
    shown = client.get(f'/pipeline/{process.pk}').content.decode()
    assert '<code>fps</code> = <span class="text-break">25</span>' in shown
    assert '<code>radius</code> = <span class="text-muted">empty</span>' in shown


def test_site_defaults_override_the_class_and_are_checked(user, target, settings, client):
    settings.TOM_EDUCATION_OPTION_DEFAULTS = {'Tunable': {'fps': 24, 'format': 'mp4'}}
    assert start(user, target).option_values == {**DEFAULTS, 'fps': 24, 'format': 'mp4'}
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    client.force_login(user)
    assert 'name="option::Tunable::fps" id="tom-education-option-optiontunablefps" value="24"' in client.get(
        f'/targets/{target.pk}/').content.decode()
    settings.TOM_EDUCATION_OPTION_DEFAULTS = {'Tunable': {'fps': 500, 'size': 3}, 'Nope': {}}
    with pytest.raises(SystemCheckError) as caught:
        call_command('check', '--fail-level', 'WARNING')
    report = str(caught.value)
    assert 'TOM_EDUCATION_OPTION_DEFAULTS["Tunable"]: the default of option \'fps\' is not accepted by the option ' \
           'itself: Option "fps" must be a whole number from 1 to 60, not 500.' in report
    assert "it sets a default for option 'size', which the pipeline does not have" in report
    assert 'TOM_EDUCATION_OPTION_DEFAULTS names pipeline "Nope"' in report


@pytest.mark.parametrize(('options', 'message'), [
    ({'fps': {'type': 'integer'}}, "option 'fps' needs a \"type\", one of int, float, choice, text; got 'integer'"),
    ({'fps': {'type': 'int', 'maximum': 3}}, "option 'fps' has unknown key(s) maximum"),
    ({'fps': {'type': 'int', 'default': 0, 'min': 1}}, "the default of option 'fps' is not accepted by the option "
                                                        'itself: Option "fps" must be a whole number of at least 1'),
    ({'fps': {'type': 'int', 'min': 5, 'max': 1}}, "option 'fps' has \"min\" larger than \"max\""),
    ({'kind': {'type': 'choice', 'choices': []}}, "option 'kind' of type \"choice\" needs a non-empty list"),
    ({'bad-name': {'type': 'text'}}, "option name 'bad-name' must be a Python identifier"),
    ({'shout': {'type': 'text'}}, "option 'shout' has the name of a flag; flags and options share one namespace"),
    ({'note': {'type': 'text', 'max_length': 0}}, "option 'note' has a \"max_length\" that is not a positive"),
])
def test_registry_reports_bad_option_declarations(options, message):
    from tests.pipelines import Scripted

    class Declared(Scripted):
        class Meta:
            proxy = True
            app_label = 'tests'

    Declared.options = options
    assert any(message in problem for problem in registry.validate_class(Declared)), registry.validate_class(Declared)


def test_rerun_keeps_what_is_still_valid_and_says_what_it_dropped(user, target, settings, client, monkeypatch):
    settings.TOM_EDUCATION_CELERY_APP = 'tests.unused_queue.app'
    first = start(user, target, flags={'verbose': True}, options={'fps': 50, 'format': 'webm', 'steps': 2})
    PipelineProcess.objects.filter(pk=first.pk).update(option_values={**first.option_values, 'old_option': 1})
    from tests.pipelines import Tunable

    changed = {**Tunable.options, 'fps': {**Tunable.options['fps'], 'max': 30}}
    changed.pop('format')
    monkeypatch.setattr(Tunable, 'options', changed)
    client.force_login(user)
    response = client.post(f'/pipeline/{first.pk}/rerun/')
    second = PipelineProcess.objects.exclude(pk=first.pk).get()
    assert response['Location'] == f'/pipeline/{second.pk}'
    assert second.flag_values == {'verbose': True}
    assert second.option_values == {'radius': None, 'fps': 10, 'stars': '', 'steps': 2, 'step_seconds': 0.0}
    notes = list(second.log_lines.values_list('message', flat=True))
    assert notes == [
        f'Re-run of {first.identifier}.',
        'Option "fps" was reset to its default: Option "fps" must be a whole number from 1 to 30, not 50.',
        'Option "format" was dropped: the pipeline no longer has it.',
        'Option "old_option" was dropped: the pipeline no longer has it.',
    ]


@override_settings(TOM_EDUCATION_CELERY_APP='tests.unused_queue.app')
def test_spec_pipelines_without_options_store_none(user, target):
    product = make_product(target, 'a.fits')
    process = services.start_process(user=user, pipeline='Flag demo', target=target, input_files=[product])
    assert process.option_values == {}
