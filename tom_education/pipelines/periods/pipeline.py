"""The period-search pipeline: reads a light curve, calls :func:`.search.search_period`, logs and saves the results.

Registration, in ``settings.py``::

    TOM_EDUCATION_PIPELINES = {
        ...
        'Period search': 'tom_education.pipelines.periods.pipeline.PeriodSearchPipeline',
    }
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tom_dataproducts import models as dataproduct_models
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum, ReducedDatum

from tom_education.models import AsyncError, PipelineOutput, PipelineProcess
from tom_education.pipelines.periods import PeriodSearchError
from tom_education.pipelines.periods.series import (
    BJD_TDB,
    Observations,
    TimeSeries,
    choose_band,
    observations_from_rows,
    prepare_series,
)
from tom_education.pipelines.periods.table import read_table

if TYPE_CHECKING:
    from tom_education.pipelines.periods.search import PeriodSearch

#: ``data_product_type`` of the PNGs, when the TOM lists it in ``DATA_PRODUCT_TYPES`` (else none).
IMAGE_TYPE = 'image_file'
#: ``data_type`` of the ReducedDatum holding the result.
RESULT_TAG = 'period'
#: False-alarm probabilities drawn on a one-term periodogram.
PLOTTED_FALSE_ALARM_PROBABILITIES = (0.01, 0.001)


class PeriodSearchPipeline(PipelineProcess):
    """Period of the target's variability: a Lomb-Scargle period search on one band of its light curve.

    Reads the selected light-curve CSV files (the photometry pipeline's, or any table with time,
    magnitude and error columns) or, with no file selected, the target's photometry in the TOM.
    Saves the periodogram and the light curve folded on the period as images, and the period with
    its uncertainty and false-alarm probability as reduced data.
    """

    short_name = 'periods'
    allowed_suffixes = ['.csv']
    inputs_required = False
    options = {
        'bandpass': {
            'type': 'text', 'default': '', 'max_length': 32, 'required': False,
            'long_name': 'Band to search (empty = the band with most points)',
        },
        'min_period': {
            'type': 'float', 'default': None, 'min': 1e-4, 'max': 1e5, 'required': False,
            'long_name': 'Shortest period, days (empty = twice the median interval between points)',
        },
        'max_period': {
            'type': 'float', 'default': None, 'min': 1e-4, 'max': 1e5, 'required': False,
            'long_name': 'Longest period, days (empty = half the time span)',
        },
        'nterms': {
            'type': 'int', 'default': 1, 'min': 1, 'max': 5,
            'long_name': 'Harmonics in the model (1 = sinusoid; 2-5 follow eclipses and sawtooth shapes)',
        },
        'samples_per_peak': {
            'type': 'int', 'default': 10, 'min': 1, 'max': 100,
            'long_name': 'Trial frequencies per periodogram peak width',
        },
    }

    class Meta:
        proxy = True

    def do_pipeline(self, tmpdir: Path, **params: Any) -> list[PipelineOutput]:
        # scipy and astropy's periodograms load on the worker that runs a search, not in every web process
        from tom_education.pipelines.periods.search import search_period

        value = {name: params.get(name, spec['default']) for name, spec in self.options.items()}
        products = list(self.input_files.all())
        with self.update_status('Reading the light curve'):
            sources = [self._read_product(product) for product in products] or [self._read_photometry()]
        try:
            band, why = choose_band(sources, value['bandpass'])
            self.log(why)
            series, notes = prepare_series(sources, band)
            for note in notes:
                self.log(note)
            self._log_series(series)
            with self.update_status(f'Searching band {band} for a period'):
                search = search_period(series, min_period=value['min_period'], max_period=value['max_period'],
                                       nterms=value['nterms'], samples_per_peak=value['samples_per_peak'],
                                       progress=self._report_progress)
        except PeriodSearchError as exc:
            raise AsyncError(str(exc)) from None
        self._log_result(search)

        with self.update_status('Drawing the periodogram and the folded light curve'):
            return self._outputs(tmpdir, series, search, [Path(product.data.name).name for product in products])

    # --- reading ------------------------------------------------------------------------------

    def _read_product(self, product: DataProduct) -> Observations:
        name = Path(product.data.name).name
        try:
            text = self.input_path(product).read_text(encoding='utf-8-sig')
        except UnicodeDecodeError:
            raise AsyncError(f'{name} is not a text table (it is not UTF-8); select a light-curve CSV file.') from None
        try:
            observations = read_table(text, name)
        except PeriodSearchError as exc:
            raise AsyncError(str(exc)) from None
        self.log(f'{name}: {len(observations)} rows')
        return observations

    def _read_photometry(self) -> Observations:
        rows = PhotometryReducedDatum.objects.filter(target=self.target).order_by('timestamp').values_list(
            'timestamp', 'brightness', 'brightness_error', 'limit', 'bandpass')
        observations = observations_from_rows(f"the TOM's photometry of {self.target.name}", rows)
        if not len(observations):
            raise AsyncError(
                f'{self.target.name} has no photometry in the TOM and no light-curve file was selected. Select a '
                'light-curve CSV file, or run a photometry pipeline on its frames first.'
            )
        self.log(f"No file selected: reading the TOM's photometry of {self.target.name} ({len(observations)} points)")
        return observations

    # --- logging ------------------------------------------------------------------------------

    def _report_progress(self, done: int, total: int) -> None:
        self.progress(done, total, 'trial frequencies')

    def _log_series(self, series: TimeSeries) -> None:
        if series.time_scale == BJD_TDB:
            scale = 'Times in BJD_TDB (barycentric)'
        else:
            scale = ('Times in JD (UTC), not barycentric: the light-travel time across the Earth\'s orbit '
                     '(up to +-8.3 minutes over a year) is not removed; give a bjd_tdb column to remove it')
        self.log(f'{scale}. {len(series)} points in band {series.band} over {series.span:.4g} days'
                 + ('' if series.error is not None else ', without errors'))

    def _log_result(self, search: PeriodSearch) -> None:
        result = search.result
        self.log(f'Searched {result.frequencies:,} trial frequencies: periods {result.min_period:.4g} d '
                 f'({result.min_period_reason}) to {result.max_period:.4g} d ({result.max_period_reason}), '
                 f'{result.samples_per_peak} per peak width, {result.nterms}-term model')
        for note in search.notes:
            self.log(note)
        self.log(f'Highest peak: {result.peak_period:.6g} d (power {result.peak_power:.3f})')
        self.log(f'Period chosen: {result.harmonic_reason}')
        self.log(f'Best period: {result.period:.7g} ± {result.period_error:.2g} d '
                 f'(frequency {result.frequency:.7g} ± {result.frequency_error:.2g} per day), band {result.band}, '
                 f'{result.points} points over {result.span:.4g} days; false-alarm probability '
                 f'{result.false_alarm_probability:.2g}')
        self.log(f'Fit: {result.fit_nterms} harmonics, chi2/dof {result.fit_chi2_reduced:.3g}'
                 + (f'; the error is scaled by {result.error_scale:.3g} for the scatter about the fit'
                    if result.error_scale > 1 else ''))
        if result.weighted and result.fit_chi2_reduced > 4:
            self.log(f'Warning: the light curve scatters {result.error_scale:.3g} times more about the fit than its '
                     'errors allow: the errors may be underestimated, or the variation not strictly periodic.')
        if result.false_alarm_probability > 0.01:
            self.log(f'Warning: a false-alarm probability of {result.false_alarm_probability:.2g} means noise alone '
                     'could make a peak this high: this period is not a detection.')
        for peak in result.other_peaks:
            change = 'higher' if peak.delta_chi2 >= 0 else 'lower'
            self.log(f'Other peak: {peak.period:.6g} d (the fit there: chi2 {change} by {abs(peak.delta_chi2):.3g})')
        for peak in result.ambiguous_peaks:
            how = (f'almost as well (chi2 worse by only {peak.delta_chi2:.2g})' if peak.delta_chi2 >= 0
                   else f'better with the {result.fit_nterms}-harmonic model (chi2 lower by {-peak.delta_chi2:.2g})')
            self.log(f'Warning: {peak.period:.6g} d fits {how}; these data cannot exclude it. Observations at other '
                     'times of night (or from another longitude) would separate the two.')

    # --- outputs ------------------------------------------------------------------------------

    def _outputs(self, tmpdir: Path, series: TimeSeries, search: PeriodSearch,
                 inputs: list[str]) -> list[PipelineOutput]:
        from tom_education.pipelines.periods.periodogram import false_alarm_levels
        from tom_education.pipelines.periods.plots import plot_periodogram, plot_phase_folded

        result = search.result
        title = f'{self.target.name}, band {result.band}'
        levels = (false_alarm_levels(series, search.grid, PLOTTED_FALSE_ALARM_PROBABILITIES)
                  if result.nterms == 1 else None)
        periodogram = tmpdir / 'periodogram.png'
        plot_periodogram(periodogram, search.grid, search.power, result, title=title, false_alarm_levels=levels)
        folded = tmpdir / 'phase_folded.png'
        plot_phase_folded(folded, series, result, title=title)
        table = tmpdir / 'period.json'
        record = {'target': self.target.name, 'inputs': inputs or ["the TOM's photometry"], **result.as_dict()}
        table.write_text(json.dumps(record, indent=1), encoding='utf-8')
        known_types = {choice for choice, _ in dataproduct_models.DATA_TYPE_CHOICES}
        image_type = IMAGE_TYPE if IMAGE_TYPE in known_types else None
        return [
            PipelineOutput(table, ReducedDatum, RESULT_TAG),
            PipelineOutput(periodogram, DataProduct, image_type),
            PipelineOutput(folded, DataProduct, image_type),
        ]
