"""``manage.py seed_demo``: a demo login and a target with a night of FITS frames to run pipelines on."""
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

DEMO_USERNAME = 'demo'
DEMO_PASSWORD = 'demo-tom-education'
DEMO_RA, DEMO_DEC = 83.8221, -5.3911


class Command(BaseCommand):
    help = 'Create the demo user and a demo target with synthetic FITS frames (does nothing if they exist).'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('--frames', type=int, default=24, help='number of frames to generate')

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            get_user_model().objects.create_superuser(DEMO_USERNAME, 'demo@example.org', DEMO_PASSWORD)
        target, created = Target.objects.get_or_create(
            name=OBJECT_NAME,
            defaults={'type': Target.SIDEREAL, 'ra': DEMO_RA, 'dec': DEMO_DEC, 'epoch': 2000,
                      'permissions': Target.Permissions.PUBLIC},
        )
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
