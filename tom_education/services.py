"""What users can do with pipelines: start, follow, cancel, re-run. Pages, the API and the CLI call these.

Every function that takes a ``user`` applies TOM permissions through ``targets_for_user``;
``user=None`` means a trusted caller such as a management command run by the TOM's administrator.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Count, F, Model, Q, QuerySet
from django.utils import timezone
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_objects_for_user
from tom_dataproducts.models import DataProduct
from tom_targets.models import Target
from tom_targets.permissions import targets_for_user

from tom_education import conf, recovery, registry, run_options
from tom_education.dispatch import QUEUE_UNAVAILABLE, TASK_NAME, enqueue, queue_name  # noqa: F401 - this API
from tom_education.insertion import insert_process
from tom_education.models import (
    ASYNC_STATUS_CANCELLED,
    ASYNC_STATUS_PENDING,
    ASYNC_STATUS_RUNNING,
    PipelineLogLine,
    PipelineProcess,
    new_identifier,
    rows_per_statement,
)

logger = logging.getLogger(__name__)


#: Largest primary key any supported database stores in an AutoField column.
MAX_PK = 2**31 - 1
#: Most data products one run may take (the tab's form sends them in one field; see forms.py).
MAX_INPUT_FILES = 20_000
#: Most ids a refusal lists before it says "and N more".
LISTED_IDS = 10


def parse_pk(value: Any) -> int | None:
    """A primary key from user input, or None for anything else: text, signs, non-ASCII digits, and
    numbers no key column can hold (SQLite raises OverflowError on those, a 500 if left unchecked)."""
    text = str(value.pk if isinstance(value, Model) else value)
    if not re.fullmatch(r'[0-9]{1,10}', text):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_PK else None


class ProcessInputError(ValueError):
    """A request to start a process that cannot be honoured.

    ``field`` names the input at fault (``pipeline``, ``target``, ``input_files``, ``flags``, ``options``);
    for an option, ``option`` names which one, so a form can show the message next to its field.
    """

    def __init__(self, message: str, field: str | None = None, option: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.option = option


# --- what a user may see ------------------------------------------------------------------------

def visible_targets(user: Any) -> QuerySet:
    """The targets ``user`` may view (all of them for a trusted caller)."""
    targets = Target.objects.all()
    return targets if user is None else targets_for_user(user, targets, 'view_target')


def visible_processes(user: Any) -> QuerySet:
    processes = PipelineProcess.objects.select_related('target', 'created_by')
    if user is None:
        return processes
    return processes.filter(target__in=visible_targets(user).values('pk'))


def listed_processes(user: Any) -> QuerySet:
    """:func:`visible_processes` with ``output_count``: how many of each run's output files the user may see."""
    outputs = Q(output_files__target=F('target'))
    if user is not None:
        outputs &= Q(output_files__in=visible_products(user).values('pk'))
    return visible_processes(user).annotate(output_count=Count('output_files', filter=outputs, distinct=True))


def visible_products(user: Any, target: Target | None = None) -> QuerySet:
    """The data products ``user`` may see (of ``target`` only, when given): those of visible targets,
    and with ``TARGET_PERMISSIONS_ONLY = False`` only those the user holds ``view_dataproduct`` on."""
    products = DataProduct.objects.all() if target is None else DataProduct.objects.filter(target=target)
    if user is None:
        return products
    products = products.filter(target__in=visible_targets(user).values('pk'))
    if getattr(settings, 'TARGET_PERMISSIONS_ONLY', True) or user.is_superuser:
        return products
    return get_objects_for_user(user, 'tom_dataproducts.view_dataproduct', products)


def visible_outputs(user: Any, process: PipelineProcess) -> QuerySet:
    """The data products ``process`` saved that ``user`` may see: linked by the run, of its target, visible."""
    return visible_products(user, process.target).filter(created_by_pipeline_processes=process).order_by('pk')


def visible_inputs(user: Any, process: PipelineProcess) -> list[DataProduct]:
    """The input files of a process ``user`` may see, by primary key: all of them, unless products carry their own
    permissions (``TARGET_PERMISSIONS_ONLY = False``); then only those the user may view."""
    if user is None or user.is_superuser or getattr(settings, 'TARGET_PERMISSIONS_ONLY', True):
        inputs = list(process.input_files.all())  # the process is visible, so is its target: no further query
    else:
        inputs = list(visible_products(user, process.target).filter(pipeline_processes=process))
    return sorted(inputs, key=lambda product: product.pk)


def visible_output(user: Any, process: PipelineProcess, product_pk: Any) -> DataProduct | None:
    """One output of ``process`` for a download; None for anything else (not an output, invisible, malformed)."""
    pk = parse_pk(product_pk)
    return None if pk is None else visible_outputs(user, process).filter(pk=pk).first()


def product_file_name(product: DataProduct) -> str:
    return PurePosixPath(product.data.name).name if product.data else f'(data product {product.pk} has no file)'


# --- starting -------------------------------------------------------------------------------------

def resolve_flags(pipeline_class: type[PipelineProcess], flags: Mapping[str, Any] | None) -> dict[str, bool]:
    """The class defaults overlaid with ``flags``; unknown names and non-boolean values are refused."""
    values = pipeline_class.flag_defaults()
    if not isinstance(flags or {}, Mapping):
        raise ProcessInputError('Flags must be given as an object mapping flag names to true or false.', 'flags')
    for name, value in (flags or {}).items():
        if name not in values:
            known = ', '.join(values) or 'none'
            raise ProcessInputError(
                f'Unknown flag {run_options.quote_name(name)} for this pipeline. Its flags are: {known}.', 'flags'
            )
        if not isinstance(value, bool):
            raise ProcessInputError(f'Flag "{name}" must be true or false, not {run_options.quote(value)}.', 'flags')
        values[name] = value
    return values


def option_specs(pipeline: str, pipeline_class: type[PipelineProcess]) -> list[run_options.OptionSpec]:
    """The options of ``pipeline`` with this site's defaults applied: what forms, the API and the CLI offer."""
    return pipeline_class.option_specs(conf.option_defaults(pipeline))


def resolve_options(
    pipeline: str, pipeline_class: type[PipelineProcess], options: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every option's typed value: given ones checked, omitted ones at their (site) default.

    The one place option values are judged, whichever channel they came from.
    """
    if not isinstance(options or {}, Mapping):
        raise ProcessInputError('Options must be given as an object mapping option names to values.', 'options')
    given = dict(options or {})
    specs = option_specs(pipeline, pipeline_class)
    known = [spec.name for spec in specs]
    for name in given:
        if name not in known:
            listed = ', '.join(known) or 'none'
            raise ProcessInputError(
                f'Unknown option {run_options.quote_name(name)} for this pipeline. Its options are: {listed}.',
                'options',
            )
    values = {}
    for spec in specs:
        try:
            values[spec.name] = spec.clean(given[spec.name] if spec.name in given else spec.default)
        except run_options.OptionError as exc:
            message = exc.message
            if spec.name not in given and spec.default is not None:
                # the site's default is at fault, not the user: say so, and what they can do meanwhile
                message = (f'This TOM\'s default for option "{spec.name}" is not accepted ({exc.message}) Give a '
                           'value, and ask the TOM administrator to fix TOM_EDUCATION_OPTION_DEFAULTS.')
            raise ProcessInputError(message, 'options', option=spec.name) from None
    return values


def may_view_target(user: Any, target: Target) -> bool:
    """Whether ``user`` may view ``target`` (any user for a trusted caller, ``user=None``).

    The rule of tom_base's ``targets_for_user`` for one target, checked on the target itself: building
    that function's queryset cost half of a submission. ``tests/test_permissions.py`` proves the two agree
    for every kind of user and target, with one deliberate difference: a deactivated account sees no target
    (it cannot sign in anyway; ``run_pipeline --user`` could still name it).
    """
    if user is None:
        return True
    if not user.is_authenticated:
        return target.permissions == Target.Permissions.OPEN
    if not user.is_active:
        return False
    if user.is_superuser or target.permissions != Target.Permissions.PRIVATE:
        return True
    # as guardian's get_objects_for_user: a global permission, or one on the object for the user or a group
    view = 'view_target'
    return user.has_perm(f'{Target._meta.app_label}.{view}') or view in ObjectPermissionChecker(user).get_perms(target)


def _resolve_target(user: Any, target: Target | int | str, joined: Target | None = None) -> Target:
    """The target, holding what a submission reads of it (the rest of the row loads if asked for).

    ``joined``: the target as the products' query already brought it, when it did.
    """
    pk = parse_pk(target)
    found = joined
    if found is None and pk is not None:
        found = Target.objects.only(*TARGET_FIELDS).filter(pk=pk).first()
    if found is None or not may_view_target(user, found):
        raise ProcessInputError(f'Target {target} does not exist or you may not view it.', 'target')
    return found


#: What a submission reads of a target: its id, its name for messages and its permissions for the check.
TARGET_FIELDS = ('pk', 'name', 'permissions')


def _resolve_inputs(
    user: Any, target: Target | int | str, pipeline_class: type[PipelineProcess],
    products: Iterable[DataProduct | int],
) -> tuple[Target, list[DataProduct]]:
    """The target and the products of a submission, checked, in one query where possible.

    The products are read with their target, which is usually the one asked for: a second query for
    the target alone is needed only when none of them belongs to it (or the TOM has its own target
    model, which the products' foreign key does not load). Refusals keep their order: the target first.
    """
    try:
        ids = _product_ids(products)
    except ProcessInputError as refusal:
        _resolve_target(user, target)
        raise refusal from None
    found: dict[int, DataProduct] | None = None
    joined = None
    pk = parse_pk(target)
    if ids and pk is not None and Target is DataProduct._meta.get_field('target').related_model:
        found = _products_with_their_target(ids)
        joined = next((product.target for product in found.values() if product.target_id == pk), None)
    resolved = _resolve_target(user, target, joined)
    return resolved, _resolve_products(user, resolved, pipeline_class, ids, found)


#: What a submission reads of a product (its target's TARGET_FIELDS come with it).
PRODUCT_FIELDS = ('pk', 'product_id', 'target', 'data')


def _products_with_their_target(ids: list[int]) -> dict[int, DataProduct]:
    """The products of ``ids`` by id, each holding its target (with TARGET_FIELDS): one join whose SQL is
    composed once, as the ORM's compiling of it cost several times running it, on every submission.

    The columns read are plain ones (ids, text, a file's name), which no backend converts.
    """
    connection = connections[router.db_for_read(DataProduct)]
    select, product_names, target_names = _product_query(connection.alias)
    found: dict[int, DataProduct] = {}
    cache_target = DataProduct._meta.get_field('target').set_cached_value
    with connection.cursor() as cursor:
        per_query = rows_per_statement(connection, 1)
        for start in range(0, len(ids), per_query):
            chunk = ids[start:start + per_query]
            cursor.execute(select + f'({", ".join(["%s"] * len(chunk))})', chunk)
            for row in cursor.fetchall():
                product = DataProduct.from_db(connection.alias, product_names, row[:len(product_names)])
                cache_target(product, Target.from_db(connection.alias, target_names, row[len(product_names):]))
                found[product.pk] = product
    return found


@functools.cache
def _product_query(alias: str) -> tuple[str, list[str], list[str]]:
    """The join's SQL up to its ``IN``, and the product's and the target's field names, once per database alias."""
    quote = connections[alias].ops.quote_name
    # in the models' order of fields, which from_db() expects of a partial row
    product_fields = _in_model_order(DataProduct, PRODUCT_FIELDS)
    target_fields = _in_model_order(Target, TARGET_FIELDS)
    products, targets = quote(DataProduct._meta.db_table), quote(Target._meta.db_table)
    columns = [f'{products}.{quote(field.column)}' for field in product_fields]
    columns += [f'{targets}.{quote(field.column)}' for field in target_fields]
    join = (f'{targets}.{quote(Target._meta.pk.column)} = '
            f'{products}.{quote(DataProduct._meta.get_field("target").column)}')
    return (
        f'SELECT {", ".join(columns)} FROM {products} INNER JOIN {targets} ON {join} '
        f'WHERE {products}.{quote(DataProduct._meta.pk.column)} IN ',
        [field.attname for field in product_fields], [field.attname for field in target_fields],
    )


def _in_model_order(model: type[Model], names: Iterable[str]) -> list[Any]:
    wanted = {model._meta.pk if name == 'pk' else model._meta.get_field(name) for name in names}
    return [field for field in model._meta.concrete_fields if field in wanted]


def _product_ids(products: Iterable[DataProduct | int]) -> list[int]:
    """The distinct product ids of a submission, in order; a malformed id or too many ids are refused."""
    ids = []
    for product in products:
        pk = parse_pk(product)
        if pk is None:
            raise ProcessInputError(f'{run_options.quote_name(product)} is not a data product id.', 'input_files')
        ids.append(pk)
        if len(ids) > MAX_INPUT_FILES:
            raise ProcessInputError(f'A run takes at most {MAX_INPUT_FILES} data products.', 'input_files')
    return list(dict.fromkeys(ids))


def listing(items: list[str]) -> str:
    """The first few of ``items`` joined by commas, and how many more: a message stays short whatever was sent."""
    shown = ', '.join(items[:LISTED_IDS])
    return shown if len(items) <= LISTED_IDS else f'{shown} and {len(items) - LISTED_IDS} more'


def _resolve_products(
    user: Any, target: Target, pipeline_class: type[PipelineProcess], ids: list[int],
    found: dict[int, DataProduct] | None = None,
) -> list[DataProduct]:
    """The products of ``ids``, each visible to ``user``, of ``target`` and accepted by the pipeline.

    ``found``: the products already read by id, if they were.
    """
    if not ids:
        if not pipeline_class.inputs_required:
            return []
        raise ProcessInputError('Select at least one data product to run the pipeline on.', 'input_files')
    # a product the user may not see is reported like one that does not exist: no name leaks
    found = _visible_products_by_pk(user, target, ids, found)
    missing = [str(pk) for pk in ids if pk not in found]
    if missing:
        raise ProcessInputError(f'Data product(s) {listing(missing)} do not exist.', 'input_files')
    foreign = [product_file_name(found[pk]) for pk in ids if found[pk].target_id != target.pk]
    if foreign:
        raise ProcessInputError(
            f'Data product(s) {listing(foreign)} do not belong to target {target.name}.', 'input_files'
        )
    unsuitable = [
        product_file_name(found[pk]) for pk in ids
        if not found[pk].data or not pipeline_class.accepts_file_name(found[pk].data.name)
    ]
    if unsuitable:
        allowed = ', '.join(pipeline_class.allowed_suffixes or [])
        raise ProcessInputError(
            f'{listing(unsuitable)} cannot be used: this pipeline accepts only files ending in {allowed}.',
            'input_files',
        )
    return [found[pk] for pk in ids]


def _visible_products_by_pk(user: Any, target: Target, ids: list[int],
                            products: dict[int, DataProduct] | None = None) -> dict[int, DataProduct]:
    """The products of ``ids`` that ``user`` may see, given that they may see ``target``.

    The products of ``target`` need no second target check (the common case: one query, or none when
    ``products`` holds them already, read by id); only products of other targets, which make the request
    fail anyway, go through the full check.
    """
    if products is None:
        products = {product.pk: product for product in DataProduct.objects.filter(pk__in=ids)}
    own = [pk for pk, product in products.items() if product.target_id == target.pk]
    per_product = not getattr(settings, 'TARGET_PERMISSIONS_ONLY', True) and user is not None \
        and not user.is_superuser
    if per_product and own:
        own = list(get_objects_for_user(user, 'tom_dataproducts.view_dataproduct',
                                        DataProduct.objects.filter(pk__in=own)).values_list('pk', flat=True))
    visible = {pk: products[pk] for pk in own}
    others = [pk for pk in products if products[pk].target_id != target.pk]
    if others:
        visible.update((product.pk, product) for product in visible_products(user).filter(pk__in=others))
    return visible


def start_process(
    *,
    user: Any,
    pipeline: str,
    target: Target | int | str,
    input_files: Iterable[DataProduct | int],
    flags: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    notes: Iterable[str] = (),
) -> PipelineProcess:
    """Check the request, create the pending process and queue it once the row is committed.

    Raises :class:`ProcessInputError` before anything is stored. If the queue cannot be reached
    the process is kept, marked failed with a message saying so. ``notes`` open the process's log
    (a re-run says there what it could not keep, for instance).
    """
    try:
        pipeline_class = registry.get(pipeline)
    except registry.UnknownPipeline as exc:
        raise ProcessInputError(str(exc), 'pipeline') from None
    resolved_target, products = _resolve_inputs(user, target, pipeline_class, input_files)
    flag_values = resolve_flags(pipeline_class, flags)
    option_values = resolve_options(pipeline, pipeline_class, options)
    process = pipeline_class(
        identifier=new_identifier(pipeline_class.short_name),
        pipeline=pipeline,
        target=resolved_target,
        flag_values=flag_values,
        option_values=option_values,
        created_by=user if user is not None and user.is_authenticated else None,
        task_id=str(uuid.uuid4()),
        queued=timezone.now(),
    )
    notes = list(notes)
    # the row and its input links are stored together (one statement on PostgreSQL); notes join them
    with transaction.atomic() if notes else contextlib.nullcontext():
        insert_process(process, [product.pk for product in products])
        if notes:
            PipelineLogLine.append(process, [(note, logging.WARNING) for note in notes], first_seq=1)
        transaction.on_commit(lambda: enqueue(process))
    return process


def rerun_process(*, user: Any, process: PipelineProcess) -> PipelineProcess:
    """Start the same pipeline again on the same inputs with the same flags and options.

    If the pipeline's definition changed since, values it no longer accepts are dropped (their
    defaults apply) and the new run's log says so; everything still valid is kept.
    """
    try:
        pipeline_class = registry.get(process.pipeline)
    except registry.UnknownPipeline as exc:
        raise ProcessInputError(str(exc), 'pipeline') from None
    flags, options, notes = kept_parameters(process, pipeline_class)
    return start_process(
        user=user,
        pipeline=process.pipeline,
        target=process.target_id,
        input_files=list(process.input_files.values_list('pk', flat=True)),
        flags=flags,
        options=options,
        notes=[f'Re-run of {process.identifier}.', *notes] if notes else (),
    )


def kept_parameters(
    process: PipelineProcess, pipeline_class: type[PipelineProcess]
) -> tuple[dict[str, bool], dict[str, Any], list[str]]:
    """The flags and options of ``process`` that its pipeline still accepts, and a note for each one dropped."""
    declared_flags = pipeline_class.flag_defaults()
    flags, notes = {}, []
    for name, value in process.flag_values.items():
        if name in declared_flags and isinstance(value, bool):
            flags[name] = value
        else:
            notes.append(f'Flag "{name}" was dropped: the pipeline no longer has it.')
    specs = {spec.name: spec for spec in option_specs(process.pipeline, pipeline_class)}
    options = {}
    for name, value in process.option_values.items():
        spec = specs.get(name)
        if spec is None:
            notes.append(f'Option "{name}" was dropped: the pipeline no longer has it.')
            continue
        try:
            options[name] = spec.clean(value)
        except run_options.OptionError as exc:
            notes.append(f'Option "{name}" was reset to its default: {exc.message}')
    return flags, options, notes


# --- following and stopping -----------------------------------------------------------------

class NotAllowed(PermissionError):
    """The user may see the process but not do this to it."""


def may_cancel(user: Any, process: PipelineProcess) -> bool:
    """Only the user who started a process (or a superuser) may stop it; anyone who sees it may re-run it."""
    if user is None:
        return True
    return user.is_superuser or (process.created_by_id is not None and process.created_by_id == user.pk)


def cancel_process(process: PipelineProcess, user: Any = None) -> bool:
    """Cancel a pending process at once, or ask its worker to stop a running one. False if already ended."""
    if not may_cancel(user, process):
        raise NotAllowed(f'Only the user who started {process.identifier} may cancel it.')
    if PipelineProcess.objects.filter(pk=process.pk, state=ASYNC_STATUS_PENDING).update(
        state=ASYNC_STATUS_CANCELLED, status=ASYNC_STATUS_CANCELLED,
        failure_message='Cancelled before it started.', finished=timezone.now(),
    ):
        return True
    return PipelineProcess.objects.filter(pk=process.pk, state=ASYNC_STATUS_RUNNING).update(cancel_requested=True) > 0


def looks_lost(process: PipelineProcess) -> bool:
    """Whether a running process's heartbeat is stale, judged from the row already loaded (no query)."""
    return (
        process.state == ASYNC_STATUS_RUNNING and process.heartbeat is not None
        and (timezone.now() - process.heartbeat).total_seconds() > conf.heartbeat_timeout()
    )


def recover_if_lost(processes: Iterable[PipelineProcess]) -> bool:
    """Before showing ``processes``, queue again any lost run (and all others); True if one of them looked lost.

    The workers do this on their own within a check interval; a page only gets there sooner. The
    caller reads the rows again on True, whoever queued the run: this call, or a worker's check
    between the caller's read and this call.
    """
    if not any(looks_lost(process) for process in processes):
        return False
    recovery.recover_lost_runs()
    return True


def refresh_if_lost(process: PipelineProcess) -> None:
    if recover_if_lost([process]):
        process.refresh_from_db()


def waiting_reason(process: PipelineProcess) -> str:
    """Why a pending run is not starting, when the engine can tell ('' otherwise): no worker consumes its queue."""
    if process.state != ASYNC_STATUS_PENDING:
        return ''
    queue = queue_name(process)
    if recovery.consumers_of(queue):
        return ''
    return f'waiting: no worker is consuming queue {queue}'


def log_lines(process: PipelineProcess, after: int = 0, limit: int = 1000) -> list[PipelineLogLine]:
    """Log lines with a sequence number above ``after``: a poll with nothing new is one indexed query."""
    return list(PipelineLogLine.objects.filter(process=process, seq__gt=after).order_by('seq')[:limit])


@dataclass(frozen=True)
class LogPage:
    """What a poller needs: the new lines, the cursor for the next poll, and whether to stop."""

    lines: list[PipelineLogLine]
    next: int
    final: bool


def log_page(process: PipelineProcess, after: int = 0, limit: int = 1000) -> LogPage:
    """The lines after the cursor, with the process's state brought up to date first.

    ``final`` is true only once the process has ended and this page holds its last lines: lines
    are written before the final state, so a poller can stop at the first final page.
    """
    refresh_if_lost(process)
    lines = log_lines(process, after=after, limit=limit)
    return LogPage(lines, lines[-1].seq if lines else after, process.is_final and len(lines) < limit)


def log_tail(process: PipelineProcess, count: int) -> list[PipelineLogLine]:
    """The last ``count`` lines, in order."""
    return list(PipelineLogLine.objects.filter(process=process).order_by('-seq')[:count])[::-1]


def summary(process: PipelineProcess, user: Any = None) -> dict[str, Any]:
    """The facts about a process a script needs, as plain JSON-able values (outputs as ``user`` sees them)."""
    reduced = process.output_reduced_data()
    return {
        'id': process.pk,
        'identifier': process.identifier,
        'pipeline': process.pipeline,
        'target': {'id': process.target_id, 'name': process.target.name},
        'state': process.state,
        'status': process.status,
        'failure_message': process.failure_message,
        'flags': process.flag_values,
        'options': process.option_values,
        'progress': process.progress_info,
        'input_files': [product.pk for product in visible_inputs(user, process)],
        'created': process.created.isoformat(),
        'started': process.started.isoformat() if process.started else None,
        'finished': process.finished.isoformat() if process.finished else None,
        'group': process.group_id,
        'outputs': {
            'data_products': [
                {'id': product.pk, 'product_id': product.product_id, 'file': product.data.name,
                 'data_product_type': product.data_product_type}
                for product in visible_outputs(user, process)
            ],
            'reduced_data': {name: queryset.count() for name, queryset in reduced.items()},
        },
    }
