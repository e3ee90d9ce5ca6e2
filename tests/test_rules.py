"""Automatic-run rules through every channel: the target's Pipelines tab and the rule pages, the REST API,
and what a rule matches (a FITS header keyword, a target list). The same rules judge every channel."""
import io

import pytest
from astropy.io import fits
from django.urls import reverse
from tom_targets.models import TargetList

from tests.conftest import make_product
from tests.test_api import token_client
from tom_education.models import PipelineRule, RuleArrival

pytestmark = pytest.mark.django_db

NEW_RULE = {
    'name': 'nightly', 'scope': 'target', 'trigger': 'data', 'pipeline': 'Tunable',
    'option::Tunable::fps': '24', 'option::Tunable::format': 'mp4', 'flag::Tunable::verbose': 'on',
    'suffix': '.fits', 'header_keyword': 'filter', 'header_value': 'V', 'inputs': 'all', 'quiet_period': '90',
}


def fits_bytes(**header) -> bytes:
    hdu = fits.PrimaryHDU(data=[[0, 1], [2, 3]])
    hdu.header.update(header)
    out = io.BytesIO()
    hdu.writeto(out)
    return out.getvalue()


def test_a_rule_is_made_on_the_target_page_and_shown_in_its_pipelines_tab(client, user, target):
    client.force_login(user)
    tab = client.get(f'/targets/{target.pk}/').content.decode()
    new_rule_url = reverse('tom_education:rule_create', kwargs={'pk': target.pk})
    assert f'href="{new_rule_url}"' in tab and 'No rule runs a pipeline here by itself' in tab
    form = client.get(new_rule_url).content.decode()
    assert 'name="option::Tunable::fps"' in form and 'name="header_keyword"' in form
    assert '{#' not in form and '{%' not in form  # no template syntax shown as text
    reply = client.post(new_rule_url, NEW_RULE)
    (rule,) = PipelineRule.objects.all()
    assert reply.status_code == 302 and reply['Location'] == rule.get_absolute_url()
    assert (rule.owner, rule.target, rule.pipeline) == (user, target, 'Tunable')
    assert (rule.inputs, rule.quiet_period) == ('all', 90)
    # typed as the pipeline declares them, whatever the form sent as text
    assert rule.option_values['fps'] == 24 and rule.option_values['format'] == 'mp4'
    assert rule.flag_values == {'verbose': True} and (rule.header_keyword, rule.header_value) == ('FILTER', 'V')
    tab = client.get(f'/targets/{target.pk}/').content.decode()
    assert rule.get_absolute_url() in tab and 'When new files ending in .fits with FILTER = V arrive' in tab
    assert 'never fired' in tab
    assert rule.get_absolute_url() in client.get('/pipelines/').content.decode()  # with every rule of the user


def test_the_rule_form_refuses_what_services_refuse_and_keeps_what_was_typed(client, user, target):
    client.force_login(user)
    url = reverse('tom_education:rule_create', kwargs={'pk': target.pk})
    reply = client.post(url, {**NEW_RULE, 'option::Tunable::fps': '500'})
    page = reply.content.decode()
    assert reply.status_code == 400 and not PipelineRule.objects.exists()
    assert 'The rule was not saved' in page
    assert 'Option &quot;fps&quot; must be a whole number from 1 to 60, not 500.' in page
    assert 'value="nightly"' in page and 'value="500"' in page  # nothing typed is lost
    reply = client.post(url, {**NEW_RULE, 'quiet_period': 'soon'})
    assert reply.status_code == 400 and 'The quiet period is a number of seconds' in reply.content.decode()
    assert 'name="quiet_period" id="tom-education-rule-quiet"' in reply.content.decode()
    assert 'value="soon"' in reply.content.decode()
    PipelineRule.objects.create(name='a', owner=user, pipeline='Countdown', trigger='run', after_pipeline='Tunable')
    reply = client.post(url, {**NEW_RULE, 'trigger': 'run', 'after_pipeline': 'Countdown'})
    assert reply.status_code == 400 and 'This chain would run forever: Countdown → Tunable → Countdown' in \
        reply.content.decode()


def test_a_rule_is_paused_changed_and_deleted_from_its_page_by_its_owner_only(client, user, other_user, target):
    rule = PipelineRule.objects.create(name='my nightly frames', owner=user, target=target, pipeline='Tunable')
    client.force_login(other_user)
    for url in (rule.get_absolute_url(), reverse('tom_education:rule_pause', kwargs={'pk': rule.pk}),
                reverse('tom_education:rule_delete', kwargs={'pk': rule.pk})):
        assert client.post(url, {'paused': '1', **NEW_RULE}).status_code == 404  # as if it did not exist
    tab = client.get(f'/targets/{target.pk}/').content.decode()
    assert 'my nightly frames' not in tab and rule.get_absolute_url() not in tab
    assert rule.get_absolute_url() not in client.get('/pipelines/').content.decode()
    client.force_login(user)
    client.post(reverse('tom_education:rule_pause', kwargs={'pk': rule.pk}),
                {'paused': '1', 'next': f'/targets/{target.pk}/'})
    rule.refresh_from_db()
    assert rule.paused
    page = client.get(rule.get_absolute_url()).content.decode()
    assert 'Paused' in page and 'Resume' in page and 'Runs it started' in page
    reply = client.post(rule.get_absolute_url(), {**NEW_RULE, 'name': 'renamed', 'scope': 'all', 'paused': 'on'})
    rule.refresh_from_db()
    assert reply.status_code == 302 and (rule.name, rule.target) == ('renamed', None)
    reply = client.post(reverse('tom_education:rule_delete', kwargs={'pk': rule.pk}))
    assert reply.status_code == 302 and not PipelineRule.objects.exists()


def test_the_api_creates_lists_changes_and_deletes_rules(user, other_user, target, private_target):
    api = token_client(user)
    body = {'name': 'periods', 'pipeline': 'Tunable', 'trigger': 'run', 'after_pipeline': 'Countdown',
            'target': target.pk, 'options': {'fps': 30}, 'flags': {'verbose': True}, 'suffix': '.json'}
    created = api.post('/api/pipelinerules/', body, format='json')
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule['owner'] == user.username and rule['options'] == {'fps': 30} and rule['last_run'] is None
    assert rule['quiet_period'] == 120 and rule['inputs'] == 'new' and not rule['paused']
    assert [found['id'] for found in api.get(f'/api/pipelinerules/?target={target.pk}').json()['results']] == \
        [rule['id']]
    changed = api.patch(f'/api/pipelinerules/{rule["id"]}/', {'paused': True, 'options': {'fps': 12}}, format='json')
    assert changed.status_code == 200 and changed.json()['paused'] and changed.json()['options'] == {'fps': 12}
    # what the service refuses, by field, in the API's names
    refused = api.patch(f'/api/pipelinerules/{rule["id"]}/', {'options': {'fps': 61}}, format='json')
    assert refused.status_code == 400 and 'fps' in refused.json()['options']
    refused = api.post('/api/pipelinerules/', {**body, 'target': private_target.pk}, format='json')
    assert refused.status_code == 201  # user's own private target
    others = token_client(other_user)
    refused = others.post('/api/pipelinerules/', {**body, 'target': private_target.pk}, format='json')
    assert refused.status_code == 400
    assert refused.json() == {'target': [f'Target {private_target.pk} does not exist or you may not view it.']}
    refused = api.post('/api/pipelinerules/', {**body, 'after_pipeline': 'Tunable'}, format='json')
    assert refused.status_code == 400 and 'would run forever' in refused.json()['after_pipeline'][0]
    # another user's rule answers exactly like a missing one
    missing = others.get('/api/pipelinerules/99999/')
    assert others.get(f'/api/pipelinerules/{rule["id"]}/').json() == missing.json()
    assert others.delete(f'/api/pipelinerules/{rule["id"]}/').status_code == 404
    assert others.get('/api/pipelinerules/').json()['results'] == []
    assert api.delete(f'/api/pipelinerules/{rule["id"]}/').status_code == 204
    assert not PipelineRule.objects.filter(pk=rule['id']).exists()


def test_a_rule_can_match_a_fits_header_keyword(user, target):
    PipelineRule.objects.create(name='V only', owner=user, target=target, pipeline='Tunable',
                                header_keyword='FILTER', header_value='v ', quiet_period=3600)
    PipelineRule.objects.create(name='any filter', owner=user, target=target, pipeline='Tunable',
                                header_keyword='FILTER', quiet_period=3600)
    in_v = make_product(target, 'v.fits', fits_bytes(FILTER='V'))
    in_r = make_product(target, 'r.fits', fits_bytes(FILTER='R'))
    make_product(target, 'none.fits', fits_bytes(OBJECT='x'))
    make_product(target, 'broken.fits', b'not a FITS file')
    arrivals = sorted(RuleArrival.objects.values_list('rule__name', 'product'))
    assert arrivals == sorted([('V only', in_v.pk), ('any filter', in_v.pk), ('any filter', in_r.pk)])


def test_a_rule_on_a_target_list_covers_its_targets_only(user, target, private_target):
    group = TargetList.objects.create(name='variables')
    group.targets.add(private_target)
    PipelineRule.objects.create(name='group', owner=user, target_list=group, pipeline='Tunable', quiet_period=3600)
    inside = make_product(private_target, 'in.fits')
    make_product(target, 'out.fits')
    assert list(RuleArrival.objects.values_list('product', flat=True)) == [inside.pk]
