"""Reading FITS frames for the science pipelines: the first 2-D image, its date, its sky coordinates.

Frames reach a TOM from many telescopes, so the helpers accept what real files do: the image in
the primary HDU or in an extension, tile-compressed (``.fz``) or gzipped (``.fit.gz``), the date
in ``DATE-OBS`` (with ``TIME-OBS`` for old-style headers) or only in ``MJD-OBS``. Headers are read
without touching the pixels, so a pipeline can order hundreds of frames by time and then load
their pixels one at a time.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from tom_dataproducts.models import DataProduct

from tom_education.models import AsyncError, PipelineProcess

#: Suffixes of the files the science pipelines accept (``.fz`` covers ``.fits.fz``).
FITS_SUFFIXES = ['.fits', '.fit', '.fts', '.fz', '.fits.gz', '.fit.gz', '.fts.gz']

# keys of the primary header that describe its own (empty) data unit, not the observation
_STRUCTURAL_KEYS = re.compile(
    r'^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BSCALE|BZERO|BLANK|CHECKSUM|DATASUM|EXTNAME|EXTVER|'
    r'Z[A-Z0-9]*|TFIELDS|TTYPE\d+|TFORM\d+|THEAP|COMMENT|HISTORY)$'
)
_OLD_STYLE_DATE = re.compile(r'^(\d\d)/(\d\d)/(\d\d)$')
_TIME_SCALES = {'utc', 'tai', 'tt', 'tdb', 'tcg', 'tcb', 'ut1'}


@dataclass
class FrameInfo:
    """What a pipeline knows about one input frame before it loads its pixels."""

    name: str
    path: Path
    hdu_index: int
    shape: tuple[int, int]
    header: fits.Header
    time: Time
    wcs: WCS | None = field(default=None, repr=False)

    @property
    def isot(self) -> str:
        """The observation time as an ISO string in UTC, to the millisecond (for logs and tables)."""
        return self.time.utc.isot


def _image_index(hdus: fits.HDUList) -> int | None:
    """Index of the first HDU holding a 2-D image, judged from its header alone (no decompression)."""
    for index, hdu in enumerate(hdus):
        if not hdu.is_image:
            continue
        header = hdu.header
        if header.get('NAXIS') == 2 and header.get('NAXIS1', 0) > 0 and header.get('NAXIS2', 0) > 0:
            return index
    return None


def _merged_header(hdus: fits.HDUList, index: int) -> fits.Header:
    """The image's header, plus observation keys it inherits from the primary header.

    Multi-extension files often keep ``DATE-OBS``, ``FILTER`` or ``GAIN`` in the primary header
    only; the image's own values win wherever both are present.
    """
    header = hdus[index].header.copy()
    if index == 0:
        return header
    for card in hdus[0].header.cards:
        key = card.keyword
        if key and not _STRUCTURAL_KEYS.match(key) and key not in header:
            header.append(card)
    return header


def read_frame_info(path: Path, name: str) -> FrameInfo:
    """Header, shape, time and celestial WCS of a frame, without reading its pixels.

    Raises ``AsyncError`` naming the file when it is not FITS, holds no 2-D image or has no date:
    the user has to fix that file, so the message must say which one it is.
    """
    with warnings.catch_warnings():
        # non-standard cards (e.g. ESO's 'ESO-LOG 03:04:08> ...') are kept as they are; a warning
        # for each, on every frame, would bury the pipeline's own log lines
        warnings.simplefilter('ignore', AstropyUserWarning)
        try:
            with fits.open(path) as hdus:
                index = _image_index(hdus)
                if index is None:
                    raise AsyncError(f'{name} has no 2-D image in any of its HDUs.')
                header = _merged_header(hdus, index)
                for card in header.cards:
                    card.value  # noqa: B018 - parse every card now, while the warnings are silenced
        except (OSError, ValueError, TypeError) as exc:
            raise AsyncError(f'{name} could not be read as a FITS file: {exc}') from None
        shape = (int(header['NAXIS2']), int(header['NAXIS1']))
        return FrameInfo(name, Path(path), index, shape, header, observation_time(header, name),
                         celestial_wcs(header))


def header_value(handle: BinaryIO, keyword: str) -> str | None:
    """The value of ``keyword`` in the header of a FITS file's image, as text; None when it is absent
    or the file is not FITS. Reads headers only (automatic-run rules match on it at every upload).
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', AstropyUserWarning)
        try:
            with fits.open(handle, lazy_load_hdus=True) as hdus:
                index = _image_index(hdus)
                header = _merged_header(hdus, 0 if index is None else index)
                value = header.get(keyword.strip())
        except (OSError, ValueError, TypeError, KeyError):
            return None
    if value is None:
        return None
    return f'{value:g}' if isinstance(value, float) else str(value)


def read_pixels(frame: FrameInfo) -> np.ndarray:
    """The frame's image as a float64 array (decompressed and scaled), independent of the open file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', AstropyUserWarning)  # the header's oddities were seen already
            with fits.open(frame.path) as hdus:
                data = np.array(hdus[frame.hdu_index].data, dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        raise AsyncError(f'The pixels of {frame.name} could not be read: {exc}') from None
    if data.shape != frame.shape:
        raise AsyncError(f'{frame.name}: the image is {data.shape[::-1]} pixels, its header says {frame.shape[::-1]}.')
    return data


def observation_time(header: fits.Header, name: str) -> Time:
    """When the frame was taken: ``DATE-OBS`` (+ ``TIME-OBS``/``UT`` if it holds a date only), else ``MJD-OBS``.

    ``TIMESYS`` sets the time scale when it names one astropy knows; UTC otherwise, as the FITS
    standard prescribes.
    """
    scale = str(header.get('TIMESYS', 'utc')).strip().lower()
    scale = scale if scale in _TIME_SCALES else 'utc'
    date = header.get('DATE-OBS')
    mjd = header.get('MJD-OBS')
    if isinstance(date, str) and date.strip():
        date = date.strip().removesuffix('Z')
        old_style = _OLD_STYLE_DATE.match(date)
        if old_style:  # 'DD/MM/YY', used before 1999 and always in the 1900s
            day, month, year = old_style.groups()
            date = f'19{year}-{month}-{day}'
        if 'T' not in date:
            clock = next((header[key] for key in ('TIME-OBS', 'UT', 'UTSTART', 'UT-START') if key in header), None)
            if isinstance(clock, str) and clock.strip():
                date = f'{date}T{clock.strip()}'
            elif _finite(mjd):
                # a bare date is less precise than the MJD of the same header
                return Time(float(mjd), format='mjd', scale=scale)
        try:
            return Time(date, scale=scale)
        except ValueError:
            raise AsyncError(f'{name}: DATE-OBS "{header["DATE-OBS"]}" is not a date astropy can read.') from None
    if _finite(mjd):
        return Time(float(mjd), format='mjd', scale=scale)
    raise AsyncError(
        f'{name} has no observation time: its header has neither DATE-OBS nor MJD-OBS, '
        'so it cannot be placed in time order.'
    )


def celestial_wcs(header: fits.Header) -> WCS | None:
    """The celestial part of the header's WCS, or ``None`` when it has none usable.

    Real headers carry many small deviations from the standard that astropy repairs with a
    warning each; the repairs are fine for locating a star, the warnings are noise in a log.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception:  # noqa: BLE001 - any malformed WCS means "no usable WCS", never a crash
            return None
        if not wcs.has_celestial:
            return None
        celestial = wcs.celestial
    try:
        x, y = celestial.world_to_pixel_values(*celestial.wcs.crval)
    except Exception:  # noqa: BLE001
        return None
    return celestial if math.isfinite(float(x)) and math.isfinite(float(y)) else None


def header_number(header: fits.Header, *keys: str) -> float | None:
    """The first of ``keys`` whose value is a finite positive number (e.g. ``GAIN``, ``RDNOISE``, ``READNOIS``)."""
    for key in keys:
        value = header.get(key)
        if _finite(value) and float(value) > 0:
            return float(value)
    return None


def filter_name(header: fits.Header) -> str | None:
    """The frame's filter as its header names it (``FILTER``, else ``FILTNAME`` or ``FILTER1``), or ``None``.

    Frames of different filters differ in brightness and background; anything that compares
    frames (a movie, a light curve) has to keep them apart, so it needs this name.
    """
    for key in ('FILTER', 'FILTNAME', 'FILTER1'):
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if _finite(value):
            return f'{value:g}'
    return None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(float(value))


def read_frames(process: PipelineProcess, products: list[DataProduct]) -> list[FrameInfo]:
    """The headers of a run's inputs, in time order: pixels are read later, one frame at a time."""
    return sort_by_time([
        read_frame_info(process.input_path(product), PurePosixPath(product.data.name).name) for product in products
    ])


def sort_by_time(frames: list[FrameInfo]) -> list[FrameInfo]:
    """Frames in time order; ties keep the order given, so equal times never reorder at random."""
    return sorted(frames, key=lambda frame: frame.time.utc.jd)


def describe_span(frames: list[FrameInfo]) -> str:
    """'N frames from <first> to <last>' for the log."""
    if not frames:
        return 'no frames'
    if len(frames) == 1:
        return f'1 frame taken at {frames[0].isot}'
    return f'{len(frames)} frames from {frames[0].isot} to {frames[-1].isot}'
