"""Automatic runs: rules that start a pipeline when data arrive, or when a run of another pipeline succeeds.

Nobody has to watch for it to happen:

* an arrival is recorded when a data product is saved (``post_save``: the page upload, the API,
  facility downloads, the admin and scripts all save through it);
* every worker's periodic check (``recovery.periodic_check``) fires the rules whose arrivals have
  been quiet for the rule's quiet period, so a batch of frames makes one run;
* a successful run fires the chain rules that follow its pipeline (``signals.run_finished``).

A rule's runs are its owner's: they go through ``services.start_process`` as that user, so they
obey that user's permissions, and a rule never runs on a target its owner can no longer view.
The same data never makes two runs: a rule remembers the content (SHA-256) of the files it ran
on, per target, and runs only when at least one input is new to it. See ``docs/automation.rst``.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from tom_dataproducts.models import DataProduct

from tom_education import middleware, outputs, registry
from tom_education.models import (
    ASYNC_STATUS_CREATED,
    PipelineProcess,
    PipelineRule,
    RuleArrival,
    RuleInputDigest,
)

logger = logging.getLogger(__name__)

#: A chain of runs started by rules stops here, whatever the rules say: a safety net behind the cycle check.
MAX_CHAIN_DEPTH = 5


# --- rules -------------------------------------------------------------------------------------

class RuleInputError(ValueError):
    """A rule that cannot be saved: ``errors`` maps each field at fault (the model's names) to its messages.

    ``option_errors`` maps an option's name to its messages, so a form or the API can point at it.
    """

    def __init__(self, errors: dict[str, list[str]], option_errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(' '.join(message for messages in errors.values() for message in messages))
        self.errors = errors
        self.option_errors = option_errors or {}


def rule_errors(rule: PipelineRule) -> RuleInputError | None:
    """What is wrong with a rule, in words for its author, by field; None when it may be saved.

    The one place rules are judged: the admin (``PipelineRule.clean``), the target page and the API.
    A valid rule's flags and options are left typed (``"3"`` typed in a form becomes ``3``).
    """
    from tom_education import services

    errors: dict[str, list[str]] = {}
    option_errors: dict[str, list[str]] = {}
    if not rule.name.strip():
        errors.setdefault('name', []).append('Give the rule a name.')
    if rule.target_id and rule.target_list_id:
        errors.setdefault('target_list', []).append(
            'Choose one target or one target list, not both (neither: every target the owner may view).')
    if rule.header_value and not rule.header_keyword:
        errors.setdefault('header_keyword', []).append('Name the header keyword whose value must match.')
    if rule.quiet_period is None or not 0 <= rule.quiet_period <= 7 * 86400:
        errors.setdefault('quiet_period', []).append('The quiet period is a number of seconds from 0 to 604800.')
    try:
        pipeline_class = registry.get(rule.pipeline)
    except registry.UnknownPipeline as exc:
        errors.setdefault('pipeline', []).append(str(exc))
        pipeline_class = None
    if pipeline_class is not None:
        try:
            rule.flag_values = {name: value for name, value in services.resolve_flags(
                pipeline_class, rule.flag_values).items() if name in (rule.flag_values or {})}
        except services.ProcessInputError as exc:
            errors.setdefault('flag_values', []).append(exc.message)
        try:
            typed = services.resolve_options(rule.pipeline, pipeline_class, rule.option_values)
            rule.option_values = {name: typed[name] for name in rule.option_values or {}}
        except services.ProcessInputError as exc:
            errors.setdefault('option_values', []).append(exc.message)
            if exc.option:
                option_errors.setdefault(exc.option, []).append(exc.message)
    if rule.trigger == PipelineRule.RUN_SUCCEEDED:
        if rule.after_pipeline not in registry.pipelines():
            errors.setdefault('after_pipeline', []).append(
                f'A chain rule follows a registered pipeline; "{rule.after_pipeline}" is not one.')
        elif pipeline_class is not None:
            loop = chain_loop(rule)
            if loop:
                errors.setdefault('after_pipeline', []).append(
                    f'This chain would run forever: {" → ".join(loop)}. Remove one of these rules first.')
    for name, choices in (('trigger', PipelineRule.TRIGGERS), ('inputs', PipelineRule.INPUTS)):
        allowed = [value for value, _ in choices]
        if getattr(rule, name) not in allowed:
            errors.setdefault(name, []).append(f'Choose one of: {", ".join(allowed)}.')
    return RuleInputError(errors, option_errors) if errors else None


def chain_loop(rule: PipelineRule) -> list[str] | None:
    """The pipelines of the loop this chain rule would close with the other chain rules, or None."""
    follows: dict[str, set[str]] = {}
    others = PipelineRule.objects.filter(trigger=PipelineRule.RUN_SUCCEEDED).exclude(pk=rule.pk)
    for after, pipeline in [*others.values_list('after_pipeline', 'pipeline'), (rule.after_pipeline, rule.pipeline)]:
        follows.setdefault(after, set()).add(pipeline)
    # a loop exists if the rule's pipeline leads back to the pipeline it follows
    paths = [[rule.after_pipeline, rule.pipeline]]
    seen = set()
    while paths:
        path = paths.pop()
        if path[-1] == rule.after_pipeline:
            return path
        if path[-1] in seen:
            continue
        seen.add(path[-1])
        paths.extend([*path, following] for following in follows.get(path[-1], ()))
    return None


def rules_on(rules: QuerySet, target_id: int) -> QuerySet:
    """The rules among ``rules`` whose scope covers the target: it alone, a group holding it, or every target."""
    return rules.filter(Q(target=None, target_list=None) | Q(target_id=target_id)
                        | Q(target_list__targets__id=target_id)).distinct()


def matches(rule: PipelineRule, product: DataProduct) -> bool:
    """Whether ``product`` is input the rule takes: its type, its file suffix, a file its pipeline accepts
    and, when the rule names a header keyword, a FITS header with that keyword (and value)."""
    name = product.data.name if product.data else ''
    if not name:
        return False
    if rule.data_product_type and product.data_product_type != rule.data_product_type:
        return False
    if rule.suffix and not name.lower().endswith(rule.suffix.lower()):
        return False
    try:
        if not registry.get(rule.pipeline).accepts_file_name(name):
            return False
    except registry.UnknownPipeline:
        return False
    if rule.header_keyword:
        from tom_education.pipelines.fitsio import header_value

        try:
            # a file object of our own, so the product's (which the saving code may use next) is left as it is
            with product.data.storage.open(product.data.name, 'rb') as handle:
                found = header_value(handle, rule.header_keyword)
        except OSError:
            return False
        if found is None or (rule.header_value and _folded(found) != _folded(rule.header_value)):
            return False
    return True


def _folded(text: str) -> str:
    return ' '.join(text.split()).casefold()


def _may_view(user: Any, target: Any) -> bool:
    from tom_education import services

    return services.may_view_target(user, target)


def _owner_may_view(rule: PipelineRule, target: Any) -> bool:
    return _may_view(rule.owner, target)


def visible_rules(user: Any) -> QuerySet:
    """The rules ``user`` may see and change: their own (every rule for a superuser, as in the admin)."""
    rules = PipelineRule.objects.select_related('owner', 'target', 'target_list')
    return rules if user.is_superuser else rules.filter(owner=user)


#: The fields of a rule its author sets (the rest is kept by the app).
RULE_FIELDS = ('name', 'target', 'target_list', 'pipeline', 'flag_values', 'option_values', 'trigger',
               'after_pipeline', 'data_product_type', 'suffix', 'header_keyword', 'header_value', 'inputs',
               'quiet_period', 'paused')


def save_rule(user: Any, values: dict[str, Any], rule: PipelineRule | None = None) -> PipelineRule:
    """Create a rule owned by ``user``, or change ``rule``, from ``values`` (any of :data:`RULE_FIELDS`).

    ``target`` and ``target_list`` are primary keys (or None). A target the author may not view is
    refused as if it did not exist. Raises :class:`RuleInputError`; nothing is saved then.
    """
    from tom_targets.models import TargetList

    from tom_education import services

    rule = rule or PipelineRule(owner=user)
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        if name == 'target':
            found = services.visible_targets(user).filter(pk=services.parse_pk(value)).first() if value else None
            if value and found is None:
                errors['target'] = [f'Target {value} does not exist or you may not view it.']
            rule.target = found
        elif name == 'target_list':
            found = TargetList.objects.filter(pk=services.parse_pk(value)).first() if value else None
            if value and found is None:
                errors['target_list'] = [f'Target list {value} does not exist.']
            rule.target_list = found
        elif name in RULE_FIELDS:
            setattr(rule, name, value)
    if rule.trigger == PipelineRule.NEW_DATA:
        rule.after_pipeline = ''
    problems = rule_errors(rule)
    if problems or errors:
        raise RuleInputError({**(problems.errors if problems else {}), **errors},
                             problems.option_errors if problems else None)
    rule.save()
    return rule


def set_paused(rule: PipelineRule, paused: bool) -> None:
    """Pause a rule (it records and fires nothing) or resume it.

    Arrivals recorded before the pause are kept: they make their run after the rule is resumed and
    has been quiet for its quiet period, so pausing never loses a night's frames.
    """
    PipelineRule.objects.filter(pk=rule.pk).update(paused=paused)
    rule.paused = paused


def with_last_run(rules: QuerySet, limit: int) -> list[PipelineRule]:
    """The first ``limit`` rules, each with ``last_run``: the newest run it started, or None (two queries)."""
    newest = PipelineProcess.objects.filter(triggered_by_rule=OuterRef('pk')).order_by('-created', '-pk')
    listed = list(rules.annotate(last_run_pk=Subquery(newest.values('pk')[:1]))[:limit])
    runs = PipelineProcess.objects.in_bulk([rule.last_run_pk for rule in listed if rule.last_run_pk])
    for rule in listed:
        rule.last_run = runs.get(rule.last_run_pk)
    return listed


def rule_runs(rule: PipelineRule) -> QuerySet:
    """The runs a rule started, newest first."""
    return PipelineProcess.objects.filter(triggered_by_rule=rule).order_by('-created', '-pk')


# --- arrivals ----------------------------------------------------------------------------------

def record_arrival(sender: Any, instance: DataProduct, **kwargs: Any) -> None:
    """``post_save`` of a data product: note it for every active rule it matches. Never fails the save.

    A run's own outputs are not arrivals (a chain rule reacts to them), so no rule can fire itself;
    nor is a product saved in a request by a user who may not view its target (tom_base's upload
    page lets any signed-in user name any target).
    """
    if kwargs.get('raw') or not instance.data or outputs.saving_outputs.get():
        return
    in_request, uploader = middleware.current_uploader()
    if in_request and (uploader is None or not _may_view(uploader, instance.target)):
        logger.warning('tom_education: data product %s was saved by %s, who may not view target %s: no '
                       'automatic-run rule takes it', instance.pk, uploader, instance.target_id)
        return
    try:
        rules = rules_on(PipelineRule.objects.filter(paused=False, trigger=PipelineRule.NEW_DATA),
                         instance.target_id).select_related('owner')
        for rule in rules:
            if matches(rule, instance) and _owner_may_view(rule, instance.target):
                try:
                    with transaction.atomic():
                        RuleArrival.objects.get_or_create(rule=rule, product=instance)
                except IntegrityError:
                    pass  # recorded meanwhile by another save of the same product
    except Exception:  # noqa: BLE001 - an automatic run is never worth losing an upload
        logger.exception('tom_education: could not record data product %s for the automatic-run rules', instance.pk)


def fire_due_rules() -> int:
    """Start one run per rule and target whose arrivals have been quiet for the rule's quiet period.

    Called by every worker's periodic check; of several workers checking at once, the one that
    deletes a batch's arrivals starts its run. Returns the number of runs started.
    """
    now = timezone.now()
    started = 0
    batches = (RuleArrival.objects.filter(rule__paused=False)
               .values('rule_id', 'product__target_id').annotate(latest=Max('arrived')))
    for batch in batches:
        rule = PipelineRule.objects.select_related('owner').filter(pk=batch['rule_id']).first()
        if rule is None or batch['latest'] > now - timedelta(seconds=rule.quiet_period):
            continue
        arrivals = RuleArrival.objects.filter(rule=rule, product__target_id=batch['product__target_id'],
                                              arrived__lte=batch['latest']).select_related('product__target')
        started += _fire(rule, list(arrivals))
    return started


class _TakenElsewhere(Exception):
    """Another worker's check took this batch first."""


def _fire(rule: PipelineRule, arrivals: list[RuleArrival]) -> int:
    if not arrivals:
        return 0
    target = arrivals[0].product.target
    if rule.inputs == PipelineRule.ALL_MATCHING:
        candidates = [product for product in DataProduct.objects.filter(target=target).order_by('pk')
                      if matches(rule, product)]
    else:
        candidates = [arrival.product for arrival in arrivals]
    digests = {product.pk: content_digest(product) for product in candidates}
    try:
        with transaction.atomic():
            if RuleArrival.objects.filter(pk__in=[arrival.pk for arrival in arrivals]).delete()[0] != len(arrivals):
                raise _TakenElsewhere()
            seen = set(RuleInputDigest.objects.filter(rule=rule, target=target).values_list('digest', flat=True))
            inputs, kept = [], set()
            for product in candidates:
                digest = digests[product.pk]
                if digest is not None and digest in kept:
                    continue  # the same file uploaded twice: one copy is enough
                kept.add(digest)
                if rule.inputs == PipelineRule.ALL_MATCHING or digest not in seen:
                    inputs.append(product)
            if not (kept - seen):
                return 0  # nothing the rule has not already run on
            note = f'Started by rule "{rule.name}" after {len(arrivals)} new data product(s) arrived.'
            if _start(rule, target, inputs, note, source=None, depth=0) is None:
                return 0
            RuleInputDigest.objects.bulk_create(
                [RuleInputDigest(rule=rule, target=target, digest=digest) for digest in kept - seen - {None}],
                ignore_conflicts=True,
            )
            return 1
    except _TakenElsewhere:
        return 0


def content_digest(product: DataProduct) -> str | None:
    """SHA-256 of a product's file, read in chunks; None when the file cannot be read (it is then always new)."""
    digest = hashlib.sha256()
    try:
        with product.data.storage.open(product.data.name, 'rb') as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b''):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# --- starting runs -----------------------------------------------------------------------------

def _start(rule: PipelineRule, target: Any, inputs: list[DataProduct], note: str, *,
           source: PipelineProcess | None, depth: int) -> PipelineProcess | None:
    """Start the rule's pipeline as its owner; a refusal is kept as the rule's last error, never retried."""
    from tom_education import services

    now = timezone.now()
    if not _owner_may_view(rule, target):
        PipelineRule.objects.filter(pk=rule.pk).update(
            last_error=f'{now:%Y-%m-%d %H:%M} UTC: {rule.owner} may no longer view target {target.pk}.')
        return None
    try:
        process = services.start_process(
            user=rule.owner, pipeline=rule.pipeline, target=target, input_files=inputs,
            flags=rule.flag_values, options=rule.option_values, notes=[note],
        )
    except services.ProcessInputError as exc:
        PipelineRule.objects.filter(pk=rule.pk).update(last_error=f'{now:%Y-%m-%d %H:%M} UTC: {exc}')
        return None
    PipelineProcess.objects.filter(pk=process.pk).update(triggered_by_rule=rule, triggered_by_process=source,
                                                         chain_depth=depth)
    PipelineRule.objects.filter(pk=rule.pk).update(last_fired=now, last_error='')
    return process


def _followed(pipeline: str | None) -> bool:
    """Whether an active chain rule follows ``pipeline``: one prepared look-up, as the ORM's ``exists()``
    costs more to compose than to run and this runs after every successful run."""
    connection = connections[router.db_for_read(PipelineRule)]
    quote = connection.ops.quote_name
    meta = PipelineRule._meta
    sql = (f'SELECT 1 FROM {quote(meta.db_table)} WHERE {quote("after_pipeline")} = %s AND {quote("trigger")} = %s '
           f'AND {quote("paused")} = %s LIMIT 1')
    with connection.cursor() as cursor:
        cursor.execute(sql, [pipeline, PipelineRule.RUN_SUCCEEDED, False])
        return cursor.fetchone() is not None


def start_chained_runs(sender: Any, process_pk: int, state: str, pipeline: str | None = None,
                       followed_by_rule: bool | None = None, **kwargs: Any) -> None:
    """``run_finished``: start the chain rules that follow a run that succeeded, on its outputs.

    Every successful run of every pipeline comes through here, and most have no rule after them:
    the runner's ending statement already asked (``followed_by_rule``); where it could not, that case
    is one look-up of the (small) rules table, nothing more.
    """
    if state != ASYNC_STATUS_CREATED or followed_by_rule is False:
        return  # a failed run fires nothing, so a failing pipeline never loops through a rule
    if pipeline is None:  # sent by other code than the runner, which says which pipeline ran
        pipeline = PipelineProcess.objects.filter(pk=process_pk).values_list('pipeline', flat=True).first()
    if followed_by_rule is None and not _followed(pipeline):
        return
    following = PipelineRule.objects.filter(paused=False, trigger=PipelineRule.RUN_SUCCEEDED, after_pipeline=pipeline)
    process = PipelineProcess.objects.select_related('target').filter(pk=process_pk).first()
    if process is None:
        return
    rules = rules_on(following, process.target_id).select_related('owner')
    outputs = list(process.output_files.all())
    for rule in rules:
        if process.chain_depth + 1 > MAX_CHAIN_DEPTH:
            PipelineRule.objects.filter(pk=rule.pk).update(
                last_error=f'Not started after {process.identifier}: a chain stops after {MAX_CHAIN_DEPTH} runs.')
            continue
        inputs = [product for product in outputs if matches(rule, product)]
        note = f'Started by rule "{rule.name}" after {process.identifier} succeeded.'
        with transaction.atomic():
            _start(rule, process.target, inputs, note, source=process, depth=process.chain_depth + 1)
