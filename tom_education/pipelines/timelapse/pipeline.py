"""The timelapse pipeline: reads the frames, groups them by filter, and has each movie rendered and written."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from tom_dataproducts.models import DataProduct

from tom_education.models import AsyncError, PipelineOutput, PipelineProcess
from tom_education.pipelines.fitsio import (
    FITS_SUFFIXES,
    FrameInfo,
    describe_span,
    filter_name,
    read_frames,
    read_pixels,
)
from tom_education.pipelines.timelapse.caption import caption_text
from tom_education.pipelines.timelapse.display import STRETCHES, DisplayScale, display_scale
from tom_education.pipelines.timelapse.geometry import BLOCK, Grid
from tom_education.pipelines.timelapse.movie import CODECS, MovieWriter, available_formats, movie_frame

#: Defaults of the ``TOM_EDUCATION_TIMELAPSE`` setting: the site's defaults of the options left empty.
DEFAULTS: dict[str, Any] = {
    'format': 'gif',       # 'gif', 'mp4' or 'webm'
    'fps': 10,             # frames per second
    'size': 512,           # pixels of the movie's longest side
    'stretch': 'zscale',   # 'zscale', 'percentile' or 'asinh'
    'crop_size': 128,      # side, in pixels of the first frame, of the box cut around the target
}
#: Option names that, left empty, take their value from ``TOM_EDUCATION_TIMELAPSE``.
SITE_DEFAULT_OPTIONS = ('format', 'fps', 'size', 'stretch')


def timelapse_settings() -> dict[str, Any]:
    """``TOM_EDUCATION_TIMELAPSE`` merged over :data:`DEFAULTS`, checked at run time (never at import)."""
    config = {**DEFAULTS, **(getattr(settings, 'TOM_EDUCATION_TIMELAPSE', None) or {})}
    config['format'] = str(config['format']).lower().lstrip('.')
    if config['format'] not in CODECS:
        raise AsyncError(f'TOM_EDUCATION_TIMELAPSE["format"] must be one of {", ".join(CODECS)}, '
                         f'not {config["format"]!r}.')
    if config['stretch'] not in STRETCHES:
        raise AsyncError(f'TOM_EDUCATION_TIMELAPSE["stretch"] must be one of {", ".join(STRETCHES)}, '
                         f'not {config["stretch"]!r}.')
    for key, low in (('fps', 0), ('size', BLOCK - 1), ('crop_size', 1)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
            raise AsyncError(f'TOM_EDUCATION_TIMELAPSE["{key}"] must be a number above {low}, not {value!r}.')
    return config


def run_config(params: dict[str, Any]) -> dict[str, Any]:
    """The site's settings with this run's options on top: an option left empty keeps the site's value."""
    config = timelapse_settings()
    for name in SITE_DEFAULT_OPTIONS:
        if params.get(name) not in (None, ''):
            config[name] = params[name]
    if config['format'] not in available_formats():
        raise AsyncError(f'This installation cannot write {config["format"].upper()} movies (imageio-ffmpeg is not '
                         f'installed); choose one of {", ".join(available_formats())}.')
    return config


def group_by_filter(frames: list[FrameInfo], chosen: str) -> tuple[list[tuple[str | None, list[FrameInfo]]], str]:
    """The frames split into one group per filter (in order of first appearance), and a sentence for the log.

    With ``chosen`` (compared without regard to case), only that filter's frames, in one group;
    a filter no frame has is an error naming the filters there are.
    """
    groups: dict[str | None, list[FrameInfo]] = {}
    for frame in frames:
        groups.setdefault(filter_name(frame.header), []).append(frame)
    counts = ', '.join(f'{name or "no filter keyword"}: {len(group)}' for name, group in groups.items())
    chosen = chosen.strip()
    if chosen:
        matching = [name for name in groups if name is not None and name.casefold() == chosen.casefold()]
        if not matching:
            raise AsyncError(f'No frame is in filter "{chosen}"; the frames are in {counts}. Choose one of these '
                             'filters, or leave the filter option empty for one movie per filter.')
        name = matching[0]
        return [(name, groups[name])], (f'Filter "{name}" chosen: {len(groups[name])} of {len(frames)} frames go into '
                                        f'the movie (all frames: {counts})')
    if len(groups) == 1:
        (name,) = groups
        where = f'in filter {name}' if name else 'without a FILTER keyword'
        return list(groups.items()), f'All {len(frames)} frames are {where}: one movie'
    return list(groups.items()), f'Frames in {len(groups)} filters ({counts}): one movie per filter'


def movie_name(stem: str, filter_label: str | None, fmt: str, several: bool) -> str:
    """``timelapse.gif`` for a single movie, ``timelapse_V.gif`` (file-name safe) for one of several."""
    if not several:
        return f'{stem}.{fmt}'
    label = re.sub(r'[^A-Za-z0-9._-]+', '-', filter_label or 'no-filter').strip('-.') or 'filter'
    return f'{stem}_{label}.{fmt}'


class TimelapsePipeline(PipelineProcess):
    """A movie (GIF, MP4 or WebM) of the frames in the order they were taken, one per filter.

    Each frame is aligned on the first by its WCS, scaled with zscale (asinh when zscale has
    nothing to show) and captioned with its time and filter; options choose the format, speed,
    size, stretch and filter.
    """

    short_name = 'timelapse'
    allowed_suffixes = FITS_SUFFIXES
    flags = {
        'normalise_background': {
            'default': True,
            'long_name': 'Normalise the background (subtract each frame\'s median so all frames share one sky level)',
        },
        'crop_to_target': {
            'default': False,
            'long_name': 'Crop to a box around the target (needs a WCS in the frames)',
        },
        'caption': {
            'default': True,
            'long_name': 'Caption each frame with its time and filter',
        },
    }
    options = {
        'format': {'type': 'choice', 'choices': list(available_formats()), 'default': '', 'required': False,
                   'long_name': 'Movie format',
                   'help': 'Empty: the site\'s default (GIF unless TOM_EDUCATION_TIMELAPSE says otherwise).'},
        'fps': {'type': 'int', 'default': None, 'min': 1, 'max': 60, 'required': False,
                'long_name': 'Frames per second',
                'help': 'Empty: the site\'s default (10 unless TOM_EDUCATION_TIMELAPSE says otherwise).'},
        'size': {'type': 'int', 'default': None, 'min': 64, 'max': 2048, 'required': False,
                 'long_name': 'Movie size (px, longest side)',
                 'help': 'Rounded to a multiple of 16. Empty: the site\'s default (512 unless '
                         'TOM_EDUCATION_TIMELAPSE says otherwise).'},
        'stretch': {'type': 'choice', 'choices': list(STRETCHES), 'default': '', 'required': False,
                    'long_name': 'Stretch',
                    'help': 'zscale: the sky\'s noise in view; percentile: 0.5 to 99.8 %; asinh: faint and bright '
                            'stars at once. A zscale or percentile range too narrow to show anything becomes asinh. '
                            'Empty: the site\'s default (zscale unless TOM_EDUCATION_TIMELAPSE says otherwise).'},
        'filter': {'type': 'text', 'default': '', 'max_length': 40, 'long_name': 'Filter',
                   'help': 'Only the frames of this filter (the FILTER keyword). Empty: one movie per filter.'},
    }

    class Meta:
        proxy = True

    def do_pipeline(self, tmpdir: Path, **params: Any) -> list[PipelineOutput]:
        config = run_config(params)
        crop = params.get('crop_to_target', False)
        products = list(self.input_files.all())
        with self.update_status(f'Reading the headers of {len(products)} frames'):
            frames = read_frames(self, products)
            self.log(f'Ordered {describe_span(frames)} by observation time')
        if crop:
            usable = [frame for frame in frames if frame.wcs is not None]
            for frame in frames:
                if frame.wcs is None:
                    self.log(f'{frame.name}: skipped, it has no celestial WCS to find the target in')
            if not usable:
                raise AsyncError('Cropping to the target needs frames with a celestial WCS; none of them has one.')
            frames = usable
        if not frames:
            raise AsyncError('There are no frames to make a timelapse of.')
        groups, how = group_by_filter(frames, params.get('filter') or '')
        self.log(how)

        outputs, done, total = [], 0, sum(len(group) for _, group in groups)
        for label, group in groups:
            movie = tmpdir / movie_name(self.short_name, label, config['format'], len(groups) > 1)
            writer = MovieWriter(movie, config['format'], float(config['fps']))
            try:
                with self.update_status(f'Rendering {movie.name}: {len(group)} frames'):
                    grid = self._render(group, writer, params, config, done, total)
                with self.update_status(f'Writing {movie.name}'):
                    writer.close()
            except BaseException:
                writer.discard()  # a failed or cancelled run must not leave ffmpeg running
                raise
            done += len(group)
            self.log(f'{movie.name}: {len(group)} frames of {grid.out_shape[1]} x {grid.out_shape[0]} pixels '
                     f'at {config["fps"]:g} frames per second')
            outputs.append(PipelineOutput(movie, DataProduct, 'timelapse'))
        return outputs

    def _render(self, frames: list[FrameInfo], writer: MovieWriter, params: dict[str, Any], config: dict[str, Any],
                done: int, total: int) -> Grid:
        """Place, scale, caption and append each frame in time order, one frame's pixels in memory at a time."""
        grid: Grid | None = None
        scale: DisplayScale | None = None
        for number, frame in enumerate(frames, start=done + 1):
            data = read_pixels(frame)
            if grid is None:
                grid, data, frame_wcs = self._reference_grid(frame, data, params.get('crop_to_target', False), config)
                frame = dataclasses.replace(frame, shape=data.shape, wcs=frame_wcs)
            placed, how = grid.place(data, frame)
            del data
            if not np.isfinite(placed).any():
                if scale is None:
                    raise AsyncError(f'{frame.name}, the first frame of the movie, has no valid pixels on the movie '
                                     'area.')
                how += '; none of it falls on the reference area, so the frame is blank'
            elif params.get('normalise_background', True):
                placed = placed - np.nanmedian(placed)
            if scale is None:
                scale = display_scale(placed, config['stretch'])
                self.log(f'Display scale from {frame.name}: {scale.how}')
            caption = caption_text(frame.isot, filter_name(frame.header)) if params.get('caption', True) else ''
            writer.append(movie_frame(placed, scale, caption))
            self.log(f'[{number}/{total}] {frame.name} ({frame.isot}): {how}')
            self.progress(number, total, frame.name)
        assert grid is not None  # the group has at least one frame
        return grid

    def _reference_grid(self, frame: FrameInfo, data: np.ndarray, crop: bool,
                        config: dict[str, Any]) -> tuple[Grid, np.ndarray, Any]:
        """The grid all frames go on, from the first frame; with ``crop``, the box around the target."""
        if not crop:
            return Grid(frame.shape, frame.wcs, int(config['size'])), data, frame.wcs
        from astropy.coordinates import SkyCoord
        from astropy.nddata import Cutout2D, NoOverlapError

        position = SkyCoord(float(self.target.ra), float(self.target.dec), unit='deg')
        side = int(math.ceil(config['crop_size']))
        try:
            cutout = Cutout2D(data, position, (side, side), wcs=frame.wcs, mode='partial', fill_value=np.nan)
        except NoOverlapError:
            raise AsyncError(
                f'The target (RA {self.target.ra:.5f}, Dec {self.target.dec:.5f}) is not on {frame.name}, the first '
                'frame, so there is nothing to crop around.'
            ) from None
        self.log(f'Cropping a {side} x {side} pixel box around the target, centred at pixel '
                 f'({cutout.center_original[0]:.1f}, {cutout.center_original[1]:.1f}) of {frame.name}')
        return Grid(cutout.shape, cutout.wcs, int(config['size'])), cutout.data, cutout.wcs
