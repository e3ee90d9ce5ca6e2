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
