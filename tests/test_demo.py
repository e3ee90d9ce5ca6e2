"""The demo TOM's data and pipelines: the light curve of the seeded variable star follows the injected one."""
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from django.core.management import call_command
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum
from tom_targets.models import Target

from demo.frames import OBJECT_NAME, variable_flux, variable_period_days
from tests.conftest import wait_final
from tests.test_automation import wait_for_runs
from tom_education import services
from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess, PipelineRule

pytestmark = pytest.mark.django_db(transaction=True)
FRAMES = 8


@pytest.fixture
def demo_target(db):
    """The seeded target, its rules paused: these tests start their own runs and count their outputs."""
    call_command('seed_demo', '--frames', str(FRAMES))
    PipelineRule.objects.update(paused=True)
    return Target.objects.get(name=OBJECT_NAME)


def test_seeded_frames_have_dates_wcs_and_the_target_at_its_position(demo_target):
    products = DataProduct.objects.filter(target=demo_target).order_by('data')
    assert products.count() == FRAMES
    dates = []
    for product in products:
        with fits.open(product.data.path) as hdus:
            header = hdus[0].header
            x, y = WCS(header).world_to_pixel_values(demo_target.ra, demo_target.dec)
            assert abs(x - (header['NAXIS1'] - 1) / 2) < 0.01 and abs(y - (header['NAXIS2'] - 1) / 2) < 0.01
            dates.append(header['DATE-OBS'])
    assert dates == sorted(dates) and len(set(dates)) == FRAMES


def test_light_curve_pipeline_recovers_the_variable_star(worker, demo_target):
    frames = DataProduct.objects.filter(target=demo_target, data_product_type='fits_file')
    process = wait_final(services.start_process(
        user=None, pipeline='Light curve (aperture sum)', target=demo_target, input_files=frames
    ))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    points = list(PhotometryReducedDatum.objects.filter(target=demo_target).order_by('timestamp'))
    assert len(points) == FRAMES
    measured = np.array([10 ** (-0.4 * point.brightness) for point in points])
    injected = np.array([variable_flux(index, FRAMES) for index in range(FRAMES)])
    # a 5-pixel aperture holds ~99.8% of a FWHM-3 star; noise and background residuals stay within 3%
    assert np.allclose(measured, injected, rtol=0.03)


def test_frame_statistics_pipeline_reports_each_frame(worker, demo_target):
    frames = DataProduct.objects.filter(target=demo_target, data_product_type='fits_file')
    process = wait_final(services.start_process(
        user=None, pipeline='Frame statistics', target=demo_target, input_files=frames, flags={'sigma_clip': True}
    ))
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    (table,) = process.output_products()
    rows = table.data.read().decode().splitlines()
    assert rows[0] == 'file,median,std' and len(rows) == FRAMES + 1
    assert all(95 < float(row.split(',')[1]) < 105 for row in rows[1:])


def test_the_demo_rules_turn_the_seeded_frames_into_a_light_curve_and_a_period(worker):
    """What ``scripts/demo`` shows: with a worker running, the seeded frames make a period by themselves."""
    call_command('seed_demo')  # its default number of frames, as scripts/demo runs it
    frames = DataProduct.objects.filter(data_product_type='fits_file').count()
    (photometry,) = wait_for_runs(PipelineProcess.objects.filter(triggered_by_rule__name='Light curve of new frames'),
                                  1, timeout=300)
    assert photometry.state == ASYNC_STATUS_CREATED, photometry.failure_message
    assert photometry.input_files.count() == frames
    (periods,) = wait_for_runs(PipelineProcess.objects.filter(triggered_by_process=photometry), 1, timeout=300)
    assert periods.state == ASYNC_STATUS_CREATED, periods.failure_message
    result = json.loads(periods.output_reduced_data()['ReducedDatum'].get().value['text'])
    injected = variable_period_days(frames)
    assert abs(result['period'] - injected) < 3 * result['period_error'], (result['period'], injected)
    call_command('seed_demo')  # seeding again adds no rule, no frame and no run
    assert PipelineRule.objects.count() == 2 and DataProduct.objects.filter(data_product_type='fits_file').count() \
        == frames
