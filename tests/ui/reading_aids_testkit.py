"""Real small TIFF mosaics shown in a real MosaicView, for the reading-aid tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from rcm_viewer.mosaic import Mosaic
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview_levels import open_with_overview
from rcm_viewer.ui.tiles import DisplaySettings, to_qimage


def write_mosaic(
    path: Path, width: int, height: int, pixel_um: float, margin_right: int = 0, seed: int = 0
) -> Path:
    """A textured 8-bit mosaic with its pixel size in the TIFF resolution tags.

    ``margin_right``: that many columns on the right are black margin (no tissue).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = (
        (110 + 50 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + rng.normal(0, 12, (height, width)))
        .clip(20, 255)
        .astype(np.uint8)
    )
    if margin_right:
        image[:, width - margin_right :] = 0
    tifffile.imwrite(
        path, image, resolution=(1.0 / pixel_um, 1.0 / pixel_um), resolutionunit="MICROMETER"
    )
    return path


def show(view: MosaicView, path: Path) -> tuple[Mosaic, np.ndarray]:
    """Open ``path`` as the window does and put it in ``view``; (mosaic, overview pixels)."""
    mosaic, overview = open_with_overview(path)
    assert overview is not None, "a small mosaic is its own overview"
    level, pixels, (black, white) = overview
    display = DisplaySettings(float(black), float(max(white, black + 1)))
    image = to_qimage(pixels, display.lut(np.dtype(mosaic.info.dtype)))
    view.set_mosaic(mosaic, image, level, display)
    return mosaic, pixels


def settle(qtbot, view: MosaicView) -> None:
    """Let the tile workers deliver and paint once more."""
    for _ in range(3):
        view.viewport().repaint()
        qtbot.waitUntil(lambda: not view.tiles.busy, timeout=10_000)
    view.viewport().repaint()
