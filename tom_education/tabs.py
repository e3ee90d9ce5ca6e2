"""The "Pipelines" tab of the target page (registered in ``apps.py``), rendered with the page itself."""
from __future__ import annotations

import json
from typing import Any

from tom_dataproducts import models as dataproduct_models
from tom_targets.models import Target

from tom_education import automation, registry, services
from tom_education.forms import RunForm, flag_field_name, option_field_name


def pipeline_choices(form: RunForm, error: str = '', error_option: str = '') -> list[dict[str, Any]]:
    """What the form needs to know of each usable pipeline, in registration order.

    ``error_option`` names the option of the chosen pipeline whose value was refused: its field
    shows ``error`` next to it.
    """
    choices = []
    for name, pipeline_class in registry.pipelines().items():
        choices.append({
            'name': name,
            'description': pipeline_class.describe(),
            'suffixes_json': json.dumps([suffix.lower() for suffix in pipeline_class.allowed_suffixes or []]),
            'selected': name == form.pipeline,
            'flags': [
                {
                    'field': flag_field_name(name, flag),
                    'long_name': label,
                    'checked': form.flag_checked(name, flag, default),
                }
                for flag, default, label in pipeline_class.flag_specs()
            ],
            'options': [
                {
                    'field': option_field_name(name, spec.name),
                    'spec': spec,
                    'value': form.option_text(name, spec.name, spec.default),
                    'error': error if name == form.pipeline and spec.name == error_option else '',
                }
                for spec in services.option_specs(name, pipeline_class)
            ],
        })
    if choices and not any(choice['selected'] for choice in choices):
        choices[0]['selected'] = True
    return choices


def run_form_context(user: Any, target: Target, form: RunForm | None = None, error: str = '',
                     error_field: str = '', error_option: str = '') -> dict[str, Any]:
    form = form or RunForm()
    products = services.visible_products(user, target).order_by('data')
    selected = set(form.products)
    type_labels = dict(dataproduct_models.DATA_TYPE_CHOICES)
    return {
        'tom_education_target': target,
        'tom_education_products': [
            {
                'product': product,
                'name': services.product_file_name(product),
                # tom_base's get_type_display() raises KeyError for products saved without a type
                'type': type_labels.get(product.data_product_type, product.data_product_type),
                'checked': str(product.pk) in selected,
            }
            for product in products
        ],
        'tom_education_pipelines': pipeline_choices(form, error, error_option),
        # an option's error is shown next to its field instead
        'tom_education_error': '' if error_option else error,
        'tom_education_error_field': error_field,
        **target_processes_context(user, target),
        **target_rules_context(user, target),
    }


def target_processes_context(user: Any, target: Target) -> dict[str, Any]:
    visible = services.listed_processes(user).filter(target=target)
    processes = list(visible[:20])
    if services.recover_if_lost(processes):
        processes = list(visible[:20])  # a lost run now shows as queued again (or failed)
    return {
        'tom_education_target': target,
        'tom_education_processes': processes,
        'tom_education_any_active': any(process.is_active for process in processes),
    }


def target_tab_context(context: dict[str, Any]) -> dict[str, Any]:
    """Called by tom_base for the target page; its keys are prefixed as they join the page's context."""
    target = context.get('target') or context.get('object')
    request = context.get('request')
    if target is None or request is None or not request.user.is_authenticated:
        return {'tom_education_target': None}
    return run_form_context(request.user, target)


def target_rules_context(user: Any, target: Target) -> dict[str, Any]:
    """The automatic-run rules of the user (all for a superuser) whose scope covers the target, with their last run."""
    rules = automation.with_last_run(automation.rules_on(automation.visible_rules(user), target.pk), limit=50)
    return {'tom_education_rules': rules}
