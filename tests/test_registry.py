"""Registry problems are reported by manage.py check, naming the entry, and never break the rest."""
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tom_education import registry

GOOD = {'Example': 'tests.spec_pipelines.ExamplePipelineProcess'}


@pytest.mark.parametrize(('path', 'message'), [
    ('tests.nowhere.Pipeline', "it could not be imported: ModuleNotFoundError: No module named 'tests.nowhere'"),
    ('tests.bad_pipelines.NotAPipeline', 'it is not a subclass of tom_education.models.PipelineProcess'),
    ('tests.bad_pipelines.SpaceInFlag', "flag name 'has space' must be a non-empty string without whitespace"),
    ('tests.bad_pipelines.NonBoolDefault', 'flag \'verbose\' needs a boolean "default" (True or False)'),
    ('tests.bad_pipelines.FlagsNotDict', 'flags must be a dict mapping flag names'),
    ('tests.bad_pipelines.Concrete', 'it is not a proxy model'),
    ('tests.bad_pipelines.SuffixString', 'allowed_suffixes must be a list of strings'),
])
def test_check_names_the_bad_entry(path, message):
    # a warning: the TOM keeps starting; check --fail-level WARNING (as CI runs it) fails
    with override_settings(TOM_EDUCATION_PIPELINES={**GOOD, 'Broken one': path}):
        with pytest.raises(SystemCheckError) as caught:
            call_command('check', '--fail-level', 'WARNING')
        assert f'TOM_EDUCATION_PIPELINES entry "Broken one" ({path}): {message}' in str(caught.value)
        # the good entry stays usable
        assert list(registry.pipelines()) == ['Example']
        with pytest.raises(registry.UnknownPipeline, match='Pipeline "Broken one" is misconfigured'):
            registry.get('Broken one')


def test_setting_that_is_not_a_dict_is_reported():
    with override_settings(TOM_EDUCATION_PIPELINES=['tests.spec_pipelines.FlagDemo']):
        with pytest.raises(SystemCheckError, match='TOM_EDUCATION_PIPELINES must be a dict'):
            call_command('check')


def test_a_tom_without_the_uploader_middleware_is_warned(settings):
    """Without it, automatic-run rules cannot tell a stranger's upload through tom_base's page from the owner's."""
    settings.MIDDLEWARE = [entry for entry in settings.MIDDLEWARE if 'tom_education' not in entry]
    with pytest.raises(SystemCheckError, match=r'tom_education.W005.*UploaderMiddleware is not in MIDDLEWARE'):
        call_command('check', '--fail-level', 'WARNING')


def test_valid_configuration_passes_check():
    call_command('check', '--fail-level', 'WARNING')


def test_unknown_name_lists_the_registered_ones():
    with override_settings(TOM_EDUCATION_PIPELINES=GOOD):
        with pytest.raises(registry.UnknownPipeline, match='Unknown pipeline "X". Registered pipelines: "Example".'):
            registry.get('X')


def test_description_comes_from_the_class_not_from_djangos_generated_docstring():
    from tests.bad_pipelines import HostileFlag
    from tests.spec_pipelines import ExamplePipelineProcess

    # the spec's example has no docstring of its own: Django's "Name(id, ...)" must not be shown
    assert ExamplePipelineProcess.__doc__.startswith('ExamplePipelineProcess(id, ')
    assert ExamplePipelineProcess.describe() == ''
    assert HostileFlag.describe() == 'A pipeline whose texts try to inject markup, to prove the pages escape them.'
