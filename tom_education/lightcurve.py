"""Turn a photometry table written by a pipeline into rows tom_base plots on the Photometry tab.

tom_base's light-curve plot reads only ``PhotometryReducedDatum`` and treats ``brightness`` as a
magnitude, so flux columns are converted to instrumental magnitudes here.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from astropy.time import Time

#: Accepted column names (case-insensitive), in order of preference; see docs/pipelines.rst.
TIME_COLUMNS = {
    'mjd': 'mjd', 'jd': 'jd', 'time': None, 'date': None, 'timestamp': None, 'date-obs': None, 'date_obs': None,
    'obs_date': None,
}
MAGNITUDE_COLUMNS = ('magnitude', 'mag', 'brightness')
MAGNITUDE_ERROR_COLUMNS = ('magnitude_error', 'mag_err', 'mag_error', 'error', 'brightness_error', 'e_mag')
FLUX_COLUMNS = ('flux',)
FLUX_ERROR_COLUMNS = ('flux_error', 'flux_err', 'e_flux', 'error')
BANDPASS_COLUMNS = ('bandpass', 'filter', 'band')
#: A row without a magnitude but with a value here is an upper limit (tom_base plots ``limit`` as one).
LIMIT_COLUMNS = ('limit', 'upper_limit', 'limiting_magnitude')
EXPOSURE_COLUMNS = ('exposure_time', 'exptime')
DEFAULT_BANDPASS = 'unknown'

# 2.5 / ln(10): converts a relative flux error into a magnitude error.
_MAG_PER_RELATIVE_FLUX = 2.5 / math.log(10)


class NotAPhotometryTable(ValueError):
    """The file is not a table with the columns a light curve needs; the message says which are missing."""


@dataclass(frozen=True)
class PhotometryPoint:
    timestamp: datetime
    magnitude: float | None
    error: float | None
    bandpass: str
    limit: float | None = None
    exposure_time: float | None = None
    telescope: str = ''
    instrument: str = ''


def _first(columns: dict[str, str], candidates: tuple[str, ...] | list[str]) -> str | None:
    return next((columns[name] for name in candidates if name in columns), None)


def _parse_time(raw: str, kind: str | None) -> datetime:
    raw = raw.strip()
    if kind is None:
        try:
            number = float(raw)
        except ValueError:
            return Time(raw.replace(' ', 'T'), scale='utc').to_datetime(timezone=UTC)
        # a bare number: JD values are in the millions, MJD values well below
        kind = 'jd' if number > 2_400_000 else 'mjd'
    return Time(float(raw), format=kind, scale='utc').to_datetime(timezone=UTC)


def _optional_float(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def parse(text: str) -> tuple[list[PhotometryPoint], list[str]]:
    """Points from a CSV (comma, tab or whitespace separated) table, and one note per skipped row."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith('#')]
    if len(lines) < 2:
        raise NotAPhotometryTable('the file has no header row followed by data rows')
    delimiter = ',' if ',' in lines[0] else ('\t' if '\t' in lines[0] else None)
    if delimiter is None:
        rows = [line.split() for line in lines]
    else:
        rows = list(csv.reader(io.StringIO('\n'.join(lines)), delimiter=delimiter))
    header = [name.strip() for name in rows[0]]
    columns = {name.lower(): name for name in header}
    time_column = _first(columns, list(TIME_COLUMNS))
    magnitude_column = _first(columns, MAGNITUDE_COLUMNS)
    flux_column = None if magnitude_column else _first(columns, FLUX_COLUMNS)
    if time_column is None or (magnitude_column is None and flux_column is None):
        raise NotAPhotometryTable(
            f'it needs a time column ({", ".join(TIME_COLUMNS)}) and a magnitude ({", ".join(MAGNITUDE_COLUMNS)}) '
            f'or flux ({", ".join(FLUX_COLUMNS)}) column; found {", ".join(header) or "no columns"}'
        )
    error_column = _first(columns, MAGNITUDE_ERROR_COLUMNS if magnitude_column else FLUX_ERROR_COLUMNS)
    bandpass_column = _first(columns, BANDPASS_COLUMNS)
    limit_column = _first(columns, LIMIT_COLUMNS)
    exposure_column = _first(columns, EXPOSURE_COLUMNS)
    time_kind = TIME_COLUMNS[time_column.lower()]
    index = {name: position for position, name in enumerate(header)}

    points: list[PhotometryPoint] = []
    skipped: list[str] = []
    for number, row in enumerate(rows[1:], start=2):
        record = {name: (row[position] if position < len(row) else None) for name, position in index.items()}
        try:
            timestamp = _parse_time(record[time_column] or '', time_kind)
            error = _optional_float(record[error_column]) if error_column else None
            if magnitude_column:
                magnitude = _optional_float(record[magnitude_column])
            else:
                flux = _optional_float(record[flux_column])
                magnitude = -2.5 * math.log10(flux) if flux and flux > 0 else None
                error = _MAG_PER_RELATIVE_FLUX * error / flux if (error is not None and magnitude is not None) else None
            limit = _optional_float(record[limit_column]) if limit_column and magnitude is None else None
            exposure_time = _optional_float(record[exposure_column]) if exposure_column else None
        except (ValueError, TypeError) as exc:
            skipped.append(f'row {number}: {exc}')
            continue
        if magnitude is None and limit is None:
            skipped.append(f'row {number}: no usable magnitude or positive flux')
            continue
        text = {name: (record[columns[name]] or '').strip() if name in columns else ''
                for name in ('telescope', 'instrument')}
        bandpass = (record[bandpass_column] or '').strip() if bandpass_column else ''
        points.append(PhotometryPoint(timestamp, magnitude, error, bandpass or DEFAULT_BANDPASS, limit, exposure_time,
                                      text['telescope'], text['instrument']))
    if not points:
        raise NotAPhotometryTable('none of its rows has a usable time and magnitude: ' + '; '.join(skipped[:3]))
    return points, skipped
