"""The pipelines a TOM registers in ``TOM_EDUCATION_PIPELINES``, imported and validated.

A broken entry must not take pages down: :func:`load` keeps the good entries and returns the
problems separately; ``manage.py check`` reports them (see ``checks.py``), and the pages and the
worker simply do not offer a broken pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.module_loading import import_string

from tom_education import conf, run_options
from tom_education.models import PipelineProcess


class UnknownPipeline(LookupError):
    pass


@dataclass(frozen=True)
class RegistryProblem:
    name: str
    path: str
    message: str


def validate_class(cls: object) -> list[str]:
    """What is wrong with ``cls`` as a pipeline class, as sentences; empty when nothing is."""
    if not isinstance(cls, type) or not issubclass(cls, PipelineProcess):
        return ['it is not a subclass of tom_education.models.PipelineProcess']
    if cls is PipelineProcess:
        return ['it is PipelineProcess itself; register a subclass that implements do_pipeline()']
    problems = []
    if not cls._meta.proxy:
        problems.append('it is not a proxy model: add "class Meta: proxy = True" so it needs no table')
    if not isinstance(cls.short_name, str) or not cls.short_name.strip():
        problems.append('its short_name must be a non-empty string')
    suffixes = cls.allowed_suffixes
    if suffixes is not None and (
        isinstance(suffixes, str) or not all(isinstance(suffix, str) and suffix for suffix in suffixes)
    ):
        problems.append('allowed_suffixes must be a list of strings such as [".fits", ".fz"] or None')
    problems.extend(_flag_problems(cls.flags))
    flag_names = set(cls.flags) if isinstance(cls.flags, dict) else set()
    problems.extend(run_options.declaration_problems(cls.options, flag_names))
    if not isinstance(cls.inputs_required, bool):
        problems.append('inputs_required must be True or False')
    return problems


def site_default_problems(name: str, cls: type[PipelineProcess]) -> list[tuple[str, str]]:
    """What is wrong with ``TOM_EDUCATION_OPTION_DEFAULTS[name]`` for the (valid) class ``cls``: (problem, effect)."""
    overrides = conf.option_defaults(name)
    declared = {spec.name: spec for spec in cls.option_specs()}
    problems = []
    for option, default in overrides.items():
        spec = declared.get(option)
        if spec is None:
            known = ', '.join(declared) or 'none'
            problems.append((f'it sets a default for option {option!r}, which the pipeline does not have '
                             f'(its options: {known})',
                             'This default is ignored: remove it, or name one of the pipeline\'s options.'))
        else:
            problems.extend(
                (problem, 'Until it is fixed, runs that leave this option at its default are refused.')
                for problem in run_options.default_problems(spec, default)
            )
    return problems


def _flag_problems(flags: object) -> list[str]:
    if flags is None:
        return []
    if not isinstance(flags, dict):
        return ['flags must be a dict mapping flag names to {"default": bool, "long_name": str}']
    problems = []
    for name, spec in flags.items():
        if not isinstance(name, str) or not name or any(char.isspace() for char in name):
            problems.append(f'flag name {name!r} must be a non-empty string without whitespace')
        if not isinstance(spec, dict):
            problems.append(f'flag {name!r} must be a dict with "default" and "long_name"')
            continue
        if not isinstance(spec.get('default'), bool):
            problems.append(f'flag {name!r} needs a boolean "default" (True or False)')
        if not isinstance(spec.get('long_name', ''), str):
            problems.append(f'flag {name!r} has a "long_name" that is not a string')
    return problems


#: The last ``load()``, keyed by the setting it read: every submission and every run asks for a class, and
#: importing and validating all of them each time cost a third of a millisecond.
_loaded: tuple[tuple, tuple[dict[str, type[PipelineProcess]], list[RegistryProblem]]] | None = None


def load() -> tuple[dict[str, type[PipelineProcess]], list[RegistryProblem]]:
    """Import every registered pipeline; return the usable ones and the problems with the rest.

    The result is kept until ``TOM_EDUCATION_PIPELINES`` changes (``override_settings`` in tests, say).
    """
    global _loaded
    key = tuple((str(name), repr(path)) for name, path in conf.pipelines().items())
    if _loaded is None or _loaded[0] != key:
        _loaded = (key, _load())
    usable, problems = _loaded[1]
    return dict(usable), list(problems)


def _load() -> tuple[dict[str, type[PipelineProcess]], list[RegistryProblem]]:
    usable: dict[str, type[PipelineProcess]] = {}
    problems: list[RegistryProblem] = []
    for name, path in conf.pipelines().items():
        if not isinstance(path, str):
            problems.append(RegistryProblem(str(name), repr(path), 'the value must be a dotted path string'))
            continue
        try:
            cls = import_string(path)
        except Exception as exc:  # noqa: BLE001 - any import-time error of user code is reported, not raised
            problems.append(RegistryProblem(str(name), path, f'it could not be imported: {type(exc).__name__}: {exc}'))
            continue
        class_problems = validate_class(cls)
        if class_problems:
            problems.extend(RegistryProblem(str(name), path, message) for message in class_problems)
        else:
            usable[name] = cls
    return usable, problems


def pipelines() -> dict[str, type[PipelineProcess]]:
    """The usable pipelines, by display name, in the order of the setting."""
    return load()[0]


def get(name: str) -> type[PipelineProcess]:
    """The pipeline class registered as ``name``; :class:`UnknownPipeline` says what exists."""
    usable, problems = load()
    if name in usable:
        return usable[name]
    broken = [problem.message for problem in problems if problem.name == name]
    if broken:
        raise UnknownPipeline(f'Pipeline "{name}" is misconfigured: {"; ".join(broken)}. Run "manage.py check".')
    known = ', '.join(f'"{known}"' for known in usable) or 'none'
    raise UnknownPipeline(f'Unknown pipeline {run_options.quote_name(name)}. Registered pipelines: {known}.')
