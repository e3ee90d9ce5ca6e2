"""The light curve as a CSV table and a PNG plot with error bars and upper limits."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

#: Columns of the table, in order; see docs/photometry.rst for what each holds.
CSV_COLUMNS = [
    'time', 'mjd_utc', 'filter', 'mag', 'mag_err', 'limit', 'snr', 'flux', 'flux_err', 'sky', 'sky_noise',
    'fwhm', 'aperture', 'x', 'y', 'centroid', 'centroid_reason', 'exposure_time', 'telescope', 'instrument',
    'bjd_tdb', 'airmass', 'file',
]
DIFFERENTIAL_COLUMNS = ['ensemble_flux', 'ensemble_flux_err', 'comparison_stars']


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """The rows as a CSV file with ``columns`` in that order (missing values empty)."""
    with path.open('w', newline='', encoding='utf-8') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def plot_light_curve(rows: list[dict[str, Any]], path: Path, *, title: str, differential: bool = False) -> None:
    """Magnitude against time with one-sigma error bars, upper limits as open triangles, brighter upwards.

    One colour per filter. Uses matplotlib's object API with the Agg canvas: no pyplot global
    state, safe in a worker that runs several pipelines in threads.
    """
    from astropy.time import Time
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = [row for row in rows if row['mag'] != '' or row['limit'] != '']
    for number, band in enumerate(sorted({row['filter'] for row in shown})):
        colour = f'C{number}'
        detected = [row for row in shown if row['filter'] == band and row['mag'] != '']
        limits = [row for row in shown if row['filter'] == band and row['mag'] == '']
        if detected:
            axes.errorbar(Time([row['time'] for row in detected], scale='utc').to_datetime(),
                          [float(row['mag']) for row in detected], yerr=[float(row['mag_err']) for row in detected],
                          fmt='o', markersize=4, capsize=2, color=colour, label=band)
        if limits:
            axes.plot(Time([row['time'] for row in limits], scale='utc').to_datetime(),
                      [float(row['limit']) for row in limits], 'v', markerfacecolor='none', color=colour,
                      label=f'{band} upper limit')
    axes.invert_yaxis()  # magnitudes: brighter is smaller
    axes.set_xlabel('Time (UTC, mid-exposure)')
    axes.set_ylabel('Magnitude relative to the ensemble' if differential else 'Instrumental magnitude')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if shown:
        axes.legend(title='Filter')
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    figure.savefig(path, format='png')
