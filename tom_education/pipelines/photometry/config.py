"""Settings of the photometry pipeline: the site's defaults (``TOM_EDUCATION_PHOTOMETRY``) and the run's options."""
from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from tom_education.models import AsyncError

#: Defaults of the ``TOM_EDUCATION_PHOTOMETRY`` setting. Lengths in pixels, or in FWHM where the name says so.
#: ``aperture_fwhm`` 1.5 keeps 99.8 % of a Gaussian star and 91 % of a Moffat (beta 3) one, the same
#: fraction whatever the seeing; the sky annulus, 3 to 5 FWHM, holds less than 0.5 % of the star's light.
DEFAULTS: dict[str, Any] = {
    'aperture_radius': None,       # fixed aperture radius; None: aperture_fwhm x the frame's FWHM
    'aperture_fwhm': 1.5,          # aperture radius in FWHM
    'annulus_inner_fwhm': 3.0,     # inner radius of the sky annulus, in FWHM
    'annulus_outer_fwhm': 5.0,     # outer radius of the sky annulus, in FWHM
    'fwhm': 4.0,                   # first guess of the seeing, refined on every frame
    'max_centroid_shift': 5.0,     # recentring further than this from the WCS position is not trusted
    'detection_sigma': 5.0,        # a star must be this significant to recentre on it or to use it as comparison
    'limit_snr': 3.0,              # below this signal-to-noise ratio a frame gives an upper limit
    'comparison_count': 5,         # size of the comparison ensemble
    'zero_point': 0.0,             # added to the instrumental magnitude -2.5 log10(flux / exptime)
    'site_latitude': None,         # the observatory, when the headers do not say (degrees, east positive)
    'site_longitude': None,
    'site_elevation': None,        # metres
}
#: Keys that may be None (meaning "automatic" or "unknown").
OPTIONAL = {'aperture_radius', 'site_latitude', 'site_longitude', 'site_elevation'}
#: Keys that may be zero or negative.
SIGNED = {'zero_point', 'site_latitude', 'site_longitude', 'site_elevation'}
#: Keys of earlier versions, and what replaced them.
RENAMED = {'annulus_inner': 'annulus_inner_fwhm', 'annulus_outer': 'annulus_outer_fwhm',
           'comparison_stars': 'comparison_count', 'centroid_box': 'max_centroid_shift'}

#: The run options (issue 11). Empty means the site's default from ``TOM_EDUCATION_PHOTOMETRY``.
OPTIONS: dict[str, dict[str, Any]] = {
    'aperture_radius': {'type': 'float', 'default': None, 'min': 0.5, 'max': 100, 'required': False,
                        'long_name': 'Aperture radius (px); empty = a multiple of the FWHM'},
    'aperture_fwhm': {'type': 'float', 'default': None, 'min': 0.3, 'max': 10, 'required': False,
                      'long_name': 'Aperture radius in FWHM (used when the radius is empty); empty = 1.5'},
    'annulus_inner_fwhm': {'type': 'float', 'default': None, 'min': 0.5, 'max': 50, 'required': False,
                           'long_name': 'Sky annulus inner radius in FWHM; empty = 3'},
    'annulus_outer_fwhm': {'type': 'float', 'default': None, 'min': 1, 'max': 60, 'required': False,
                           'long_name': 'Sky annulus outer radius in FWHM; empty = 5'},
    'detection_sigma': {'type': 'float', 'default': None, 'min': 1, 'max': 1000, 'required': False,
                        'long_name': 'Detection threshold (sigma) for recentring and comparison stars; empty = 5'},
    'limit_snr': {'type': 'float', 'default': None, 'min': 0.5, 'max': 100, 'required': False,
                  'long_name': 'Signal-to-noise ratio below which a frame gives an upper limit; empty = 3'},
    'comparison_count': {'type': 'int', 'default': None, 'min': 1, 'max': 100, 'required': False,
                         'long_name': 'Number of comparison stars (differential); empty = 5'},
    'comparison_stars': {'type': 'text', 'default': '', 'max_length': 4000, 'required': False,
                         'long_name': 'Comparison stars (RA Dec per line, degrees or sexagesimal); empty = automatic'},
}


def photometry_settings(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``TOM_EDUCATION_PHOTOMETRY`` merged over :data:`DEFAULTS`, then the run's non-empty ``options`` over both.

    Read at run time (never at import) so a TOM, or a test, can change it without a restart of
    anything but the worker; a bad value fails the run with a message naming the key.
    """
    site = getattr(settings, 'TOM_EDUCATION_PHOTOMETRY', None) or {}
    for key in site:
        if key in RENAMED:
            raise AsyncError(f'TOM_EDUCATION_PHOTOMETRY["{key}"] is no longer used: set "{RENAMED[key]}" instead '
                             '(see docs/photometry.rst).')
        if key not in DEFAULTS:
            raise AsyncError(f'TOM_EDUCATION_PHOTOMETRY has an unknown key "{key}"; known keys: '
                             f'{", ".join(DEFAULTS)}.')
    config = {**DEFAULTS, **site}
    config.update({key: value for key, value in (options or {}).items()
                   if key in DEFAULTS and value is not None})
    for key in DEFAULTS:
        value = config[key]
        if value is None and key in OPTIONAL:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AsyncError(f'TOM_EDUCATION_PHOTOMETRY["{key}"] must be a number, not {value!r}.')
        if key not in SIGNED and value <= 0:
            raise AsyncError(f'TOM_EDUCATION_PHOTOMETRY["{key}"] must be positive, not {value!r}.')
    if not config['annulus_inner_fwhm'] < config['annulus_outer_fwhm']:
        raise AsyncError(
            'The sky annulus needs annulus_inner_fwhm < annulus_outer_fwhm; '
            f'got {config["annulus_inner_fwhm"]} and {config["annulus_outer_fwhm"]}.'
        )
    config['comparison_count'] = int(config['comparison_count'])
    return config


def radii(config: dict[str, Any], fwhm: float) -> tuple[float, float, float]:
    """Aperture radius and sky annulus (inner, outer) in pixels for a frame of this FWHM.

    The annulus always starts outside a fixed aperture, by at least one FWHM.
    """
    radius = config['aperture_radius'] or config['aperture_fwhm'] * fwhm
    inner = max(config['annulus_inner_fwhm'] * fwhm, radius + fwhm)
    outer = max(config['annulus_outer_fwhm'] * fwhm, inner + fwhm)
    return radius, inner, outer
