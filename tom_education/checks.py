"""System checks: configuration mistakes are reported by ``manage.py check``, not by a 500 on a page."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from tom_education import conf, registry


@register('tom_education')
def check_pipelines(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not isinstance(getattr(settings, 'TOM_EDUCATION_PIPELINES', {}), dict):
        return [Error(
            'TOM_EDUCATION_PIPELINES must be a dict of {display name: dotted path}.',
            id='tom_education.E001',
        )]
    _, problems = registry.load()
    # a warning, not an error: the TOM keeps running (runserver and migrate still work) without that pipeline
    return [
        Warning(
            f'TOM_EDUCATION_PIPELINES entry "{problem.name}" ({problem.path}): {problem.message.rstrip(".")}.',
            hint='Fix or remove the entry; until then the pipeline is not offered.',
            obj=problem.path,
            id='tom_education.W003',
        )
        for problem in problems
    ]


@register('tom_education')
def check_option_defaults(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    configured = getattr(settings, 'TOM_EDUCATION_OPTION_DEFAULTS', {})
    if not isinstance(configured, dict) or not all(isinstance(value, dict) for value in configured.values()):
        return [Error(
            'TOM_EDUCATION_OPTION_DEFAULTS must be a dict of {pipeline name: {option name: default}}.',
            id='tom_education.E002',
        )]
    usable = registry.pipelines()
    messages: list[CheckMessage] = []
    for name in configured:
        if name not in usable:
            messages.append(Warning(
                f'TOM_EDUCATION_OPTION_DEFAULTS names pipeline "{name}", which is not a usable entry of '
                'TOM_EDUCATION_PIPELINES.',
                hint='Use the name the pipeline is registered under.',
                id='tom_education.W004',
            ))
            continue
        messages.extend(
            Warning(f'TOM_EDUCATION_OPTION_DEFAULTS["{name}"]: {problem.rstrip(".")}.', hint=effect,
                    id='tom_education.W004')
            for problem, effect in registry.site_default_problems(name, usable[name])
        )
    return messages


@register('tom_education')
def check_time_limits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if conf.hard_time_limit() <= conf.soft_time_limit():
        messages.append(Warning(
            'TOM_EDUCATION_TIME_LIMIT should be larger than TOM_EDUCATION_SOFT_TIME_LIMIT.',
            hint='The soft limit lets a run fail cleanly; the hard limit then kills runs that ignore it.',
            id='tom_education.W001',
        ))
    if conf.heartbeat_timeout() < 2 * conf.heartbeat_interval():
        messages.append(Warning(
            'TOM_EDUCATION_HEARTBEAT_TIMEOUT should be at least twice TOM_EDUCATION_HEARTBEAT_INTERVAL.',
            hint='Otherwise a busy but healthy run can be mistaken for a lost one.',
            id='tom_education.W002',
        ))
    return messages


UPLOADER_MIDDLEWARE = 'tom_education.middleware.UploaderMiddleware'


@register('tom_education')
def check_uploader_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if UPLOADER_MIDDLEWARE in getattr(settings, 'MIDDLEWARE', []):
        return []
    return [Warning(
        f'{UPLOADER_MIDDLEWARE} is not in MIDDLEWARE: automatic-run rules cannot tell who uploaded a data '
        'product, and tom_base\'s upload page accepts files for targets the uploader may not view.',
        hint=f'Add "{UPLOADER_MIDDLEWARE}" at the end of MIDDLEWARE.',
        id='tom_education.W005',
    )]
