"""The figure of docs/photometry.rst: a constant star's light curve, with its error bars, on 8-bit frames.

    .venv/bin/python bench/photometry_constant_star.py

Makes 20 frames like a small telescope's (``tests.science_data.small_telescope_frames``: 8-bit,
no GAIN, FWHM 6 px, the target 15 ADU above the sky), runs the photometry pipeline on them as a
worker would, copies its PNG to ``docs/images/photometry_constant_star.png`` and prints the
reduced chi2 of the light curve about its weighted mean. Works in a temporary directory.
"""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from bench_science import PHOTOMETRY, ROOT, configure_django, run_pipeline

FRAMES = 20


def main() -> None:
    var_dir = Path(tempfile.mkdtemp(prefix='tom_education-figure-'))
    try:
        configure_django(var_dir)
        from django.core.files import File
        from tom_dataproducts.models import DataProduct
        from tom_targets.models import Target

        from tests.science_data import small_telescope_frames
        from tom_education.models import PipelineProcess

        (var_dir / 'frames').mkdir()
        paths, _ = small_telescope_frames(var_dir / 'frames', FRAMES)
        target = Target.objects.create(name='Constant star, 8-bit frames', type=Target.SIDEREAL, ra=150.0,
                                       dec=20.0, permissions=Target.Permissions.PUBLIC)
        products = []
        for path in paths:
            product = DataProduct(target=target, product_id=path.name)
            with path.open('rb') as handle:
                product.data.save(path.name, File(handle), save=False)
            product.save()
            products.append(product)
        run_pipeline(PHOTOMETRY, target, products)
        process = PipelineProcess.objects.latest('created')
        outputs = {Path(product.data.name).suffix: product for product in process.output_products()}
        with outputs['.csv'].data.open('rb') as handle:
            rows = list(csv.DictReader(io.StringIO(handle.read().decode())))
        with outputs['.png'].data.open('rb') as image:
            (ROOT / 'docs' / 'images' / 'photometry_constant_star.png').write_bytes(image.read())
        mag = np.array([float(row['mag']) for row in rows])
        error = np.array([float(row['mag_err']) for row in rows])
        mean = np.average(mag, weights=error ** -2)
        print(f'{len(rows)} points, median error {np.median(error):.4f} mag, rms {mag.std():.4f} mag, '
              f'reduced chi2 about the mean {((mag - mean) ** 2 / error ** 2).sum() / (len(mag) - 1):.2f}')
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == '__main__':
    main()
