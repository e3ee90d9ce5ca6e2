"""From observations of any origin to one searchable time series: one band, one time scale, usable points only.

A light curve that mixes bands is never searched as one: colours differ in mean and amplitude, so
a band change looks like variability. Upper limits are not measurements of the brightness and are
left out; so are points without an error when others have one (their weight would be unknown).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from astropy.time import Time

from tom_education.lightcurve import DEFAULT_BANDPASS
from tom_education.pipelines.periods import PeriodSearchError

#: Time scales in order of preference: barycentric times remove the light-travel delay across
#: the Earth's orbit (up to 8.3 minutes each way), which smears short periods over a season.
BJD_TDB = 'BJD_TDB'
JD_UTC = 'JD_UTC'
TIME_SCALE_PREFERENCE = (BJD_TDB, JD_UTC)


@dataclass
class Observations:
    """Points as read from one source; times are Julian dates in every time scale the source gives.

    ``error`` is NaN where a point has none; ``limit`` marks upper limits (non-detections).
    """

    source: str
    times: dict[str, np.ndarray]
    magnitude: np.ndarray
    error: np.ndarray
    band: np.ndarray
    limit: np.ndarray

    def __len__(self) -> int:
        return len(self.magnitude)


@dataclass(frozen=True)
class TimeSeries:
    """A single-band light curve ready for the search: times (JD, sorted), magnitudes and errors.

    ``error`` is None when no point had one: the search then weighs all points equally and takes
    the errors from the scatter about the fitted model.
    """

    time: np.ndarray
    magnitude: np.ndarray
    error: np.ndarray | None
    band: str
    time_scale: str

    def __len__(self) -> int:
        return len(self.time)

    @property
    def span(self) -> float:
        """Days from the first to the last point."""
        return float(self.time[-1] - self.time[0]) if len(self.time) else 0.0


def observations_from_rows(source: str, rows: Iterable[tuple[datetime, float | None, float | None, float | None,
                                                              str]]) -> Observations:
    """Observations from (timestamp, brightness, brightness_error, limit, bandpass) rows, as tom_base stores
    photometry: UTC datetimes, magnitudes, and a ``limit`` set on upper limits.
    """
    rows = list(rows)
    if not rows:
        return Observations(source, {JD_UTC: np.empty(0)}, np.empty(0), np.empty(0), np.empty(0, dtype=str),
                            np.empty(0, dtype=bool))

    def number(value: float | None) -> float:
        return np.nan if value is None else float(value)

    timestamps, brightness, error, limit, band = zip(*rows, strict=True)
    return Observations(
        source,
        {JD_UTC: np.asarray(Time(list(timestamps), scale='utc').jd, dtype=float)},
        np.array([number(value) for value in brightness]),
        np.array([number(value) for value in error]),
        np.array([str(value or '').strip() or DEFAULT_BANDPASS for value in band], dtype=str),
        np.array([value is not None for value in limit], dtype=bool),
    )


def band_counts(sources: list[Observations]) -> Counter:
    """Usable (not upper-limit) points per band, over every source."""
    counts: Counter = Counter()
    for observations in sources:
        counts.update(str(band) for band in observations.band[~observations.limit])
    return counts


def choose_band(sources: list[Observations], requested: str) -> tuple[str, str]:
    """The band to search and a sentence saying why.

    An empty request takes the band with the most points (ties: the first in alphabetical order);
    a request matches a band exactly, else ignoring case. An unknown band is refused with the list
    of the bands there are.
    """
    counts = band_counts(sources)
    if not counts:
        raise PeriodSearchError('The light curve has no measured point (only upper limits, or no rows at all).')
    described = ', '.join(f'{band} ({count} points)' for band, count in sorted(counts.items()))
    requested = (requested or '').strip()
    if requested:
        if requested in counts:
            return requested, f'Band {requested}, as asked'
        matches = [band for band in counts if band.lower() == requested.lower()]
        if len(matches) == 1:
            return matches[0], f'Band {matches[0]}, as asked ("{requested}")'
        raise PeriodSearchError(
            f'The light curve has no band "{requested}"; it has {described}. '
            'Set the bandpass option to one of these, or leave it empty for the band with most points.'
        )
    band = min(counts, key=lambda name: (-counts[name], name))
    others = len(counts) - 1
    why = f'Band {band}, the one with most points'
    if others:
        why += f' (the light curve has {described}; set the bandpass option to search another)'
    return band, why


def choose_time_scale(sources: list[Observations], band: str) -> tuple[str, str | None]:
    """The time scale to search ``band`` in, and a note when a preferred one had to be passed over.

    The preferred scale every source gives and every measured point of the band has; failing that,
    the one most of these points have (the others are then left out as points without a time).
    Refused when the sources share no time scale.
    """
    shared = [scale for scale in TIME_SCALE_PREFERENCE if all(scale in obs.times for obs in sources)]
    if not shared:
        given = '; '.join(f'{obs.source}: {", ".join(obs.times) or "none"}' for obs in sources)
        raise PeriodSearchError(
            f'The inputs share no time scale ({given}), so their times cannot be compared. '
            'Search them in separate runs, or give every file the same time column (bjd_tdb or mjd_utc).'
        )
    measured = [(obs.band == band) & ~obs.limit & np.isfinite(obs.magnitude) for obs in sources]
    missing = {scale: sum(int(np.count_nonzero(keep & ~np.isfinite(obs.times[scale])))
                          for obs, keep in zip(sources, measured, strict=True)) for scale in shared}
    scale = min(shared, key=lambda name: missing[name])  # min() keeps the preferred one among equals
    if scale == shared[0]:
        return scale, None
    return scale, (f'{missing[shared[0]]} points have no {shared[0]} time: all points are searched in {scale} '
                   'times instead')


def prepare_series(sources: list[Observations], band: str) -> tuple[TimeSeries, list[str]]:
    """The searchable series of ``band`` from every source, and one note per kind of point left out.

    Left out: upper limits; points without a finite time or magnitude; when at least one point has
    an error, points without a positive one; exact repeats of a (time, magnitude) pair (the same
    measurement stored twice). If no point has an error, all are kept with equal weights.
    """
    scale, note = choose_time_scale(sources, band)
    notes = [note] if note else []
    in_band = [observations.band == band for observations in sources]
    time = np.concatenate([obs.times[scale][keep] for obs, keep in zip(sources, in_band, strict=True)])
    magnitude = np.concatenate([obs.magnitude[keep] for obs, keep in zip(sources, in_band, strict=True)])
    error = np.concatenate([obs.error[keep] for obs, keep in zip(sources, in_band, strict=True)])
    limit = np.concatenate([obs.limit[keep] for obs, keep in zip(sources, in_band, strict=True)])

    usable = ~limit
    if limit.any():
        notes.append(f'{int(limit.sum())} upper limits (non-detections) left out')
    finite = np.isfinite(time) & np.isfinite(magnitude)
    if (usable & ~finite).any():
        notes.append(f'{int((usable & ~finite).sum())} points without a usable time or magnitude left out')
    usable &= finite
    has_error = np.isfinite(error) & (error > 0)
    weighted = bool((usable & has_error).any())
    if weighted and (usable & ~has_error).any():
        notes.append(f'{int((usable & ~has_error).sum())} points without a positive error left out '
                     '(their weight in the fit would be unknown)')
        usable &= has_error
    if not weighted and usable.any():
        notes.append('No point has an error: all points weigh the same and the errors come from the scatter '
                     'about the fitted model')

    time, magnitude, error = time[usable], magnitude[usable], error[usable]
    order = np.lexsort((magnitude, time))
    time, magnitude, error = time[order], magnitude[order], error[order]
    repeat = np.zeros(len(time), dtype=bool)
    repeat[1:] = (np.diff(time) == 0) & (np.diff(magnitude) == 0)
    if repeat.any():
        notes.append(f'{int(repeat.sum())} repeated points (same time and magnitude) counted once')
    keep = ~repeat
    series = TimeSeries(time[keep], magnitude[keep], error[keep] if weighted else None, band, scale)
    return series, notes
