"""The generalised Lomb-Scargle periodogram over a grid, in chunks, its peaks and the false-alarm probability.

The periodogram is astropy's ``LombScargle`` with the measurement errors as weights and a floating
mean (Zechmeister & Kuerster 2009), ``nterms`` harmonics per model (VanderPlas & Ivezic 2015),
normalised as ``P(f) = 1 - chi2(f) / chi2_ref``: the fraction of the chi-square about the weighted
mean that the periodic model at ``f`` removes.

The grid is scanned with astropy's fast methods (``fast``, ``fastchi2``), evaluated a chunk at a
time so a long search reports progress. They approximate the power (to about 1e-3 on small
chunks); every number reported comes from the exact method at the refined peaks (:mod:`.refine`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from astropy.timeseries import LombScargle

from tom_education.pipelines.periods.grid import FrequencyGrid
from tom_education.pipelines.periods.series import TimeSeries

#: Frequencies per chunk: about a second of work each on one core (astropy's multi-term method
#: loops over frequencies in Python, about 50-400 microseconds each for 2-5 terms).
CHUNK_ONE_TERM = 250_000
CHUNK_MULTI_TERM = 5_000

Progress = Callable[[int, int], None]


def lomb_scargle(series: TimeSeries, nterms: int) -> LombScargle:
    """The periodogram object of ``series``, times counted from its first point (for numerical precision)."""
    return LombScargle(series.time - series.time[0], series.magnitude, series.error, nterms=nterms)


def evaluate(series: TimeSeries, grid: FrequencyGrid, nterms: int, progress: Progress | None = None,
             done_before: int = 0, total: int | None = None) -> np.ndarray:
    """Power at every frequency of ``grid``, computed chunk by chunk.

    ``progress(done, total)`` is called after each chunk; ``done_before`` and ``total`` let several
    passes share one progress bar.
    """
    periodogram = lomb_scargle(series, nterms)
    method = 'fast' if nterms == 1 else 'fastchi2'
    chunk = CHUNK_ONE_TERM if nterms == 1 else CHUNK_MULTI_TERM
    total = grid.count if total is None else total
    power = np.empty(grid.count)
    # equal chunks, so none is so short that the fast method's grid degenerates
    bounds = np.linspace(0, grid.count, -(-grid.count // chunk) + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        power[start:stop] = periodogram.power(grid.frequencies(start, stop), method=method,
                                              assume_regular_frequency=True)
        if progress is not None:
            progress(done_before + int(stop), total)
    return power


def peak_indices(power: np.ndarray, count: int, separation: int) -> list[int]:
    """Indices of the ``count`` highest local maxima, each at least ``separation`` grid steps from a higher one.

    ``separation`` of one peak width (``samples_per_peak`` steps) keeps the side lobes and noise
    wiggles of one peak from being listed as other peaks.
    """
    if len(power) < 3:
        return [int(np.argmax(power))]
    inner = (power[1:-1] >= power[:-2]) & (power[1:-1] >= power[2:])
    candidates = np.flatnonzero(inner) + 1
    for edge in (0, len(power) - 1):
        neighbour = 1 if edge == 0 else len(power) - 2
        if power[edge] > power[neighbour]:
            candidates = np.append(candidates, edge)
    candidates = candidates[np.argsort(-power[candidates], kind='stable')]
    chosen: list[int] = []
    for index in candidates:
        if all(abs(int(index) - other) >= separation for other in chosen):
            chosen.append(int(index))
            if len(chosen) == count:
                break
    return chosen


def false_alarm_probability(series: TimeSeries, grid: FrequencyGrid, max_power: float) -> float:
    """Probability that noise alone gives a highest one-term peak of ``max_power`` in the searched range.

    Baluev's (2008) analytic upper bound for the one-term generalised periodogram of data with
    Gaussian errors, for frequencies up to the grid's highest. astropy implements it only for one
    term, so with several terms it is computed on the one-term periodogram of the same data: the
    probability that a variation this strong is noise, whatever its shape.
    """
    periodogram = lomb_scargle(series, 1)
    fap = periodogram.false_alarm_probability(max_power, method='baluev', minimum_frequency=grid.f_min,
                                              maximum_frequency=grid.f_max)
    return float(np.clip(fap, 0.0, 1.0))


def false_alarm_levels(series: TimeSeries, grid: FrequencyGrid, probabilities: tuple[float, ...]) -> dict[float, float]:
    """The one-term power a highest peak needs for each false-alarm probability (for the periodogram's plot)."""
    periodogram = lomb_scargle(series, 1)
    levels = periodogram.false_alarm_level(list(probabilities), method='baluev', minimum_frequency=grid.f_min,
                                           maximum_frequency=grid.f_max)
    return {probability: float(level) for probability, level in zip(probabilities, np.atleast_1d(levels), strict=True)}
