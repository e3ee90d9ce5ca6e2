"""Reading the "Run pipeline" form of the target page into the arguments of ``services.start_process``."""
from __future__ import annotations

from dataclasses import dataclass, field

from django.http import QueryDict

from tom_education import registry

FLAG_FIELD_PREFIX = 'flag::'


def flag_field_name(pipeline: str, flag: str) -> str:
    """Each pipeline's flags get their own field names, so choices for one never leak into another."""
    return f'{FLAG_FIELD_PREFIX}{pipeline}::{flag}'


@dataclass
class RunForm:
    pipeline: str = ''
    products: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def from_post(cls, data: QueryDict) -> RunForm:
        """A checked box means True; an unchecked one (absent from the POST) False, as HTML forms work."""
        pipeline = data.get('pipeline', '')
        prefix = flag_field_name(pipeline, '')
        posted = {key[len(prefix):] for key in data if key.startswith(prefix)}
        pipeline_class = registry.pipelines().get(pipeline)
        declared = set(pipeline_class.flag_defaults()) if pipeline_class else set()
        flags = {name: name in posted for name in declared | posted}
        return cls(pipeline=pipeline, products=data.getlist('products'), flags=flags)

    def flag_checked(self, pipeline: str, flag: str, default: bool) -> bool:
        if pipeline != self.pipeline:
            return default
        return self.flags.get(flag, default)
