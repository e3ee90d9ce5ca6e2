"""A movie of the frames in time order: GIF, MP4 or WebM.

Frames are ordered by their observation time (``DATE-OBS`` or ``MJD-OBS``), never by file name
or upload order, and each is scaled for display with astropy's visualization tools: a zscale
interval and a stretch.

Alignment: frames rarely share one geometry (a meridian flip turns the field by 180 degrees,
another camera has other pixels). Every frame is therefore placed on one *reference grid* by
its WCS: the first frame's pixels, or, with ``crop_to_target``, a box around the target cut
from the first frame with ``Cutout2D``. A frame whose WCS is the reference's shifted by whole
pixels (the usual case: the same camera, a little drift) is simply cut out, without
interpolation; any other frame (rotated, flipped, rescaled) is resampled onto the grid by
bilinear interpolation through both WCSs (``scipy.ndimage.map_coordinates``), directly at the
movie's resolution. This is the interpolation that the ``reproject`` package does, for the few
hundred thousand pixels of a movie frame, without adding a dependency. Without
``crop_to_target``, frames with no celestial WCS are shown as they are, resized to the movie.

Only one frame's pixels are in memory at a time. MP4 and WebM are streamed to ffmpeg (the
binary of ``imageio-ffmpeg``); a GIF keeps its 8-bit frames (``size`` squared bytes each) until
it is written.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
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
    read_frames,
    read_pixels,
)

#: Defaults of the ``TOM_EDUCATION_TIMELAPSE`` setting.
DEFAULTS: dict[str, Any] = {
    'format': 'gif',      # 'gif', 'mp4' or 'webm'
    'fps': 10,            # frames per second
    'size': 512,          # pixels of the movie's longest side
    'stretch': 'linear',  # 'linear', 'sqrt', 'log' or 'asinh', applied after the zscale interval
    'crop_size': 128,     # side, in pixels of the first frame, of the box cut around the target
}
FORMATS = {'gif': None, 'mp4': 'libx264', 'webm': 'libvpx-vp9'}
STRETCHES = ('linear', 'sqrt', 'log', 'asinh')
#: A frame whose WCS matches the reference after a whole-pixel shift to within this many pixels is not resampled.
TRANSLATION_TOLERANCE = 0.1
#: Movie sides are multiples of this: H.264 and VP9 encode in 16-pixel blocks.
BLOCK = 16


def timelapse_settings() -> dict[str, Any]:
    """``TOM_EDUCATION_TIMELAPSE`` merged over :data:`DEFAULTS`, checked at run time (never at import)."""
    config = {**DEFAULTS, **(getattr(settings, 'TOM_EDUCATION_TIMELAPSE', None) or {})}
    config['format'] = str(config['format']).lower().lstrip('.')
    if config['format'] not in FORMATS:
        raise AsyncError(f'TOM_EDUCATION_TIMELAPSE["format"] must be one of {", ".join(FORMATS)}, '
                         f'not {config["format"]!r}.')
    if config['stretch'] not in STRETCHES:
        raise AsyncError(f'TOM_EDUCATION_TIMELAPSE["stretch"] must be one of {", ".join(STRETCHES)}, '
                         f'not {config["stretch"]!r}.')
    for key, low in (('fps', 0), ('size', BLOCK - 1), ('crop_size', 1)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
            raise AsyncError(f'TOM_EDUCATION_TIMELAPSE["{key}"] must be a number above {low}, not {value!r}.')
    return config


# --- geometry: where each frame's pixels go on the movie ----------------------------------------


class Grid:
    """The reference pixel grid every frame is placed on, and the movie frame it is shown as."""

    def __init__(self, shape: tuple[int, int], wcs: Any | None, size: int) -> None:
        self.shape = shape
        self.wcs = wcs
        self.out_shape = movie_shape(shape, size)

    def place(self, data: np.ndarray, frame: FrameInfo) -> tuple[np.ndarray, str]:
        """The frame's pixels on this grid, at movie resolution, and how they got there (for the log)."""
        if self.wcs is None or frame.wcs is None:
            reason = 'the first frame has no WCS to align on' if self.wcs is None else 'it has no WCS'
            return resize(data, self.out_shape), f'shown as it is ({reason})'
        offset = translation(self.wcs, frame.wcs, self.shape)
        if offset == (0, 0) and data.shape == self.shape:
            return resize(data, self.out_shape), 'aligned'
        if offset is not None:
            dx, dy = offset
            return resize(shifted_window(data, dx, dy, self.shape), self.out_shape), (
                'aligned' if (dx, dy) == (0, 0) else f'aligned by a shift of ({dx}, {dy}) pixels'
            )
        return resample(data, frame.wcs, self.wcs, self.shape, self.out_shape), 'resampled onto the reference WCS'


def movie_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """Rows and columns of the movie: longest side ``size``, the aspect kept, both multiples of 16."""
    scale = size / max(shape)
    return tuple(max(BLOCK, int(round(side * scale / BLOCK)) * BLOCK) for side in shape)  # type: ignore[return-value]


def translation(reference: Any, other: Any, shape: tuple[int, int]) -> tuple[int, int] | None:
    """Whole-pixel shift ``(dx, dy)`` from reference pixels to ``other``'s, or ``None`` if it is not a pure shift.

    Corners and centre of the grid go to the sky through the reference WCS and back through the
    other; if every point moves by the same whole number of pixels, the other frame can be cut
    out without interpolation.
    """
    rows, columns = shape
    xs = np.array([0, columns - 1, 0, columns - 1, (columns - 1) / 2])
    ys = np.array([0, 0, rows - 1, rows - 1, (rows - 1) / 2])
    with np.errstate(all='ignore'):
        world = reference.pixel_to_world_values(xs, ys)
        other_x, other_y = other.world_to_pixel_values(*world)
    shift_x, shift_y = np.asarray(other_x) - xs, np.asarray(other_y) - ys
    if not (np.isfinite(shift_x).all() and np.isfinite(shift_y).all()):
        return None
    dx, dy = int(round(float(shift_x.mean()))), int(round(float(shift_y.mean())))
    if max(np.abs(shift_x - dx).max(), np.abs(shift_y - dy).max()) > TRANSLATION_TOLERANCE:
        return None
    return dx, dy


def shifted_window(data: np.ndarray, dx: int, dy: int, shape: tuple[int, int]) -> np.ndarray:
    """``data[dy:dy+rows, dx:dx+columns]``, with NaN where that window leaves the frame."""
    rows, columns = shape
    window = np.full(shape, np.nan)
    top, left = max(dy, 0), max(dx, 0)
    bottom, right = min(dy + rows, data.shape[0]), min(dx + columns, data.shape[1])
    if bottom > top and right > left:
        window[top - dy:bottom - dy, left - dx:right - dx] = data[top:bottom, left:right]
    return window


def resample(data: np.ndarray, frame_wcs: Any, grid_wcs: Any, grid_shape: tuple[int, int],
             out_shape: tuple[int, int]) -> np.ndarray:
    """The frame interpolated onto the grid, sampled at movie resolution (NaN outside the frame)."""
    from scipy.ndimage import map_coordinates

    rows, columns = grid_shape
    out_rows, out_columns = out_shape
    # centres of the movie's pixels, in grid pixel coordinates
    grid_x = (np.arange(out_columns) + 0.5) * columns / out_columns - 0.5
    grid_y = (np.arange(out_rows) + 0.5) * rows / out_rows - 0.5
    mesh_x, mesh_y = np.meshgrid(grid_x, grid_y)
    with np.errstate(all='ignore'):
        frame_x, frame_y = frame_wcs.world_to_pixel_values(*grid_wcs.pixel_to_world_values(mesh_x, mesh_y))
    frame_x, frame_y = np.asarray(frame_x, dtype=float), np.asarray(frame_y, dtype=float)
    # a pixel covers +-0.5 around its centre: points out to the frame's outer edge are on it (the
    # half pixel beyond the outermost centres takes that pixel's value), further ones are not
    rows_in, columns_in = data.shape
    outside = ~((frame_x >= -0.5) & (frame_x <= columns_in - 0.5) & (frame_y >= -0.5) & (frame_y <= rows_in - 0.5))
    coordinates = np.array([np.clip(np.nan_to_num(frame_y), 0, rows_in - 1),
                            np.clip(np.nan_to_num(frame_x), 0, columns_in - 1)])
    sampled = map_coordinates(data, coordinates, order=1, mode='nearest')
    sampled[outside] = np.nan
    return sampled


def resize(data: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Resize a float image (NaN kept as NaN) with area averaging down and bilinear interpolation up."""
    from PIL import Image

    if data.shape == out_shape:
        return data
    invalid = ~np.isfinite(data)
    image = Image.fromarray(np.where(invalid, 0.0, data).astype(np.float32), mode='F')
    method = Image.Resampling.BOX if out_shape[0] < data.shape[0] else Image.Resampling.BILINEAR
    resized = np.asarray(image.resize((out_shape[1], out_shape[0]), method), dtype=float)
    if invalid.any():
        mask = Image.fromarray(invalid.astype(np.float32), mode='F').resize((out_shape[1], out_shape[0]), method)
        resized[np.asarray(mask) > 0.5] = np.nan
    return resized


# --- display scaling ----------------------------------------------------------------------------


def display_transform(first: np.ndarray, stretch: str) -> Callable[[np.ndarray], np.ndarray]:
    """Pixel values to 0..255, with the zscale limits of the first frame shared by all frames.

    Shared limits keep the movie from flickering and let a brightening star or sky show as
    brightening; per-frame limits would rescale each frame to look the same.
    """
    from astropy.visualization import (
        AsinhStretch,
        LinearStretch,
        LogStretch,
        ManualInterval,
        SqrtStretch,
        ZScaleInterval,
    )

    finite = first[np.isfinite(first)]
    if finite.size == 0:
        raise AsyncError('The first frame has no valid pixels on the movie area.')
    low, high = ZScaleInterval().get_limits(finite)
    if not high > low:
        high = low + 1.0
    chosen = {'linear': LinearStretch, 'sqrt': SqrtStretch, 'log': LogStretch, 'asinh': AsinhStretch}[stretch]()
    transform = chosen + ManualInterval(low, high)

    def to_bytes(image: np.ndarray) -> np.ndarray:
        scaled = transform(np.nan_to_num(image, nan=low), clip=True)
        return np.round(np.asarray(scaled) * 255).astype(np.uint8)

    return to_bytes


# --- writing the movie ----------------------------------------------------------------------------


class MovieWriter:
    """Appends 8-bit grey frames to a GIF (Pillow) or an MP4/WebM (ffmpeg through imageio)."""

    def __init__(self, path: Path, fmt: str, fps: float) -> None:
        self.path, self.format, self.fps = path, fmt, fps
        self._gif_frames: list[Any] = []
        self._video = None
        if fmt != 'gif':
            import imageio.v2 as imageio

            self._video = imageio.get_writer(
                path, format='FFMPEG', mode='I', fps=fps, codec=FORMATS[fmt], pixelformat='yuv420p',
                macro_block_size=BLOCK, ffmpeg_log_level='error', quality=8,
            )

    def append(self, frame: np.ndarray) -> None:
        # FITS row 0 is the bottom of the image (north up, east left for a standard WCS), movie row 0 the top
        frame = np.ascontiguousarray(frame[::-1])
        if self._video is not None:
            self._video.append_data(np.repeat(frame[:, :, None], 3, axis=2))
        else:
            from PIL import Image

            self._gif_frames.append(Image.fromarray(frame, mode='L'))

    def discard(self) -> None:
        """Stop without writing a complete file (the run failed); ends the ffmpeg process if one runs."""
        self._gif_frames.clear()
        if self._video is not None:
            try:
                self._video.close()
            except Exception:  # noqa: BLE001 - ffmpeg may already be gone; the run's own error matters
                pass
            self._video = None

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            return
        first, *rest = self._gif_frames
        # GIF stores durations in hundredths of a second; Pillow takes milliseconds
        first.save(self.path, format='GIF', save_all=True, append_images=rest, loop=0,
                   duration=max(20, int(round(1000 / self.fps))), optimize=False)


# --- the pipeline -------------------------------------------------------------------------------


class TimelapsePipeline(PipelineProcess):
    """A movie (GIF, MP4 or WebM) of the frames in the order they were taken.

    Each frame is aligned on the first by its WCS and scaled with zscale; the format, speed and
    size come from the TOM_EDUCATION_TIMELAPSE setting.
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
    }

    class Meta:
        proxy = True

    def do_pipeline(self, tmpdir: Path, **flags: bool) -> list[PipelineOutput]:
        config = timelapse_settings()
        normalise, crop = flags.get('normalise_background', True), flags.get('crop_to_target', False)
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

        movie = tmpdir / f'{self.short_name}.{config["format"]}'
        writer = MovieWriter(movie, config['format'], float(config['fps']))
        try:
            with self.update_status(f'Rendering {len(frames)} frames'):
                grid = self._render(frames, writer, normalise, crop, config)
            with self.update_status(f'Writing the {config["format"].upper()} file'):
                writer.close()
        except BaseException:
            writer.discard()  # a failed or cancelled run must not leave ffmpeg running
            raise
        self.log(f'{movie.name}: {len(frames)} frames of {grid.out_shape[1]} x {grid.out_shape[0]} pixels '
                 f'at {config["fps"]:g} frames per second')
        return [PipelineOutput(movie, DataProduct, 'timelapse')]

    def _render(self, frames: list[FrameInfo], writer: MovieWriter, normalise: bool, crop: bool,
                config: dict[str, Any]) -> Grid:
        """Place, scale and append each frame in time order, one frame's pixels in memory at a time."""
        grid: Grid | None = None
        to_bytes: Callable[[np.ndarray], np.ndarray] | None = None
        for number, frame in enumerate(frames, start=1):
            data = read_pixels(frame)
            if grid is None:
                grid, data, frame_wcs = self._reference_grid(frame, data, crop, config)
                frame = dataclasses.replace(frame, shape=data.shape, wcs=frame_wcs)
            placed, how = grid.place(data, frame)
            del data
            if not np.isfinite(placed).any():
                how += '; none of it falls on the reference area, so the frame is blank'
            elif normalise:
                placed = placed - np.nanmedian(placed)
            if to_bytes is None:
                to_bytes = display_transform(placed, config['stretch'])
            writer.append(to_bytes(placed))
            self.log(f'[{number}/{len(frames)}] {frame.name} ({frame.isot}): {how}')
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
