from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class TomEducationConfig(AppConfig):
    name = 'tom_education'
    verbose_name = 'TOM Education pipelines'
    default_auto_field = 'django.db.models.AutoField'

    def ready(self) -> None:
        from tom_education import checks  # noqa: F401 - registers the system checks

    def include_url_paths(self) -> list[Any]:
        """Mount the app's pages into any TOM through tom_common's plugin URL hook."""
        from django.urls import include, path

        return [path('', include('tom_education.urls', namespace='tom_education'))]
