"""The period-search pipeline (issue 13): generalised Lomb-Scargle on a light curve, with an honest error.

Light curves are simulated with the defects of real ones: nightly sampling with weather losses, a
seasonal gap, several points a night at varying times, heteroscedastic errors, several bands,
upper limits, points without errors, missing columns. The science is tested as pure functions;
the pipeline class is tested by calling ``do_pipeline`` directly on a saved process, and once end
to end through a real worker.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time
from PIL import Image
from tom_dataproducts.models import PhotometryReducedDatum, ReducedDatum

from tests.conftest import make_product, wait_final
from tom_education import services
from tom_education.models import ASYNC_STATUS_CREATED, AsyncError, new_identifier
from tom_education.pipelines.periods import PeriodSearchError, periodogram
from tom_education.pipelines.periods.grid import choose_grid, median_interval
from tom_education.pipelines.periods.harmonics import compare_periods, resolve_harmonics
from tom_education.pipelines.periods.periodogram import evaluate, false_alarm_probability, peak_indices
from tom_education.pipelines.periods.pipeline import PeriodSearchPipeline
from tom_education.pipelines.periods.plots import envelope, plot_periodogram, plot_phase_folded
from tom_education.pipelines.periods.refine import refine_frequency
from tom_education.pipelines.periods.search import minimum_points, search_period
from tom_education.pipelines.periods.series import (
    BJD_TDB,
    JD_UTC,
    Observations,
    TimeSeries,
    choose_band,
    observations_from_rows,
    prepare_series,
)
from tom_education.pipelines.periods.table import read_table

PIPELINE = 'Period search'
FIRST_NIGHT = 2461000.5  # JD of the first night's midnight, 2025-12-27 (UT)
in_database = pytest.mark.django_db(transaction=True)


# --- simulated light curves ----------------------------------------------------------------------


def observing_times(rng: np.random.Generator, *, seasons: int = 2, season_days: int = 90, gap_days: int = 120,
                    clear: float = 0.6, per_night: float = 2.5) -> np.ndarray:
    """Julian dates of a ground-based campaign: each night clear with probability ``clear``, a few points
    (Poisson, at least one) within +-3 hours of a time that drifts 4 minutes earlier each night (the
    target transits earlier), seasons separated by the gap when the target is behind the Sun.
    """
    times = []
    for season in range(seasons):
        first = FIRST_NIGHT + season * (season_days + gap_days)
        for night in range(season_days):
            if rng.random() > clear:
                continue
            centre = first + night + 0.05 - night * 4 / 1440
            times.extend(centre + rng.uniform(-0.125, 0.125, max(1, rng.poisson(per_night))))
    return np.sort(np.array(times))


def sinusoid(phase: np.ndarray, amplitude: float = 0.1) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * phase)


def eclipsing_binary(phase: np.ndarray, primary: float = 0.6, secondary: float = 0.25,
                     width: float = 0.035) -> np.ndarray:
    """Magnitude change of a detached binary: Gaussian eclipses at phases 0 and 0.5, a weak ellipsoidal term."""
    to_primary = np.mod(phase + 0.5, 1.0) - 0.5
    to_secondary = np.mod(phase, 1.0) - 0.5
    return (primary * np.exp(-0.5 * (to_primary / width) ** 2) + secondary * np.exp(-0.5 * (to_secondary / width) ** 2)
            + 0.02 * np.cos(4 * np.pi * phase))


def simulate(seed: int, period: float, shape: Callable[[np.ndarray], np.ndarray], *, typical_error: float = 0.03,
             band: str = 'V', **sampling) -> TimeSeries:
    """A light curve of ``shape`` with ``period`` (days): errors log-normal about ``typical_error`` (a factor
    of ~1.6 either way: seeing, airmass, clouds), noise drawn from each point's own error.
    """
    rng = np.random.default_rng(seed)
    time = observing_times(rng, **sampling)
    error = typical_error * np.exp(rng.normal(0.0, 0.5, len(time)))
    phase = (time - time[0]) / period + rng.random()
    magnitude = 14.0 + shape(phase) + rng.normal(0.0, error)
    return TimeSeries(time, magnitude, error, band, BJD_TDB)


def random_period(seed: int) -> float:
    """A period log-uniform between 0.3 and 8 days: RR Lyrae to Cepheids, contact to detached binaries.

    Periods whose half or whole is within 2 % of a whole number of days are drawn again: observed from one
    site at the same time each night, such a star shows the same phase night after night for weeks (an
    eclipse is never seen), which no method can overcome.
    """
    rng = np.random.default_rng(10_000 + seed)
    while True:
        period = float(np.exp(rng.uniform(np.log(0.3), np.log(8.0))))
        if all(abs(days / round(days) - 1) > 0.02 for days in (period, period / 2) if round(days) >= 1):
            return period


def csv_text(series_by_band: list[TimeSeries], *, barycentric: bool = True, limits: int = 0) -> str:
    """The photometry pipeline's table for these light curves (bjd_tdb when asked), plus ``limits`` upper limits."""
    columns = ['time', 'mjd_utc', 'filter', 'mag', 'mag_err', 'limit'] + (['bjd_tdb'] if barycentric else [])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction='ignore')
    writer.writeheader()
    for series in series_by_band:
        for index, (jd, magnitude, error) in enumerate(zip(series.time, series.magnitude, series.error, strict=True)):
            limit = index < limits
            # the UTC columns are a few minutes off the barycentric time, as real ones are
            utc = jd - 0.004
            writer.writerow({'time': Time(utc, format='jd', scale='utc').isot, 'mjd_utc': f'{utc - 2400000.5:.8f}',
                             'filter': series.band, 'mag': '' if limit else f'{magnitude:.5f}',
                             'mag_err': '' if limit else f'{error:.5f}', 'limit': f'{magnitude:.3f}' if limit else '',
                             'bjd_tdb': f'{jd:.8f}'})
    return buffer.getvalue()


# --- reading tables and choosing what to search --------------------------------------------------


def test_photometry_table_keeps_every_time_scale_limits_and_missing_values():
    text = ('time,mjd_utc,bjd_tdb,filter,mag,mag_err,limit\n'
            '2026-01-01T00:00:00,61041.00000000,2461041.50300000,V,14.1,0.02,\n'
            '2026-01-01T01:00:00,61041.04166667,2461041.54466667,V,,,18.2\n'
            '2026-01-01T02:00:00,61041.08333333,2461041.58633333,R,13.5,,\n'
            'garbage,not a date,,V,14.2,0.02,\n')
    observations = read_table(text, 'night.csv')
    assert set(observations.times) == {BJD_TDB, JD_UTC}
    # mjd_utc is preferred to the ISO column, and becomes a Julian date
    assert observations.times[JD_UTC][:3] == pytest.approx([2461041.5, 2461041.54166667, 2461041.58333333])
    assert observations.times[BJD_TDB][1] == pytest.approx(2461041.54466667)
    assert np.isnan(observations.times[JD_UTC][3]) and np.isnan(observations.times[BJD_TDB][3])
    assert observations.limit.tolist() == [False, True, False, False]
    assert list(observations.band) == ['V', 'V', 'R', 'V']
    assert np.isnan(observations.error[2]) and observations.error[0] == 0.02


def test_tables_with_iso_times_only_or_fluxes_are_read():
    iso = read_table('date\tmagnitude\terror\n2026-01-01 00:00:00\t14.0\t0.01\n2026-01-02 00:00:00\t14.1\t0.01\n',
                     'tabs.txt')
    assert set(iso.times) == {JD_UTC}
    assert np.diff(iso.times[JD_UTC]) == pytest.approx([1.0])
    assert list(iso.band) == ['unknown', 'unknown']
    flux = read_table('jd flux flux_err\n2461041.5 1000 10\n2461042.5 100 5\n', 'flux.dat')
    assert flux.magnitude == pytest.approx([-7.5, -5.0])
    assert flux.error == pytest.approx([2.5 / math.log(10) * 0.01, 2.5 / math.log(10) * 0.05])


def test_a_table_without_the_needed_columns_is_refused_naming_them():
    with pytest.raises(PeriodSearchError) as caught:
        read_table('x,y\n1,2\n', 'frames.csv')
    message = str(caught.value)
    assert message.startswith('frames.csv needs a time column (bjd_tdb, bjd, mjd_utc')
    assert 'it has x, y.' in message
    with pytest.raises(PeriodSearchError, match='has no header row followed by data rows'):
        read_table('# only a comment\n', 'empty.csv')


def _observations(source: str, bands: list[str], times: dict[str, list[float]] | None = None,
                  limit: list[bool] | None = None, error: list[float] | None = None) -> Observations:
    count = len(bands)
    times = times or {BJD_TDB: list(FIRST_NIGHT + np.arange(count))}
    return Observations(source, {scale: np.array(values) for scale, values in times.items()},
                        np.linspace(14, 15, count), np.array(error or [0.01] * count), np.array(bands),
                        np.array(limit or [False] * count, dtype=bool))


def test_the_band_with_most_points_is_searched_unless_another_is_asked_for():
    sources = [_observations('a.csv', ['V', 'V', 'R']),
               _observations('b.csv', ['R', 'B', 'R', 'V'], limit=[False, False, True, False])]
    band, why = choose_band(sources, '')
    assert band == 'V'  # 3 points; R has 3 rows but one is an upper limit
    assert why == ('Band V, the one with most points (the light curve has B (1 points), R (2 points), V (3 points); '
                   'set the bandpass option to search another)')
    assert choose_band(sources, 'r') == ('R', 'Band R, as asked ("r")')
    tie = [_observations('c.csv', ['V', 'R'])]
    assert choose_band(tie, '')[0] == 'R'  # a tie goes to the first in alphabetical order, whatever the row order
    with pytest.raises(PeriodSearchError) as caught:
        choose_band(sources, 'I')
    assert str(caught.value) == ('The light curve has no band "I"; it has B (1 points), R (2 points), V (3 points). '
                                 'Set the bandpass option to one of these, or leave it empty for the band with most '
                                 'points.')


def test_prepared_series_has_one_band_usable_points_and_the_best_time_scale():
    both = {BJD_TDB: [1.0, 2.0, 3.0, 4.0, 4.0, 5.0], JD_UTC: [0.9, 1.9, 2.9, 3.9, 3.9, 4.9]}
    first = _observations('a.csv', ['V', 'V', 'V', 'V', 'V', 'R'], both, limit=[False, True] + [False] * 4,
                          error=[0.01, 0.01, np.nan, 0.02, 0.02, 0.01])
    first.magnitude[3] = first.magnitude[4]  # the same measurement stored twice
    series, notes = prepare_series([first], 'V')
    assert series.time_scale == BJD_TDB
    assert series.time.tolist() == [1.0, 4.0]
    assert notes == ['1 upper limits (non-detections) left out',
                     '1 points without a positive error left out (their weight in the fit would be unknown)',
                     '1 repeated points (same time and magnitude) counted once']
    # a second file without barycentric times: both are searched in UTC
    second = _observations('b.csv', ['V', 'V'], {JD_UTC: [10.0, 11.0]})
    assert prepare_series([first, second], 'V')[0].time_scale == JD_UTC
    with pytest.raises(PeriodSearchError, match=r'share no time scale \(a.csv: BJD_TDB; c.csv: JD_UTC\)'):
        prepare_series([_observations('a.csv', ['V']), _observations('c.csv', ['V'], {JD_UTC: [1.0]})], 'V')


def test_barycentric_times_missing_for_some_points_make_the_search_use_utc_for_all():
    """The photometry pipeline writes bjd_tdb only where it knows the observatory: a frame without a site
    keeps its point, in UTC like every other point, rather than being dropped or mixing time scales.
    """
    partial = {BJD_TDB: [1.003, np.nan, 3.003, 4.003], JD_UTC: [1.0, 2.0, 3.0, 4.0]}
    series, notes = prepare_series([_observations('a.csv', ['V'] * 4, partial)], 'V')
    assert series.time_scale == JD_UTC and series.time.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert notes == ['1 points have no BJD_TDB time: all points are searched in JD_UTC times instead']
    # a missing time in a band that is not searched changes nothing
    other_band = _observations('b.csv', ['V', 'R', 'V'], {BJD_TDB: [1.0, np.nan, 3.0], JD_UTC: [0.9, 1.9, 2.9]})
    assert prepare_series([other_band], 'V')[0].time_scale == BJD_TDB


def test_without_any_error_points_are_searched_with_equal_weights():
    series, notes = prepare_series([_observations('a.csv', ['V'] * 4, error=[np.nan] * 4)], 'V')
    assert series.error is None and len(series) == 4
    assert notes[-1].startswith('No point has an error')


def test_rows_as_tom_base_stores_them_become_observations():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(start, 14.0, 0.02, None, 'V'), (start + timedelta(hours=6), None, None, 18.5, 'V'),
            (start + timedelta(days=1), 14.2, None, None, '')]
    observations = observations_from_rows('the TOM', rows)
    assert observations.times[JD_UTC] == pytest.approx([2461041.5, 2461041.75, 2461042.5])
    assert observations.limit.tolist() == [False, True, False]
    assert np.isnan(observations.magnitude[1]) and np.isnan(observations.error[2])
    assert list(observations.band) == ['V', 'V', 'unknown']
    assert len(observations_from_rows('nothing', [])) == 0


# --- the frequency grid --------------------------------------------------------------------------


def test_default_grid_spans_twice_the_median_interval_to_half_the_span():
    time = FIRST_NIGHT + np.array([0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 10.0, 10.0, 20.0])
    assert median_interval(time) == pytest.approx(0.1)  # simultaneous points are not an interval
    grid = choose_grid(time, None, None, samples_per_peak=10, max_frequencies=10**6)
    assert (grid.min_period, grid.max_period, grid.scan_min_period) == pytest.approx((0.2, 10.0, 0.2))
    assert grid.df == pytest.approx(1 / (10 * 20.0), rel=0.01)  # ten samples per peak width 1 / span
    assert grid.frequencies()[[0, -1]] == pytest.approx([0.1, 5.0])
    assert 'twice the median interval between points (0.1 d)' == grid.min_period_reason
    # a one-term search also scans down to half the shortest period, for eclipsing binaries
    half = choose_grid(time, None, None, samples_per_peak=10, max_frequencies=10**6, half_periods=True)
    assert (half.min_period, half.scan_min_period) == pytest.approx((0.2, 0.1))
    assert half.in_range(0.2) and not half.in_range(0.19)


def test_grids_that_cannot_constrain_a_period_are_refused_with_both_numbers():
    time = FIRST_NIGHT + np.linspace(0.0, 0.5, 30)
    with pytest.raises(PeriodSearchError) as caught:
        choose_grid(time, 2.0, None, 10, 10**6)
    assert str(caught.value) == ('The light curve spans 0.5 days, less than the shortest period asked for (2 days): it '
                                 'cannot show one cycle. Ask for shorter periods, or add observations over a longer '
                                 'time.')
    with pytest.raises(PeriodSearchError, match=r'The shortest period \(0.3 d, as asked\) is not shorter than the '
                                                r'longest \(0.25 d, half the span of 0.5 d, so that two cycles are '
                                                r'seen\): there is no period between them to search'):
        choose_grid(time, 0.3, None, 10, 10**6)
    # periods of 0.001 to 0.25 d: frequencies 4 to 1000 per day, a step of 1 / (2 x 0.5 d)
    with pytest.raises(PeriodSearchError, match='need 997 trial frequencies, more than the 500 a run may evaluate'):
        choose_grid(time, 0.001, None, 2, 500)
    with pytest.raises(PeriodSearchError, match='All the points have the same time'):
        choose_grid(np.full(5, FIRST_NIGHT), None, None, 10, 10**6)


def test_too_few_points_are_refused_saying_how_many_are_needed():
    series = simulate(1, 1.3, sinusoid, seasons=1, season_days=4)
    assert len(series) < minimum_points(1) == 10
    with pytest.raises(PeriodSearchError) as caught:
        search_period(series)
    assert str(caught.value) == (f'Band V has {len(series)} usable points; a search with nterms=1 needs at least 10. '
                                 'Add observations.')
    assert minimum_points(5) == 24


# --- the periodogram, its peak and the period's error --------------------------------------------


def test_chunked_scan_reports_progress_and_finds_the_period(monkeypatch):
    series = simulate(2, 1.7, sinusoid)
    grid = choose_grid(series.time, 0.5, 5.0, 10, 10**6)
    reports = []
    power = evaluate(series, grid, 1, lambda done, total: reports.append((done, total)))
    chunked = []
    monkeypatch.setattr(periodogram, 'CHUNK_ONE_TERM', 1000)
    chunked_power = evaluate(series, grid, 1, lambda done, total: chunked.append((done, total)))
    assert reports == [(grid.count, grid.count)]
    assert len(chunked) == math.ceil(grid.count / 1000) and chunked[-1] == (grid.count, grid.count)
    assert [done for done, _ in chunked] == sorted(done for done, _ in chunked)
    best = grid.frequencies()[np.argmax(chunked_power)]
    assert abs(1 / best - 1.7) < 0.01 and abs(1 / grid.frequencies()[np.argmax(power)] - 1.7) < 0.01


def test_peaks_are_local_maxima_a_peak_width_apart():
    power = np.array([0.1, 0.5, 0.4, 0.45, 0.2, 0.1, 0.3, 0.9, 0.2, 0.1])
    assert peak_indices(power, 3, separation=1) == [7, 1, 3]
    assert peak_indices(power, 3, separation=3) == [7, 1]  # 3 is a wiggle of the peak at 1


def test_stated_error_of_a_sinusoid_matches_the_least_squares_formula():
    """With equal errors sigma, a sinusoid of amplitude A gives sigma_f = sigma / (pi A sqrt(2 N var(t)))
    (Montgomery & O'Donoghue 1999, for any sampling): the curvature of the periodogram says the same.
    """
    rng = np.random.default_rng(3)
    time = observing_times(rng)
    sigma, amplitude, frequency = 0.02, 0.1, 1 / 2.3
    magnitude = 14 + sinusoid(time * frequency, amplitude) + rng.normal(0, sigma, len(time))
    series = TimeSeries(time, magnitude, np.full(len(time), sigma), 'V', BJD_TDB)
    fit = refine_frequency(series, frequency, 0.002, 1)
    expected = sigma / (np.pi * amplitude * np.sqrt(2 * len(time) * np.var(time)))
    assert fit.error == pytest.approx(expected, rel=0.1)
    assert fit.error_scale < 1.05  # the scatter matches the errors: (almost) nothing to scale
    assert abs(fit.frequency - frequency) < 4 * fit.error


def test_period_errors_are_calibrated_even_when_the_stated_errors_are_too_small():
    """Over many light curves the period is off by its stated error on average (rms of the deviations in units
    of the error close to 1), also when the points' errors are three times too small: the reduced chi-square
    then scales the error up.
    """
    deviations = {1.0: [], 3.0: []}
    for seed in range(30):
        truth = simulate(seed, random_period(seed), sinusoid, seasons=1)
        for understated in deviations:
            series = TimeSeries(truth.time, truth.magnitude, truth.error / understated, 'V', BJD_TDB)
            fit = refine_frequency(series, 1 / random_period(seed), 0.002, 1)
            deviations[understated].append((fit.period - random_period(seed)) / fit.period_error)
    for understated, values in deviations.items():
        rms = float(np.sqrt(np.mean(np.square(values))))
        assert 0.7 < rms < 1.35, (understated, rms)


@pytest.mark.parametrize(('shape', 'factor'), [(sinusoid, 1.0), (eclipsing_binary, 2.0)])
def test_known_periods_are_recovered_within_their_stated_uncertainty(shape, factor):
    """The acceptance test of issue 13: sinusoids and eclipsing binaries, two seasons of nightly sampling."""
    deviations = []
    for seed in range(10):
        period = random_period(seed)
        result = search_period(simulate(seed, period, shape)).result
        deviation = (result.period - period) / result.period_error
        assert abs(deviation) < 4, (seed, period, result)
        assert result.period_error < 0.01 * period
        assert result.harmonic_factor == factor  # an eclipsing binary's highest one-term peak is at half its period
        assert result.false_alarm_probability < 1e-10
        deviations.append(deviation)
    assert 0.4 < float(np.sqrt(np.mean(np.square(deviations)))) < 1.8


def test_an_eclipsing_binary_is_found_by_a_two_term_search_too():
    period = 0.8123
    result = search_period(simulate(5, period, eclipsing_binary, seasons=1), nterms=2).result
    assert abs(result.period - period) < 4 * result.period_error
    assert result.fit_nterms >= 4  # sharp eclipses need several harmonics


def test_an_eclipsing_binary_with_half_its_period_below_the_range_is_still_found():
    """Sparse sampling: the default shortest period is longer than half the binary's period."""
    period = 2.9
    series = simulate(6, period, eclipsing_binary, per_night=1.2)
    search = search_period(series)
    assert search.grid.scan_min_period < search.result.peak_period < search.grid.min_period < period
    assert search.result.harmonic_factor == 2.0
    assert abs(search.result.period - period) < 4 * search.result.period_error


# --- P, 2P and P/k -------------------------------------------------------------------------------


def test_fold_test_doubles_an_eclipsing_binary_but_not_a_sinusoid_or_twin_eclipses():
    period = 1.9
    binary = simulate(7, period, eclipsing_binary)
    assert compare_periods(binary, period / 2, 2, 1).long_is_better
    twins = simulate(7, period, lambda phase: eclipsing_binary(phase, secondary=0.6))
    assert not compare_periods(twins, period / 2, 2, 1).long_is_better  # equal eclipses: P/2 is all the data say
    wave = simulate(7, period, sinusoid)
    comparison = compare_periods(wave, period, 2, 1)
    assert not comparison.long_is_better and comparison.false_alarm > 0.01
    choice = resolve_harmonics(binary, period / 2, 1, 0.2, 50.0)
    assert choice.factor == 2.0 and choice.period == pytest.approx(period, rel=1e-4)
    assert choice.reason.startswith("1.90002 d, twice the peak's period (as for an eclipsing binary with unequal "
                                    'eclipses): folded on 1.90002 d its 2 cycles of 0.950')


def test_a_multi_term_peak_at_a_multiple_of_the_period_is_brought_back():
    period = 1.3
    wave = simulate(8, period, sinusoid)
    choice = resolve_harmonics(wave, 3 * period, 3, 0.2, 50.0)
    assert choice.period == pytest.approx(period, rel=1e-4) and choice.factor == pytest.approx(1 / 3)
    result = search_period(wave, nterms=3, min_period=0.5, max_period=10.0).result  # a short grid: 3 terms are slow
    assert abs(result.period - period) < 4 * result.period_error


def test_a_period_seen_less_than_twice_is_reported_with_a_warning():
    period = 20.0
    series = simulate(17, period, sinusoid, seasons=1, season_days=30, per_night=3)
    search = search_period(series, max_period=40.0)
    assert abs(search.result.period - period) < 4 * search.result.period_error
    cycles = series.span / search.result.period
    assert search.notes == (f'Warning: the light curve covers {cycles:.2g} cycles of {search.result.period:.6g} d; a '
                            'period is only established by seeing the variation repeat: confirm it with a longer '
                            'light curve.',)


def test_twice_the_period_is_not_tested_beyond_the_longest_period():
    binary = simulate(7, 1.9, eclipsing_binary)
    choice = resolve_harmonics(binary, 0.95, 1, 0.2, 1.5)
    assert choice.factor == 1.0 and 'could not be tested' in choice.reason


# --- false-alarm probability ---------------------------------------------------------------------


def test_false_alarm_probability_is_not_small_for_noise():
    """Baluev's bound on pure noise: rarely below 10 %, and spread over (0, 1] as a probability should be."""
    probabilities = []
    for seed in range(30):
        noise = simulate(100 + seed, 1.0, lambda phase: 0.0 * phase, seasons=1)
        probabilities.append(search_period(noise).result.false_alarm_probability)
    assert sum(probability < 0.1 for probability in probabilities) <= 6
    assert np.median(probabilities) > 0.3


def test_false_alarm_probability_of_a_weak_signal_lies_between():
    series = simulate(9, 2.2, lambda phase: sinusoid(phase, 0.012), seasons=1)
    grid = choose_grid(series.time, None, None, 10, 10**6)
    power = evaluate(series, grid, 1)
    strong = simulate(9, 2.2, sinusoid, seasons=1)
    weak_fap = false_alarm_probability(series, grid, float(power.max()))
    assert 1e-8 < weak_fap < 0.5
    assert false_alarm_probability(strong, grid, float(evaluate(strong, grid, 1).max())) < weak_fap


# --- figures -------------------------------------------------------------------------------------


def test_envelope_keeps_every_peak_of_a_long_periodogram():
    frequency = np.arange(100_000.0)
    power = np.zeros(100_000)
    power[[5, 50_001, 99_999]] = [0.3, 1.0, 0.5]
    kept_frequency, kept_power = envelope(frequency, power, 1000)
    assert len(kept_power) == 1000
    assert {5.0, 50_001.0, 99_999.0} <= set(kept_frequency[kept_power > 0])


def test_figures_are_written(tmp_path):
    series = simulate(10, 1.234, eclipsing_binary, seasons=1)
    search = search_period(series)
    plot_periodogram(tmp_path / 'p.png', search.grid, search.power, search.result, title='test',
                     false_alarm_levels={0.01: 0.1})
    plot_phase_folded(tmp_path / 'f.png', series, search.result, title='test')
    for name in ('p.png', 'f.png'):
        with Image.open(tmp_path / name) as image:
            assert image.format == 'PNG' and image.size == (800, 450)
            # not a blank canvas: data were drawn in colour
            assert len(image.convert('RGB').getcolors(maxcolors=100_000) or ()) > 50


# --- the pipeline --------------------------------------------------------------------------------


def _process(target, products=()):
    process = PeriodSearchPipeline.objects.create(identifier=new_identifier('periods'), pipeline=PIPELINE,
                                                  target=target)
    process.input_files.set(products)
    return process


def _store_photometry(target, series: TimeSeries, *, limits: int = 0, without_error: int = 0) -> None:
    rows = []
    for index, (jd, magnitude, error) in enumerate(zip(series.time, series.magnitude, series.error, strict=True)):
        timestamp = Time(jd, format='jd', scale='utc').to_datetime(timezone=UTC)
        limit = index < limits
        rows.append(PhotometryReducedDatum(
            target=target, timestamp=timestamp, bandpass=series.band, source_name='test',
            brightness=None if limit else magnitude, limit=magnitude if limit else None,
            brightness_error=None if limit or index >= len(series) - without_error else error,
        ))
    PhotometryReducedDatum.objects.bulk_create(rows)


def _log(process) -> list[str]:
    return list(process.log_lines.values_list('message', flat=True))


def _result(outputs) -> dict:
    (table,) = [output for output in outputs if output.output_type is ReducedDatum]
    assert table.tag == 'period'
    return json.loads(Path(table.path).read_text())


@in_database
def test_without_input_files_the_targets_photometry_is_searched(target, tmp_path):
    period = 2.71
    _store_photometry(target, simulate(11, period, sinusoid), limits=4, without_error=3)
    _store_photometry(target, simulate(12, 1.0, sinusoid, band='R', seasons=1))
    process = _process(target)
    reports = []
    process.progress = lambda done, total=None, message='': reports.append((done, total, message))
    outputs = process.do_pipeline(tmp_path, bandpass='', min_period=None, max_period=None, nterms=1,
                                  samples_per_peak=10)
    result = _result(outputs)
    assert result['band'] == 'V' and result['time_scale'] == JD_UTC
    assert abs(result['period'] - period) < 4 * result['period_error']
    assert result['points'] == len(simulate(11, period, sinusoid)) - 4 - 3
    assert result['inputs'] == ["the TOM's photometry"]
    log = _log(process)
    assert any(line.startswith('Band V, the one with most points (the light curve has R (') for line in log)
    assert '4 upper limits (non-detections) left out' in log
    assert any(line.startswith('Times in JD (UTC), not barycentric') for line in log)
    assert any(line.startswith(f'Best period: {result["period"]:.7g} ± ') for line in log)
    assert reports[-1] == (result['frequencies'], result['frequencies'], 'trial frequencies')
    assert {Path(output.path).name for output in outputs} == {'period.json', 'periodogram.png', 'phase_folded.png'}
    assert all(output.tag == 'image_file' for output in outputs if output.output_type is not ReducedDatum)


@in_database
def test_a_csv_light_curve_is_searched_in_barycentric_time_and_the_asked_band(target, tmp_path):
    period = 0.6789
    bands = [simulate(13, period, eclipsing_binary, band='V', seasons=1),
             simulate(14, period, eclipsing_binary, band='I', seasons=1, per_night=4)]
    product = make_product(target, 'photometry_light_curve.csv', csv_text(bands, limits=2))
    process = _process(target, [product])
    outputs = process.do_pipeline(tmp_path, bandpass='v', min_period=0.2, max_period=3.0, nterms=1,
                                  samples_per_peak=10)
    result = _result(outputs)
    assert (result['band'], result['time_scale'], result['min_period'], result['max_period']) == (
        'V', BJD_TDB, 0.2, 3.0)
    assert abs(result['period'] - period) < 4 * result['period_error']
    assert result['harmonic_factor'] == 2.0
    assert any(line.startswith('Times in BJD_TDB') for line in _log(process))


@in_database
def test_data_that_cannot_constrain_a_period_fail_with_what_to_do(target, tmp_path):
    short = simulate(15, 1.0, sinusoid, seasons=1, season_days=2, per_night=30, clear=1.0)
    product = make_product(target, 'one_night.csv', csv_text([short]))
    process = _process(target, [product])
    with pytest.raises(AsyncError) as caught:
        process.do_pipeline(tmp_path, bandpass='', min_period=5.0, max_period=None, nterms=1, samples_per_peak=10)
    assert str(caught.value).startswith(f'The light curve spans {short.span:.6g} days, less than the shortest period '
                                        'asked for (5 days)')
    with pytest.raises(AsyncError, match='no band "B"; it has V'):
        process.do_pipeline(tmp_path, bandpass='B', min_period=None, max_period=None, nterms=1, samples_per_peak=10)
    empty = _process(target)
    with pytest.raises(AsyncError, match='has no photometry in the TOM and no light-curve file was selected'):
        empty.do_pipeline(tmp_path, bandpass='', min_period=None, max_period=None, nterms=1, samples_per_peak=10)
    binary = make_product(target, 'frame.csv', b'\x89PNG\r\n\x1a\n\xff\xfe')
    with pytest.raises(AsyncError, match='frame.*csv is not a text table'):
        _process(target, [binary]).do_pipeline(tmp_path, bandpass='', min_period=None, max_period=None, nterms=1,
                                               samples_per_peak=10)


@in_database
def test_period_search_runs_on_a_worker_and_saves_its_result_and_figures(worker, target):
    period = 3.3
    product = make_product(target, 'photometry_light_curve.csv', csv_text([simulate(16, period, sinusoid)]))
    process = services.start_process(user=None, pipeline=PIPELINE, target=target, input_files=[product],
                                     options={'nterms': 2})
    wait_final(process, timeout=120)
    assert process.state == ASYNC_STATUS_CREATED, process.failure_message
    (datum,) = process.output_reduced_data()['ReducedDatum']
    assert datum.data_type == 'period'
    result = json.loads(datum.value['text'])
    assert abs(result['period'] - period) < 4 * result['period_error'] and result['nterms'] == 2
    # named by the output; the stored file may carry a suffix when an earlier run saved the same name
    images = {product.product_id.removeprefix(f'{process.identifier}_'): product
              for product in process.output_products()}
    assert set(images) == {'periodogram.png', 'phase_folded.png'}
    for image in images.values():
        with image.data.open('rb') as handle:
            assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
