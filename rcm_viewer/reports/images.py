"""numpy display arrays -> QImages (QtGui only), shared by the window and the PDF renderer.

Kept apart from ``display.py`` so that module stays plain numpy (the JSON report and the
tests of the arithmetic need no Qt); everything here is a thin, owning-memory wrapper.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from rcm_viewer.reports.display import display_pixels, heatmap_rgba


def array_to_qimage(display: np.ndarray) -> QImage:
    """QImage (owning its memory) from uint8 (h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA."""
    display = np.ascontiguousarray(display)
    if display.ndim == 2:
        h, w = display.shape
        image = QImage(display.data, w, h, w, QImage.Format.Format_Grayscale8)
    elif display.shape[2] == 4:
        h, w, _ = display.shape
        image = QImage(display.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    else:
        h, w, _ = display.shape
        image = QImage(display.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.copy()


def to_qimage(pixels: np.ndarray, lut: np.ndarray) -> QImage:
    """8-bit QImage (owning its memory) from raw grayscale or RGB(A) pixels."""
    return array_to_qimage(display_pixels(pixels, lut))


def heatmap_image(plane: np.ndarray, colormap: str, threshold: float = 0.0) -> QImage:
    """The coloured, partly transparent heatmap of one class as the window overlays it."""
    return array_to_qimage(heatmap_rgba(plane, colormap, threshold))
