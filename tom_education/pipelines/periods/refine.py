"""The best frequency off the grid, and its uncertainty from the curvature of the chi-square at the peak.

For a model of ``nterms`` harmonics, ``chi2(f) = chi2_ref (1 - P(f))`` is the chi-square of the
best fit at frequency ``f`` with every other parameter (mean, amplitudes, phases) fitted: the
profile chi-square of ``f``. Its minimum ``f_hat`` is the least-squares frequency, and its
curvature there gives the frequency's standard error, as for any least-squares parameter
(the inverse Fisher information, with the other parameters profiled out)::

    sigma_f^2 = 2 / chi2''(f_hat) = 2 / (chi2_ref |P''(f_hat)|)

A peak that is narrow (long span) and tall (high signal-to-noise) gives a small error. The formula
trusts the stated errors; where the fit's reduced chi-square ``chi2(f_hat) / (N - 2 nterms - 2)``
exceeds 1 (errors underestimated, or a shape the model does not follow), ``sigma_f`` is multiplied
by its square root. Without errors (equal weights) it is always multiplied by it, which turns the
unit weights into the scatter about the model. The period's error is ``sigma_P = sigma_f / f^2``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from tom_education.pipelines.periods import PeriodSearchError
from tom_education.pipelines.periods.periodogram import lomb_scargle
from tom_education.pipelines.periods.series import TimeSeries

#: Most harmonics of any fit: enough for eclipses a few hundredths of the period wide; more would follow the noise.
MAX_TERMS = 20
#: Step of the finite differences for the curvature, in units of the peak's width 1 / span: small
#: enough for the peak to be a parabola there, large enough for the change to dwarf rounding.
CURVATURE_STEP = 0.01


@dataclass(frozen=True)
class FrequencyFit:
    """The refined peak of a ``nterms``-harmonic model, in cycles per day."""

    frequency: float
    error: float
    power: float
    nterms: int
    chi2: float
    dof: int
    error_scale: float

    @property
    def period(self) -> float:
        return 1.0 / self.frequency

    @property
    def period_error(self) -> float:
        return self.error / self.frequency ** 2

    @property
    def chi2_reduced(self) -> float:
        return self.chi2 / self.dof


def reference_chi2(series: TimeSeries) -> float:
    """Chi-square of the constant model (the weighted mean), ``chi2_ref`` of the periodogram's normalisation."""
    weights = np.ones(len(series)) if series.error is None else series.error ** -2.0
    mean = np.sum(weights * series.magnitude) / np.sum(weights)
    return float(np.sum(weights * (series.magnitude - mean) ** 2))


def exact_power(series: TimeSeries, nterms: int, frequencies: np.ndarray) -> np.ndarray:
    """The periodogram at arbitrary frequencies by direct least squares (no approximation)."""
    return np.asarray(lomb_scargle(series, nterms).power(np.atleast_1d(frequencies), method='chi2'), dtype=float)


def model_chi2(series: TimeSeries, frequency: float, terms: int) -> float:
    """Chi-square of the best fit of ``terms`` harmonics of ``frequency`` (mean included)."""
    return reference_chi2(series) * (1.0 - float(exact_power(series, terms, np.array([frequency]))[0]))


def terms_by_bic(series: TimeSeries, frequency: float, smallest: int, largest: int) -> int:
    """The number of harmonics of ``frequency``, from ``smallest`` to ``largest``, that minimises the Bayesian
    information criterion ``chi2 + (2 K + 1) ln N``: enough to follow the shape (a sharp eclipse needs
    many), not so many that they follow the noise.
    """
    scores = {terms: model_chi2(series, frequency, terms) + (2 * terms + 1) * math.log(len(series))
              for terms in range(smallest, max(smallest, largest) + 1)}
    return min(scores, key=scores.__getitem__)


def highest_near(series: TimeSeries, nterms: int, guess: float, half_width: float) -> tuple[float, float]:
    """Frequency and exact power of the maximum within ``guess +- half_width``."""
    periodogram = lomb_scargle(series, nterms)

    def negative_power(frequency: float) -> float:
        return -float(periodogram.power(np.atleast_1d(frequency), method='chi2')[0])

    low, high = max(guess - half_width, 1e-12), guess + half_width
    found = minimize_scalar(negative_power, bounds=(low, high), method='bounded',
                            options={'xatol': half_width * 1e-7})
    return float(found.x), -float(found.fun)


def refine_frequency(series: TimeSeries, guess: float, half_width: float, nterms: int) -> FrequencyFit:
    """The least-squares frequency near ``guess`` and its standard error (see the module's docstring)."""
    frequency, power = highest_near(series, nterms, guess, half_width)
    step = CURVATURE_STEP / series.span
    offsets = step * np.arange(-2, 3)
    curvature = np.polyfit(offsets, exact_power(series, nterms, frequency + offsets), 2)[0] * 2.0
    chi2_ref = reference_chi2(series)
    chi2_second_derivative = -chi2_ref * curvature
    if not chi2_second_derivative > 0:
        raise PeriodSearchError(
            f'The peak at {1 / frequency:.6g} d has no measurable width (the fit does not depend on the frequency '
            'there); the light curve does not constrain this period.'
        )
    dof = len(series) - (2 * nterms + 2)
    chi2 = chi2_ref * (1.0 - power)
    reduced = chi2 / dof
    scale = float(np.sqrt(reduced if series.error is None else max(1.0, reduced)))
    error = float(np.sqrt(2.0 / chi2_second_derivative)) * scale
    return FrequencyFit(frequency, error, power, nterms, chi2, dof, scale)
