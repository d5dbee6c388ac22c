"""Two mosaics side by side, pan and zoom linked in micrometres (issue 15).

A follow-up visit, another depth, or the same mosaic with and without its heatmap: the
reader compares the same tissue in both. Mosaics of different pixel sizes line up
because the link is physical: both views show the same µm per screen pixel and the same
µm position at their centres (plus an alignment offset). Without a known pixel size on
either side the link falls back to level-0 pixels (and says so).

* **L** (``link_action``) unlinks / relinks; relinking snaps the second view back to the
  first, keeping the alignment offset.
* **Shift-drag** in either view moves that view alone; on release the difference is
  kept as the alignment offset in µm (``offset_um``).
* A **linked cursor**: a cross in the other view at the µm position under the mouse.

``LinkedViews`` is a splitter that takes the window's existing view as its left side
(so every controller attached to that view keeps working) and makes a second
``MosaicView`` for the right. Opening the second mosaic goes through
``overview_levels.open_with_overview`` in a worker, as the window's own open does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QThreadPool, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainter, QPen
from PySide6.QtWidgets import QSplitter, QWidget

from rcm_viewer.mosaic import Mosaic
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview_levels import Overview, open_with_overview
from rcm_viewer.ui.tiles import DisplaySettings, to_qimage
from rcm_viewer.ui.workers import Worker

CURSOR_PX = 12  # half the arm of the linked cursor, in screen px


def pixel_um(view: MosaicView) -> float | None:
    mosaic = view.mosaic
    return mosaic.info.pixel_size_um if mosaic is not None else None


class LinkedViews(QSplitter):
    """The window's view on the left, a second mosaic on the right; see the module docstring."""

    secondaryOpened = Signal(str)  # path
    openFailed = Signal(str)  # one-line message

    def __init__(
        self, primary: MosaicView, parent: QWidget | None = None, pool: QThreadPool | None = None
    ) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.primary = primary
        self.secondary = MosaicView(self)
        self.addWidget(primary)
        self.addWidget(self.secondary)
        self.setChildrenCollapsible(False)
        self.secondary.hide()  # until a second mosaic is open
        self._pool = pool if pool is not None else QThreadPool.globalInstance()
        self._job: Worker | None = None
        # every started job stays referenced until its thread is done with it: its signal
        # can arrive (and a new open start) while ``run`` is still returning in the pool
        self._jobs: list[Worker] = []
        self.linked = True
        self.offset_um = (0.0, 0.0)  # secondary µm - primary µm at the same screen place
        self._syncing = False
        self._aligning: MosaicView | None = None
        self._cursor: tuple[MosaicView, float, float] | None = None  # view, scene x, y
        self.link_action = QAction("Link the two views", self)
        self.link_action.setCheckable(True)
        self.link_action.setChecked(True)
        self.link_action.setShortcut(QKeySequence("L"))
        self.link_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.link_action.setToolTip(
            "Pan and zoom the two mosaics together, in µm (L). "
            "Shift-drag one view to align it to the other."
        )
        self.link_action.toggled.connect(self.set_linked)
        self.addAction(self.link_action)
        for view in (primary, self.secondary):
            view.viewChanged.connect(lambda v=view: self._on_view_changed(v))
            view.cursorMoved.connect(lambda x, y, v=view: self._on_cursor(v, x, y))
            view.scene_painters.append(self._paint_cursor)
            view.viewport().installEventFilter(self)

    # -- the second mosaic -----------------------------------------------------------

    @property
    def has_secondary(self) -> bool:
        return self.secondary.mosaic is not None

    def open_secondary(self, path: str | Path) -> Worker:
        """Open ``path`` beside the first view, off the GUI thread."""
        path = Path(path)
        if self._job is not None:
            self._job.cancel()
        job = Worker(
            lambda progress, cancelled: open_with_overview(path), name=f"opening {path.name}"
        )

        def finished(result: tuple[Mosaic, Overview | None]) -> None:
            if self._job is not job or job.is_cancelled():
                result[0].close()
                return
            self.show_secondary(*result)
            self.secondaryOpened.emit(str(path))

        job.signals.finished.connect(finished)
        job.signals.failed.connect(self.openFailed)
        self._job = job
        self._jobs = [j for j in self._jobs if not j.done.is_set()]
        self._jobs.append(job)
        self._pool.start(job)
        return job

    def show_secondary(self, mosaic: Mosaic, overview: Overview | None) -> None:
        """Show an opened mosaic on the right (its own tiles, overview and contrast)."""
        old = self.secondary.mosaic
        if overview is not None:
            level, pixels, (black, white) = overview
            display = DisplaySettings(float(black), float(max(white, black + 1)))
            image = to_qimage(pixels, display.lut(np.dtype(mosaic.info.dtype)))
        else:
            level, image = 0, None
            display = DisplaySettings(
                0.0, 65535.0 if np.dtype(mosaic.info.dtype).itemsize == 2 else 255.0
            )
        self.secondary.show()
        self.setSizes([1, 1])
        self.secondary.set_mosaic(mosaic, image, level, display)
        if old is not None and old is not mosaic:
            old.close()
        self.offset_um = (0.0, 0.0)
        self.sync(self.primary)

    def close_secondary(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None
        mosaic = self.secondary.mosaic
        self.secondary.set_mosaic(None, None, 0, None)
        self.secondary.hide()
        if mosaic is not None:
            mosaic.close()

    # -- the link --------------------------------------------------------------------

    def scales(self) -> tuple[float, float, bool]:
        """(µm per level-0 px of the primary, of the secondary, physical?)."""
        a, b = pixel_um(self.primary), pixel_um(self.secondary)
        if a and b:
            return float(a), float(b), True
        return 1.0, 1.0, False

    def set_linked(self, linked: bool) -> None:
        self.linked = bool(linked)
        if self.link_action.isChecked() != self.linked:
            self.link_action.setChecked(self.linked)
        if self.linked:
            self.sync(self.primary)

    def toggle_linked(self) -> None:
        self.set_linked(not self.linked)

    def to_other(self, source: MosaicView, x: float, y: float) -> tuple[float, float]:
        """The other view's level-0 position of the tissue at ``source``'s (x, y)."""
        pa, pb, _ = self.scales()
        ox, oy = self.offset_um
        if source is self.primary:
            return (x * pa + ox) / pb, (y * pa + oy) / pb
        return (x * pb - ox) / pa, (y * pb - oy) / pa

    def sync(self, source: MosaicView) -> None:
        """Make the other view show what ``source`` shows (same µm per screen px, centre)."""
        target = self.secondary if source is self.primary else self.primary
        if self._syncing or not self.linked or source.mosaic is None or target.mosaic is None:
            return
        pa, pb, _ = self.scales()
        ps, pt = (pa, pb) if source is self.primary else (pb, pa)
        centre = source.visible_scene_rect().center()
        tx, ty = self.to_other(source, centre.x(), centre.y())
        self._syncing = True
        try:
            target.set_zoom(source.zoom * pt / ps, QPointF(tx, ty))
            self._nudge(target, tx, ty)
        finally:
            self._syncing = False

    @staticmethod
    def _nudge(view: MosaicView, x: float, y: float) -> None:
        """``centerOn`` rounds to whole scroll steps; move by the remainder if it is > 1/2 px."""
        centre = view.visible_scene_rect().center()
        dx = (x - centre.x()) * view.zoom
        dy = (y - centre.y()) * view.zoom
        h, v = view.horizontalScrollBar(), view.verticalScrollBar()
        if abs(dx) >= 0.5:
            h.setValue(h.value() + round(dx))
        if abs(dy) >= 0.5:
            v.setValue(v.value() + round(dy))

    def _on_view_changed(self, view: MosaicView) -> None:
        if self._syncing or self._aligning is not None:
            return
        self.sync(view)

    # -- aligning by Shift-drag --------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.MouseButtonPress:
            view = self._view_of(watched)
            if (
                view is not None
                and event.button() == Qt.MouseButton.LeftButton
                and event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            ):
                self._aligning = view
        elif kind == QEvent.Type.MouseButtonRelease and self._aligning is not None:
            view = self._aligning
            self._aligning = None
            self._store_offset(view)
        elif kind == QEvent.Type.Leave and self._cursor is not None:
            self._cursor = None
            self.primary.viewport().update()
            self.secondary.viewport().update()
        return False

    def _view_of(self, viewport: QObject) -> MosaicView | None:
        for view in (self.primary, self.secondary):
            if view.viewport() is viewport:
                return view
        return None

    def _store_offset(self, moved: MosaicView) -> None:
        """After an alignment drag: the new offset in µm is what the views now show."""
        if self.primary.mosaic is None or self.secondary.mosaic is None:
            return
        pa, pb, _ = self.scales()
        a = self.primary.visible_scene_rect().center()
        b = self.secondary.visible_scene_rect().center()
        self.offset_um = (b.x() * pb - a.x() * pa, b.y() * pb - a.y() * pa)

    def set_offset_um(self, dx: float, dy: float) -> None:
        self.offset_um = (float(dx), float(dy))
        self.sync(self.primary)

    # -- the linked cursor -------------------------------------------------------------

    def _on_cursor(self, view: MosaicView, x: float, y: float) -> None:
        if not self.has_secondary:
            return
        other = self.secondary if view is self.primary else self.primary
        ox, oy = self.to_other(view, x, y)
        self._cursor = (other, ox, oy)
        other.viewport().update()

    def cursor_in(self, view: MosaicView) -> tuple[float, float] | None:
        """Where the linked cursor is drawn in ``view`` (level-0 px), if it is."""
        if self._cursor is None or self._cursor[0] is not view:
            return None
        return self._cursor[1], self._cursor[2]

    def _paint_cursor(self, painter: QPainter, view: MosaicView) -> None:
        position = self.cursor_in(view)
        if position is None or not self.has_secondary:
            return
        point = view.mapFromScene(QPointF(*position))
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for colour, width in ((QColor(0, 0, 0, 200), 3), (QColor(255, 255, 80), 1)):
            painter.setPen(QPen(colour, width))
            painter.drawLine(point.x() - CURSOR_PX, point.y(), point.x() + CURSOR_PX, point.y())
            painter.drawLine(point.x(), point.y() - CURSOR_PX, point.x(), point.y() + CURSOR_PX)

    def status_text(self) -> str:
        if not self.has_secondary:
            return ""
        _, _, physical = self.scales()
        link = "linked" if self.linked else "unlinked (L links)"
        unit = "in µm" if physical else "in pixels (a pixel size is unknown)"
        dx, dy = self.offset_um
        return f"Two views {link} {unit}; alignment offset {dx:.0f}, {dy:.0f} µm"

    def state(self) -> dict[str, Any]:
        return {"linked": self.linked, "offset_um": list(self.offset_um)}


__all__ = ["LinkedViews"]
