"""When and from where a frame was taken: mid-exposure time, observatory location, BJD_TDB, airmass."""
from __future__ import annotations

import math
from typing import Any

from astropy import units
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time, TimeDelta

from tom_education.pipelines.fitsio import header_number


def mid_exposure(start: Time, exptime: float | None) -> Time:
    """The middle of the exposure, taking ``DATE-OBS`` as its start (the FITS convention most observatories follow)."""
    return start + TimeDelta(exptime / 2.0, format='sec') if exptime else start


def _signed(header: fits.Header, key: str) -> float | None:
    """A header number that may be negative or sexagesimal (latitudes and longitudes are)."""
    value = header.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            from astropy.coordinates import Angle

            return float(Angle(value.strip(), unit=units.deg).deg)
        except ValueError:
            return None
    return None


def site_location(header: fits.Header, configured: dict[str, Any]) -> tuple[EarthLocation | None, str]:
    """The observatory's location and where it came from: ``OBSGEO-X/Y/Z``, ``SITELAT``/``SITELONG``, or the setting.

    East longitudes are positive, as in the FITS standard and astropy.
    """
    xyz = [_signed(header, f'OBSGEO-{axis}') for axis in 'XYZ']
    if all(value is not None for value in xyz) and any(value != 0 for value in xyz):
        return EarthLocation.from_geocentric(*xyz, unit=units.m), 'OBSGEO-X/Y/Z'
    for lat_key, lon_key, height_key in (('SITELAT', 'SITELONG', 'SITEELEV'), ('OBSGEO-B', 'OBSGEO-L', 'OBSGEO-H'),
                                         ('LATITUDE', 'LONGITUD', 'ALTITUDE')):
        lat, lon = _signed(header, lat_key), _signed(header, lon_key)
        if lat is not None and lon is not None:
            height = header_number(header, height_key) or 0.0
            return EarthLocation.from_geodetic(lon, lat, height), f'{lat_key}/{lon_key}'
    if configured.get('site_latitude') is not None and configured.get('site_longitude') is not None:
        return (EarthLocation.from_geodetic(configured['site_longitude'], configured['site_latitude'],
                                            configured.get('site_elevation') or 0.0),
                'TOM_EDUCATION_PHOTOMETRY site_latitude/site_longitude')
    return None, ''


def bjd_tdb_and_airmass(time: Time, location: EarthLocation, ra: float, dec: float) -> tuple[float, float]:
    """Barycentric Julian Date (TDB) of ``time`` for a star at ``ra``/``dec``, and the star's airmass then.

    The airmass is ``sec z`` (plane-parallel), good to 1 % up to airmass 3. Earth-orientation
    tables are not downloaded: the ones bundled with astropy are good to far better than a second.
    """
    from astropy.utils import iers

    target = SkyCoord(ra * units.deg, dec * units.deg)
    when = Time(time, location=location)
    with iers.conf.set_temp('auto_download', False):  # a worker may have no internet; the bundled tables do
        bjd = (when.tdb + when.light_travel_time(target, 'barycentric')).jd
        altitude = target.transform_to(AltAz(obstime=when, location=location)).alt.deg
    airmass = 1.0 / math.sin(math.radians(altitude)) if altitude > 0 else math.nan
    return float(bjd), airmass
