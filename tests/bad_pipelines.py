"""Misconfigured pipeline classes, for the registry checks."""
from tom_education.models import PipelineProcess


class NotAPipeline:
    pass


class SpaceInFlag(PipelineProcess):
    flags = {'has space': {'default': True, 'long_name': 'Bad'}}

    class Meta:
        proxy = True
        app_label = 'tests'


class NonBoolDefault(PipelineProcess):
    flags = {'verbose': {'default': 'yes', 'long_name': 'Verbose'}}

    class Meta:
        proxy = True
        app_label = 'tests'


class FlagsNotDict(PipelineProcess):
    flags = ['verbose']

    class Meta:
        proxy = True
        app_label = 'tests'


class Concrete(PipelineProcess):
    class Meta:
        app_label = 'tests'


class SuffixString(PipelineProcess):
    allowed_suffixes = '.fits'

    class Meta:
        proxy = True
        app_label = 'tests'


class HostileFlag(PipelineProcess):
    """A pipeline whose texts try to inject markup, to prove the pages escape them."""

    flags = {'evil': {'default': True, 'long_name': '<script>flag</script>'}}

    class Meta:
        proxy = True
        app_label = 'tests'

    def do_pipeline(self, tmpdir, **flags):
        return []
