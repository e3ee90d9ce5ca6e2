"""Reading the "Run pipeline" form of the target page into the arguments of ``services.start_process``.

The form only collects what the user typed; every rule (known names, types, bounds) is applied by
``services`` so the page, the API and the command line refuse the same values with the same words.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

from tom_education import registry

FLAG_FIELD_PREFIX = 'flag::'
OPTION_FIELD_PREFIX = 'option::'
#: The tab's script sends the selected products as one comma-separated field: a target with
#: thousands of products would otherwise exceed Django's DATA_UPLOAD_MAX_NUMBER_FIELDS.
PRODUCT_LIST_FIELD = 'product_ids'


def flag_field_name(pipeline: str, flag: str) -> str:
    """Each pipeline's flags get their own field names, so choices for one never leak into another."""
    return f'{FLAG_FIELD_PREFIX}{pipeline}::{flag}'


def option_field_name(pipeline: str, option: str) -> str:
    return f'{OPTION_FIELD_PREFIX}{pipeline}::{option}'


def posted_products(data: QueryDict) -> list[str]:
    """The product ids of the form: the script's single list field, or the checkboxes without a script."""
    if PRODUCT_LIST_FIELD in data:
        return [item.strip() for item in data[PRODUCT_LIST_FIELD].split(',') if item.strip()]
    return data.getlist('products')


@dataclass
class RunForm:
    pipeline: str = ''
    products: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)
    #: option name -> the text typed in its field, as posted (checked by services)
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_post(cls, data: QueryDict) -> RunForm:
        """A checked box means True; an unchecked one (absent from the POST) False, as HTML forms work."""
        pipeline = data.get('pipeline', '')
        prefix = flag_field_name(pipeline, '')
        posted = {key[len(prefix):] for key in data if key.startswith(prefix)}
        pipeline_class = registry.pipelines().get(pipeline)
        declared = set(pipeline_class.flag_defaults()) if pipeline_class else set()
        flags = {name: name in posted for name in declared | posted}
        option_prefix = option_field_name(pipeline, '')
        options = {key[len(option_prefix):]: data[key] for key in data if key.startswith(option_prefix)}
        return cls(pipeline=pipeline, products=posted_products(data), flags=flags, options=options)

    def flag_checked(self, pipeline: str, flag: str, default: bool) -> bool:
        if pipeline != self.pipeline:
            return default
        return self.flags.get(flag, default)

    def option_text(self, pipeline: str, option: str, default: Any) -> str:
        """What the option's field shows: what the user typed for the chosen pipeline, else the default."""
        if pipeline == self.pipeline and option in self.options:
            return self.options[option]
        return '' if default is None else str(default)


@dataclass
class RuleForm:
    """The automatic-run rule form of the target page and of a rule's page, as posted.

    ``values`` are the fields for ``automation.save_rule`` (which judges them); ``errors`` what could
    not even be read (a quiet period that is not a number).
    """

    values: dict[str, Any] = field(default_factory=lambda: {
        'trigger': 'data', 'inputs': 'new', 'quiet_period': 120.0, 'name': ''})
    run: RunForm = field(default_factory=RunForm)
    scope: str = 'target'
    errors: dict[str, list[str]] = field(default_factory=dict)
    #: the option whose value was refused, so its field shows the message
    error_option: str = ''
    #: the quiet period as the field shows it: what was typed, even when it is not a number
    quiet_text: str = '120'

    @classmethod
    def from_post(cls, data: QueryDict, target_pk: int | None) -> RuleForm:
        """``target_pk``: the target the form offers as "only this target"."""
        run = RunForm.from_post(data)
        scope = data.get('scope', 'target')
        values: dict[str, Any] = {
            'name': data.get('name', '').strip(),
            'pipeline': run.pipeline,
            'flag_values': run.flags,
            'option_values': run.options,
            'trigger': data.get('trigger', ''),
            'after_pipeline': data.get('after_pipeline', ''),
            'data_product_type': data.get('data_product_type', ''),
            'suffix': data.get('suffix', '').strip(),
            'header_keyword': data.get('header_keyword', '').strip().upper(),
            'header_value': data.get('header_value', '').strip(),
            'inputs': data.get('inputs', ''),
            'paused': 'paused' in data,
            'target': target_pk if scope == 'target' else None,
            'target_list': data.get('target_list') or None if scope == 'list' else None,
        }
        errors = {}
        if scope == 'target' and target_pk is None:
            errors['target'] = ['Choose the targets the rule applies to.']
        if scope == 'list' and not values['target_list']:
            errors['target_list'] = ['Choose the target list.']
        quiet_text = data.get('quiet_period', '').strip()
        try:
            values['quiet_period'] = float(quiet_text)
        except ValueError:
            errors['quiet_period'] = ['The quiet period is a number of seconds, e.g. 120.']
        return cls(values=values, run=run, scope=scope, errors=errors, quiet_text=quiet_text)

    @classmethod
    def from_rule(cls, rule: Any) -> RuleForm:
        """The form showing a saved rule."""
        options = {name: '' if value is None else str(value) for name, value in rule.option_values.items()}
        scope = 'list' if rule.target_list_id else 'target' if rule.target_id else 'all'
        values = {name: getattr(rule, name) for name in (
            'name', 'trigger', 'after_pipeline', 'data_product_type', 'suffix', 'header_keyword', 'header_value',
            'inputs', 'quiet_period', 'paused')}
        values['target_list'] = rule.target_list_id
        return cls(values=values, run=RunForm(pipeline=rule.pipeline, flags=dict(rule.flag_values), options=options),
                   scope=scope, quiet_text=f'{rule.quiet_period:g}')
