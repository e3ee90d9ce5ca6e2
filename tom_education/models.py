"""The public API of tom_education (see ``docs/pipelines.rst``) and the tables behind it.

``PipelineProcess`` is the one concrete table: each pipeline a TOM registers is a *proxy* of it,
so adding a pipeline never needs a migration. The row is the source of truth for a run's state;
Celery only carries the primary key to a worker.
"""
from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import connections, models, router, transaction
from django.urls import reverse
from django.utils import timezone
from tom_dataproducts.models import DataProduct, DataProductGroup, PhotometryReducedDatum, ReducedDatum

from tom_education.run_options import OptionSpec

if TYPE_CHECKING:
    from tom_education.runner import RunContext

ASYNC_STATUS_PENDING = 'pending'
ASYNC_STATUS_RUNNING = 'running'
ASYNC_STATUS_CREATED = 'created'
ASYNC_STATUS_FAILED = 'failed'
ASYNC_STATUS_CANCELLED = 'cancelled'

STATE_CHOICES = [
    (ASYNC_STATUS_PENDING, 'Pending'),
    (ASYNC_STATUS_RUNNING, 'Running'),
    (ASYNC_STATUS_CREATED, 'Finished'),
    (ASYNC_STATUS_FAILED, 'Failed'),
    (ASYNC_STATUS_CANCELLED, 'Cancelled'),
]
ACTIVE_STATES = frozenset({ASYNC_STATUS_PENDING, ASYNC_STATUS_RUNNING})
FINAL_STATES = frozenset({ASYNC_STATUS_CREATED, ASYNC_STATUS_FAILED, ASYNC_STATUS_CANCELLED})

#: ``source_name`` given to every ReducedDatum a pipeline saves; ``source_location`` holds the process identifier.
REDUCED_DATUM_SOURCE = 'tom_education'


class AsyncError(Exception):
    """Raised by a pipeline to stop and fail its process; the message is shown to the user as it is."""


class PipelineOutput(namedtuple('PipelineOutput', ['path', 'output_type', 'tag'], defaults=[None])):
    """One file a pipeline wants saved in the TOM, as ``DataProduct`` or ``ReducedDatum``.

    ``tag`` becomes the ``data_product_type`` of a ``DataProduct`` or the ``data_type`` of a
    ``ReducedDatum``.
    """

    __slots__ = ()

    @classmethod
    def coerce(cls, item: Any) -> PipelineOutput:
        """Accept a ``PipelineOutput`` or a plain tuple of 2 or 3 items, as the docs promise."""
        if isinstance(item, cls):
            return item
        if isinstance(item, (tuple, list)) and len(item) in (2, 3):
            return cls(*item)
        raise AsyncError(
            f'do_pipeline() returned {item!r} as an output; each output must be a PipelineOutput '
            'or a tuple (path, output_type[, tag])'
        )


class ProcessCancelled(Exception):
    """Raised inside a running pipeline when its user asked to cancel it."""


def progress_report(done: int, total: int | None, message: str, finish_estimate: datetime | None) -> dict[str, Any]:
    """What ``progress_report`` holds: plain JSON values, the estimate as an ISO time (or None)."""
    return {
        'done': done, 'total': total, 'message': message[:200],
        'finish_estimate': finish_estimate.isoformat() if finish_estimate else None,
    }


def new_identifier(short_name: str) -> str:
    """A readable identifier that stays unique for any number of runs started in the same second."""
    stamp = timezone.now().strftime('%Y%m%d-%H%M%S')
    return f'{short_name}_{stamp}_{secrets.token_hex(6)}'


class PipelineProcess(models.Model):
    """One run of a pipeline on a target's data products.

    Subclass it (as a proxy) and implement :meth:`do_pipeline` to define a pipeline.
    """

    #: Prefix of the identifier and of the names of the data products a run creates.
    short_name = 'pipeline'
    #: Suffixes input file names must end with; ``None`` accepts any file.
    allowed_suffixes: list[str] | None = None
    #: Boolean parameters: ``{'name': {'default': bool, 'long_name': str}}``, passed to ``do_pipeline``.
    flags: dict[str, dict[str, Any]] | None = None
    #: Typed parameters (numbers, choices, text) next to the flags, also passed to ``do_pipeline``
    #: (an addition to the original API; see ``docs/pipelines.rst``, "Options").
    options: dict[str, dict[str, Any]] | None = None
    #: False lets a run start with no input file (the pipeline then reads what it needs itself).
    inputs_required = True
    #: Shown next to the pipeline's name on the page and in the API; defaults to the docstring's first paragraph.
    description = ''
    #: Celery queue this pipeline's runs are sent to; ``None`` uses the worker's default queue.
    queue: str | None = None
    #: Set by the worker while the process runs (see runner.RunContext); None everywhere else.
    _run: RunContext | None = None

    identifier = models.CharField(max_length=150)
    pipeline = models.CharField(max_length=100, help_text='Name the pipeline is registered under')
    target = models.ForeignKey('tom_targets.BaseTarget', on_delete=models.CASCADE, related_name='pipeline_processes')
    input_files = models.ManyToManyField(DataProduct, related_name='pipeline_processes')
    flag_values = models.JSONField(default=dict, blank=True)
    option_values = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=STATE_CHOICES, default=ASYNC_STATUS_PENDING)
    status = models.CharField(max_length=255, default=ASYNC_STATUS_PENDING)
    failure_message = models.TextField(blank=True, default='')
    traceback = models.TextField(blank=True, default='')
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name='+'
    )
    created = models.DateTimeField(default=timezone.now, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True, default='', help_text='host:pid of the worker running it')
    node = models.CharField(max_length=255, blank=True, default='',
                            help_text='Celery node name of the worker running it (it hands the run back on shutdown)')
    task_id = models.CharField(max_length=64, blank=True, default='')
    queued = models.DateTimeField(null=True, blank=True, help_text='When the run\'s message was last sent')
    losses = models.JSONField(default=list, blank=True,
                              help_text='Attempts lost through no fault of the pipeline: attempt, worker, reason')
    cancel_requested = models.BooleanField(default=False)
    group = models.ForeignKey(
        DataProductGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name='pipeline_processes'
    )
    # What the run saved, linked by the run itself: a group's membership can be edited by anyone
    # (tom_base's "add to group" form), so it never decides what a process's outputs are.
    output_files = models.ManyToManyField(DataProduct, blank=True, related_name='created_by_pipeline_processes')
    output_data = models.ManyToManyField(ReducedDatum, blank=True, related_name='created_by_pipeline_processes')
    output_photometry = models.ManyToManyField(
        PhotometryReducedDatum, blank=True, related_name='created_by_pipeline_processes'
    )
    #: The last progress a running pipeline reported: done, total, message and the estimated finish time.
    progress_report = models.JSONField(default=dict, blank=True)
    #: Output files already in storage whose rows are not committed yet: if the attempt is lost before its
    #: commit, the engine deletes them, so a retried run never leaves a second copy behind.
    uncommitted_files = models.JSONField(default=list, blank=True)
    #: The automatic-run rule that started this run, and the run whose success started it (a chain).
    triggered_by_rule = models.ForeignKey('PipelineRule', null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name='runs')
    triggered_by_process = models.ForeignKey('self', null=True, blank=True, on_delete=models.SET_NULL,
                                             related_name='triggered_runs')
    #: How many chained runs led to this one (0 for a run started by hand or by new data).
    chain_depth = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ('-created', '-pk')
        verbose_name_plural = 'pipeline processes'
        # Every run's claim and end rewrite the row, and PostgreSQL then adds an entry to each of its
        # indexes: only the indexes queries use. A query on the state alone uses the leading column of
        # the first two; declared here rather than with unique=True or db_index=True, these get no
        # second, LIKE-only copy on PostgreSQL (no query here matches identifiers or pipelines by pattern).
        indexes = [
            # what every worker's periodic check asks: running runs by heartbeat, pending runs by send time
            models.Index(fields=['state', 'heartbeat'], name='tom_education_state_beat'),
            models.Index(fields=['state', 'queued'], name='tom_education_state_queued'),
            models.Index(fields=['pipeline'], name='tom_education_pipeline'),
        ]
        constraints = [
            models.UniqueConstraint(fields=['identifier'], name='tom_education_unique_identifier'),
        ]

    def __str__(self) -> str:
        return self.identifier

    def get_absolute_url(self) -> str:
        return reverse('tom_education:process_detail', kwargs={'pk': self.pk})

    # --- the API a pipeline author uses -------------------------------------------------------

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> Any:
        """Do the work in ``tmpdir`` and return the outputs to save; subclasses must implement it."""
        raise NotImplementedError(f'{type(self).__name__} must implement do_pipeline(self, tmpdir, **flags)')

    def log(self, msg: Any, level: int = logging.INFO) -> None:
        """Append a line to the process log.

        On a worker the line is buffered and written within ``TOM_EDUCATION_LOG_FLUSH_INTERVAL``;
        elsewhere (a shell, a test) it is written at once.
        """
        if self._run is not None:
            self._run.log(str(msg), level)
        else:
            PipelineLogLine.append(self, [(str(msg), level)])

    def progress(self, done: int, total: int | None = None, message: str = '') -> None:
        """Report how far the run is: ``done`` of ``total`` items (frames, files, steps).

        Cheap enough to call for every item: on a worker the value is only remembered, and the
        monitor thread writes the latest one with the log. Pages, the API and ``run_pipeline``
        show it as a bar with an estimated time left. An addition to the original API.
        """
        if self._run is not None:
            self._run.progress(done, total, message)
        else:
            # kept on the instance too, so a later save() (update_status) does not write an older value back
            self.progress_report = progress_report(done, total, message, finish_estimate=None)
            type(self).objects.filter(pk=self.pk).update(progress_report=self.progress_report)

    def input_path(self, product: DataProduct) -> Path:
        """A local file to read ``product`` from, whatever storage the TOM uses.

        ``product.data.path`` works only on local file storage; from other storages (S3, in memory)
        the file is copied, through Django's storage API, next to the run's temporary directory.
        """
        # only a file system storage's path() names the stored file (InMemoryStorage answers a path too)
        if isinstance(product.data.storage, FileSystemStorage):
            return Path(product.data.path)
        staging = self._run.staging_dir if self._run is not None else Path(tempfile.mkdtemp(prefix='tom_education-'))
        local = staging / f'{product.pk}_{PurePosixPath(product.data.name).name}'
        if not local.exists():
            with product.data.open('rb') as source, local.open('wb') as target:
                shutil.copyfileobj(source, target, length=1024 * 1024)
        return local

    @contextmanager
    def update_status(self, status: str) -> Iterator[None]:
        """Show ``status`` while the body of the ``with`` block runs."""
        self.status = status
        self.save()
        yield

    def save(self, *args: Any, **kwargs: Any) -> None:
        """While a worker runs this process, ``save()`` stores the status only.

        The engine owns the other fields (state, heartbeat, cancel flag) and writes them from
        other threads and processes: a pipeline's ``self.save()`` must not overwrite them.
        """
        status_length = self._meta.get_field('status').max_length
        if len(self.status) > status_length:
            self.status = self.status[:status_length - 1] + '…'
        if self._run is not None and not kwargs.get('update_fields'):
            self._run.on_status_saved(self.status)
            kwargs['update_fields'] = ['status']
        super().save(*args, **kwargs)

    # --- helpers for the engine and the pages ------------------------------------------------

    @classmethod
    def flag_specs(cls) -> list[tuple[str, bool, str]]:
        """Each flag as (name, default, label), the label falling back to the name."""
        return [
            (name, bool(spec.get('default', False)), spec.get('long_name') or name)
            for name, spec in (cls.flags or {}).items()
        ]

    @classmethod
    def flag_defaults(cls) -> dict[str, bool]:
        return {name: default for name, default, _ in cls.flag_specs()}

    @classmethod
    def option_specs(cls, site_defaults: dict[str, Any] | None = None) -> list[OptionSpec]:
        """Each declared option, with the site's default (``TOM_EDUCATION_OPTION_DEFAULTS``) applied."""
        specs = [OptionSpec.from_declaration(name, spec) for name, spec in (cls.options or {}).items()]
        overrides = site_defaults or {}
        return [replace(spec, default=overrides[spec.name]) if spec.name in overrides else spec for spec in specs]

    @classmethod
    def accepts_file_name(cls, name: str) -> bool:
        if not cls.allowed_suffixes:
            return True
        lowered = name.lower()
        return any(lowered.endswith(suffix.lower()) for suffix in cls.allowed_suffixes)

    @classmethod
    def describe(cls) -> str:
        """``description`` if the class sets one, else the first paragraph of its docstring.

        Django gives a model without a docstring one of its own, "Name(id, field, ...)": that is
        not a description, so it is left out.
        """
        if cls.description:
            return cls.description
        doc = (cls.__doc__ or '').strip()
        if not doc or doc.startswith(f'{cls.__name__}(id, '):
            return ''
        return ' '.join(doc.split('\n\n', 1)[0].split())

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def progress_info(self) -> dict[str, Any] | None:
        """The last progress report as a bar shows it, or None while the pipeline has reported none.

        ``eta`` (seconds left) counts down from the worker's estimate of the finish time; it is None
        when unknown, and once the run is no longer running.
        """
        report = self.progress_report or {}
        if report.get('done') is None:
            return None
        done, total = report['done'], report.get('total')
        fraction = min(1.0, max(0.0, done / total)) if total else None
        eta = None
        if report.get('finish_estimate') and self.state == ASYNC_STATUS_RUNNING:
            finish = datetime.fromisoformat(report['finish_estimate'])
            eta = max(0.0, round((finish - timezone.now()).total_seconds(), 1))
        return {'done': done, 'total': total, 'fraction': fraction, 'eta': eta, 'message': report.get('message', '')}

    @property
    def duration(self) -> timedelta | None:
        if self.started is None:
            return None
        return (self.finished or timezone.now()) - self.started

    def output_products(self) -> models.QuerySet:
        """The data products this run saved (of its own target: nothing else can be an output)."""
        return self.output_files.filter(target_id=self.target_id).order_by('pk')

    def output_reduced_data(self) -> dict[str, models.QuerySet]:
        """The reduced data this run saved, by model name."""
        return {
            'ReducedDatum': self.output_data.filter(target_id=self.target_id),
            'PhotometryReducedDatum': self.output_photometry.filter(target_id=self.target_id),
        }


class PipelineWorker(models.Model):
    """A Celery worker that runs pipelines, as it last reported itself (every check interval).

    Lets a page say that no worker consumes a run's queue, and lets operators see the cluster.
    """

    node = models.CharField(max_length=255, unique=True, help_text='Celery node name, e.g. celery@host')
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    started = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ('node',)

    def __str__(self) -> str:
        return self.node


def rows_per_statement(connection: Any, params_per_row: int) -> int:
    """How many rows of ``params_per_row`` parameters one statement may carry (SQLite takes 999 parameters;
    at most 1,000 rows anywhere, to keep a statement's text small)."""
    return max(1, min(1000, (connection.features.max_query_params or 5000) // params_per_row))


class PipelineLogLine(models.Model):
    """One line of a process log: appended, never rewritten, read by cursor (``seq``)."""

    process = models.ForeignKey(PipelineProcess, on_delete=models.CASCADE, related_name='log_lines')
    seq = models.PositiveIntegerField()
    created = models.DateTimeField(default=timezone.now)
    level = models.PositiveSmallIntegerField(default=logging.INFO)
    message = models.TextField()

    class Meta:
        ordering = ('process', 'seq')
        constraints = [models.UniqueConstraint(fields=['process', 'seq'], name='tom_education_log_line_seq')]

    def __str__(self) -> str:
        return self.message

    @classmethod
    def next_seq(cls, process: PipelineProcess) -> int:
        last = cls.objects.filter(process=process).aggregate(last=models.Max('seq'))['last']
        return 1 if last is None else last + 1

    @classmethod
    def append(cls, process: PipelineProcess, lines: list[tuple[str, int]], first_seq: int | None = None) -> None:
        """Write ``lines`` (message, level), numbered from ``first_seq``, in one transaction.

        This is the logging hot path: plain values in multi-row ``INSERT`` statements cost a fraction
        of building a model instance per line, and of ``executemany``, which PostgreSQL's driver
        sends as one statement per line (the benchmark in ``bench/`` measures it).
        """
        seq = cls.next_seq(process) if first_seq is None else first_seq
        connection = connections[router.db_for_write(cls)]
        quote = connection.ops.quote_name
        columns = ', '.join(quote(column) for column in ('process_id', 'seq', 'created', 'level', 'message'))
        insert = f'INSERT INTO {quote(cls._meta.db_table)} ({columns}) VALUES '
        per_statement = rows_per_statement(connection, 5)
        if connection.vendor == 'postgresql':
            cls._copy_lines(connection, process.pk, seq, lines)
            return
        created = connection.ops.adapt_datetimefield_value(timezone.now())
        with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
            for start in range(0, len(lines), per_statement):
                chunk = lines[start:start + per_statement]
                values: list[Any] = []
                for offset, (message, level) in enumerate(chunk, start=seq + start):
                    values += (process.pk, offset, created, level, message)
                cursor.execute(insert + ', '.join(['(%s, %s, %s, %s, %s)'] * len(chunk)), values)


    @classmethod
    def _copy_lines(cls, connection: Any, process_pk: int, seq: int, lines: list[tuple[str, int]]) -> None:
        """PostgreSQL's ``COPY``: the driver adapts each value of an ``INSERT`` in Python, at about 5 µs a
        value; ``COPY`` streams the rows in its own format, about twice as fast for a flush of 100 lines."""
        quote = connection.ops.quote_name
        columns = ', '.join(quote(column) for column in ('process_id', 'seq', 'created', 'level', 'message'))
        created = timezone.now()
        # the driver's own cursor: Django's wrapper has no copy(); its errors become Django's (IntegrityError)
        with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor, \
                connection.wrap_database_errors, \
                cursor.cursor.copy(f'COPY {quote(cls._meta.db_table)} ({columns}) FROM STDIN') as copy:
            for offset, (message, level) in enumerate(lines, start=seq):
                copy.write_row((process_pk, offset, created, level, message))


class PipelineRule(models.Model):
    """Run a pipeline by itself: when matching data products arrive, or when a run of another pipeline succeeds.

    A rule belongs to a user and its runs are that user's: they obey that user's permissions, and a
    rule never runs on a target its owner can no longer view. See ``docs/automation.rst``.
    """

    NEW_DATA = 'data'
    RUN_SUCCEEDED = 'run'
    TRIGGERS = [(NEW_DATA, 'New data products arrive'), (RUN_SUCCEEDED, 'A run of another pipeline succeeds')]
    ONLY_NEW = 'new'
    ALL_MATCHING = 'all'
    INPUTS = [(ONLY_NEW, 'Only the new products'), (ALL_MATCHING, 'Every matching product of the target')]

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='pipeline_rules')
    target = models.ForeignKey('tom_targets.BaseTarget', null=True, blank=True, on_delete=models.CASCADE,
                               related_name='pipeline_rules',
                               help_text='Only this target (empty, no target list: every target the owner may view)')
    target_list = models.ForeignKey('tom_targets.TargetList', null=True, blank=True, on_delete=models.CASCADE,
                                    related_name='pipeline_rules', verbose_name='target list (group)',
                                    help_text='Only the targets of this group')
    pipeline = models.CharField(max_length=100, help_text='The registered name of the pipeline to run')
    flag_values = models.JSONField(default=dict, blank=True)
    option_values = models.JSONField(default=dict, blank=True)
    trigger = models.CharField(max_length=8, choices=TRIGGERS, default=NEW_DATA)
    after_pipeline = models.CharField(max_length=100, blank=True, default='',
                                      help_text='For a chain: the pipeline whose successful runs fire this rule')
    data_product_type = models.CharField(max_length=100, blank=True, default='',
                                         help_text='Match only products of this type (empty: any)')
    suffix = models.CharField(max_length=32, blank=True, default='',
                              help_text='Match only files ending in this (empty: any the pipeline accepts)')
    header_keyword = models.CharField(max_length=70, blank=True, default='',
                                      help_text='Match only FITS files whose header has this keyword (e.g. FILTER)')
    header_value = models.CharField(max_length=70, blank=True, default='',
                                    help_text='... with this value (case and spaces ignored; empty: any value)')
    inputs = models.CharField(max_length=8, choices=INPUTS, default=ONLY_NEW)
    quiet_period = models.FloatField(default=120.0,
                                     help_text='Seconds without a new arrival before the arrivals make one run')
    paused = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    last_fired = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default='')

    class Meta:
        ordering = ('name', 'pk')

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse('tom_education:rule_detail', kwargs={'pk': self.pk})

    @property
    def matching_description(self) -> str:
        """Which products the rule takes, in words: "FITS files of type fits_file with FILTER = V"."""
        what = f'files ending in {self.suffix}' if self.suffix else 'files the pipeline accepts'
        if self.data_product_type:
            what += f' of type {self.data_product_type}'
        if self.header_keyword:
            what += f' with {self.header_keyword} = {self.header_value}' if self.header_value else \
                f' with a {self.header_keyword} keyword'
        return what

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from tom_education import automation

        problems = automation.rule_errors(self)
        if problems:
            raise ValidationError(problems.errors)


class RuleArrival(models.Model):
    """A data product that matched a rule and waits for the rule's quiet period to end."""

    rule = models.ForeignKey(PipelineRule, on_delete=models.CASCADE, related_name='arrivals')
    product = models.ForeignKey(DataProduct, on_delete=models.CASCADE, related_name='+')
    arrived = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=['rule', 'product'], name='tom_education_one_arrival')]


class RuleInputDigest(models.Model):
    """The content (SHA-256) of a file a rule already ran on, per target: the same data never makes two runs."""

    rule = models.ForeignKey(PipelineRule, on_delete=models.CASCADE, related_name='digests')
    target = models.ForeignKey('tom_targets.BaseTarget', on_delete=models.CASCADE, related_name='+')
    digest = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=['rule', 'target', 'digest'], name='tom_education_one_digest')]


# The built-in pipelines are proxies of this app (migration 0002): importing them here registers them
# whether or not a TOM lists them, so makemigrations never proposes to delete them. Their heavy
# libraries (photutils, matplotlib, imageio, the period search) load only when a run needs them.
from tom_education.pipelines import photometry, timelapse  # noqa: E402,F401
from tom_education.pipelines.periods import pipeline as period_pipeline  # noqa: E402,F401
