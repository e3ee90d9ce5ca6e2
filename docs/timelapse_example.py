"""The figure of ``docs/timelapse.rst``: one frame of the movie of 8-bit quantised frames, as the pipeline draws it.

Run from the repository's root::

    .venv/bin/python docs/timelapse_example.py      # writes docs/images/timelapse_frame.png

The frames are the tests' small-telescope frames (``tests/science_data.py``): 99 % of the sky in
one value, stars 5 to 20 ADU above it, FWHM 6 px, four filters. Each step is the pipeline's own
function: placing on the first frame's grid, the sky subtracted, the display scale of the first
frame, the caption.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import django
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')
django.setup()

from PIL import Image  # noqa: E402

from tests.science_data import filtered_movie_frames  # noqa: E402
from tom_education.pipelines.fitsio import filter_name, read_frame_info, read_pixels  # noqa: E402
from tom_education.pipelines.timelapse.caption import caption_text  # noqa: E402
from tom_education.pipelines.timelapse.display import display_scale  # noqa: E402
from tom_education.pipelines.timelapse.geometry import Grid  # noqa: E402
from tom_education.pipelines.timelapse.movie import movie_frame  # noqa: E402

IMAGE = ROOT / 'docs' / 'images' / 'timelapse_frame.png'
#: Which frame of the V movie is shown (the second: it is resampled, the field drifted by a fraction of a pixel).
SHOWN = 1


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        paths = filtered_movie_frames(Path(folder), ('B', 'V', 'R', 'I'), 3, size=256, drift=0.3)
        frames = [read_frame_info(path, path.name) for path in paths]
        v_band = [frame for frame in frames if filter_name(frame.header) == 'V']
        grid = Grid(v_band[0].shape, v_band[0].wcs, 256)
        placed = [grid.place(read_pixels(frame), frame)[0] for frame in v_band[:SHOWN + 1]]
        placed = [image - np.nanmedian(image) for image in placed]
        scale = display_scale(placed[0], 'zscale')
        shown = v_band[SHOWN]
        image = movie_frame(placed[SHOWN], scale, caption_text(shown.isot, filter_name(shown.header)))
    Image.fromarray(image, mode='L').save(IMAGE, optimize=True)
    print(f'{IMAGE.relative_to(ROOT)}: {scale.how}')


if __name__ == '__main__':
    main()
