"""Light curve of the target by aperture photometry on each frame.

For every frame: the target's RA/Dec goes through the frame's celestial WCS to a pixel position;
the seeing (FWHM) is measured on stars near the target; the aperture is recentred on the star in
a box scaled to the seeing; the flux is summed in a circle of a few FWHM and the sky, measured in
an annulus around it, is subtracted. Errors follow the CCD equation, with a noise floor that
holds on quantised frames and a documented assumption when the header has no gain. A frame where
the target is too faint gives an upper limit. Optionally the target is measured against an
ensemble of comparison stars, which cancels thin clouds and changing airmass.

One module per job: :mod:`.noise` (the error model), :mod:`.seeing` (detection and FWHM),
:mod:`.centring`, :mod:`.apertures` (sums and sky), :mod:`.ensemble` (comparison stars),
:mod:`.timing` (mid-exposure, BJD_TDB, airmass), :mod:`.output` (CSV and plot), :mod:`.config`
(settings and run options) and :mod:`.pipeline` (the class that calls them).

Heavy libraries (photutils, scipy, matplotlib) are imported inside the functions that use them.
"""
from tom_education.pipelines.photometry.apertures import StarMeasurements, annulus_sky, aperture_sums, measure_stars
from tom_education.pipelines.photometry.config import DEFAULTS, OPTIONS, photometry_settings
from tom_education.pipelines.photometry.noise import MAG_PER_RELATIVE_ERROR, QUANTISATION_NOISE
from tom_education.pipelines.photometry.pipeline import AperturePhotometryPipeline

__all__ = [
    'DEFAULTS', 'MAG_PER_RELATIVE_ERROR', 'OPTIONS', 'QUANTISATION_NOISE', 'AperturePhotometryPipeline',
    'StarMeasurements', 'annulus_sky', 'aperture_sums', 'measure_stars', 'photometry_settings',
]
