from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class TomEducationConfig(AppConfig):
    name = 'tom_education'
    verbose_name = 'TOM Education pipelines'
    default_auto_field = 'django.db.models.AutoField'

    def ready(self) -> None:
        from django.db.models.signals import post_save
        from tom_dataproducts.models import DataProduct

        from tom_education import automation, checks  # noqa: F401 - checks registers the system checks
        from tom_education.signals import run_finished

        # automatic-run rules: arrivals however they come, and chains after a successful run
        post_save.connect(automation.record_arrival, sender=DataProduct, dispatch_uid='tom_education.arrivals')
        run_finished.connect(automation.start_chained_runs, dispatch_uid='tom_education.chains')

    def include_url_paths(self) -> list[Any]:
        """Mount the app's pages into any TOM through tom_common's plugin URL hook."""
        from django.urls import include, path

        return [path('', include('tom_education.urls', namespace='tom_education'))]

    def target_detail_tabs(self) -> list[dict[str, str]]:
        """A "Pipelines" tab on every target page, wherever the app sits in INSTALLED_APPS."""
        return [{
            'partial': 'tom_education/partials/target_tab.html',
            'context': 'tom_education.tabs.target_tab_context',
            'label': 'Pipelines',
        }]

    def nav_items(self) -> list[dict[str, str]]:
        return [{'partial': 'tom_education/partials/nav_item.html', 'position': 'left'}]
