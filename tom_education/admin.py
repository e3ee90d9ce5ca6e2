"""Automatic-run rules in Django's admin (``docs/automation.rst``); saving a rule checks it (``PipelineRule.clean``)."""
from django.contrib import admin

from tom_education.models import PipelineRule


@admin.register(PipelineRule)
class PipelineRuleAdmin(admin.ModelAdmin):
    list_display = ('name', 'owner', 'pipeline', 'trigger', 'after_pipeline', 'target', 'target_list', 'paused',
                    'last_fired', 'last_error')
    list_filter = ('paused', 'trigger', 'pipeline')
    search_fields = ('name', 'pipeline', 'after_pipeline')
    readonly_fields = ('created', 'last_fired', 'last_error')
    raw_id_fields = ('owner', 'target', 'target_list')
