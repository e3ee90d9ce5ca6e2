"""The two figures of a period search: the periodogram and the light curve folded on the period found.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state: safe in a worker that
runs several pipelines in threads), imported only when a figure is drawn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tom_education.pipelines.periods.grid import FrequencyGrid
from tom_education.pipelines.periods.periodogram import lomb_scargle
from tom_education.pipelines.periods.search import PeriodResult
from tom_education.pipelines.periods.series import TimeSeries

#: Most points drawn for a periodogram: a longer one is reduced to the highest power in each of this
#: many slices, so every peak stays visible and the PNG stays fast to draw.
PLOTTED_POINTS = 4000
#: Points of the model curve over one cycle.
MODEL_POINTS = 500


def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def envelope(frequency: np.ndarray, power: np.ndarray, points: int = PLOTTED_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``points`` (frequency, power) pairs: the highest power of each slice of the grid."""
    if len(power) <= points:
        return frequency, power
    size = -(-len(power) // points)
    padded = np.full(size * points, -np.inf)
    padded[:len(power)] = power
    best = np.argmax(padded.reshape(points, size), axis=1) + size * np.arange(points)
    best = best[best < len(power)]
    return frequency[best], power[best]


def plot_periodogram(path: Path, grid: FrequencyGrid, power: np.ndarray, result: PeriodResult, *, title: str,
                     false_alarm_levels: dict[float, float] | None = None) -> None:
    """Power against period (log scale) as a PNG, with the period found and the false-alarm levels.

    ``false_alarm_levels`` maps a false-alarm probability to the power a peak needs for it; they
    apply to one-term periodograms only.
    """
    figure = _figure()
    axes = figure.add_subplot()
    frequency, shown = envelope(grid.frequencies(), power)
    axes.plot(1.0 / frequency, shown, color='tab:blue', linewidth=0.7)
    axes.set_xscale('log')
    if grid.scan_min_period < grid.min_period:
        axes.axvspan(grid.scan_min_period, grid.min_period, color='0.85', zorder=0,
                     label='below the range: half periods of eclipsing binaries only')
    for probability, level in sorted((false_alarm_levels or {}).items(), reverse=True):
        axes.axhline(level, color='0.4', linestyle=':', linewidth=1)
        axes.annotate(f'FAP {probability:g}', (1.0, level), xycoords=('axes fraction', 'data'),
                      ha='right', va='bottom', fontsize=8, color='0.3')
    top = max(1e-3, float(np.max(shown))) * 1.12
    # markers above the curve, so they hide no peak
    axes.plot([result.period], [top * 0.96], 'v', color='tab:red', markersize=8,
              label=f'period {result.period:.6g} ± {result.period_error:.2g} d')
    if abs(result.harmonic_factor - 1.0) > 1e-9:
        axes.plot([result.peak_period], [top * 0.96], 'v', color='tab:orange', markersize=8,
                  label=f'highest peak {result.peak_period:.6g} d (× {result.harmonic_factor:.3g})')
    axes.set_xlabel('Period (days)')
    axes.set_ylabel(f'Power ({result.nterms}-term model)' if result.nterms > 1 else 'Lomb-Scargle power')
    axes.set_ylim(0, top)
    axes.set_title(title)
    axes.grid(alpha=0.3, which='both')
    axes.legend(loc='upper right', fontsize=8)
    figure.savefig(path, format='png')


def folded_model(series: TimeSeries, frequency: float, terms: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The time of the model's faintest point (phase 0), and the model over one cycle (phases, magnitudes)."""
    periodogram = lomb_scargle(series, terms)
    phases = np.linspace(0.0, 1.0, MODEL_POINTS, endpoint=False)
    model = periodogram.model(phases / frequency, frequency)
    faintest = float(phases[np.argmax(model)] / frequency)  # in days from the first point
    return faintest + float(series.time[0]), phases, np.roll(model, -int(np.argmax(model)))


def plot_phase_folded(path: Path, series: TimeSeries, result: PeriodResult, *, title: str) -> None:
    """The light curve folded on the period found, two cycles, with error bars and the fitted model, as a PNG.

    Phase 0 is the faintest point of the model (the primary eclipse of an eclipsing binary).
    """
    epoch, phases, model = folded_model(series, result.frequency, result.fit_nterms)
    phase = np.mod((series.time - epoch) * result.frequency, 1.0)
    figure = _figure()
    axes = figure.add_subplot()
    for cycle in (0.0, 1.0):
        axes.errorbar(phase + cycle, series.magnitude, yerr=series.error, fmt='o', markersize=2.5, capsize=0,
                      elinewidth=0.6, color='tab:blue', alpha=0.7, label='observations' if cycle == 0 else None)
        axes.plot(phases + cycle, model, color='tab:red', linewidth=1.2,
                  label=f'{result.fit_nterms}-harmonic fit' if cycle == 0 else None)
    axes.invert_yaxis()  # magnitudes: brighter is smaller
    axes.set_xlim(0, 2)
    axes.set_xlabel(f'Phase (period {result.period:.6g} ± {result.period_error:.2g} d; '
                    f'phase 0 at {result.time_scale} {epoch:.5f}, the fit\'s faintest point)')
    axes.set_ylabel(f'Magnitude ({result.band})')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc='lower right', fontsize=8)
    figure.savefig(path, format='png')
