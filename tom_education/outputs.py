"""Save what ``do_pipeline()`` returned into the TOM, all or nothing.

Everything is checked before anything is written; rows are created in one transaction and files
written to storage are deleted again if the transaction does not commit, so a failed save leaves
neither rows nor orphan files.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from guardian.shortcuts import assign_perm, get_groups_with_perms
from tom_dataproducts import models as dataproduct_models
from tom_dataproducts.models import DataProduct, DataProductGroup, PhotometryReducedDatum, ReducedDatum

from tom_education import conf, lightcurve
from tom_education.models import REDUCED_DATUM_SOURCE, AsyncError, PipelineOutput, PipelineProcess

#: ``data_type`` of a ReducedDatum output saved without a tag.
DEFAULT_REDUCED_DATUM_TYPE = 'pipeline_output'
#: True while a run saves its outputs: automatic-run rules take new data, not what runs make (chains do that),
#: so a rule whose pipeline writes files it also matches cannot fire itself for ever.
saving_outputs: contextvars.ContextVar[bool] = contextvars.ContextVar('tom_education_saving_outputs', default=False)
PHOTOMETRY_TAG = 'photometry'


@dataclass(frozen=True)
class CheckedOutput:
    path: Path
    name: str
    model: type
    tag: str


def known_data_product_types() -> set[str]:
    # tom_base validates against the choices it computed at import; check against the same list
    return {choice for choice, _ in dataproduct_models.DATA_TYPE_CHOICES}


def check_outputs(raw_outputs: Any, tmpdir: Path) -> list[CheckedOutput]:
    """Validate every output before anything is saved; an ``AsyncError`` names the bad one."""
    if raw_outputs is None:
        return []
    if isinstance(raw_outputs, (str, bytes, Path)) or not hasattr(raw_outputs, '__iter__'):
        raise AsyncError('do_pipeline() must return a list of PipelineOutput objects (or tuples)')
    raw_outputs = list(raw_outputs)
    if not raw_outputs:
        return []
    root = tmpdir.resolve()
    checked = []
    for raw in raw_outputs:
        output = PipelineOutput.coerce(raw)
        path = Path(output.path)
        if not path.is_absolute():
            path = tmpdir / path
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise AsyncError(f'Output {output.path} is outside the temporary directory; write outputs under tmpdir')
        if not resolved.is_file():
            raise AsyncError(f'Output file {resolved.relative_to(root)} does not exist; was it written?')
        if output.output_type not in (DataProduct, ReducedDatum):
            raise AsyncError(
                f'Output {resolved.name} has output_type {output.output_type!r}; use DataProduct or ReducedDatum'
            )
        tag = '' if output.tag is None else str(output.tag)
        if output.output_type is DataProduct and tag and tag not in known_data_product_types():
            raise AsyncError(
                f'Output {resolved.name} has tag "{tag}", which is not a data product type of this TOM: '
                f'add "{tag}" to DATA_PRODUCT_TYPES in settings.py'
            )
        if output.output_type is ReducedDatum and resolved.stat().st_size > conf.max_text_output_bytes():
            raise AsyncError(
                f'Output {resolved.name} is too large to store as a ReducedDatum '
                f'({resolved.stat().st_size} bytes); return it as a DataProduct instead'
            )
        checked.append(CheckedOutput(resolved, str(resolved.relative_to(root)), output.output_type, tag))
    return checked


def save_outputs(
    process: PipelineProcess,
    outputs: list[CheckedOutput],
    log: Callable[[str], None],
    before_commit: Callable[[dict[str, Any]], None],
    target: Any = None,
) -> None:
    """Store the files, then create every output row in one transaction; ``before_commit`` runs last in it,
    with the changes to the process row it must write with the final state.

    Files are copied before the transaction opens so a large copy never holds the database's
    write lock; if anything later fails they are deleted again. ``target``: the process's target as
    the caller already holds it (tom_base names an output's folder after it), else it is read.
    """
    products: list[tuple[CheckedOutput, DataProduct]] = []
    #: written by before_commit with the final state: the outputs' group, and no file left uncommitted
    row_changes: dict[str, Any] = {}
    saving = saving_outputs.set(True)
    try:
        for output in outputs:
            if output.model is DataProduct:
                products.append((output, _store_file(process, output, target)))
                # noted at once: if this worker dies before the commit, whoever recovers the run deletes them
                PipelineProcess.objects.filter(pk=process.pk).update(
                    uncommitted_files=[product.data.name for _, product in products]
                )
        with transaction.atomic():
            if products:
                group = DataProductGroup.objects.create(name=f'{process.identifier} outputs')
                for output, product in products:
                    product.save()
                    log(f'Saved {output.name} as data product {product.product_id}')
                # the rows are new: one INSERT per relation, without the SELECT of existing links add() makes first
                in_group = DataProduct.group.through
                in_group.objects.bulk_create([in_group(dataproduct_id=product.pk, dataproductgroup_id=group.pk)
                                              for _, product in products])
                process.group = group
                row_changes = {'group': group.pk, 'uncommitted_files': []}
                outputs_of = PipelineProcess.output_files.through
                outputs_of.objects.bulk_create([outputs_of(pipelineprocess_id=process.pk, dataproduct_id=product.pk)
                                                for _, product in products])
            for output in outputs:
                if output.model is ReducedDatum:
                    _save_reduced_datum(process, output, log)
            share_like_inputs(process)
            before_commit(row_changes)
    except BaseException:
        for _, product in products:
            product.data.storage.delete(product.data.name)
        raise
    finally:
        saving_outputs.reset(saving)


#: The permission that lets a user see each kind of output when products carry their own permissions.
VIEW_PERMISSIONS = {
    'output_files': 'tom_dataproducts.view_dataproduct',
    'output_data': 'tom_dataproducts.view_reduceddatum',
    'output_photometry': 'tom_dataproducts.view_photometryreduceddatum',
}


def share_like_inputs(process: PipelineProcess) -> None:
    """With ``TARGET_PERMISSIONS_ONLY = False`` data carry their own permissions: give the run's outputs (files,
    reduced data, light-curve points) to whoever may view every input: the user who started the run and the
    groups that hold ``view_dataproduct`` on all inputs. An output is never more visible than what it was made
    from, nor hidden from its owner."""
    if getattr(settings, 'TARGET_PERMISSIONS_ONLY', True):
        return
    groups = None
    for product in process.input_files.all():
        holding = {group for group, codenames in get_groups_with_perms(product, attach_perms=True).items()
                   if 'view_dataproduct' in codenames}
        groups = holding if groups is None else groups & holding
    owners = [*(groups or ()), *([process.created_by] if process.created_by_id is not None else [])]
    for relation, permission in VIEW_PERMISSIONS.items():
        outputs = getattr(process, relation).all()
        if owners and outputs.exists():
            for owner in owners:
                assign_perm(permission, owner, outputs)


def _store_file(process: PipelineProcess, output: CheckedOutput, target: Any) -> DataProduct:
    """Write the file to storage and return its (still unsaved) DataProduct."""
    product = DataProduct(
        target=target if target is not None else process.target,
        product_id=f'{process.identifier}_{output.name}'[:255],
        data_product_type=output.tag,
    )
    with output.path.open('rb') as handle:
        # FileField.save streams the file to storage chunk by chunk: never read whole into memory
        product.data.save(output.path.name, File(handle), save=False)
    return product


def _read_text(output: CheckedOutput) -> str:
    try:
        return output.path.read_text(encoding='utf-8')
    except UnicodeDecodeError as exc:
        raise AsyncError(
            f'Output {output.name} is not UTF-8 text (byte {exc.start}); '
            'return binary files as DataProduct outputs'
        ) from None


def _save_reduced_datum(process: PipelineProcess, output: CheckedOutput, log: Callable[[str], None]) -> None:
    text = _read_text(output)
    source = {
        'target_id': process.target_id, 'source_name': REDUCED_DATUM_SOURCE, 'source_location': process.identifier,
    }
    if output.tag == PHOTOMETRY_TAG:
        try:
            points, skipped = lightcurve.parse(text)
        except lightcurve.NotAPhotometryTable as exc:
            log(f'{output.name} was saved as text, not as a light curve: {exc}')
        else:
            _save_photometry(process, points, source, output, log)
            for note in skipped:
                log(f'{output.name}: skipped {note}')
            return
    datum = ReducedDatum.objects.create(
        data_type=output.tag or DEFAULT_REDUCED_DATUM_TYPE,
        value={'filename': output.name, 'text': text},
        **source,
    )
    process.output_data.add(datum)
    log(f'Saved {output.name} as reduced data ({output.tag or DEFAULT_REDUCED_DATUM_TYPE})')


def _save_photometry(process: PipelineProcess, points: list[lightcurve.PhotometryPoint], source: dict,
                     output: CheckedOutput, log: Callable[[str], None]) -> None:
    rows = [
        PhotometryReducedDatum(
            timestamp=point.timestamp,
            brightness=point.magnitude,
            brightness_error=point.error,
            limit=point.limit,
            exposure_time=point.exposure_time,
            telescope=point.telescope,
            instrument=point.instrument,
            bandpass=point.bandpass,
            value={'filename': output.name},
            **source,
        )
        for point in points
    ]
    # identical points already in the TOM (the same data reduced before) are kept once, as tom_base intends
    created = PhotometryReducedDatum.objects.bulk_create(rows, ignore_conflicts=True)
    # bulk_create gives no keys with ignore_conflicts: find this run's rows by their source (the identifier is
    # unique to the run; the target keeps rows that other code labelled alike on other targets out)
    saved = PhotometryReducedDatum.objects.filter(value__filename=output.name, **source).values_list('pk', flat=True)
    process.output_photometry.add(*saved)
    stored = len(saved)
    duplicates = len(created) - stored
    note = f' ({duplicates} identical points were already stored)' if duplicates else ''
    log(f'Saved {stored} photometry points from {output.name} to the light curve{note}')
