"""The acceptance test of automatic runs: a night's frames of a variable star, uploaded one by one through
every door a TOM has, become one light curve and then one period, with nobody pressing a button."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from tom_dataproducts.models import DataProduct
from tom_targets.models import Target

from tests.science_data import small_telescope_frames
from tests.test_api import token_client
from tests.test_automation import rule, wait_for_runs
from tom_education.models import ASYNC_STATUS_CREATED, PipelineProcess, PipelineRule, RuleArrival

pytestmark = pytest.mark.django_db(transaction=True)

PHOTOMETRY = 'Light curve (aperture photometry)'
PERIOD_DAYS = 2.7  # half or whole not near a whole number of days: observed nightly, every phase is seen
AMPLITUDE_MAG = 0.3
#: Longer than the gap between two uploads on a loaded machine, so all 30 make one run.
QUIET_SECONDS = 20


@pytest.fixture
def variable_star(user) -> Target:
    """A private target of ``user`` at the position of ``small_telescope_frames``' target."""
    return Target.objects.create(name='Automatic variable', type=Target.SIDEREAL, ra=150.0, dec=20.0,
                                 permissions=Target.Permissions.PRIVATE)


def campaign(folder: Path) -> list[Path]:
    """30 frames: 3 a night (within +-3 h of midnight) on 10 clear nights of 24, the star sinusoidal."""
    rng = np.random.default_rng(3)
    nights = np.sort(rng.choice(np.arange(24), 10, replace=False))
    days = np.sort(np.concatenate([night + rng.uniform(-0.125, 0.125, 3) for night in nights]))
    days -= days[0]
    factors = np.ones((len(days), 7))
    factors[:, 0] = 10 ** (-0.4 * AMPLITUDE_MAG * np.sin(2 * np.pi * days / PERIOD_DAYS))
    paths, _ = small_telescope_frames(folder, len(days), star_factors=factors, days=days)
    return paths


def grant_owner(user, target: Target) -> None:
    """What tom_base gives the user who creates a target (its API takes uploads to targets one may change)."""
    from guardian.shortcuts import assign_perm

    for permission in ('view_target', 'change_target', 'delete_target'):
        assign_perm(f'tom_targets.{permission}', user, target)


def test_thirty_frames_through_the_page_the_api_and_scripts_make_one_light_curve_then_one_period(
        worker, client, user, variable_star, tmp_path):
    grant_owner(user, variable_star)
    frames = rule(user, name='light curve', target=variable_star, pipeline=PHOTOMETRY, suffix='.fits',
                  quiet_period=QUIET_SECONDS)
    rule(user, name='period', target=variable_star, pipeline='Period search', trigger='run',
         after_pipeline=PHOTOMETRY, suffix='.csv')
    paths = campaign(tmp_path)
    client.force_login(user)
    api = token_client(user)
    for path in paths[:10]:  # tom_base's upload page
        with path.open('rb') as handle:
            reply = client.post(reverse('dataproducts:upload'), {
                'files': handle, 'target': variable_star.pk, 'data_product_type': 'fits_file', 'referrer': '/'})
        assert reply.status_code == 302
    for path in paths[10:20]:  # tom_base's REST API
        with path.open('rb') as handle:
            reply = api.post('/api/dataproducts/', {'file': handle, 'target': variable_star.pk,
                                                    'data_product_type': 'fits_file'}, format='multipart')
        assert reply.status_code == 201, reply.content
    for path in paths[20:]:  # a script, or a facility module's download
        DataProduct.objects.create(target=variable_star, product_id=path.stem, data_product_type='fits_file',
                                   data=ContentFile(path.read_bytes(), name=path.name))
    assert DataProduct.objects.filter(target=variable_star).count() == 30

    (photometry,) = wait_for_runs(PipelineProcess.objects.filter(triggered_by_rule=frames), 1, timeout=300)
    assert photometry.state == ASYNC_STATUS_CREATED, photometry.failure_message
    assert photometry.input_files.count() == 30 and photometry.created_by == user
    (periods,) = wait_for_runs(PipelineProcess.objects.filter(triggered_by_process=photometry), 1, timeout=300)
    assert periods.state == ASYNC_STATUS_CREATED, periods.failure_message
    (datum,) = periods.output_reduced_data()['ReducedDatum']
    result = json.loads(datum.value['text'])
    assert abs(result['period'] - PERIOD_DAYS) < 3 * result['period_error'], result
    assert abs(result['period'] / PERIOD_DAYS - 1) < 0.01

    # the same frame uploaded again is no new data: nothing runs again
    PipelineRule.objects.filter(pk=frames.pk).update(quiet_period=1)
    with paths[0].open('rb') as handle:
        assert api.post('/api/dataproducts/', {'file': handle, 'target': variable_star.pk,
                                               'data_product_type': 'fits_file'}, format='multipart').status_code == 201
    wait_until_handled()
    assert PipelineProcess.objects.filter(triggered_by_rule=frames).count() == 1
    assert PipelineProcess.objects.count() == 2


def wait_until_handled(timeout: float = 60) -> None:
    """Until a worker's periodic check has taken every arrival (and fired or dropped it)."""
    deadline = time.monotonic() + timeout
    while RuleArrival.objects.exists():
        assert time.monotonic() < deadline, 'the workers never handled the arrivals'
        time.sleep(0.2)


def test_uploads_by_a_user_who_cannot_view_the_target_trigger_nothing(client, user, other_user, variable_star,
                                                                      tmp_path):
    grant_owner(user, variable_star)
    watching = rule(user, name='light curve', target=variable_star, pipeline=PHOTOMETRY, quiet_period=3600)
    (path,) = small_telescope_frames(tmp_path, 1, size=64)[0]
    client.force_login(other_user)
    with path.open('rb') as handle:  # tom_base's page takes the file whatever the target...
        client.post(reverse('dataproducts:upload'), {
            'files': handle, 'target': variable_star.pk, 'data_product_type': 'fits_file', 'referrer': '/'})
    assert DataProduct.objects.filter(target=variable_star).count() == 1
    with path.open('rb') as handle:  # ...its API refuses a target the user may not view
        reply = token_client(other_user).post('/api/dataproducts/', {
            'file': handle, 'target': variable_star.pk, 'data_product_type': 'fits_file'}, format='multipart')
    assert reply.status_code == 400
    assert not RuleArrival.objects.filter(rule=watching).exists()
    # the owner's own upload through the same page is taken
    client.force_login(user)
    with path.open('rb') as handle:
        client.post(reverse('dataproducts:upload'), {
            'files': handle, 'target': variable_star.pk, 'data_product_type': 'fits_file', 'referrer': '/'})
    assert RuleArrival.objects.filter(rule=watching).count() == 1


def test_matching_a_header_never_breaks_the_upload_it_looks_at(client, user, variable_star):
    """tom_base's upload page hands the saved product to its data processor after the post_save in which
    rules read the file's header: the upload is still processed and kept."""
    from tom_dataproducts.models import PhotometryReducedDatum

    grant_owner(user, variable_star)
    # the period search takes light-curve tables: the rule reads this one to look for a FILTER keyword
    rule(user, name='V band tables', target=variable_star, pipeline='Period search', header_keyword='FILTER',
         header_value='V', quiet_period=3600)
    table = ContentFile(b'time,filter,magnitude,error\n2460000.5,V,14.1,0.02\n2460001.5,V,14.3,0.02\n',
                        name='curve.csv')
    client.force_login(user)
    reply = client.post(reverse('dataproducts:upload'), {
        'files': table, 'target': variable_star.pk, 'data_product_type': 'photometry', 'referrer': '/'})
    assert reply.status_code == 302
    assert DataProduct.objects.filter(target=variable_star).count() == 1  # kept, not deleted as unreadable
    assert PhotometryReducedDatum.objects.filter(target=variable_star).count() == 2
    assert not RuleArrival.objects.exists()  # a CSV has no FITS header: the rule does not take it
