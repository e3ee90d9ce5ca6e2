"""The period search, step by step: checks, grid, periodogram, false-alarm probability, peak, harmonics, error.

:func:`search_period` is what the pipeline calls; it takes a prepared single-band
:class:`~.series.TimeSeries` and returns a :class:`PeriodSearch` holding the numbers
(:class:`PeriodResult`) and the periodogram (for the plot).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tom_education.pipelines.periods import PeriodSearchError
from tom_education.pipelines.periods.grid import FrequencyGrid, choose_grid
from tom_education.pipelines.periods.harmonics import HarmonicChoice, PeriodComparison, resolve_harmonics
from tom_education.pipelines.periods.periodogram import Progress, evaluate, false_alarm_probability, peak_indices
from tom_education.pipelines.periods.refine import (
    MAX_TERMS,
    highest_near,
    reference_chi2,
    refine_frequency,
    terms_by_bic,
)
from tom_education.pipelines.periods.series import TimeSeries

#: Most trial frequencies a run evaluates: about 20 s with one term, 15-90 s with 2-5 terms
#: (astropy's multi-term method is far slower per frequency).
MAX_FREQUENCIES_ONE_TERM = 5_000_000
MAX_FREQUENCIES_MULTI_TERM = 250_000
#: Highest peaks of the scan re-evaluated exactly: the fast scan's error (about 1e-3 in power) could
#: otherwise rank two nearly equal peaks (aliases) wrongly.
CANDIDATE_PEAKS = 10
#: Peaks listed as alternatives in the result (the best fitting ones).
LISTED_PEAKS = 5
#: An alternative whose chi-square exceeds the best one's by less than this (see :class:`Peak`)
#: cannot be excluded: the log warns about it. 9 is "3 sigma" for one parameter.
AMBIGUOUS_DELTA_CHI2 = 9.0


def minimum_points(nterms: int) -> int:
    """Points a search with ``nterms`` harmonics needs: twice the model's parameters, and never fewer than 10.

    The model has ``2 nterms + 1`` coefficients and the frequency; with fewer than twice as many
    points as parameters a fit through noise looks periodic at almost any frequency.
    """
    return max(10, 2 * (2 * nterms + 2))


@dataclass(frozen=True)
class Peak:
    """Another peak of the periodogram, as a period of the final model, and how much worse that model fits there.

    ``delta_chi2`` is the increase of the final model's chi-square, divided by its reduced
    chi-square when above 1 (so underestimated errors do not make every alternative look excluded).
    """

    period: float
    power: float
    delta_chi2: float


@dataclass(frozen=True)
class PeriodResult:
    """What a period search found; every period and span in days, frequencies in cycles per day."""

    band: str
    time_scale: str
    points: int
    weighted: bool
    span: float
    min_period: float
    max_period: float
    min_period_reason: str
    max_period_reason: str
    frequencies: int
    samples_per_peak: int
    nterms: int
    peak_period: float
    peak_power: float
    false_alarm_probability: float
    period: float
    period_error: float
    frequency: float
    frequency_error: float
    fit_nterms: int
    fit_chi2_reduced: float
    error_scale: float
    harmonic_factor: float
    harmonic_reason: str
    harmonic_tests: tuple[PeriodComparison, ...]
    other_peaks: tuple[Peak, ...]

    def as_dict(self) -> dict:
        """Plain JSON-ready values."""
        values = asdict(self)
        values['harmonic_tests'] = [asdict(test) for test in self.harmonic_tests]
        values['other_peaks'] = [asdict(peak) for peak in self.other_peaks]
        return values

    @property
    def ambiguous_peaks(self) -> list[Peak]:
        return [peak for peak in self.other_peaks if peak.delta_chi2 < AMBIGUOUS_DELTA_CHI2]


@dataclass(frozen=True)
class PeriodSearch:
    """A search's result with its periodogram (power of the ``nterms`` model on the grid)."""

    result: PeriodResult
    grid: FrequencyGrid
    power: np.ndarray
    notes: tuple[str, ...]


def fit_terms(series: TimeSeries, frequency: float, nterms: int, factor: float) -> int:
    """Harmonics of the final fit, by the Bayesian information criterion (:func:`.refine.terms_by_bic`).

    At least the periodogram's terms times the period's change (twice the period, twice the terms:
    the same shape), at most :data:`.refine.MAX_TERMS` and what the points allow (half of them stay
    degrees of freedom). A fit that cannot follow the shape leaves correlated residuals, which the
    reduced chi-square only roughly accounts for in the error.
    """
    affordable = max(1, (len(series) // 2 - 2) // 2)
    largest = min(affordable, MAX_TERMS)
    return terms_by_bic(series, frequency, min(max(1, round(nterms * factor)), largest), largest)


def _exact_peaks(series: TimeSeries, grid: FrequencyGrid, power: np.ndarray, nterms: int,
                 half_width: float) -> list[tuple[float, float]]:
    """The highest peaks of the scan, and the highest within the range asked for, as exact (frequency, power),
    highest first. The scan's approximation (about 1e-3 in power) could otherwise rank two nearly
    equal peaks (aliases) wrongly.
    """
    separation = max(1, grid.samples_per_peak)
    in_range = min(grid.count, int((1.0 / grid.min_period - grid.f_min) / grid.df * (1 + 1e-12)) + 1)
    indices = set(peak_indices(power, CANDIDATE_PEAKS, separation))
    indices.update(peak_indices(power[:in_range], CANDIDATE_PEAKS, separation))
    peaks = [highest_near(series, nterms, grid.frequencies(index, index + 1)[0], half_width) for index in indices]
    return sorted(peaks, key=lambda peak: -peak[1])


def _first_in_range(series: TimeSeries, grid: FrequencyGrid, candidates: list[tuple[float, float]],
                    nterms: int) -> tuple[float, float, HarmonicChoice, list[str]]:
    """The highest candidate peak standing for a period in the range asked for, its choice, and the skipped ones."""
    notes: list[str] = []
    for frequency, power in candidates:
        choice = resolve_harmonics(series, 1.0 / frequency, nterms, grid.min_period, grid.max_period)
        if grid.in_range(choice.period):
            return frequency, power, choice, notes
        notes.append(f'The peak at {1 / frequency:.6g} d, shorter than the range asked for, was skipped: '
                     f'it is not half the period of an eclipsing binary ({choice.reason})')
    raise PeriodSearchError(f'No peak of the periodogram stands for a period from {grid.min_period:.4g} to '
                            f'{grid.max_period:.4g} d; widen the range of periods.')


def harmonically_related(frequency: float, other: float, max_ratio: int, tolerance: float) -> bool:
    """Whether ``other`` is within ``tolerance`` of ``k * frequency`` or ``frequency / k`` for ``k <= max_ratio``."""
    for k in range(1, max_ratio + 1):
        if abs(other - k * frequency) < tolerance or abs(other - frequency / k) < tolerance:
            return True
    return False


def search_period(series: TimeSeries, *, min_period: float | None = None, max_period: float | None = None,
                  nterms: int = 1, samples_per_peak: int = 10, progress: Progress | None = None) -> PeriodSearch:
    """Search ``series`` for a period; :class:`PeriodSearchError` when the data cannot constrain one.

    The scan ranks the periodogram's peaks; the highest are re-evaluated exactly, and taken in
    order of power until one stands for a period within the range asked for (after the harmonic
    check: a one-term peak below the range is kept only as half an eclipsing binary's period).
    """
    needed = minimum_points(nterms)
    if len(series) < needed:
        raise PeriodSearchError(
            f'Band {series.band} has {len(series)} usable points; a search with nterms={nterms} needs at least '
            f'{needed}. Add observations{" or use fewer terms" if nterms > 1 else ""}.'
        )
    cap = MAX_FREQUENCIES_ONE_TERM if nterms == 1 else MAX_FREQUENCIES_MULTI_TERM
    grid = choose_grid(series.time, min_period, max_period, samples_per_peak, cap, half_periods=nterms == 1)
    passes = 1 if nterms == 1 else 2
    power = evaluate(series, grid, nterms, progress, total=passes * grid.count)
    one_term = power if nterms == 1 else evaluate(series, grid, 1, progress, grid.count, passes * grid.count)

    half_width = min(2 * grid.df, 0.25 / grid.span)
    candidates = _exact_peaks(series, grid, power, nterms, half_width)
    peak_frequency, peak_power, choice, notes = _first_in_range(series, grid, candidates, nterms)
    if nterms == 1:
        fap_power = peak_power
    else:
        fap_power = max(power for _, power in _exact_peaks(series, grid, one_term, 1, half_width))
    fap = false_alarm_probability(series, grid, fap_power)
    terms = fit_terms(series, 1.0 / choice.period, nterms, choice.factor)
    fit = refine_frequency(series, 1.0 / choice.period, half_width, terms)
    cycles = series.span / fit.period
    if cycles < 2:
        notes.append(f'Warning: the light curve covers {cycles:.2g} cycles of {fit.period:.6g} d; a period is only '
                     'established by seeing the variation repeat: confirm it with a longer light curve.')

    # the other peaks, as periods of the final model: how much worse does that model fit there?
    chi2_scale = reference_chi2(series) / (fit.chi2_reduced if series.error is None else max(1.0, fit.chi2_reduced))
    others = []
    for frequency, _ in candidates:
        alternative = frequency / choice.factor
        if frequency == peak_frequency or not grid.in_range(1.0 / alternative) or harmonically_related(
                fit.frequency, alternative, max(2, 2 * nterms), 1.0 / grid.span):
            continue
        alternative, alternative_power = highest_near(series, fit.nterms, alternative, half_width)
        others.append(Peak(1.0 / alternative, alternative_power, (fit.power - alternative_power) * chi2_scale))
    others = sorted(others, key=lambda peak: peak.delta_chi2)[:LISTED_PEAKS]
    result = PeriodResult(
        band=series.band, time_scale=series.time_scale, points=len(series), weighted=series.error is not None,
        span=series.span,
        min_period=grid.min_period, max_period=grid.max_period,
        min_period_reason=grid.min_period_reason, max_period_reason=grid.max_period_reason,
        frequencies=grid.count, samples_per_peak=samples_per_peak, nterms=nterms,
        peak_period=1.0 / peak_frequency, peak_power=peak_power, false_alarm_probability=fap,
        period=fit.period, period_error=fit.period_error, frequency=fit.frequency, frequency_error=fit.error,
        fit_nterms=fit.nterms, fit_chi2_reduced=fit.chi2_reduced, error_scale=fit.error_scale,
        harmonic_factor=choice.factor, harmonic_reason=choice.reason, harmonic_tests=choice.comparisons,
        other_peaks=tuple(others),
    )
    return PeriodSearch(result, grid, power, tuple(notes))
