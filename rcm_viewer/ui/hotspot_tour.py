"""The hotspot tour: after the reveal, N / Shift+N step through the model's strongest regions.

The model points, the reader decides: each stop is shown at a diagnostic zoom (1:1 by
default, ``reading/tour_zoom``) so the reader judges the tissue, not the colour. The
stops come from ``rcm_viewer.session.hotspots`` (non-maximum suppression on the heatmap,
so neighbours are not repeats), are numbered on the overview and outlined in the view,
and are listed in a ``HotspotPanel`` (click to go). When review coverage is tracked,
the list says whether each stop was reviewed *before the reveal* (✓ / ✗).

Nothing is computed or shown while the gate is closed: ``refresh()`` asks
``session.ai_revealed()`` every time, so a result arriving behind the gate stays there.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QKeySequence, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.session.hotspots import (
    DEFAULT_COUNT,
    DEFAULT_RADIUS_PX,
    Hotspot,
    hotspots_of_view,
    suppression_radius_px,
)
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget
from rcm_viewer.ui.reading_settings import tour_zoom

#: Suppression radius in µm when the pixel size is known (about half a 1:1 screen at 0.5).
RADIUS_UM = 250.0
ANY_CLASS = None


class HotspotPanel(QWidget):
    """The list of stops with a class chooser; the lead puts it in the AI panel area."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("Tour the strongest regions of this class, or of any class")
        self.list = QListWidget()
        self.list.setToolTip(
            "Regions of highest activation. Click to go there; N / Shift+N "
            "step through them. ✓: shown at diagnostic zoom before the AI "
            "result was revealed, ✗: not."
        )
        self.list.setMinimumHeight(90)
        self.hint = QLabel("Hotspot tour: after you commit your initial assessment.")
        self.hint.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Hotspots of"))
        row.addWidget(self.class_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.hint)


class HotspotTour(QObject):
    """Finds the hotspots of the revealed result and moves the view through them."""

    visited = Signal(int)  # index of the stop now shown

    def __init__(
        self,
        session,
        view: MosaicView,
        overview: OverviewWidget | None = None,
        panel: HotspotPanel | None = None,
        *,
        reviewed: Callable[[tuple[float, float, float, float]], bool | None] | None = None,
        count: int = DEFAULT_COUNT,
        parent: QObject | None = None,
    ) -> None:
        # a child of the view unless told otherwise: its timers and actions end with it
        super().__init__(parent if parent is not None else view)
        self.session = session
        self.view = view
        self.overview = overview
        self.panel = panel if panel is not None else HotspotPanel()
        self.reviewed = reviewed  # CoverageController.was_reviewed, when coverage is tracked
        self.count = count
        self.hotspots: list[Hotspot] = []
        self.index = -1
        self._class_ids: tuple[str, ...] = ()
        self.panel.class_combo.currentIndexChanged.connect(lambda _i: self._recompute())
        self.panel.list.itemActivated.connect(lambda item: self.go(self.panel.list.row(item)))
        self.panel.list.itemClicked.connect(lambda item: self.go(self.panel.list.row(item)))
        self.next_action = QAction("Next hotspot", self)
        self.next_action.setShortcut(QKeySequence("N"))
        self.next_action.setToolTip(
            "Show the next region of highest activation at diagnostic zoom (after the reveal)"
        )
        self.next_action.triggered.connect(self.next)
        self.previous_action = QAction("Previous hotspot", self)
        self.previous_action.setShortcut(QKeySequence("Shift+N"))
        self.previous_action.triggered.connect(self.previous)
        for action in (self.next_action, self.previous_action):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            view.addAction(action)
        view.scene_painters.append(self._paint)
        self.refresh()

    # -- what the tour shows -----------------------------------------------------------

    def refresh(self) -> None:
        """The result or the gate changed: recompute (revealed) or clear (hidden)."""
        ai = self.session.ai if self.session.ai_revealed() else None
        class_ids = tuple(ai.class_ids) if ai is not None and ai.heatmap is not None else ()
        if class_ids != self._class_ids:
            self._class_ids = class_ids
            combo = self.panel.class_combo
            combo.blockSignals(True)
            previous = combo.currentData()
            combo.clear()
            if class_ids:
                combo.addItem("any class", ANY_CLASS)
                for cid, name in zip(class_ids, ai.class_names, strict=False):
                    combo.addItem(name, cid)
                top = ai.top_class
                chosen = previous if previous in class_ids else top
                combo.setCurrentIndex(max(0, combo.findData(chosen)) if chosen else 0)
            combo.blockSignals(False)
        self._recompute()

    def _radius_px(self) -> float:
        mosaic = self.session.mosaic
        pixel = mosaic.info.pixel_size_um if mosaic is not None else None
        return suppression_radius_px(RADIUS_UM, pixel, DEFAULT_RADIUS_PX)

    def _recompute(self) -> None:
        ai = self.session.ai if self.session.ai_revealed() else None
        if ai is None or ai.heatmap is None or self.session.mosaic is None:
            self.hotspots = []
        else:
            self.hotspots = hotspots_of_view(
                ai,
                self.panel.class_combo.currentData(),
                count=self.count,
                radius_px=self._radius_px(),
            )
        self.index = -1
        self._fill_list(ai)
        if self.overview is not None:
            self.overview.set_markers(
                [(h.center[0], h.center[1], str(h.rank)) for h in self.hotspots]
            )
        enabled = bool(self.hotspots)
        self.next_action.setEnabled(enabled)
        self.previous_action.setEnabled(enabled)
        self.view.viewport().update()

    def _fill_list(self, ai) -> None:
        panel = self.panel
        panel.list.clear()
        if not self.session.ai_revealed():
            panel.hint.setText("Hotspot tour: after you commit your initial assessment.")
            return
        if ai is None or ai.heatmap is None:
            panel.hint.setText("No heatmap: no hotspots to tour.")
            return
        names = dict(zip(ai.class_ids, ai.class_names, strict=False))
        for spot in self.hotspots:
            mark = ""
            if self.reviewed is not None:
                seen = self.reviewed(spot.rect)
                mark = "" if seen is None else ("  ✓" if seen else "  ✗")
            item = QListWidgetItem(
                f"{spot.rank}. {names.get(spot.class_id, spot.class_id)} {spot.peak:.2f}{mark}"
            )
            item.setToolTip(
                f"Peak activation {spot.peak:.2f} of {names.get(spot.class_id)}"
                f" at ({spot.center[0]:.0f}, {spot.center[1]:.0f}) px"
                + (
                    "; reviewed before the reveal"
                    if mark == "  ✓"
                    else "; not reviewed at diagnostic zoom before the reveal"
                    if mark
                    else ""
                )
            )
            panel.list.addItem(item)
        panel.hint.setText(
            f"N / Shift+N: next / previous hotspot, shown at {tour_zoom():g}:1."
            if self.hotspots
            else "No region of this class stands out in the heatmap."
        )

    # -- moving ------------------------------------------------------------------------

    def go(self, index: int) -> None:
        """Centre the view on stop ``index`` at the tour zoom."""
        if not self.hotspots or not self.session.ai_revealed():
            return
        self.index = index % len(self.hotspots)
        spot = self.hotspots[self.index]
        self.view.set_zoom(tour_zoom(), QPointF(*spot.center))
        self.panel.list.blockSignals(True)
        self.panel.list.setCurrentRow(self.index)
        self.panel.list.blockSignals(False)
        self.visited.emit(self.index)

    def next(self) -> None:
        self.go(self.index + 1 if self.index >= 0 else 0)

    def previous(self) -> None:
        self.go(self.index - 1 if self.index >= 0 else len(self.hotspots) - 1)

    # -- drawing -----------------------------------------------------------------------

    def _paint(self, painter: QPainter, view: MosaicView) -> None:
        if not self.hotspots or not self.session.ai_revealed():
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        font = QFont(view.font())
        font.setBold(True)
        for i, spot in enumerate(self.hotspots):
            x, y, w, h = spot.rect
            current = i == self.index
            pen = QPen(
                QColor(40, 200, 255) if not current else QColor(255, 255, 255),
                2.5 if current else 1.5,
                Qt.PenStyle.DashLine,
            )
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRectF(x, y, w, h))
            # the number in screen pixels at the corner, whatever the zoom
            corner = view.mapFromScene(QPointF(x, y))
            painter.save()
            painter.resetTransform()
            painter.setFont(font)
            painter.fillRect(QRectF(corner.x(), corner.y(), 22, 18), QColor(0, 0, 0, 170))
            painter.setPen(QColor(40, 200, 255))
            painter.drawText(
                QRectF(corner.x(), corner.y(), 22, 18), Qt.AlignmentFlag.AlignCenter, str(spot.rank)
            )
            painter.restore()


__all__ = ["HotspotPanel", "HotspotTour"]
