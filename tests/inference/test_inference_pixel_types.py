"""A float mosaic reaches the model through the documented linear map (mosaic/pixel_map.py).

The engine is not changed for mapped pixel types: it reads uint16 and the ``full_scale``
rule makes the file's sampled range [low, high] the model's 0-1 input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from rcm_viewer.inference.engine import read_model_pixels
from rcm_viewer.inference.tissue import white_point
from rcm_viewer.mosaic import open_mosaic

H, W = 120, 160


def test_model_pixels_are_the_linear_map(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    values = (-1.0 + 2.0 * (yy / (H - 1) + xx / (W - 1)) / 2).astype(np.float32)
    values[3, 3] = np.nan
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, values)
    with open_mosaic(path) as mosaic:
        white = white_point(mosaic, "full_scale")
        pixels, converted = read_model_pixels(mosaic, 0, 1.0, 0, 0, W, H, white)
    assert not converted and pixels.dtype == np.float32
    expected = np.nan_to_num((values.astype(np.float64) + 1.0) / 2.0, nan=0.0)
    np.testing.assert_allclose(pixels, expected, atol=1 / 65535)
    assert pixels.min() == 0.0 and pixels.max() == 1.0
