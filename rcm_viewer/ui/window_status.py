"""The main window's status bar: cursor position and value, zoom, pixel size, pages, progress.

Kept apart from the window so the window is only a view that connects parts; the text
rules (µm before pixels, a loud note when the pixel size is unknown) live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QSpinBox, QStatusBar

from rcm_viewer.mosaic import Mosaic

UNKNOWN_PIXEL_SIZE_STYLE = "color: #ffc850; font-weight: bold;"


class WindowStatus(QObject):
    """Owns the status-bar widgets; the window calls its methods and listens to two signals."""

    cancelRequested = Signal()
    pageRequested = Signal(int)  # 0-based page

    def __init__(self, bar: QStatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bar = bar
        self.position_label = QLabel("")
        self.position_label.setToolTip("Cursor position in µm (and full-resolution pixels)")
        self.value_label = QLabel("")
        self.value_label.setToolTip("Pixel value under the cursor (the file's own value)")
        self.zoom_label = QLabel("")
        self.zoom_label.setToolTip(
            "Zoom (100 % = one screen pixel per stored pixel) and the resolution level being shown"
        )
        self.pixel_label = QLabel("")
        self.page_spin = QSpinBox()
        self.page_spin.setPrefix("page ")
        self.page_spin.setToolTip("Page of a multi-page stack (VivaStack): PgUp / PgDn")
        self.page_spin.setVisible(False)
        self.page_spin.valueChanged.connect(lambda value: self.pageRequested.emit(value - 1))
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setVisible(False)
        self.progress_cancel = QPushButton("Cancel")
        self.progress_cancel.setToolTip("Stop the background work shown in the progress bar")
        self.progress_cancel.setVisible(False)
        self.progress_cancel.clicked.connect(self.cancelRequested.emit)
        for widget in (self.position_label, self.value_label):
            bar.addWidget(widget)
        for widget in (
            self.progress,
            self.progress_cancel,
            self.page_spin,
            self.zoom_label,
            self.pixel_label,
        ):
            bar.addPermanentWidget(widget)

    # -- progress ---------------------------------------------------------------------

    def show_progress(self, text_format: str) -> None:
        """The progress bar with its Cancel button; busy until the first report sets a range."""
        self.progress.setFormat(text_format)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.progress_cancel.setVisible(True)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def hide_progress(self) -> None:
        self.progress.setVisible(False)
        self.progress_cancel.setVisible(False)

    # -- pages ------------------------------------------------------------------------

    def set_pages(self, pages: int) -> None:
        """A new mosaic: page 1 of ``pages`` (the box shows only for stacks)."""
        self.page_spin.blockSignals(True)
        self.page_spin.setRange(1, max(1, pages))
        self.page_spin.setValue(1)
        self.page_spin.blockSignals(False)
        self.page_spin.setSuffix(f" / {pages}")
        self.page_spin.setVisible(pages > 1)

    def step_page(self, step: int) -> None:
        self.page_spin.setValue(self.page_spin.value() + step)

    # -- texts ------------------------------------------------------------------------

    def message(self, text: str, timeout_ms: int = 0) -> None:
        self.bar.showMessage(text, timeout_ms)

    def clear_cursor(self) -> None:
        self.position_label.setText("")
        self.value_label.setText("")

    def show_cursor(
        self,
        mosaic: Mosaic,
        x: float,
        y: float,
        value: object,
        level: int,
        tile: Mapping[str, float] | None,
    ) -> None:
        """Position in µm (and px), the stored value, and the tile's own probabilities."""
        px = mosaic.info.pixel_size_um
        if px:
            text = f"x {x * px:,.1f} µm  y {y * px:,.1f} µm  ({int(x)}, {int(y)} px)"
        else:
            text = f"x {int(x)} px  y {int(y)} px"
        if tile is not None:
            parts = ", ".join(f"{cid} {p * 100:.0f}%" for cid, p in tile.items())
            text += f"   tile: {parts}"
        self.position_label.setText(text)
        if value is None:
            self.value_label.setText("")
        else:
            suffix = "" if level == 0 else f" (level {level})"
            self.value_label.setText(f"value {value}{suffix}")

    def show_view(self, mosaic: Mosaic | None, zoom: float, level: int) -> None:
        """Zoom, level and the pixel size with where it came from (loud when unknown)."""
        if mosaic is None:
            self.zoom_label.setText("")
            self.pixel_label.setText("")
            return
        self.zoom_label.setText(f"zoom {zoom * 100:.0f} %  level {level + 1}/{mosaic.level_count}")
        px = mosaic.info.pixel_size_um
        if px:
            self.pixel_label.setText(f"{px:g} µm/px ({mosaic.info.pixel_size_source})")
            self.pixel_label.setStyleSheet("")
            self.pixel_label.setToolTip("Pixel size and where it came from")
        else:
            self.pixel_label.setText("pixel size unknown")
            self.pixel_label.setStyleSheet(UNKNOWN_PIXEL_SIZE_STYLE)
            self.pixel_label.setToolTip(
                "No pixel size in the file: set it with Image > Set pixel size "
                "(Ctrl+Shift+P). Scale bar and classifier need it."
            )
