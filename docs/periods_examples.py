"""The figures and the accuracy table of ``docs/periods.rst``, from the light curves the tests simulate.

Run from the repository's root::

    .venv/bin/python docs/periods_examples.py            # figures into docs/images
    .venv/bin/python docs/periods_examples.py accuracy   # the accuracy table (a few minutes)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import django
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')
django.setup()

from tests.test_periods import eclipsing_binary, random_period, simulate, sinusoid  # noqa: E402
from tom_education.pipelines.periods.periodogram import false_alarm_levels  # noqa: E402
from tom_education.pipelines.periods.plots import plot_periodogram, plot_phase_folded  # noqa: E402
from tom_education.pipelines.periods.search import search_period  # noqa: E402

IMAGES = ROOT / 'docs' / 'images'
#: The simulated binary of the figures: period (days) and seed.
EXAMPLE_PERIOD, EXAMPLE_SEED = 2.6180, 4


def figures() -> None:
    series = simulate(EXAMPLE_SEED, EXAMPLE_PERIOD, eclipsing_binary)
    search = search_period(series)
    title = f'Simulated eclipsing binary (P = {EXAMPLE_PERIOD} d), band V'
    levels = false_alarm_levels(series, search.grid, (0.01, 0.001))
    plot_periodogram(IMAGES / 'periods_periodogram.png', search.grid, search.power, search.result, title=title,
                     false_alarm_levels=levels)
    plot_phase_folded(IMAGES / 'periods_phase_folded.png', series, search.result, title=title)
    result = search.result
    print(f'{len(series)} points over {series.span:.1f} d; {result.frequencies} frequencies; peak '
          f'{result.peak_period:.6f} d; period {result.period:.6f} ± {result.period_error:.1e} d; '
          f'FAP {result.false_alarm_probability:.1e}; {result.harmonic_reason}')


def accuracy(seeds: int = 100) -> None:
    """For each shape and number of terms: recovered (within 1 %), rms of (P - P_true) / sigma_P, the fraction
    within 2 and 3 sigma, the median sigma_P / P, and the median time per search.
    """
    print('shape      nterms  recovered  rms z  |z|<2  |z|<3  median sigma/P  time/search')
    for name, shape in (('sinusoid', sinusoid), ('binary', eclipsing_binary)):
        for nterms, count in ((1, seeds), (2, seeds // 4)):
            z, relative, seconds, recovered = [], [], [], 0
            for seed in range(1000, 1000 + count):
                period = random_period(seed)
                series = simulate(seed, period, shape)
                started = time.perf_counter()
                result = search_period(series, nterms=nterms).result
                seconds.append(time.perf_counter() - started)
                if abs(result.period / period - 1) < 0.01:
                    recovered += 1
                    z.append((result.period - period) / result.period_error)
                    relative.append(result.period_error / period)
            z = np.abs(np.array(z))
            print(f'{name:9}  {nterms:6}  {recovered:4}/{count:<4}  {np.sqrt(np.mean(z ** 2)):5.2f}  '
                  f'{np.mean(z < 2):5.0%}  {np.mean(z < 3):5.0%}  {np.median(relative):14.1e}  '
                  f'{np.median(seconds):9.2f} s')


if __name__ == '__main__':
    accuracy() if sys.argv[1:] == ['accuracy'] else figures()
