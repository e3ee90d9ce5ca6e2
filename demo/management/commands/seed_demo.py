"""``manage.py seed_demo``: a demo login, a target with a night of FITS frames to run pipelines on, and two
automatic-run rules that turn the frames into a light curve and the light curve into a period."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandParser
from tom_dataproducts.models import DataProduct
from tom_targets.models import Target

from demo.frames import OBJECT_NAME, make_frames
from tom_education.models import PipelineRule

DEMO_USERNAME = 'demo'
DEMO_PASSWORD = 'demo-tom-education'
DEMO_RA, DEMO_DEC = 83.8221, -5.3911
PHOTOMETRY = 'Light curve (aperture photometry)'
#: The demo's automatic runs: the seeded frames become a light curve, and the light curve a period.
DEMO_RULES = {
    'Light curve of new frames': {'pipeline': PHOTOMETRY, 'suffix': '.fits', 'inputs': PipelineRule.ALL_MATCHING,
                                  'quiet_period': 10.0},
    'Period of each new light curve': {'pipeline': 'Period search', 'trigger': PipelineRule.RUN_SUCCEEDED,
                                       'after_pipeline': PHOTOMETRY, 'suffix': '.csv'},
}


class Command(BaseCommand):
    help = 'Create the demo user and a demo target with synthetic FITS frames (does nothing if they exist).'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('--frames', type=int, default=24, help='number of frames to generate')

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            user = get_user_model().objects.create_superuser(DEMO_USERNAME, 'demo@example.org', DEMO_PASSWORD)
        target, created = Target.objects.get_or_create(
            name=OBJECT_NAME,
            defaults={'type': Target.SIDEREAL, 'ra': DEMO_RA, 'dec': DEMO_DEC, 'epoch': 2000,
                      'permissions': Target.Permissions.PUBLIC},
        )
        # the rules first: the frames saved below are the arrivals that fire them
        self.create_rules(user, target)
        if created or not DataProduct.objects.filter(target=target).exists():
            with tempfile.TemporaryDirectory() as folder:
                frames = make_frames(Path(folder), options['frames'], ra=DEMO_RA, dec=DEMO_DEC, size=128)
                for path in frames:
                    product = DataProduct(target=target, product_id=f'demo_{path.stem}', data_product_type='fits_file')
                    with path.open('rb') as handle:
                        product.data.save(path.name, File(handle), save=False)
                    product.save()
            self.stdout.write(f'Created target "{target.name}" with {len(frames)} FITS frames.')
        self.stdout.write(f'Demo login: username "{DEMO_USERNAME}", password "{DEMO_PASSWORD}"')

    def create_rules(self, user: Any, target: Target) -> None:
        """Photometry of new frames, then a period search on its light curve: the demo's chain of automatic runs."""
        for name, fields in DEMO_RULES.items():
            if PipelineRule.objects.filter(name=name, owner=user).exists():
                continue
            rule = PipelineRule(name=name, owner=user, target=target, **fields)
            rule.full_clean()  # the checks of the admin and the API: a registered pipeline, no loop
            rule.save()
            self.stdout.write(f'Created automatic-run rule "{name}".')
