"""Example pipelines registered in the demo TOM: small, real, and written only with the public API."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from tom_dataproducts.models import DataProduct, ReducedDatum

from tom_education.models import AsyncError, PipelineOutput, PipelineProcess


def _first_image(hdus: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU:
    for hdu in hdus:
        if hdu.is_image and hdu.data is not None and hdu.data.ndim == 2:
            return hdu
    raise AsyncError('no 2-D image found')


class FrameStatistics(PipelineProcess):
    """Background level and noise of each FITS frame, as a table."""

    short_name = 'framestats'
    allowed_suffixes = ['.fits', '.fit', '.fz', '.fits.fz']
    flags = {
        'sigma_clip': {'default': True, 'long_name': 'Ignore stars: clip pixels more than 3 sigma from the median'},
    }

    class Meta:
        proxy = True

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list[PipelineOutput]:
        rows = []
        products = list(self.input_files.all())
        with self.update_status(f'Measuring {len(products)} frame(s)'):
            for number, product in enumerate(products, start=1):
                name = Path(product.data.name).name
                with fits.open(self.input_path(product)) as hdus:
                    data = np.asarray(_first_image(hdus).data, dtype=float)
                pixels = data[np.isfinite(data)]
                if flags['sigma_clip']:
                    centre, spread = np.median(pixels), np.std(pixels)
                    pixels = pixels[np.abs(pixels - centre) < 3 * spread]
                row = {'file': name, 'median': float(np.median(pixels)), 'std': float(np.std(pixels))}
                rows.append(row)
                self.log(f'[{number}/{len(products)}] {name}: median {row["median"]:.1f}, std {row["std"]:.2f}')
        table = tmpdir / 'frame_statistics.csv'
        with table.open('w', newline='') as handle:
            writer = csv.DictWriter(handle, fieldnames=['file', 'median', 'std'])
            writer.writeheader()
            writer.writerows(rows)
        return [PipelineOutput(table, DataProduct), (table, ReducedDatum, 'frame_statistics')]


class CentreLightCurve(PipelineProcess):
    """Flux of the target in each frame (aperture sum at the target's RA/Dec), saved as a light curve."""

    short_name = 'lightcurve'
    allowed_suffixes = ['.fits', '.fit', '.fz', '.fits.fz']
    flags = {
        'subtract_background': {'default': True, 'long_name': 'Subtract the sky measured in an annulus'},
    }

    class Meta:
        proxy = True

    radius = 5.0

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list[PipelineOutput]:
        points = []
        products = list(self.input_files.all())
        with self.update_status('Measuring the target in each frame'):
            for product in products:
                name = Path(product.data.name).name
                with fits.open(self.input_path(product)) as hdus:
                    hdu = _first_image(hdus)
                    header, data = hdu.header, np.asarray(hdu.data, dtype=float)
                if 'DATE-OBS' not in header:
                    self.log(f'{name}: skipped, no DATE-OBS in its header')
                    continue
                x, y = WCS(header).celestial.world_to_pixel_values(self.target.ra, self.target.dec)
                flux = self._aperture_flux(data, float(x), float(y), flags['subtract_background'])
                points.append((Time(header['DATE-OBS'], scale='utc').isot, flux, header.get('FILTER', 'unknown')))
                self.log(f'{name}: flux {flux:.1f} at pixel ({x:.1f}, {y:.1f})')
        if not points:
            raise AsyncError('None of the frames has a DATE-OBS; no light curve could be made.')
        table = tmpdir / 'light_curve.csv'
        with table.open('w', newline='') as handle:
            writer = csv.writer(handle)
            writer.writerow(['time', 'flux', 'flux_error', 'filter'])
            for time, flux, band in sorted(points):
                writer.writerow([time, f'{flux:.3f}', f'{np.sqrt(abs(flux)):.3f}', band])
        return [PipelineOutput(table, ReducedDatum, 'photometry'), PipelineOutput(table, DataProduct)]

    def _aperture_flux(self, data: np.ndarray, x: float, y: float, subtract_background: bool) -> float:
        rows, cols = np.indices(data.shape)
        distance = np.hypot(cols - x, rows - y)
        aperture = distance <= self.radius
        if not aperture.any():
            raise AsyncError('The target is outside the frame.')
        total = float(data[aperture].sum())
        if subtract_background:
            annulus = (distance > 2 * self.radius) & (distance <= 3 * self.radius)
            total -= float(np.median(data[annulus])) * int(aperture.sum())
        return total
