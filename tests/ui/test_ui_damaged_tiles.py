"""Issue 16, finding 1: a tile that cannot be read is drawn red-hatched, never as tissue.

Before, a failed tile left a hole through which the coarser (intact) level showed: the
reader saw plausible tissue where the full-resolution data was damaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.ui.tiles import TILE_PX, DisplaySettings, TileCache
from tests.mosaic.hostile_files import write_pyramid_with_damaged_base


def _rgb(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB888)
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return data.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3
    )


def test_a_damaged_tile_is_drawn_hatched_red(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "pyramid.tif"
    write_pyramid_with_damaged_base(path, 1024)
    with open_mosaic(path) as mosaic:
        cache = TileCache(threads=1)
        cache.set_mosaic(mosaic, DisplaySettings(0, 255))
        with qtbot.waitSignal(cache.tileFailed, timeout=10_000) as failed:
            cache.request([(0, 1, 0)])
        key, message = failed.args
        assert key == (0, 1, 0) and "pyramid.tif is damaged: tile" in message
        with qtbot.waitSignal(cache.tileReady, timeout=10_000):
            cache.request([(1, 0, 0)])  # the intact reduced level draws as grey tissue
        cache.wait_idle(5000)
        damaged, intact = cache.image((0, 1, 0)), cache.image((1, 0, 0))
        assert damaged is not None and intact is not None
        assert (damaged.width(), damaged.height()) == (TILE_PX, TILE_PX)
        red = _rgb(damaged).astype(int)
        assert (red[..., 0] - red[..., 1] > 40).mean() > 0.9  # red everywhere, not grey
        grey = _rgb(intact).astype(int)
        assert (grey[..., 0] - grey[..., 1] > 40).mean() < 0.01  # tissue is not red
        damaged.save(str(tmp_path / "damaged_tile.png"))
        cache.set_mosaic(None, None)
        cache.wait_idle(5000)
