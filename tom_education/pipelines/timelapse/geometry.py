"""Where each frame's pixels go on the movie: one reference grid, one way of resampling for every frame.

Every frame is area-averaged by the same factor (the grid's pixels per movie pixel) before it is
placed, whichever way it is placed: a frame that only drifted by whole pixels is cut out and
averaged; any other (a sub-pixel drift, a rotation, another camera) is averaged in its own pixels
first and then interpolated at the movie's pixel centres through both WCSs. So no frame is
point-sampled while another is averaged, and all frames of a movie keep the same noise and the same
sharpness.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tom_education.pipelines.fitsio import FrameInfo

#: A frame whose WCS matches the reference after a whole-pixel shift to within this many pixels is not resampled.
TRANSLATION_TOLERANCE = 0.1
#: The grid-to-frame mapping is computed through the sky on every this many movie pixels, interpolated between.
MAPPING_STEP = 8
#: Movie sides are multiples of this: H.264 and VP9 encode in 16-pixel blocks.
BLOCK = 16


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
    """The frame interpolated onto the grid at movie resolution (NaN outside the frame).

    The frame is first area-averaged by the grid's pixels per movie pixel, exactly as :func:`resize`
    averages an aligned frame, and only then interpolated: point-sampling the full-resolution
    frame would give this frame the noise of single pixels while the aligned frames show the
    noise of averages, and the movie would flicker between the two.
    """
    from scipy.ndimage import map_coordinates

    rows, columns = grid_shape
    out_rows, out_columns = out_shape
    rows_in, columns_in = data.shape
    # centres of the movie's pixels, in grid pixel coordinates, and where they fall on the frame
    grid_x = (np.arange(out_columns) + 0.5) * columns / out_columns - 0.5
    grid_y = (np.arange(out_rows) + 0.5) * rows / out_rows - 0.5
    frame_x, frame_y = pixel_mapping(grid_wcs, frame_wcs, grid_x, grid_y)
    # a movie pixel spans this many frame pixels (the grid's pixels per movie pixel, times the ratio of
    # the pixel scales when the frame comes from another camera): average over that, as for the others
    factor = max(1.0, float(np.sqrt(_median_step(frame_x, frame_y, axis=0) * _median_step(frame_x, frame_y, axis=1))))
    averaged = resize(data, (max(1, round(rows_in / factor)), max(1, round(columns_in / factor))))
    # the averaged frame's pixel j covers frame pixels [j, j + 1) x (frame side / averaged side)
    step_y, step_x = rows_in / averaged.shape[0], columns_in / averaged.shape[1]
    # a pixel covers +-0.5 around its centre: points out to the frame's outer edge are on it (the
    # half pixel beyond the outermost centres takes that pixel's value), further ones are not
    outside = ~((frame_x >= -0.5) & (frame_x <= columns_in - 0.5) & (frame_y >= -0.5) & (frame_y <= rows_in - 0.5))
    small_y = (np.nan_to_num(frame_y) + 0.5) / step_y - 0.5
    small_x = (np.nan_to_num(frame_x) + 0.5) / step_x - 0.5
    coordinates = np.array([np.clip(small_y, 0, averaged.shape[0] - 1), np.clip(small_x, 0, averaged.shape[1] - 1)])
    sampled = map_coordinates(averaged, coordinates, order=1, mode='nearest')
    sampled[outside] = np.nan
    return sampled


def _median_step(frame_x: np.ndarray, frame_y: np.ndarray, axis: int) -> float:
    """Median distance, in frame pixels, between neighbouring movie pixels along ``axis`` (NaN-safe)."""
    steps = np.hypot(np.diff(frame_x, axis=axis), np.diff(frame_y, axis=axis))
    steps = steps[np.isfinite(steps)]
    return float(np.median(steps)) if steps.size else 1.0


def pixel_mapping(grid_wcs: Any, frame_wcs: Any, grid_x: np.ndarray,
                  grid_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame pixel coordinates of the grid points ``grid_x`` x ``grid_y``: 2-D arrays, one row per ``grid_y``.

    Going through the sky for every point costs most of a resampled frame's time (a SIP
    distortion is inverted iteratively), yet the mapping between two plate solutions of nearly the
    same field is smooth: it is computed on every :data:`MAPPING_STEP`-th point and interpolated
    bilinearly between them (exact for shifts, rotations and scale changes; a fraction of a
    thousandth of a pixel off for the distortions of real optics). Where the mapping is not
    finite on the sparse points (a projection's edge), every point goes through the sky.
    """
    from scipy.ndimage import map_coordinates

    def through_sky(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mesh_x, mesh_y = np.meshgrid(xs, ys)
        with np.errstate(all='ignore'):
            x, y = frame_wcs.world_to_pixel_values(*grid_wcs.pixel_to_world_values(mesh_x, mesh_y))
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    columns = np.unique(np.append(np.arange(0, grid_x.size, MAPPING_STEP), grid_x.size - 1))
    rows = np.unique(np.append(np.arange(0, grid_y.size, MAPPING_STEP), grid_y.size - 1))
    sparse_x, sparse_y = through_sky(grid_x[columns], grid_y[rows])
    if not (np.isfinite(sparse_x).all() and np.isfinite(sparse_y).all()):
        return through_sky(grid_x, grid_y)
    # where each output point lies between the sparse points, in units of their index
    where_x = np.interp(np.arange(grid_x.size), columns, np.arange(columns.size))
    where_y = np.interp(np.arange(grid_y.size), rows, np.arange(rows.size))
    mesh = np.array(np.meshgrid(where_y, where_x, indexing='ij'))
    return (map_coordinates(sparse_x, mesh, order=1, mode='nearest'),
            map_coordinates(sparse_y, mesh, order=1, mode='nearest'))


def resize(data: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Resize a float image (NaN kept as NaN) with area averaging down and bilinear interpolation up."""
    from PIL import Image

    if data.shape == out_shape:
        return data
    invalid = ~np.isfinite(data)
    (rows, columns), (out_rows, out_columns) = data.shape, out_shape
    if rows % out_rows == 0 and columns % out_columns == 0 and not invalid.any():
        # whole-number factors (2048 to 512 pixels): the box average is a block mean, done in place by numpy
        return data.reshape(out_rows, rows // out_rows, out_columns, columns // out_columns).mean(axis=(1, 3))
    image = Image.fromarray(np.where(invalid, 0.0, data).astype(np.float32), mode='F')
    method = Image.Resampling.BOX if out_shape[0] < data.shape[0] else Image.Resampling.BILINEAR
    resized = np.asarray(image.resize((out_shape[1], out_shape[0]), method), dtype=float)
    if invalid.any():
        mask = Image.fromarray(invalid.astype(np.float32), mode='F').resize((out_shape[1], out_shape[0]), method)
        resized[np.asarray(mask) > 0.5] = np.nan
    return resized
