"""Region annotations drawn on the mosaic: a layer of graphics items plus the tools that make them.

Why it is shaped so:

* **A controller, not a widget.** :class:`AnnotationLayer` takes the existing
  :class:`MosaicView` and the :class:`CaseStore` and adds items to the view's scene. The
  view's scene coordinates are full-resolution (level-0) pixels, the same coordinates
  the stored GeoJSON uses, so an item never needs converting and stays on the image at
  every zoom. Pens are cosmetic (constant screen width); handles, point markers and
  labels ignore the view transform (constant screen size).
* **The store is the truth.** Every change (draw, move, vertex edit, relabel, delete,
  import) is a :class:`QUndoCommand` whose ``redo``/``undo`` write to the case store at
  once, with the reader's name for the audit trail, and only then update the items. A
  refused write is reported (``errorOccurred``), the command dropped and the items
  reloaded from the store, so the screen never shows an annotation that is not saved.
* **Tools are an event filter.** With a drawing tool chosen, left-button presses on the
  viewport draw instead of panning; without one, Qt's own selection and moving apply,
  and a drag on the background still pans. An unselected annotation is hit only near
  its outline, so a reader can pan from inside a large region without moving it.
* **Pure geometry lives in** ``rcm_viewer.cases.annotations`` (measurements,
  validation, GeoJSON files), so the report and the command line share it headless.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QStyle,
    QStyleOptionGraphicsItem,
    QWidget,
)

from rcm_viewer.cases import CaseStore
from rcm_viewer.cases import annotations as geo
from rcm_viewer.errors import RcmError
from rcm_viewer.session import resolve_reader
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.settings import reader_name

log = logging.getLogger(__name__)

TOOLS: tuple[str, ...] = ("rectangle", "ellipse", "polygon", "freehand", "point")
TOOL_SHORTCUTS: Mapping[str | None, str] = {
    None: "Esc",
    "rectangle": "R",
    "ellipse": "E",
    "polygon": "P",
    "freehand": "D",
    "point": "T",
}
TOOL_TIPS: Mapping[str | None, str] = {
    None: "Select, move and edit annotations; drag the background to pan (Esc)",
    "rectangle": "Draw a rectangle: drag from corner to corner (R)",
    "ellipse": "Draw an ellipse: drag its bounding box (E)",
    "polygon": "Draw a polygon: click each corner; double-click or Enter closes it, "
    "Backspace removes the last corner, Esc cancels (P)",
    "freehand": "Draw a freehand outline: hold the button and trace (D)",
    "point": "Mark a point: click (T)",
}
#: Shapes smaller than this (screen pixels) are taken for a slip of the mouse.
MIN_DRAG_PX = 3.0
#: Freehand keeps a point only this far (screen pixels) from the previous one.
FREEHAND_STEP_PX = 2.0
#: Vertex handles are shown for outlines up to this many vertices.
MAX_HANDLES = 400
HANDLE_PX = 8.0
POINT_RADIUS_PX = 6.0
HIT_PX = 8.0
Z_ANNOTATION = 10.0
Z_PREVIEW = 20.0


def _qcolor(rgb: Sequence[int], alpha: int = 255) -> QColor:
    return QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]), alpha)


def _copy(feature: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(feature)))


def _path_of(geometry: Mapping[str, Any], point_radius: float = 3.0) -> QPainterPath:
    """The outline of a geometry in level-0 pixels (holes by the odd-even rule)."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    kind, coords = geometry.get("type"), geometry.get("coordinates")

    def ring(points: Sequence[Sequence[float]], close: bool) -> None:
        path.moveTo(points[0][0], points[0][1])
        for x, y in ((p[0], p[1]) for p in points[1:]):
            path.lineTo(x, y)
        if close:
            path.closeSubpath()

    if kind == "Polygon":
        for r in coords:
            ring(r, True)
    elif kind == "MultiPolygon":
        for polygon in coords:
            for r in polygon:
                ring(r, True)
    elif kind == "LineString":
        ring(coords, False)
    elif kind == "MultiLineString":
        for part in coords:
            ring(part, False)
    elif kind == "MultiPoint":
        for x, y in ((p[0], p[1]) for p in coords):
            path.addEllipse(QPointF(x, y), point_radius, point_radius)
    return path


# --------------------------------------------------------------------------- vertices


def _vertex_refs(geometry: Mapping[str, Any]) -> list[tuple[int, ...]]:
    """Index paths into ``coordinates`` of each editable vertex (closing duplicates left out)."""
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind in ("MultiPoint", "LineString"):
        return [(i,) for i in range(len(coords))]
    if kind == "MultiLineString":
        return [(j, i) for j, part in enumerate(coords) for i in range(len(part))]
    if kind == "Polygon":
        return [(j, i) for j, r in enumerate(coords) for i in range(len(r) - 1)]
    if kind == "MultiPolygon":
        return [
            (k, j, i)
            for k, polygon in enumerate(coords)
            for j, r in enumerate(polygon)
            for i in range(len(r) - 1)
        ]
    return []


def _vertex_at(geometry: Mapping[str, Any], ref: tuple[int, ...]) -> tuple[float, float]:
    value: Any = geometry["coordinates"]
    for index in ref:
        value = value[index]
    return float(value[0]), float(value[1])


def _with_vertex(
    feature: Mapping[str, Any], ref: tuple[int, ...], x: float, y: float
) -> dict[str, Any]:
    copy = _copy(feature)
    geometry = copy["geometry"]
    container: Any = geometry["coordinates"]
    for index in ref[:-1]:
        container = container[index]
    point = [round(x, 3), round(y, 3)]
    container[ref[-1]] = point
    if geometry["type"] in ("Polygon", "MultiPolygon") and ref[-1] == 0:
        container[-1] = list(point)  # keep the ring closed
    return copy


def edit_handles(feature: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Where the handles of an annotation go (level-0 pixels), by shape."""
    shape = geo.shape_of(feature)
    if shape == "rectangle":
        left, top, right, bottom = geo.bounds(feature)
        return [(left, top), (right, top), (right, bottom), (left, bottom)]
    if shape == "ellipse":
        e = feature["properties"]["ellipse"]
        cx, cy, rx, ry = e["cx"], e["cy"], e["rx"], e["ry"]
        return [(cx + rx, cy), (cx, cy + ry), (cx - rx, cy), (cx, cy - ry)]
    if shape == "point" and feature["geometry"]["type"] == "Point":
        return []
    refs = _vertex_refs(feature["geometry"])
    if len(refs) > MAX_HANDLES:
        return []
    return [_vertex_at(feature["geometry"], ref) for ref in refs]


def edited_feature(feature: Mapping[str, Any], handle: int, x: float, y: float) -> dict[str, Any]:
    """The annotation with handle number ``handle`` dragged to (x, y)."""
    shape = geo.shape_of(feature)
    if shape == "rectangle":
        corners = edit_handles(feature)
        ox, oy = corners[(handle + 2) % 4]  # the opposite corner stays put
        copy = _copy(feature)
        copy["geometry"] = geo.rectangle_geometry(ox, oy, x, y)
        return copy
    if shape == "ellipse":
        e = dict(feature["properties"]["ellipse"])
        if handle in (0, 2):
            e["rx"] = max(0.5, abs(x - e["cx"]))
        else:
            e["ry"] = max(0.5, abs(y - e["cy"]))
        copy = _copy(feature)
        copy["properties"]["ellipse"] = e
        copy["geometry"] = geo.ellipse_geometry(e["cx"], e["cy"], e["rx"], e["ry"])
        return copy
    ref = _vertex_refs(feature["geometry"])[handle]
    return _with_vertex(feature, ref, x, y)


# --------------------------------------------------------------------------- items


class _Handle(QGraphicsRectItem):
    """A square of constant screen size on one vertex; dragging it edits the outline."""

    def __init__(self, owner: AnnotationItem, index: int, x: float, y: float) -> None:
        half = HANDLE_PX / 2
        super().__init__(-half, -half, HANDLE_PX, HANDLE_PX, owner)
        self.index = index
        self.setPos(x, y)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        pen = QPen(QColor(0, 0, 0), 1)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setBrush(QColor(255, 255, 255))
        self.setCursor(Qt.CursorShape.SizeAllCursor)
        self.setToolTip("Drag to move this corner")
        self.setZValue(1)

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            event.accept()
        else:
            event.ignore()

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        owner = self.parentItem()
        if isinstance(owner, AnnotationItem):
            owner.drag_handle(self.index, event.scenePos())

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        owner = self.parentItem()
        if isinstance(owner, AnnotationItem):
            owner.release_handle()


class _Label(QGraphicsItem):
    """The annotation's label on a dark box, constant screen size, at the top-left corner."""

    def __init__(self, parent: QGraphicsItem, ignore_transform: bool) -> None:
        super().__init__(parent)
        self._text = ""
        self._color = QColor(255, 255, 255)
        self._font = QFont()
        self._font.setPointSizeF(9.0)
        self._font.setBold(True)
        if ignore_transform:
            self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_text(self, text: str, color: QColor) -> None:
        self.prepareGeometryChange()
        self._text = text
        # a dark annotation colour would vanish on the dark box: then white text
        self._color = color if color.lightness() >= 110 else QColor(255, 255, 255)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        if not self._text:
            return QRectF()
        metrics = QFontMetricsF(self._font)
        return QRectF(
            0,
            -metrics.height() - 4,
            metrics.horizontalAdvance(self._text) + 8,
            metrics.height() + 4,
        )

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if not self._text:
            return
        box = self.boundingRect()
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 160))
        painter.drawRoundedRect(box, 3, 3)
        painter.setFont(self._font)
        painter.setPen(self._color)
        painter.drawText(box.adjusted(4, 2, -4, -2), Qt.AlignmentFlag.AlignVCenter, self._text)


class AnnotationItem(QGraphicsPathItem):
    """One stored annotation on the scene (outline in level-0 pixels, or a point marker)."""

    def __init__(self, layer: AnnotationLayer, feature: Mapping[str, Any]) -> None:
        super().__init__()
        self._layer = layer
        self.feature: dict[str, Any] = {}
        self._origin = QPointF(0, 0)
        self._handles: list[_Handle] = []
        self._drag_preview: dict[str, Any] | None = None
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setZValue(Z_ANNOTATION)
        self._is_point = False
        self.label = _Label(self, True)
        self.set_feature(feature)

    @property
    def feature_id(self) -> str:
        return str(self.feature["id"])

    def set_feature(self, feature: dict[str, Any]) -> None:
        """Show a feature (the layer's own dict: features are replaced, never changed)."""
        self.feature = feature
        self._drag_preview = None
        self._show(self.feature)
        locked = bool(self.feature.get("properties", {}).get("isLocked"))
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsMovable, not locked)
        self.refresh_handles()

    def _show(self, feature: Mapping[str, Any]) -> None:
        geometry = feature["geometry"]
        color = _qcolor(geo.color_of(feature))
        is_point = geometry["type"] == "Point"
        if is_point != self._is_point:
            self._is_point = is_point
            self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, is_point)
            self.label.setFlag(
                QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, not is_point
            )
        if is_point:
            x, y = geometry["coordinates"][:2]
            self._origin = QPointF(x, y)
            path = QPainterPath()
            path.addEllipse(QPointF(0, 0), POINT_RADIUS_PX, POINT_RADIUS_PX)
            self.setPath(path)
            self.label.setPos(POINT_RADIUS_PX + 2, -POINT_RADIUS_PX)
        else:
            self._origin = QPointF(0, 0)
            self.setPath(_path_of(geometry))
            left, top, _right, _bottom = geo.bounds(feature)
            self.label.setPos(left, top)
        self.setPos(self._origin)
        area = geometry["type"] in ("Polygon", "MultiPolygon", "Point", "MultiPoint")
        self.setBrush(
            _qcolor(geo.color_of(feature), 150 if is_point else 40)
            if area
            else QBrush(Qt.BrushStyle.NoBrush)
        )
        self._restyle(color)
        text = geo.display_name(feature)
        if geo.criterion_of(feature):
            text += " \u25c6"  # linked to a criterion of the form
        self.label.set_text(text if self._layer.labels_visible else "", color)

    def _restyle(self, color: QColor | None = None) -> None:
        color = color or _qcolor(geo.color_of(self.feature))
        pen = QPen(color, 3.0 if self.isSelected() else 2.0)
        pen.setCosmetic(True)
        if self._is_point:
            pen = QPen(QColor(0, 0, 0) if not self.isSelected() else QColor(255, 255, 255), 2)
            pen.setCosmetic(True)
        self.setPen(pen)

    # -- hit testing: near the outline unless selected --------------------------------------

    def shape(self) -> QPainterPath:
        if self._is_point:
            path = QPainterPath()
            path.addEllipse(QPointF(0, 0), POINT_RADIUS_PX + 2, POINT_RADIUS_PX + 2)
            return path
        stroker = QPainterPathStroker()
        stroker.setWidth(HIT_PX / max(self._layer.view.zoom, 1e-6))
        outline = stroker.createStroke(self.path())
        if self.isSelected():
            outline = outline.united(self.path())
        return outline

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        # selection shows as a thicker outline and handles, not Qt's dashed box
        option.state &= ~QStyle.StateFlag.State_Selected
        super().paint(painter, option, widget)

    def boundingRect(self) -> QRectF:  # noqa: N802
        margin = 0.0 if self._is_point else HIT_PX / max(self._layer.view.zoom, 1e-6)
        return super().boundingRect().adjusted(-margin, -margin, margin, margin)

    # -- selection and handles ---------------------------------------------------------------

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value: Any) -> Any:  # noqa: N802
        if change == QGraphicsItem.GraphicsItemChange.ItemSelectedHasChanged:
            self._restyle()
            self.refresh_handles()
        return super().itemChange(change, value)

    def refresh_handles(self) -> None:
        scene = self.scene()
        for handle in self._handles:
            handle.setParentItem(None)
            if scene is not None:
                scene.removeItem(handle)
        self._handles = []
        if not self.isSelected() or self._is_point:
            return
        if self.feature.get("properties", {}).get("isLocked"):
            return
        feature = self._drag_preview or self.feature
        for index, (x, y) in enumerate(edit_handles(feature)):
            self._handles.append(_Handle(self, index, x, y))

    def drag_handle(self, index: int, scene_pos: QPointF) -> None:
        local = scene_pos - self.pos()
        self._drag_preview = edited_feature(self.feature, index, local.x(), local.y())
        self.setPath(_path_of(self._drag_preview["geometry"]))
        for handle, (x, y) in zip(self._handles, edit_handles(self._drag_preview), strict=False):
            handle.setPos(x, y)

    def release_handle(self) -> None:
        preview, self._drag_preview = self._drag_preview, None
        if preview is not None:
            self._layer.replace_feature(preview, "Edit outline")

    # -- moving ------------------------------------------------------------------------------

    def displacement(self) -> QPointF:
        return self.pos() - self._origin

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        self._layer.finish_moves()


# --------------------------------------------------------------------------- undo commands


Change = tuple[dict[str, Any] | None, dict[str, Any] | None]  # (before, after); None: absent


class _ChangeCommand(QUndoCommand):
    """One undo step: each ``before`` becomes its ``after`` in the store, then on screen.

    A step may hold several changes (a multi-selection moved, a file imported) so that
    one Ctrl+Z undoes them together. If the store refuses a change, the step is dropped
    from the history (``setObsolete``) and the layer shows what the store holds.
    """

    def __init__(self, layer: AnnotationLayer, text: str, changes: Sequence[Change]) -> None:
        super().__init__(text)
        self._layer = layer
        self._case_id = layer.case_id
        self._changes = list(changes)

    def redo(self) -> None:
        if not self._layer.apply_changes(self._case_id, self._changes):
            self.setObsolete(True)

    def undo(self) -> None:
        undo = [(after, before) for before, after in reversed(self._changes)]
        if not self._layer.apply_changes(self._case_id, undo):
            self.setObsolete(True)


# --------------------------------------------------------------------------- the layer


class AnnotationLayer(QObject):
    """Annotations of the open case on a :class:`MosaicView`, drawn, edited and saved at once.

    Signals: ``annotationsChanged()`` after any change (also undo/redo and case switch),
    ``selectionChanged(list)`` with the selected ids, ``toolChanged(object)`` with the tool
    name (None = select/pan), ``errorOccurred(str)`` with a one-line message.
    """

    annotationsChanged = Signal()
    selectionChanged = Signal(list)
    toolChanged = Signal(object)
    errorOccurred = Signal(str)

    def __init__(
        self, view: MosaicView, store: CaseStore | None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent or view)
        self.view = view
        self._store = store
        self.undo_stack = QUndoStack(self)
        self.case_id: str | None = None
        self.pixel_size_um: float | None = None
        self._features: dict[str, dict[str, Any]] = {}
        self._items: dict[str, AnnotationItem] = {}
        self._tool: str | None = None
        self.labels_visible = True
        self.current_label = geo.DEFAULT_LABEL
        self.current_color: tuple[int, int, int] = geo.DEFAULT_COLOR
        self.current_criterion: str | None = None
        self._drawing: list[QPointF] = []  # the shape being drawn (scene points)
        self._drag_start: QPointF | None = None
        self._pointer: QPointF | None = None
        self._preview = QGraphicsPathItem()
        self._preview.setZValue(Z_PREVIEW)
        self._preview.hide()
        view.scene().addItem(self._preview)
        self._actions: dict[str | None, QAction] = {}
        self._zoom_seen = view.zoom
        self._viewport = view.viewport()
        self._viewport.installEventFilter(self)
        view.installEventFilter(self)
        view.scene().selectionChanged.connect(self._on_selection_changed)
        view.viewChanged.connect(self._on_view_changed)

    # -- case -----------------------------------------------------------------------------

    @property
    def store(self) -> CaseStore | None:
        return self._store

    def set_store(self, store: CaseStore | None) -> None:
        self._store = store
        self.set_case(None, None)

    def set_case(self, case_id: str | None, pixel_size_um: float | None) -> None:
        """Show the annotations of a case (None: none); the undo history starts afresh."""
        self.cancel_drawing()
        self.undo_stack.clear()
        self.case_id = case_id
        self.pixel_size_um = pixel_size_um if pixel_size_um and pixel_size_um > 0 else None
        self.reload()

    def set_pixel_size(self, pixel_size_um: float | None) -> None:
        self.pixel_size_um = pixel_size_um if pixel_size_um and pixel_size_um > 0 else None
        self.annotationsChanged.emit()

    def reload(self) -> None:
        """Show what the store holds for the case (after a refused write, or from outside)."""
        for item in self._items.values():
            self.view.scene().removeItem(item)
        self._items.clear()
        self._features.clear()
        if self.case_id is not None and self._store is not None:
            try:
                stored = self._store.get_case(self.case_id).roi_annotations
            except RcmError as exc:
                self.errorOccurred.emit(str(exc))
                stored = ()
            for feature in stored:
                try:
                    normal = geo.check_feature(feature)
                except geo.AnnotationError as exc:
                    log.warning("annotation %s not shown: %s", feature.get("id"), exc)
                    continue
                normal["id"] = str(feature.get("id", normal["id"]))
                self._show_feature(normal)
        self.annotationsChanged.emit()

    # -- reading --------------------------------------------------------------------------

    def features(self, *, copy: bool = True) -> list[dict[str, Any]]:
        """The annotations of the case, in store order (copies unless ``copy=False``:
        then they are the layer's own and must not be changed)."""
        if not copy:
            return list(self._features.values())
        return [_copy(f) for f in self._features.values()]

    def feature(self, feature_id: str) -> dict[str, Any]:
        return _copy(self._features[feature_id])

    def item(self, feature_id: str) -> AnnotationItem:
        return self._items[feature_id]

    def measurement(self, feature_id: str) -> geo.Measurement:
        return geo.measure(self._features[feature_id], self.pixel_size_um)

    def region_of(self, feature_id: str) -> QRectF:
        left, top, right, bottom = geo.bounds(self._features[feature_id])
        return QRectF(left, top, right - left, bottom - top)

    def criterion_links(self) -> dict[str, list[Mapping[str, Any]]]:
        return geo.criterion_links(self._features.values())

    def criteria(self) -> list[tuple[str, str, str]]:
        """(``checklist.item`` id, checklist title, item label) of every criterion of the form."""
        if self._store is None:
            return []
        return [
            (f"{checklist.id}.{item.id}", checklist.title, item.label)
            for checklist in self._store.checklists.values()
            for item in checklist.items
        ]

    def criterion_text(self, criterion: str | None) -> str:
        for key, title, label in self.criteria():
            if key == criterion:
                return f"{title}: {label}"
        return criterion or ""

    def selected_ids(self) -> list[str]:
        return [fid for fid, item in self._items.items() if item.isSelected()]

    def select(self, feature_ids: Iterable[str]) -> None:
        wanted = set(feature_ids)
        scene = self.view.scene()
        scene.blockSignals(True)
        try:
            for fid, item in self._items.items():
                item.setSelected(fid in wanted)
        finally:
            scene.blockSignals(False)
        self._on_selection_changed()

    def show_region(self, feature_id: str) -> None:
        """Select an annotation and bring it into view (zooming out if it does not fit)."""
        self.select([feature_id])
        self.show_rect(self.region_of(feature_id))

    def show_criterion(self, criterion: str) -> None:
        """Select the annotations linked to a criterion and bring them into view."""
        ids = [str(f["id"]) for f in self.criterion_links().get(criterion, [])]
        if not ids:
            return
        self.select(ids)
        rect = QRectF()
        for fid in ids:
            rect = rect.united(self.region_of(fid))
        self.show_rect(rect)

    def show_rect(self, rect: QRectF) -> None:
        """Centre the view on a level-0 rectangle, zooming out only if it does not fit."""
        view = self.view
        visible = view.visible_scene_rect()
        margin = 1.25
        if rect.width() * margin > visible.width() or rect.height() * margin > visible.height():
            viewport = view.viewport().rect()
            zoom = min(
                viewport.width() / max(rect.width() * margin, 1.0),
                viewport.height() / max(rect.height() * margin, 1.0),
            )
            view.set_zoom(zoom, rect.center())
        view.center_on(rect.center().x(), rect.center().y())

    # -- changing (each one an undoable, saved step) ----------------------------------------

    def add_feature(self, feature: Mapping[str, Any], text: str = "Add annotation") -> str | None:
        """Save a new annotation (undoable); returns its id, None if the store refused it."""
        if not self._can_edit():
            return None
        normal = geo.check_feature(feature)
        self._push(text, [(None, normal)])
        return normal["id"] if normal["id"] in self._features else None

    def _replacement(self, feature: Mapping[str, Any]) -> Change | None:
        fid = str(feature["id"])
        if fid not in self._features:
            return None
        before = _copy(self._features[fid])
        after = geo.check_feature(feature)
        after["id"] = fid
        if after == before:
            self._items[fid].set_feature(before)  # undo a drag that changed nothing
            return None
        return (before, after)

    def replace_feature(self, feature: Mapping[str, Any], text: str = "Edit annotation") -> None:
        """Save a changed annotation (same id) as one undo step."""
        if not self._can_edit():
            return
        change = self._replacement(feature)
        if change is not None:
            self._push(text, [change])

    def update_properties(self, feature_ids: Iterable[str], text: str, **changes: Any) -> None:
        """Relabel, recolour, rename or (un)link to a criterion; one undo step for all."""
        ids = [fid for fid in feature_ids if fid in self._features]
        if not ids or not self._can_edit():
            return
        steps = [
            self._replacement(geo.with_properties(self._features[fid], **changes)) for fid in ids
        ]
        self._push(text, [step for step in steps if step is not None])

    def remove(self, feature_ids: Iterable[str]) -> None:
        ids = [fid for fid in feature_ids if fid in self._features]
        if not ids or not self._can_edit():
            return
        text = "Delete annotation" if len(ids) == 1 else f"Delete {len(ids)} annotations"
        self._push(text, [(_copy(self._features[fid]), None) for fid in ids])

    def remove_selected(self) -> None:
        self.remove(self.selected_ids())

    def import_features(self, features: Sequence[Mapping[str, Any]], source: str = "") -> int:
        """Add annotations from another tool (fresh ids where one is taken); one undo step."""
        if not features or not self._can_edit():
            return 0
        before = len(self._features)
        text = f"Import {len(features)} annotation(s)" + (f" from {source}" if source else "")
        taken = set(self._features)
        changes: list[Change] = []
        for feature in features:
            normal = geo.check_feature(feature)
            if normal["id"] in taken:
                normal["id"] = str(uuid.uuid4())
            taken.add(normal["id"])
            changes.append((None, normal))
        self._push(text, changes)
        return len(self._features) - before

    def _push(self, text: str, changes: Sequence[Change]) -> None:
        if changes:
            self.undo_stack.push(_ChangeCommand(self, text, changes))

    def import_file(self, path: str | Path) -> int:
        """Import a GeoJSON file (ours or QuPath's); a bad file is reported in one line."""
        try:
            features = geo.import_geojson(path)
        except geo.AnnotationError as exc:
            self.errorOccurred.emit(str(exc))
            return 0
        return self.import_features(features, Path(path).name)

    def export_file(self, path: str | Path) -> bool:
        try:
            geo.export_geojson(path, self._features.values())
        except geo.AnnotationError as exc:
            self.errorOccurred.emit(str(exc))
            return False
        return True

    def finish_moves(self) -> None:
        """Turn items dragged by the mouse into one saved move of the stored geometry."""
        moved = [
            (fid, item.displacement())
            for fid, item in self._items.items()
            if item.displacement().manhattanLength() > 1e-9
        ]
        if not moved:
            return
        if not self._can_edit():
            for fid, _ in moved:
                self._items[fid].set_feature(self._features[fid])
            return
        text = "Move annotation" if len(moved) == 1 else f"Move {len(moved)} annotations"
        steps = [
            self._replacement(geo.translated(self._features[fid], delta.x(), delta.y()))
            for fid, delta in moved
        ]
        self._push(text, [step for step in steps if step is not None])

    def apply_changes(self, case_id: str | None, changes: Sequence[Change]) -> bool:
        """Write changes to the store, then to the screen. False (and reported) if refused.

        Many additions (an import) or many deletions go in one transaction; other changes
        one by one, stopping at the first the store refuses. The screen then shows what
        the store holds.
        """
        store = self._store
        if store is None or case_id is None or case_id != self.case_id:
            self.errorOccurred.emit("The annotation was not saved: its case is no longer open.")
            return False
        user = resolve_reader(reader_name())
        ok = True
        try:
            if len(changes) > 1 and all(b is None and a is not None for b, a in changes):
                for stored in store.add_rois(case_id, [a for _b, a in changes], user):
                    self._show_stored(None, stored)
            elif len(changes) > 1 and all(a is None and b is not None for b, a in changes):
                store.remove_rois(case_id, [str(b["id"]) for b, _a in changes], user)
                for before, _after in changes:
                    self._show_stored(before, None)
            else:
                for before, after in changes:
                    if before is None and after is not None:
                        stored = store.add_roi(case_id, after, user)
                    elif after is None and before is not None:
                        store.remove_roi(case_id, str(before["id"]), user)
                        stored = None
                    elif after is not None and before is not None:
                        stored = store.update_roi(case_id, str(after["id"]), after, user)
                    else:
                        continue
                    self._show_stored(before, stored)
        except RcmError as exc:
            self.errorOccurred.emit(f"The annotation was not saved: {exc}")
            self.reload()
            ok = False
        self.annotationsChanged.emit()
        return ok

    def _show_stored(self, before: dict[str, Any] | None, stored: dict[str, Any] | None) -> None:
        if stored is None:
            assert before is not None
            self._hide_feature(str(before["id"]))
        elif str(stored["id"]) in self._features:
            self._features[str(stored["id"])] = stored
            self._items[str(stored["id"])].set_feature(stored)
        else:
            self._show_feature(stored)

    def _can_edit(self) -> bool:
        if self._store is None or self.case_id is None:
            self.errorOccurred.emit("Open a mosaic (with its case) before annotating.")
            return False
        return True

    def _show_feature(self, feature: dict[str, Any]) -> None:
        fid = str(feature["id"])
        self._features[fid] = feature
        item = AnnotationItem(self, feature)
        self._items[fid] = item
        self.view.scene().addItem(item)

    def _hide_feature(self, feature_id: str) -> None:
        self._features.pop(feature_id, None)
        item = self._items.pop(feature_id, None)
        if item is not None:
            self.view.scene().removeItem(item)

    # -- tools ------------------------------------------------------------------------------

    @property
    def tool(self) -> str | None:
        return self._tool

    def set_tool(self, name: str | None) -> None:
        """Choose a drawing tool, or None to select, move and pan."""
        if name is not None and name not in TOOLS:
            raise ValueError(f"unknown annotation tool {name!r}")
        self.cancel_drawing()
        self._tool = name
        viewport = self.view.viewport()
        if name is None:
            self.view.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
            viewport.unsetCursor()
        else:
            self.view.setDragMode(QGraphicsView.DragMode.NoDrag)
            viewport.setCursor(Qt.CursorShape.CrossCursor)
        action = self._actions.get(name)
        if action is not None and not action.isChecked():
            action.setChecked(True)
        self.toolChanged.emit(name)

    def set_style(
        self,
        label: str | None = None,
        color: Sequence[int] | None = None,
        criterion: str | None | bool = False,
    ) -> None:
        """Label, colour and criterion given to the next annotations drawn."""
        if label is not None:
            self.current_label = label
        if color is not None:
            self.current_color = (int(color[0]), int(color[1]), int(color[2]))
        if criterion is not False:
            self.current_criterion = criterion or None

    def set_labels_visible(self, visible: bool) -> None:
        self.labels_visible = visible
        for item in self._items.values():
            item.set_feature(item.feature)

    def tool_actions(self, parent: QObject) -> dict[str | None, QAction]:
        """Checkable actions (one group) for the tools, with their shortcuts, for menus."""
        if self._actions:
            return dict(self._actions)
        group = QActionGroup(parent)
        names = {
            None: "&Select / pan",
            "rectangle": "&Rectangle",
            "ellipse": "&Ellipse",
            "polygon": "&Polygon",
            "freehand": "Free&hand",
            "point": "Poin&t",
        }
        for tool, text in names.items():
            action = QAction(text, parent)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(TOOL_SHORTCUTS[tool]))
            action.setToolTip(TOOL_TIPS[tool])
            action.setStatusTip(TOOL_TIPS[tool])
            action.setChecked(tool == self._tool)
            action.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
            group.addAction(action)
            self._actions[tool] = action
        return dict(self._actions)

    # -- drawing ----------------------------------------------------------------------------

    def cancel_drawing(self) -> None:
        self._drawing = []
        self._drag_start = None
        self._pointer = None
        self._preview.hide()

    @property
    def drawing(self) -> bool:
        return bool(self._drawing) or self._drag_start is not None

    def _screen_px(self) -> float:
        """Level-0 pixels per screen pixel at the current zoom."""
        return 1.0 / max(self.view.zoom, 1e-9)

    def _style_kwargs(self) -> dict[str, Any]:
        return {
            "label": self.current_label,
            "color": self.current_color,
            "criterion": self.current_criterion,
        }

    def _update_preview(self) -> None:
        path = QPainterPath()
        tool, points = self._tool, self._drawing
        if tool in ("rectangle", "ellipse") and self._drag_start is not None and self._pointer:
            rect = QRectF(self._drag_start, self._pointer).normalized()
            if tool == "rectangle":
                path.addRect(rect)
            else:
                path.addEllipse(rect)
        elif points:
            path.moveTo(points[0])
            for point in points[1:]:
                path.lineTo(point)
            if tool == "polygon" and self._pointer is not None:
                path.lineTo(self._pointer)
        pen = QPen(_qcolor(self.current_color), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._preview.setPen(pen)
        self._preview.setPath(path)
        self._preview.setVisible(not path.isEmpty())

    def _finish_drag_shape(self, end: QPointF) -> None:
        start, tool = self._drag_start, self._tool
        self.cancel_drawing()
        if start is None:
            return
        rect = QRectF(start, end).normalized()
        if min(rect.width(), rect.height()) < MIN_DRAG_PX * self._screen_px():
            return
        if tool == "rectangle":
            feature = geo.rectangle_feature(
                rect.left(), rect.top(), rect.right(), rect.bottom(), **self._style_kwargs()
            )
        else:
            center = rect.center()
            feature = geo.ellipse_feature(
                center.x(), center.y(), rect.width() / 2, rect.height() / 2, **self._style_kwargs()
            )
        self._add_drawn(feature)

    def close_polygon(self) -> bool:
        """Close the polygon being drawn (Enter or double-click); False if it has < 3 corners."""
        points = list(self._drawing)
        tool = self._tool
        tolerance = MIN_DRAG_PX * self._screen_px()
        while len(points) >= 2 and _distance(points[-1], points[-2]) < tolerance:
            points.pop()  # the double-click's own press
        self.cancel_drawing()
        if len(points) < 3:
            return False
        feature = geo.polygon_feature(
            [(p.x(), p.y()) for p in points], freehand=tool == "freehand", **self._style_kwargs()
        )
        if geo.measure(feature, None).area_px <= 0:
            return False
        self._add_drawn(feature)
        return True

    def _add_drawn(self, feature: dict[str, Any]) -> None:
        shape = geo.SHAPE_LABELS[geo.shape_of(feature)].lower()
        fid = self.add_feature(feature, f"Draw {shape}")
        if fid is not None:
            self.select([fid])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        # Decide from the event type alone first: the viewport also sends events while the
        # view is being destroyed, when touching the view would crash.
        kind = event.type()
        if kind == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            return self._key(event)
        if kind not in _MOUSE_EVENTS or self._tool is None:
            return False
        if watched is not self._viewport or not isinstance(event, QMouseEvent):
            return False
        if kind == QEvent.Type.MouseButtonPress:
            if event.button() != Qt.MouseButton.LeftButton:
                return False
            self._press(self.view.mapToScene(event.position().toPoint()))
            return True
        if kind == QEvent.Type.MouseMove:
            self._move(self.view.mapToScene(event.position().toPoint()))
            return False  # the view still reports the cursor position
        if kind == QEvent.Type.MouseButtonRelease:
            if event.button() != Qt.MouseButton.LeftButton:
                return False
            self._release(self.view.mapToScene(event.position().toPoint()))
            return True
        if kind == QEvent.Type.MouseButtonDblClick:
            if self._tool == "polygon":
                self.close_polygon()
            return True
        return False

    def _press(self, point: QPointF) -> None:
        tool = self._tool
        if tool in ("rectangle", "ellipse"):
            self._drag_start = point
            self._pointer = point
        elif tool == "freehand":
            self._drawing = [point]
        elif tool == "polygon":
            self._drawing.append(point)
            self._pointer = point
        elif tool == "point":
            self._add_drawn(geo.point_feature(point.x(), point.y(), **self._style_kwargs()))
            return
        self._update_preview()

    def _move(self, point: QPointF) -> None:
        if not self.drawing:
            return
        self._pointer = point
        step = FREEHAND_STEP_PX * self._screen_px()
        if (
            self._tool == "freehand"
            and self._drawing
            and (_distance(point, self._drawing[-1]) >= step)
        ):
            self._drawing.append(point)
        self._update_preview()

    def _release(self, point: QPointF) -> None:
        if self._tool in ("rectangle", "ellipse"):
            self._finish_drag_shape(point)
        elif self._tool == "freehand" and self._drawing:
            self._drawing.append(point)
            self.close_polygon()

    def _key(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key == Qt.Key.Key_Escape:
            if self.drawing:
                self.cancel_drawing()
            elif self._tool is not None:
                self.set_tool(None)
            elif self.selected_ids():
                self.select([])
            else:
                return False
            return True
        if self._tool == "polygon" and self._drawing:
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.close_polygon()
                return True
            if key == Qt.Key.Key_Backspace:
                self._drawing.pop()
                self._update_preview()
                return True
        deleting = key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and not self.drawing
        if deleting and self.selected_ids():
            self.remove_selected()
            return True
        return False

    # -- plumbing ---------------------------------------------------------------------------

    def _on_selection_changed(self) -> None:
        try:
            ids = self.selected_ids()
        except RuntimeError:  # the scene is being torn down
            return
        self.selectionChanged.emit(ids)

    def _on_view_changed(self) -> None:
        zoom = self.view.zoom
        if zoom == self._zoom_seen:
            return
        self._zoom_seen = zoom
        for item in self._items.values():  # hit margins are in screen pixels
            item.prepareGeometryChange()


_MOUSE_EVENTS = frozenset(
    {
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseMove,
        QEvent.Type.MouseButtonRelease,
        QEvent.Type.MouseButtonDblClick,
    }
)


def _distance(a: QPointF, b: QPointF) -> float:
    return math.hypot(a.x() - b.x(), a.y() - b.y())
