"""The logging baseline: how tom_education's 2020 original stored a process log, rebuilt for the bench.

The original kept the whole log in a ``TextField`` of the process row. Its ``log()`` appended the
line to that text and called ``save()``, which ran ``full_clean()`` (a uniqueness query and a
foreign-key query) and then rewrote the row of both tables of its multi-table model, in a
transaction of its own. Each line therefore costs more than the one before, because the text it
rewrites keeps growing: that is the behaviour the new ``PipelineLogLine`` table replaces, and the
one ``bench/run.py`` measures side by side with it.

The models live outside ``INSTALLED_APPS`` (explicit ``app_label``), so no migration knows them:
the bench creates their tables with the schema editor in its own temporary database.
"""
from __future__ import annotations

from typing import Any

from django.db import connection, models
from django.utils import timezone

APP_LABEL = 'tom_education_bench'


class OriginalAsyncProcess(models.Model):
    """The original's parent table: identity and state of an asynchronous process."""

    identifier = models.CharField(max_length=50, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=50, default='pending')
    terminal_timestamp = models.DateTimeField(null=True, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    target = models.ForeignKey('tom_targets.BaseTarget', on_delete=models.CASCADE, null=True, blank=True,
                               related_name='+')

    class Meta:
        app_label = APP_LABEL

    def save(self, *args: Any, **kwargs: Any) -> None:
        # the original validated the whole row before every save, log lines included
        self.full_clean()
        super().save(*args, **kwargs)


class OriginalPipelineProcess(OriginalAsyncProcess):
    """The original's child table, with the log as one growing text."""

    logs = models.TextField(null=True, blank=True)
    flags_json = models.TextField(null=True, blank=True)

    class Meta:
        app_label = APP_LABEL

    def log(self, msg: str, end: str = '\n') -> None:
        """Append ``msg`` and save the whole row: the cost this bench exists to show."""
        self.logs = (self.logs or '') + msg + end
        self.save()


def create_tables() -> None:
    """Create the two tables in the bench database (they are not in any migration)."""
    with connection.schema_editor() as editor:
        editor.create_model(OriginalAsyncProcess)
        editor.create_model(OriginalPipelineProcess)


def new_process(target_pk: int) -> OriginalPipelineProcess:
    stamp = timezone.now().strftime('%Y%m%d%H%M%S%f')
    return OriginalPipelineProcess.objects.create(identifier=f'original_{stamp}', target_id=target_pk)
