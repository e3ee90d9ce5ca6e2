"""The frequency grid of a period search, chosen from the data's time span and sampling.

VanderPlas (2018, ApJS 236, 16, section 7.1) gives the rules used here:

- **Spacing.** A peak of the periodogram is about ``1 / T`` wide in frequency, ``T`` the time
  span; the grid samples each peak ``samples_per_peak`` times: ``df = 1 / (samples_per_peak T)``.
  Coarser grids step over narrow peaks; the best peak is refined off the grid afterwards anyway.
- **Longest period.** Half the span by default: a period is only established by seeing the
  variation repeat, which needs two cycles in the data. Longer periods can be asked for (the log
  then warns that less than two cycles were seen).
- **Shortest period.** For uneven sampling there is no true Nyquist limit, so by default twice the
  median interval between consecutive points (the pseudo-Nyquist period of the typical cadence).
  Shorter periods can be asked for: irregular sampling does constrain them, at the price of
  stronger aliases.
- **Half periods.** An eclipsing binary's strongest one-term peak is at half its period, so a
  one-term scan extends down to half the shortest period asked for; a peak there is only kept
  if twice its period is in the range and the fold test of :mod:`.harmonics` confirms it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tom_education.pipelines.periods import PeriodSearchError

#: Default longest period, as a fraction of the span (two cycles must fit).
MAX_PERIOD_SPAN_FRACTION = 0.5
#: Default shortest period, as a multiple of the median interval between points.
MIN_PERIOD_SAMPLING_FACTOR = 2.0


@dataclass(frozen=True)
class FrequencyGrid:
    """Evenly spaced frequencies (cycles per day) ``f_min + df * k`` for ``k`` in ``0 .. count - 1``.

    ``min_period`` and ``max_period`` are the range of periods asked for; the grid may reach
    shorter periods (down to ``scan_min_period``, see "Half periods" above).
    """

    f_min: float
    df: float
    count: int
    span: float
    samples_per_peak: int
    min_period: float
    max_period: float
    min_period_reason: str
    max_period_reason: str

    @property
    def f_max(self) -> float:
        return self.f_min + self.df * (self.count - 1)

    @property
    def scan_min_period(self) -> float:
        return 1.0 / self.f_max

    def in_range(self, period: float) -> bool:
        """Whether ``period`` is within the range asked for (to rounding)."""
        return self.min_period * (1 - 1e-9) <= period <= self.max_period * (1 + 1e-9)

    def frequencies(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The grid's frequencies from index ``start`` up to (not including) ``stop``."""
        stop = self.count if stop is None else min(stop, self.count)
        return self.f_min + self.df * np.arange(start, stop)


def median_interval(time: np.ndarray) -> float:
    """Median of the positive intervals between consecutive times (simultaneous points add nothing)."""
    steps = np.diff(np.sort(time))
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else 0.0


def choose_grid(time: np.ndarray, min_period: float | None, max_period: float | None, samples_per_peak: int,
                max_frequencies: int, half_periods: bool = False) -> FrequencyGrid:
    """The grid for ``time`` (days); ``None`` periods are chosen from the data (see the module's docstring).

    ``half_periods`` extends the grid down to half the shortest period (for one-term searches).

    Refused, with both numbers and what to do: a span shorter than the shortest period asked for;
    a range whose shortest period is not below its longest; a grid of more than
    ``max_frequencies`` frequencies (it would take too long).
    """
    span = float(np.max(time) - np.min(time)) if len(time) else 0.0
    if not span > 0:
        raise PeriodSearchError('All the points have the same time: a period needs observations spread in time.')
    if min_period is not None and span < min_period:
        raise PeriodSearchError(
            f'The light curve spans {span:.6g} days, less than the shortest period asked for ({min_period:g} days): '
            'it cannot show one cycle. Ask for shorter periods, or add observations over a longer time.'
        )
    if min_period is None:
        interval = median_interval(time)
        min_period = MIN_PERIOD_SAMPLING_FACTOR * interval
        min_reason = f'twice the median interval between points ({interval:.4g} d)'
    else:
        min_reason = 'as asked'
    if max_period is None:
        max_period = MAX_PERIOD_SPAN_FRACTION * span
        max_reason = f'half the span of {span:.4g} d, so that two cycles are seen'
    else:
        max_reason = 'as asked'
    if not min_period < max_period:
        raise PeriodSearchError(
            f'The shortest period ({min_period:.4g} d, {min_reason}) is not shorter than the longest '
            f'({max_period:.4g} d, {max_reason}): there is no period between them to search. Ask for a shorter '
            'min_period or a longer max_period, or observe more often or for longer.'
        )
    df = 1.0 / (samples_per_peak * span)
    f_min, f_max = 1.0 / max_period, (2.0 if half_periods else 1.0) / min_period
    count = max(3, math.ceil((f_max - f_min) / df) + 1)
    if count > max_frequencies:
        raise PeriodSearchError(
            f'Periods from {1 / f_max:.4g} to {max_period:.4g} d over a span of {span:.4g} d need {count:,} trial '
            f'frequencies, more than the {max_frequencies:,} a run may evaluate. Raise the shortest period, '
            'lower samples_per_peak, or (with several terms) use nterms = 1.'
        )
    return FrequencyGrid(f_min, (f_max - f_min) / (count - 1), count, span, samples_per_peak, min_period, max_period,
                         min_reason, max_reason)
