"""The moved display arithmetic: palettes byte-identical to pyqtgraph, LUTs, scale bars."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage

from rcm_viewer.reports.display import (
    COLORMAPS,
    DisplaySettings,
    colormap_lut,
    display_pixels,
    heatmap_rgba,
    load_overview,
    load_overview_building,
    nice_scale_bar,
    overview_level,
    palette_rgb,
)
from rcm_viewer.reports.images import heatmap_image, to_qimage


def _pyqtgraph_lut(name: str) -> np.ndarray:
    """What ui/ai_panel.colormap_lut computed before the move (pyqtgraph + alpha ramp)."""
    cmap = pg.colormap.get(COLORMAPS.get(name, name))
    rgba = cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.float32)
    rgba[:, 3] = np.clip(np.linspace(0.0, 1.0, 256) * 1.6, 0.0, 1.0) * 255
    return rgba.astype(np.uint8)


@pytest.mark.parametrize("label", list(COLORMAPS))
def test_palettes_are_byte_identical_to_pyqtgraph(label: str) -> None:
    ours = colormap_lut(label)
    theirs = _pyqtgraph_lut(label)
    assert ours.dtype == theirs.dtype == np.uint8
    assert ours.tobytes() == theirs.tobytes()
    assert colormap_lut(COLORMAPS[label]).tobytes() == theirs.tobytes()  # by palette name too


def test_unknown_palette_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown colour palette 'jet'"):
        palette_rgb("jet")


def test_the_window_uses_the_moved_code() -> None:
    from rcm_viewer.ui import ai_panel, mosaic_view, tiles

    assert ai_panel.colormap_lut is colormap_lut
    assert ai_panel.heatmap_image is heatmap_image
    assert tiles.DisplaySettings is DisplaySettings
    assert tiles.to_qimage is to_qimage
    assert mosaic_view.nice_scale_bar is nice_scale_bar


def test_heatmap_rgba_thresholds_and_colours() -> None:
    plane = np.array([[0.0, 0.3, 1.0, 1.7]], dtype=np.float32)
    rgba = heatmap_rgba(plane, "Inferno", threshold=0.5)
    lut = colormap_lut("Inferno")
    assert rgba.shape == (1, 4, 4)
    assert rgba[0, 1].tolist() == lut[0].tolist()  # below threshold: transparent
    assert rgba[0, 1, 3] == 0
    assert rgba[0, 2].tolist() == lut[255].tolist() == rgba[0, 3].tolist()  # clipped at 1
    image = heatmap_image(plane, "Inferno")
    assert (image.width(), image.height()) == (4, 1)
    assert image.format() == QImage.Format.Format_RGBA8888


def test_display_settings_map_16_bit_and_rgb() -> None:
    settings = DisplaySettings(black=1000, white=3000, gamma=1.0)
    lut = settings.lut(np.dtype(np.uint16))
    raw = np.array([[0, 1000, 2000, 3000, 65535]], dtype=np.uint16)
    assert display_pixels(raw, lut).tolist() == [[0, 0, 128, 255, 255]]
    inverted = DisplaySettings(0, 255, invert=True).lut(np.dtype(np.uint8))
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    out = display_pixels(rgba, inverted)
    assert out.shape == (2, 2, 3) and out[0, 0].tolist() == [0, 255, 255]
    image = to_qimage(raw, lut)
    assert image.format() == QImage.Format.Format_Grayscale8 and image.width() == 5


def test_scale_bar_is_round_and_near_the_target() -> None:
    um, px = nice_scale_bar(0.75, 1 / 8, target_px=120)  # 6 µm per screen px
    assert um in (500, 1000) and px == pytest.approx(um / 6)
    assert px <= 180


def test_overview_of_a_pyramid_and_of_a_flat_file(tmp_path) -> None:
    import tifffile

    from rcm_viewer.mosaic import open_mosaic

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, (np.arange(3000 * 2500) % 251).astype(np.uint8).reshape(2500, 3000))
    with open_mosaic(flat) as mosaic:
        assert overview_level(mosaic) is None and load_overview(mosaic) is None
        calls = []
        level, pixels, (black, white) = load_overview_building(
            mosaic, progress=lambda d, t: calls.append((d, t))
        )
        assert max(pixels.shape) <= 2048 and level >= 1 and calls
        assert black < white
