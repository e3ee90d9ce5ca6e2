"""Read a light-curve table (CSV, tab or whitespace separated) into :class:`~.series.Observations`.

Column names are those the engine accepts for light curves (``tom_education.lightcurve``), plus
what a period search needs on top: every time column the file has, kept per time scale (a
``bjd_tdb`` column next to ``mjd_utc`` is preferred later), and an upper-limit column. Times are
kept as Julian dates in float64, not converted to datetimes, so no precision is lost.
"""
from __future__ import annotations

import csv
import io
import math

import numpy as np
from astropy.time import Time

from tom_education.lightcurve import (
    BANDPASS_COLUMNS,
    DEFAULT_BANDPASS,
    FLUX_COLUMNS,
    FLUX_ERROR_COLUMNS,
    MAGNITUDE_COLUMNS,
    MAGNITUDE_ERROR_COLUMNS,
)
from tom_education.pipelines.periods import PeriodSearchError
from tom_education.pipelines.periods.series import BJD_TDB, JD_UTC, Observations

#: Time columns (lower case) in order of preference within each time scale.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    BJD_TDB: ('bjd_tdb', 'bjd'),
    JD_UTC: ('mjd_utc', 'mjd', 'jd', 'time', 'date', 'timestamp', 'date-obs', 'date_obs', 'obs_date'),
}
#: Columns marking a row as an upper limit when they hold anything but an empty or false value.
LIMIT_COLUMNS = ('limit', 'upper_limit', 'is_limit')
_FALSE_WORDS = frozenset({'', '0', '0.0', 'false', 'f', 'no', 'n', 'nan', 'none', 'null'})
#: Julian dates are in the millions; smaller numbers are modified Julian dates (JD - 2400000.5).
_JD_THRESHOLD = 2_400_000.0
_MJD_OFFSET = 2_400_000.5
# 2.5 / ln(10): a relative flux error as a magnitude error
_MAG_PER_RELATIVE_FLUX = 2.5 / math.log(10)


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith('#')]
    if not lines:
        return []
    delimiter = ',' if ',' in lines[0] else ('\t' if '\t' in lines[0] else None)
    if delimiter is None:
        return [line.split() for line in lines]
    return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO('\n'.join(lines)), delimiter=delimiter)]


def _numbers(cells: list[str]) -> np.ndarray:
    values = np.full(len(cells), np.nan)
    for index, cell in enumerate(cells):
        try:
            values[index] = float(cell)
        except ValueError:
            continue
    return values


def julian_dates(cells: list[str]) -> np.ndarray:
    """Julian dates of time cells: JD or MJD numbers, or ISO dates (UTC); NaN where a cell is neither."""
    numbers = _numbers(cells)
    dates = np.where(numbers > _JD_THRESHOLD, numbers, numbers + _MJD_OFFSET)
    text = [index for index, cell in enumerate(cells) if not np.isfinite(numbers[index]) and cell]
    if text:
        parsed = np.full(len(text), np.nan)
        try:
            parsed[:] = Time([cells[index].replace(' ', 'T') for index in text], scale='utc').jd
        except ValueError:
            # one bad date spoils the vectorised parse: parse them one by one to keep the others
            for position, index in enumerate(text):
                try:
                    parsed[position] = Time(cells[index].replace(' ', 'T'), scale='utc').jd
                except ValueError:
                    continue
        dates[text] = parsed
    return dates


def read_table(text: str, source: str) -> Observations:
    """Observations from the text of a light-curve table; ``source`` names it in messages.

    Magnitudes are preferred; a table with only fluxes is converted to magnitudes
    (``-2.5 log10(flux)``, error ``1.0857 flux_err / flux``), so a period search sees the same
    shape either way. Rows without a usable time or magnitude are kept as NaN and counted later.
    """
    rows = _rows(text)
    if len(rows) < 2:
        raise PeriodSearchError(f'{source} has no header row followed by data rows; it is not a light-curve table.')
    header = [name.strip().lower() for name in rows[0]]
    data = rows[1:]

    def column(name: str) -> list[str]:
        position = header.index(name)
        return [row[position] if position < len(row) else '' for row in data]

    def first(candidates: tuple[str, ...] | list[str]) -> str | None:
        return next((name for name in candidates if name in header), None)

    times = {}
    for scale, candidates in TIME_COLUMNS.items():
        name = first(candidates)
        if name is not None:
            times[scale] = julian_dates(column(name))
    magnitude_name = first(MAGNITUDE_COLUMNS)
    flux_name = None if magnitude_name else first(FLUX_COLUMNS)
    if not times or (magnitude_name is None and flux_name is None):
        known_times = ', '.join(name for names in TIME_COLUMNS.values() for name in names)
        raise PeriodSearchError(
            f'{source} needs a time column ({known_times}) and a magnitude ({", ".join(MAGNITUDE_COLUMNS)}) '
            f'or flux ({", ".join(FLUX_COLUMNS)}) column; it has {", ".join(rows[0]) or "no columns"}.'
        )
    error_name = first(MAGNITUDE_ERROR_COLUMNS if magnitude_name else FLUX_ERROR_COLUMNS)
    error = _numbers(column(error_name)) if error_name else np.full(len(data), np.nan)
    if magnitude_name:
        magnitude = _numbers(column(magnitude_name))
    else:
        flux = _numbers(column(flux_name))
        with np.errstate(invalid='ignore', divide='ignore'):
            positive = flux > 0
            magnitude = np.where(positive, -2.5 * np.log10(np.where(positive, flux, 1.0)), np.nan)
            error = np.where(positive, _MAG_PER_RELATIVE_FLUX * error / np.where(positive, flux, 1.0), np.nan)
    band_name = first(BANDPASS_COLUMNS)
    bands = [cell or DEFAULT_BANDPASS for cell in column(band_name)] if band_name else [DEFAULT_BANDPASS] * len(data)
    limit_name = first(LIMIT_COLUMNS)
    limit = (np.array([cell.lower() not in _FALSE_WORDS for cell in column(limit_name)], dtype=bool)
             if limit_name else np.zeros(len(data), dtype=bool))
    return Observations(source, times, magnitude, error, np.array(bands, dtype=str), limit)
