"""Ask the reader for the pixel size, with the image's own estimate as a checkable hint.

Why shaped so (issue 14): the old prompt opened with 0.5 filled in, so pressing Enter
classified at a scale nobody chose. Here the field starts empty and OK stays disabled until
the reader has typed (or accepted) a plausible number. The estimate from the field grid
(mosaic/field_grid.py) is shown with its basis and a "Use estimate" button, never applied
silently; the field grid implied by the typed value (or by the estimate, while nothing is
typed) is drawn over a small overview, so the reader sees whether the lines follow the
seams of the stitched fields.

Takes plain objects (an overview array, its downsample, an estimate or a function that
computes one off the GUI thread), so it is tested alone and wired into the window in a few
lines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QLocale, Qt, QThreadPool
from PySide6.QtGui import QColor, QDoubleValidator, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.mosaic.field_grid import DEFAULT_FIELD_UM, PixelSizeEstimate
from rcm_viewer.mosaic.model import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM
from rcm_viewer.ui.workers import Worker

OVERVIEW_SIDE = 360


def _to_qimage(overview: np.ndarray) -> QImage:
    a = np.asarray(overview, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    hi = float(np.percentile(a, 99.5)) or 1.0
    gray = np.ascontiguousarray(np.clip(a / hi * 255, 0, 255).astype(np.uint8))
    h, w = gray.shape
    return QImage(gray.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


class PixelSizeDialog(QDialog):
    """Modal or not: ``value()`` is the chosen µm/px after ``accept``, else None."""

    def __init__(
        self,
        overview: np.ndarray,
        downsample: float,
        *,
        estimate: PixelSizeEstimate | None = None,
        file_name: str = "",
        field_um: float = DEFAULT_FIELD_UM,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pixel size")
        self.setMinimumWidth(480)
        self.downsample = float(downsample)
        self.field_um = field_um
        self.estimate: PixelSizeEstimate | None = None
        self._worker: Worker | None = None
        self._base = _to_qimage(overview)

        intro = QLabel(
            f"The file {file_name + ' ' if file_name else ''}does not say how large one pixel "
            "is. The classifier needs it: a wrong pixel size changes what the model sees. "
            f"Type the size of one pixel in µm ({MIN_PIXEL_SIZE_UM:g}-{MAX_PIXEL_SIZE_UM:g})."
        )
        intro.setWordWrap(True)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("µm per pixel, e.g. from the device's export settings")
        validator = QDoubleValidator(MIN_PIXEL_SIZE_UM, MAX_PIXEL_SIZE_UM, 4, self)
        validator.setLocale(QLocale.c())
        self.edit.setValidator(validator)
        self.edit.setToolTip(
            "Nothing is filled in for you: type the value, or press "
            "'Use estimate' if the drawn grid follows the field seams"
        )
        self.edit.textChanged.connect(self._changed)
        self.estimate_label = QLabel("Estimating from the field grid…")
        self.estimate_label.setWordWrap(True)
        self.use_button = QPushButton("&Use estimate")
        self.use_button.setToolTip("Copy the estimate into the field (you still confirm with OK)")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use_estimate)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setToolTip(
            "Overview with the field grid the value implies (fields of "
            f"{field_um:g} µm): the lines should follow the seams"
        )
        self.grid_label = QLabel("")
        self.grid_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setEnabled(False)

        row = QHBoxLayout()
        row.addWidget(QLabel("Pixel size (µm):"))
        row.addWidget(self.edit, 1)
        estimate_row = QHBoxLayout()
        estimate_row.addWidget(self.estimate_label, 1)
        estimate_row.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addLayout(estimate_row)
        layout.addWidget(self.picture)
        layout.addWidget(self.grid_label)
        layout.addWidget(self.buttons)
        if estimate is not None:
            self.set_estimate(estimate)
        self._redraw()

    # -- estimate --------------------------------------------------------------------------

    def estimate_async(self, fn: Callable[[], PixelSizeEstimate]) -> Worker:
        """Compute the estimate off the GUI thread (a few seconds on a large overview)."""
        worker = Worker(lambda _progress, _cancelled: fn(), name="pixel size estimate")
        worker.signals.finished.connect(self.set_estimate)
        worker.signals.failed.connect(
            lambda text: self.estimate_label.setText(f"No estimate: {text}")
        )
        self._worker = worker
        QThreadPool.globalInstance().start(worker)
        return worker

    def set_estimate(self, estimate: PixelSizeEstimate) -> None:
        self.estimate = estimate
        if estimate.found:
            self.estimate_label.setText(
                f"Estimate from the image: {estimate.pixel_size_um:.3g} µm/px "
                f"({estimate.level} confidence). {estimate.basis}"
            )
        else:
            self.estimate_label.setText(
                estimate.basis or "Cannot tell the pixel size from the image."
            )
        self.use_button.setEnabled(estimate.found)
        self._redraw()

    def _use_estimate(self) -> None:
        if self.estimate is not None and self.estimate.pixel_size_um is not None:
            self.edit.setText(f"{self.estimate.pixel_size_um:.4g}")
            self.edit.setFocus()

    # -- value -----------------------------------------------------------------------------

    def value(self) -> float | None:
        """The typed value when it is a plausible pixel size, else None."""
        text = self.edit.text().strip().replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            return None
        return number if MIN_PIXEL_SIZE_UM <= number <= MAX_PIXEL_SIZE_UM else None

    def _changed(self, _text: str) -> None:
        self.ok_button.setEnabled(self.value() is not None)
        self._redraw()

    # -- drawing ---------------------------------------------------------------------------

    def grid_period_px(self) -> float | None:
        """Field period in overview pixels for the typed value (else the estimate)."""
        um = self.value()
        if um is None and self.estimate is not None:
            um = self.estimate.pixel_size_um
        if um is None:
            return None
        return self.field_um / um / self.downsample

    def _redraw(self) -> None:
        image = self._base.convertToFormat(QImage.Format.Format_RGB32)
        period = self.grid_period_px()
        typed = self.value() is not None
        if period is not None and period >= 3:
            ox, oy = (0.0, 0.0)
            if self.estimate is not None and self.estimate.found:
                ox, oy = (v / self.downsample for v in self.estimate.offset_px)
            painter = QPainter(image)
            pen = QPen(QColor(80, 220, 255) if typed else QColor(255, 200, 60))
            pen.setWidthF(max(1.0, image.width() / OVERVIEW_SIDE))
            painter.setPen(pen)
            x = ox % period
            while x < image.width():
                painter.drawLine(round(x), 0, round(x), image.height())
                x += period
            y = oy % period
            while y < image.height():
                painter.drawLine(0, round(y), image.width(), round(y))
                y += period
            painter.end()
            source = "your value" if typed else "the estimate"
            self.grid_label.setText(
                f"Grid of {self.field_um:g} µm fields for {source}: one "
                f"field every {period * self.downsample:.0f} pixels."
            )
        else:
            self.grid_label.setText("No grid drawn: type a value to see its field grid.")
        pixmap = QPixmap.fromImage(image).scaled(
            OVERVIEW_SIDE,
            OVERVIEW_SIDE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.picture.setPixmap(pixmap)
