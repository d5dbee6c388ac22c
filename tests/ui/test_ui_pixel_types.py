"""A float mosaic in the viewer's display code: file values in the status bar and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.ui.contrast import ContrastPanel
from rcm_viewer.ui.tiles import DisplaySettings, TileCache


def _float_mosaic(tmp_path: Path):
    yy, xx = np.mgrid[0:300, 0:400]
    values = (-2.0 + 6.0 * (yy / 299 + xx / 399) / 2).astype(np.float32)  # -2 ... 4
    values[7, 9] = np.nan
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, values, tile=(128, 128))
    return values, open_mosaic(path)


def test_tile_values_are_the_files_own_values(qtbot, tmp_path: Path) -> None:
    values, mosaic = _float_mosaic(tmp_path)
    with mosaic:
        cache = TileCache(threads=1)
        lo, hi = mosaic.display_range()
        cache.set_mosaic(mosaic, DisplaySettings(lo, hi))
        cache.request([(0, 0, 0)])
        qtbot.waitUntil(lambda: cache.image((0, 0, 0)) is not None, timeout=5000)
        step = 6.0 / 65535
        for x, y in ((0, 0), (399, 299), (200, 150), (123, 45)):
            assert abs(cache.raw_value(0, x, y) - float(values[y, x])) <= step
        assert cache.raw_value(0, 9, 7) == -2.0  # NaN is shown as the bottom of the range
        assert cache.wait_idle(5000)


def test_contrast_labels_show_file_values(qtbot, tmp_path: Path) -> None:
    values, mosaic = _float_mosaic(tmp_path)
    with mosaic:
        panel = ContrastPanel()
        qtbot.addWidget(panel)
        sample = mosaic.read_region(0, 0, 0, 400, 300)
        panel.set_data(sample, np.dtype(mosaic.info.dtype), (0.0, 65535.0))
        assert panel.black_label.text() == "black 0"  # stored values until told otherwise
        panel.set_value_map(mosaic.info.pixel_map)
        assert panel.black_label.text() == "black -2"
        assert panel.white_label.text() == "white 4"
        assert "Pixel map" in panel.plot.toolTip()
        panel.set_value_map(None)
        assert panel.white_label.text() == "white 65535"
