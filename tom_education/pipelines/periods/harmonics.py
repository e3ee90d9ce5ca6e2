"""Which multiple of the periodogram's peak is the period: P, 2P (eclipsing binaries) or P/k (multi-term models).

Two cases are known to mislead a periodogram:

- An eclipsing binary has two eclipses per orbit. A one-term (sinusoid) periodogram puts most power
  at half the orbital period, where both eclipses fold onto each other; only the difference between
  the two eclipses (depths, widths) reveals the true period, twice the peak's.
- A model of ``nterms`` harmonics at ``f / k`` (``k <= nterms``) contains the sinusoid at ``f``, so
  a multi-term periodogram is as high at the sub-multiples of the true frequency as at it: its
  highest peak may be at ``k`` times the true period.

Both are settled by comparing a short period ``P_s`` with a multiple ``P_l = m P_s``. The light
curve is fitted with ``K`` harmonics of ``1 / P_s`` (``K`` chosen by the Bayesian information
criterion, so the model follows the shape, eclipses included) and with ``m K`` harmonics of
``1 / P_l``. The harmonics of ``1 / P_s`` are every ``m``-th harmonic of ``1 / P_l``, so the models
are nested, and an F-test on their chi-squares (N points, ``2 K (m - 1)`` extra parameters)::

    F = ((chi2_s - chi2_l) / (2 K (m - 1))) / (chi2_l / (N - 2 m K - 1))

says whether the extra harmonics, which describe how one cycle of ``P_s`` differs from the next,
fit more than noise. If the light curve truly repeats with ``P_s`` they do not, even where ``K``
harmonics miss details of the shape: what they miss repeats with ``P_s`` too. A false-alarm
probability below :data:`SIGNIFICANCE` means the cycles differ: the period is the longer one. The
errors' overall scale cancels in ``F``, so underestimated errors do not bias the choice. The
simpler, shorter period is kept unless the longer one is needed.
"""
from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import f as f_distribution

from tom_education.pipelines.periods.refine import MAX_TERMS, highest_near, model_chi2, terms_by_bic
from tom_education.pipelines.periods.series import TimeSeries

#: A longer period is preferred when the F-test's false-alarm probability is below this.
SIGNIFICANCE = 1e-3
#: Both models' frequencies are refined within this many peak widths (1 / span) of the one given.
REFINE_HALF_WIDTH = 0.25


@dataclass(frozen=True)
class PeriodComparison:
    """The F-test between ``terms`` harmonics of ``short_period`` and ``multiple * terms`` of ``long_period``.

    Each period is its model's best fit near the one asked for, so ``long_period`` is close to, not
    exactly, ``multiple * short_period``.
    """

    short_period: float
    long_period: float
    multiple: int
    terms: int
    chi2_short: float
    chi2_long: float
    points: int
    f_statistic: float
    false_alarm: float

    @property
    def extra_parameters(self) -> int:
        return 2 * self.terms * (self.multiple - 1)

    @property
    def dof_long(self) -> int:
        return self.points - 2 * self.multiple * self.terms - 1

    @property
    def long_is_better(self) -> bool:
        return self.false_alarm < SIGNIFICANCE

    def describe(self) -> str:
        """One sentence for the log: both fits and the test's verdict."""
        reduced_short = self.chi2_short / (self.points - 2 * self.terms - 1)
        reduced_long = self.chi2_long / self.dof_long
        verdict = 'differ' if self.long_is_better else 'agree'
        return (f'its {self.multiple} cycles of {self.short_period:.6g} d {verdict} '
                f'(chi2/dof {reduced_long:.3g} with {self.multiple * self.terms} harmonics of {self.long_period:.6g} d '
                f'vs {reduced_short:.3g} with {self.terms} of {self.short_period:.6g} d; F = {self.f_statistic:.3g}, '
                f'false-alarm probability {self.false_alarm:.2g})')


@dataclass(frozen=True)
class HarmonicChoice:
    """The period chosen from the periodogram's peak, as ``peak_period * factor``, and why."""

    period: float
    factor: float
    reason: str
    comparisons: tuple[PeriodComparison, ...]


def compare_periods(series: TimeSeries, short_period: float, multiple: int, nterms: int) -> PeriodComparison:
    """F-test of ``multiple * short_period`` against ``short_period`` (see the module's docstring).

    ``K`` is chosen by BIC at the short period, from ``nterms`` up to what the long model and the
    points allow (the long model keeps at least half the points as degrees of freedom).
    """
    points = len(series)
    largest = max(1, min(MAX_TERMS, (points // 2 - 1) // 2) // multiple)
    terms = terms_by_bic(series, 1.0 / short_period, min(nterms, largest), largest)
    # each model at its own best frequency: a peak found with another model (fewer terms) can be off by enough
    # to smear sharp eclipses over a long span; the long model still contains the short one, so it fits at
    # least as well, and the test keeps its meaning
    half_width = REFINE_HALF_WIDTH / series.span
    short_frequency, _ = highest_near(series, terms, 1.0 / short_period, half_width)
    long_frequency, _ = highest_near(series, terms * multiple, short_frequency / multiple, half_width / multiple)
    chi2_short = model_chi2(series, short_frequency, terms)
    chi2_long = model_chi2(series, long_frequency, terms * multiple)
    periods = (1.0 / short_frequency, 1.0 / long_frequency, multiple, terms)
    comparison = PeriodComparison(*periods, chi2_short, chi2_long, points, 0.0, 1.0)
    if comparison.dof_long <= 0 or not chi2_long > 0:
        return comparison  # nothing left to judge the extra harmonics by: the longer period is not needed
    statistic = max(chi2_short - chi2_long, 0.0) / comparison.extra_parameters / (chi2_long / comparison.dof_long)
    false_alarm = float(f_distribution.sf(statistic, comparison.extra_parameters, comparison.dof_long))
    return PeriodComparison(*periods, chi2_short, chi2_long, points, float(statistic), false_alarm)


def resolve_harmonics(series: TimeSeries, peak_period: float, nterms: int, min_period: float,
                      max_period: float) -> HarmonicChoice:
    """The period the peak at ``peak_period`` stands for.

    With several terms, the shortest sub-multiple ``peak_period / k`` (``k`` up to ``nterms``, not
    below ``min_period``) that fits as well as the peak's period is taken first. If the peak's
    period stands, twice it is tested (up to ``max_period``): an eclipsing binary's two different
    eclipses make twice the period fit better.
    """
    comparisons: list[PeriodComparison] = []
    for divisor in range(nterms, 1, -1):
        if peak_period / divisor < min_period:
            continue
        comparison = compare_periods(series, peak_period / divisor, divisor, max(1, nterms // divisor))
        comparisons.append(comparison)
        if not comparison.long_is_better:
            short = comparison.short_period
            return HarmonicChoice(short, 1.0 / divisor, f'{short:.6g} d, 1/{divisor} of the peak\'s period: folded on '
                                  'the peak\'s period ' + comparison.describe(), tuple(comparisons))
    if 2.0 * peak_period > max_period:
        return HarmonicChoice(peak_period, 1.0, f'{peak_period:.6g} d, the peak\'s period: twice it '
                              f'({2 * peak_period:.6g} d) is longer than the longest period searched ({max_period:.6g} '
                              'd), so an eclipsing binary at twice the period could not be tested', tuple(comparisons))
    comparison = compare_periods(series, peak_period, 2, nterms)
    comparisons.append(comparison)
    if comparison.long_is_better:
        double = comparison.long_period
        return HarmonicChoice(double, 2.0, f'{double:.6g} d, twice the peak\'s period (as for an eclipsing binary '
                              f'with unequal eclipses): folded on {double:.6g} d ' + comparison.describe(),
                              tuple(comparisons))
    return HarmonicChoice(peak_period, 1.0, f'{peak_period:.6g} d, the peak\'s period: folded on '
                          f'{2 * peak_period:.6g} d ' + comparison.describe(), tuple(comparisons))
