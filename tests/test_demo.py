"""The demo TOM's data and pipelines: the light curve of the seeded variable star follows the injected one."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from django.core.management import call_command
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum
from tom_targets.models import Target

from demo.frames import OBJECT_NAME, variable_flux
from tests.conftest import wait_final
from tom_education import services
from tom_education.models import ASYNC_STATUS_CREATED

pytestmark = pytest.mark.django_db(transaction=True)
FRAMES = 8


@pytest.fixture
def demo_target(db):
    call_command('seed_demo', '--frames', str(FRAMES))
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
