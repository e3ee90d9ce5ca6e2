"""A movie of the frames in time order, one per filter: GIF, MP4 or WebM.

Frames are ordered by their observation time (``DATE-OBS`` or ``MJD-OBS``), never by file name
or upload order, grouped by filter (``filter_name``), placed on one reference grid by their WCS
(:mod:`.geometry`), scaled for display with limits that cannot collapse (:mod:`.display`),
captioned with their time and filter (:mod:`.caption`) and written (:mod:`.movie`).
:mod:`.pipeline` holds the pipeline class that ties these together; the class keeps its import
path ``tom_education.pipelines.timelapse.TimelapsePipeline``.

Only one frame's pixels are in memory at a time. MP4 and WebM are streamed to ffmpeg (the
binary of ``imageio-ffmpeg``); a GIF keeps its 8-bit frames (``size`` squared bytes each) until
it is written.
"""
from typing import Any

from tom_education.pipelines.timelapse.geometry import Grid, translation

__all__ = ['DEFAULTS', 'Grid', 'TimelapsePipeline', 'timelapse_settings', 'translation']
_PIPELINE_NAMES = frozenset({'DEFAULTS', 'TimelapsePipeline', 'timelapse_settings'})


def __getattr__(name: str) -> Any:
    """The pipeline class and its settings, imported on first use.

    The science modules (geometry, display, caption, movie) need neither Django nor a database;
    importing them must not load the pipeline's Django model, so the package loads it lazily.
    """
    if name in _PIPELINE_NAMES:
        from tom_education.pipelines.timelapse import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
