"""Review coverage in the window: record each frame, show the tissue never seen (issue 15).

The headless ``ReviewCoverage`` grid does the bookkeeping; this controller feeds it from
``MosaicView.frameShown`` (one call per painted frame: a numpy slice update, a few µs, so
the frame budget is untouched) and draws:

* in the mosaic view, an amber hatch over tissue cells never shown at diagnostic zoom,
  toggled with **V** (``toggle_action``); the hatch image is one pixel per grid cell,
  rebuilt only when the seen set grew and drawn stretched, so it costs one blit;
* on the overview, the same cells shaded (refreshed at most twice a second);
* a text for the label above the commit button (``share_text``, ``CoverageLabel``).

It takes plain objects (a view, an overview widget) so it is tested without the window.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import QLabel, QWidget

from rcm_viewer.session.coverage import VIEW_STATE_KEY, ReviewCoverage, coverage_from_view_state
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget
from rcm_viewer.ui.reading_settings import coverage_tracking_enabled, diagnostic_zoom

UNSEEN_RGBA = (255, 150, 0, 110)  # amber: not a heatmap colour, not a tissue colour
OVERVIEW_REFRESH_MS = 500


def mask_image(mask: np.ndarray, rgba: tuple[int, int, int, int]) -> QImage:
    """A (rows, cols) bool mask as an ARGB image: ``rgba`` where True, clear elsewhere."""
    rows, cols = mask.shape
    pixels = np.zeros((rows, cols, 4), dtype=np.uint8)
    r, g, b, a = rgba
    # premultiplied BGRA in memory (little endian ARGB32)
    pixels[mask] = (b * a // 255, g * a // 255, r * a // 255, a)
    image = QImage(pixels.data, cols, rows, cols * 4, QImage.Format.Format_ARGB32_Premultiplied)
    return image.copy()  # own the memory


class CoverageController(QObject):
    """Feeds a ``ReviewCoverage`` from a view's frames and draws what was never seen."""

    changed = Signal()  # the share reviewed may have changed (throttled)

    def __init__(
        self,
        view: MosaicView,
        overview: OverviewWidget | None = None,
        parent: QObject | None = None,
    ) -> None:
        # a child of the view unless told otherwise: its timers and actions end with it
        super().__init__(parent if parent is not None else view)
        self.view = view
        self.overview = overview
        self.coverage: ReviewCoverage | None = None
        self.enabled = coverage_tracking_enabled()
        self._overlay_visible = False
        self._overlay_image: QImage | None = None
        self._overlay_version = -1
        self._shown_version = -1
        self._clock = time.monotonic
        view.frameShown.connect(self._on_frame)
        view.scene_painters.append(self._paint)
        self._timer = QTimer(self)
        self._timer.setInterval(OVERVIEW_REFRESH_MS)
        self._timer.timeout.connect(self._refresh_overview)
        self._timer.start()
        self.toggle_action = QAction("Show unreviewed tissue", self)
        self.toggle_action.setCheckable(True)
        self.toggle_action.setShortcut(QKeySequence("V"))
        self.toggle_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.toggle_action.setToolTip(
            "Hatch the tissue never shown at diagnostic zoom (V). Settings: reading/diagnostic_"
            "zoom, reading/track_coverage."
        )
        self.toggle_action.toggled.connect(self.set_overlay_visible)
        view.addAction(self.toggle_action)

    # -- the mosaic --------------------------------------------------------------------

    def start(
        self,
        width: int,
        height: int,
        overview_pixels: np.ndarray | None = None,
        view_state: Any = None,
    ) -> None:
        """A mosaic opened: a new grid, or the one stored in the case's view state."""
        self.enabled = coverage_tracking_enabled()
        restored = coverage_from_view_state(view_state, width, height)
        if restored is not None:
            self.coverage = restored
        else:
            self.coverage = ReviewCoverage(width, height, min_zoom=diagnostic_zoom())
            self.coverage.set_tissue_from_overview(overview_pixels)
        self._overlay_version = self._shown_version = -1
        self._refresh_overview()
        self.view.viewport().update()

    def set_tissue(self, overview_pixels: np.ndarray | None) -> None:
        """The overview arrived (levels built after the open): tissue cells from it."""
        if self.coverage is not None:
            self.coverage.set_tissue_from_overview(overview_pixels)
            self._overlay_version = self._shown_version = -1
            self._refresh_overview()

    def restore(self, view_state: Any) -> bool:
        """The case was found after the open: take its stored coverage, if it fits."""
        if self.coverage is None:
            return False
        restored = coverage_from_view_state(view_state, self.coverage.width, self.coverage.height)
        if restored is None:
            return False
        # what was seen since the open (before the case lookup finished) is kept
        restored.seen |= self.coverage.seen
        restored.dwell += self.coverage.dwell
        restored.version += 1
        self.coverage = restored
        self._overlay_version = self._shown_version = -1
        self._refresh_overview()
        return True

    def stop(self) -> None:
        self.coverage = None
        self._overlay_image = None
        if self.overview is not None:
            self.overview.set_shade(None)

    def state_for_view_state(self) -> dict[str, Any]:
        """``{VIEW_STATE_KEY: ...}`` to merge into the view state the window saves."""
        if self.coverage is None:
            return {}
        self.coverage.flush(self._clock())
        return {VIEW_STATE_KEY: self.coverage.to_dict()}

    def mark_commit(self) -> None:
        if self.coverage is not None:
            self.coverage.flush(self._clock())
            self.coverage.mark_commit()

    # -- frames ------------------------------------------------------------------------

    def _on_frame(self, rect: QRectF, zoom: float) -> None:
        coverage = self.coverage
        if coverage is None or not self.enabled:
            return
        coverage.record((rect.x(), rect.y(), rect.width(), rect.height()), zoom, self._clock())

    # -- questions for the window ------------------------------------------------------

    def share_reviewed(self) -> float | None:
        return None if self.coverage is None else self.coverage.share_reviewed()

    def was_reviewed(self, rect: tuple[float, float, float, float]) -> bool | None:
        return None if self.coverage is None else self.coverage.was_reviewed(rect)

    def share_text(self) -> str:
        """One line for the label above the commit button."""
        if self.coverage is None:
            return ""
        if not self.enabled:
            return "Review coverage is not tracked (Settings: reading/track_coverage)."
        share = self.coverage.share_reviewed()
        return f"Tissue reviewed at ≥ {self.coverage.min_zoom:.0%} zoom: {share:.0%}" + (
            "" if share >= 0.999 else " (V shows what was not)"
        )

    # -- drawing -----------------------------------------------------------------------

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_visible = bool(visible)
        if self.toggle_action.isChecked() != self._overlay_visible:
            self.toggle_action.setChecked(self._overlay_visible)
        self.view.viewport().update()

    @property
    def overlay_visible(self) -> bool:
        return self._overlay_visible

    def _grid_rect(self) -> QRectF:
        coverage = self.coverage
        return QRectF(0, 0, coverage.cols * coverage.cell_px, coverage.rows * coverage.cell_px)

    def _paint(self, painter: QPainter, view: MosaicView) -> None:
        coverage = self.coverage
        if coverage is None or not self._overlay_visible:
            return
        if self._overlay_image is None or self._overlay_version != coverage.version:
            self._overlay_image = mask_image(coverage.unseen_tissue(), UNSEEN_RGBA)
            self._overlay_version = coverage.version
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.setClipRect(QRectF(0, 0, coverage.width, coverage.height))
        painter.drawImage(self._grid_rect(), self._overlay_image)
        # the hatch makes it readable over bright tissue too; only over unseen cells
        if view.zoom * coverage.cell_px >= 12:
            brush = QBrush(QColor(0, 0, 0, 90), Qt.BrushStyle.BDiagPattern)
            unseen = coverage.unseen_tissue()
            visible = view.visible_scene_rect()
            rows, cols = coverage.cells_touching(
                (visible.x(), visible.y(), visible.width(), visible.height())
            )
            cell = coverage.cell_px
            if (rows.stop - rows.start) * (cols.stop - cols.start) > 600:
                return  # zoomed far out: the tint alone (the hatch would cost a frame)
            painter.save()
            painter.resetTransform()
            for r, c in zip(*np.nonzero(unseen[rows, cols]), strict=True):
                top_left = view.mapFromScene((cols.start + c) * cell, (rows.start + r) * cell)
                painter.fillRect(
                    QRectF(top_left.x(), top_left.y(), cell * view.zoom, cell * view.zoom), brush
                )
            painter.restore()

    def _refresh_overview(self) -> None:
        coverage = self.coverage
        if self.overview is None or coverage is None:
            return
        if coverage.version == self._shown_version:
            return
        self._shown_version = coverage.version
        mask = coverage.unseen_tissue()
        # the grid may reach past the mosaic: crop to the mosaic's share of the last cell
        self.overview.set_shade(_cropped(mask_image(mask, UNSEEN_RGBA), coverage))
        self.changed.emit()


def _cropped(image: QImage, coverage: ReviewCoverage) -> QImage:
    """The part of a grid image that lies over the mosaic (the grid overhangs it)."""
    width = coverage.width / coverage.cell_px
    height = coverage.height / coverage.cell_px
    if width >= image.width() and height >= image.height():
        return image
    # scale up 4x so the fractional last cell can be cut at a quarter cell
    big = image.scaled(image.width() * 4, image.height() * 4)
    return big.copy(0, 0, max(1, round(width * 4)), max(1, round(height * 4)))


class CoverageLabel(QLabel):
    """The share of tissue reviewed, for above the commit button (updates itself)."""

    def __init__(self, controller: CoverageController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWordWrap(True)
        self.setToolTip(
            "Share of the tissue shown on screen at diagnostic zoom while you "
            "read. You can commit anyway; the number is stored with the case."
        )
        controller.changed.connect(self.refresh)
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def refresh(self) -> None:
        self.setText(self.controller.share_text())


__all__ = ["CoverageController", "CoverageLabel", "mask_image"]
