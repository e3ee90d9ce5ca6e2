"""Every example of docs/pipelines.rst, run unchanged through a real worker."""
import re

import pytest
from tom_dataproducts.models import DataProduct, ReducedDatum

from tests.conftest import make_product, wait_final, wait_for
from tom_education import services
from tom_education.models import (
    ASYNC_STATUS_CREATED,
    ASYNC_STATUS_FAILED,
    AsyncError,
    PipelineOutput,
    PipelineProcess,
)
from tom_education.outputs import DEFAULT_REDUCED_DATUM_TYPE

pytestmark = pytest.mark.django_db(transaction=True)


def test_public_names_import_from_models():
    assert issubclass(AsyncError, Exception)
    assert PipelineOutput._fields == ('path', 'output_type', 'tag')
    assert PipelineOutput('a', DataProduct).tag is None
    assert {'short_name', 'allowed_suffixes', 'flags', 'do_pipeline', 'update_status', 'log'} <= set(
        dir(PipelineProcess)
    )


def test_example_pipeline_saves_both_outputs(worker, target, user):
    inputs = [make_product(target, 'a.fits'), make_product(target, 'b.fz')]
    process = services.start_process(user=user, pipeline='Example', target=target, input_files=inputs)
    wait_final(process)

    assert process.status == ASYNC_STATUS_CREATED, process.failure_message
    assert process.created_by == user
    assert process.identifier.startswith('example_')
    log = list(process.log_lines.values_list('message', flat=True))
    # product.data.path works on the local file storage, as the example uses it
    assert sum('PosixPath' not in line and line.startswith('input /') for line in log) == 2
    datum = ReducedDatum.objects.get(source_location=process.identifier)
    assert datum.value['text'] == 'data here'
    assert datum.data_type == DEFAULT_REDUCED_DATUM_TYPE
    assert datum.target == target
    (png,) = process.output_products()
    assert png.product_id.startswith(process.identifier)
    assert png.data.read() == b'PNG data here'
    # a new DataProductGroup holds the DataProduct outputs
    assert list(process.group.dataproduct_set.all()) == [png]


def test_example_pipeline_rejects_wrong_suffix_before_queueing(target, user):
    product = make_product(target, 'notes.txt', 'hello')
    name = re.escape(services.product_file_name(product))
    with pytest.raises(services.ProcessInputError, match=rf'{name} cannot be used: .* ending in \.fits, \.fz'):
        services.start_process(user=user, pipeline='Example', target=target, input_files=[product])
    assert not PipelineProcess.objects.exists()


def test_flag_demo_receives_defaults_and_chosen_values(worker, target, user):
    product = make_product(target, 'a.fits')
    defaults = services.start_process(user=user, pipeline='Flag demo', target=target, input_files=[product])
    chosen = services.start_process(
        user=user, pipeline='Flag demo', target=target, input_files=[product], flags={'another_flag': True}
    )
    wait_final(defaults)
    wait_final(chosen)
    assert defaults.flag_values == {'some_flag': True, 'another_flag': False}
    assert defaults.log_lines.filter(message='some_flag=True another_flag=False rest={}').exists()
    assert chosen.log_lines.filter(message='some_flag=True another_flag=True rest={}').exists()


def test_async_error_fails_with_its_message(worker, target, user):
    process = services.start_process(user=user, pipeline='Fails', target=target,
                                     input_files=[make_product(target, 'a.fits')])
    wait_final(process)
    assert process.status == ASYNC_STATUS_FAILED
    assert process.failure_message == 'Something went terribly wrong'
    assert process.traceback == ''


def test_update_status_is_visible_while_running(worker, target, user):
    process = services.start_process(user=user, pipeline='Status example', target=target,
                                     input_files=[make_product(target, 'a.fits')])
    wait_for(process, lambda current: current.status == 'Doing the first thing')
    wait_for(process, lambda current: current.status == 'Done that - now doing the second thing')
    wait_final(process)
    assert process.status == ASYNC_STATUS_CREATED


def test_log_example_lines_in_order(worker, target, user):
    process = services.start_process(user=user, pipeline='Log example', target=target,
                                     input_files=[make_product(target, 'a.fits')])
    wait_final(process)
    messages = list(process.log_lines.order_by('seq').values_list('message', flat=True))
    assert messages.index('first sub-step') + 1 == messages.index('second sub-step')
    assert process.status == ASYNC_STATUS_CREATED
