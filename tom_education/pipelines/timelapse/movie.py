"""Writing the movie: 8-bit grey frames to a GIF (Pillow) or an MP4/WebM (ffmpeg through imageio)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from tom_education.pipelines.timelapse.caption import draw_caption
from tom_education.pipelines.timelapse.display import DisplayScale
from tom_education.pipelines.timelapse.geometry import BLOCK

#: Movie formats and the ffmpeg codec of each (GIF is written by Pillow).
CODECS = {'gif': None, 'mp4': 'libx264', 'webm': 'libvpx-vp9'}


def available_formats() -> tuple[str, ...]:
    """The formats this installation can write: GIF always, MP4 and WebM when ``imageio-ffmpeg`` is installed.

    Looked up without importing anything, so the choice offered to users never names a format a
    run would then fail to write.
    """
    video = importlib.util.find_spec('imageio') is not None and importlib.util.find_spec('imageio_ffmpeg') is not None
    return tuple(fmt for fmt in CODECS if fmt == 'gif' or video)


def movie_frame(placed: np.ndarray, scale: DisplayScale, caption: str = '') -> np.ndarray:
    """A placed frame as the movie shows it: 8-bit grey, north up, with its caption if one is given.

    FITS row 0 is the bottom of the image (north up, east left for a standard WCS); movie row 0 is
    the top, so the rows are turned over before the caption is drawn.
    """
    image = np.ascontiguousarray(scale.to_bytes(placed)[::-1])
    return draw_caption(image, caption) if caption else image


class MovieWriter:
    """Appends 8-bit grey frames (row 0 at the top) to a GIF or a video file."""

    def __init__(self, path: Path, fmt: str, fps: float) -> None:
        self.path, self.format, self.fps = path, fmt, fps
        self._gif_frames: list[Any] = []
        self._video = None
        if fmt != 'gif':
            import imageio.v2 as imageio

            self._video = imageio.get_writer(
                path, format='FFMPEG', mode='I', fps=fps, codec=CODECS[fmt], pixelformat='yuv420p',
                macro_block_size=BLOCK, ffmpeg_log_level='error', quality=8,
            )

    def append(self, frame: np.ndarray) -> None:
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
