"""The tiled mosaic view: only visible tiles of the level matching the zoom are drawn.

Scene coordinates are full-resolution (level 0) pixels. Each paint picks the
coarsest level that still has at least one stored pixel per screen pixel,
draws the always-resident overview underneath, then any cached coarser tiles,
then the tiles of the chosen level that have arrived, and asks the tile cache
for the missing ones (nearest to the centre first). Nothing is decoded on the
GUI thread.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

from rcm_viewer.mosaic import Mosaic
from rcm_viewer.ui.tiles import TILE_PX, TileCache

MAX_ZOOM = 16.0  # screen pixels per full-resolution pixel
NICE_LENGTHS_UM = [n * 10**k for k in range(-1, 6) for n in (1, 2, 5)]


def nice_scale_bar(pixel_um: float, zoom: float, target_px: float = 120.0) -> tuple[float, float]:
    """(length in µm, length in screen px) of a round-numbered scale bar near ``target_px``."""
    um_per_screen_px = pixel_um / zoom
    best = NICE_LENGTHS_UM[0]
    for length in NICE_LENGTHS_UM:
        if length / um_per_screen_px <= target_px * 1.5:
            best = length
    return best, best / um_per_screen_px


def format_length(um: float) -> str:
    if um >= 1000:
        mm = um / 1000
        return f"{mm:g} mm"
    return f"{um:g} µm"


class MosaicView(QGraphicsView):
    """Pan/zoom view of one mosaic."""

    viewChanged = Signal()
    cursorMoved = Signal(float, float)  # level-0 pixel coordinates
    levelChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.tiles = TileCache(self)
        self.tiles.tileReady.connect(self._on_tile_ready)
        self._mosaic: Mosaic | None = None
        self._overview: QImage | None = None
        self._overview_level = 0
        self._overlay: QImage | None = None
        self._overlay_rect = QRectF()
        self._overlay_opacity = 0.45
        self._overlay_visible = True
        self._current_level = 0
        self._space_down = False
        self._fitted = True
        self.last_drawn: list[tuple[int, int, int]] = []  # tiles of the current level drawn
        self.last_requested: list[tuple[int, int, int]] = []
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.horizontalScrollBar().valueChanged.connect(self._emit_view_changed)
        self.verticalScrollBar().valueChanged.connect(self._emit_view_changed)
        self.setToolTip("")

    # -- content ------------------------------------------------------------------------

    @property
    def mosaic(self) -> Mosaic | None:
        return self._mosaic

    def set_mosaic(self, mosaic: Mosaic | None, overview: QImage | None, overview_level: int,
                   display) -> None:
        self._mosaic = mosaic
        self._overview = overview
        self._overview_level = overview_level
        self._overlay = None
        self.tiles.set_mosaic(mosaic, display)
        if mosaic is None:
            self.scene().setSceneRect(QRectF(0, 0, 1, 1))
        else:
            w, h = mosaic.info.width, mosaic.info.height
            margin = 0.05 * max(w, h)
            self.scene().setSceneRect(QRectF(-margin, -margin, w + 2 * margin, h + 2 * margin))
            self.fit()
        self.viewport().update()

    def set_overview(self, overview: QImage | None, level: int) -> None:
        self._overview = overview
        self._overview_level = level
        self.viewport().update()

    def set_display(self, display) -> None:
        self.tiles.set_display(display)
        self.viewport().update()

    def set_overlay(self, image: QImage | None, scene_rect: QRectF | None = None) -> None:
        """A colour image (e.g. a heatmap) stretched over ``scene_rect`` (level-0 pixels)."""
        self._overlay = image
        if scene_rect is not None:
            self._overlay_rect = QRectF(scene_rect)
        self.viewport().update()

    def set_overlay_opacity(self, opacity: float) -> None:
        self._overlay_opacity = max(0.0, min(1.0, opacity))
        self.viewport().update()

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_visible = visible
        self.viewport().update()

    @property
    def overlay_visible(self) -> bool:
        return self._overlay_visible

    # -- zoom & pan ---------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        """Screen pixels per full-resolution pixel."""
        return self.transform().m11()

    @property
    def current_level(self) -> int:
        return self._current_level

    def fit_zoom(self) -> float:
        if self._mosaic is None:
            return 1.0
        vp = self.viewport().rect()
        return min(vp.width() / self._mosaic.info.width, vp.height() / self._mosaic.info.height)

    def fit(self) -> None:
        if self._mosaic is None:
            return
        self._set_zoom(self.fit_zoom())
        self.centerOn(self._mosaic.info.width / 2, self._mosaic.info.height / 2)
        self._fitted = True

    def set_zoom(self, zoom: float, anchor_scene: QPointF | None = None) -> None:
        center = anchor_scene if anchor_scene is not None else self.visible_scene_rect().center()
        self._set_zoom(zoom)
        self.centerOn(center)
        self._fitted = False

    def zoom_by(self, factor: float) -> None:
        self._set_zoom(self.zoom * factor)
        self._fitted = False

    def _set_zoom(self, zoom: float) -> None:
        low = min(self.fit_zoom() * 0.5, 1.0)
        zoom = max(low, min(MAX_ZOOM, zoom))
        self.setTransform(self.transform().fromScale(zoom, zoom))
        self._emit_view_changed()

    def center_on(self, x: float, y: float) -> None:
        self.centerOn(x, y)
        self._emit_view_changed()

    def visible_scene_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def pan_by_fraction(self, fx: float, fy: float) -> None:
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() + int(fx * self.viewport().width()))
        v.setValue(v.value() + int(fy * self.viewport().height()))

    # -- events -------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.pixelDelta().y()
        if delta == 0:
            return
        factor = math.pow(1.0015, delta)  # one notch (120) = x1.2
        self.zoom_by(factor)
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(1.25)
        elif key in (Qt.Key.Key_Minus, Qt.Key.Key_Underscore):
            self.zoom_by(0.8)
        elif key in (Qt.Key.Key_F, Qt.Key.Key_0):
            self.fit()
        elif key == Qt.Key.Key_1:
            self.set_zoom(1.0)
        elif key == Qt.Key.Key_Left:
            self.pan_by_fraction(-0.1, 0)
        elif key == Qt.Key.Key_Right:
            self.pan_by_fraction(0.1, 0)
        elif key == Qt.Key.Key_Up:
            self.pan_by_fraction(0, -0.1)
        elif key == Qt.Key.Key_Down:
            self.pan_by_fraction(0, 0.1)
        elif key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self.viewport().unsetCursor()
        super().keyReleaseEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = self.mapToScene(event.position().toPoint())
        self.cursorMoved.emit(pos.x(), pos.y())
        super().mouseMoveEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def _emit_view_changed(self, *_args) -> None:
        self.viewChanged.emit()

    def _on_tile_ready(self, key) -> None:
        if key[0] == self._current_level:
            self.viewport().update()
        elif key[0] > self._current_level:
            self.viewport().update()  # a coarser fallback arrived

    # -- painting -----------------------------------------------------------------------

    def choose_level(self) -> int:
        if self._mosaic is None:
            return 0
        return self._mosaic.best_level(1.0 / max(self.zoom, 1e-9))

    def tiles_for(self, level: int, rect: QRectF) -> list[tuple[int, int, int]]:
        """Tile keys of ``level`` covering ``rect`` (level-0 px), nearest to the centre first."""
        mosaic = self._mosaic
        if mosaic is None or level >= mosaic.level_count:
            return []
        info = mosaic.info.levels[level]
        ds = info.downsample
        x0 = max(0, int(rect.left() / ds) // TILE_PX)
        y0 = max(0, int(rect.top() / ds) // TILE_PX)
        x1 = min((info.width - 1) // TILE_PX, int(rect.right() / ds) // TILE_PX)
        y1 = min((info.height - 1) // TILE_PX, int(rect.bottom() / ds) // TILE_PX)
        cx = rect.center().x() / ds / TILE_PX
        cy = rect.center().y() / ds / TILE_PX
        keys = [(level, c, r) for r in range(y0, y1 + 1) for c in range(x0, x1 + 1)]
        keys.sort(key=lambda k: (k[1] + 0.5 - cx) ** 2 + (k[2] + 0.5 - cy) ** 2)
        return keys

    def _tile_scene_rect(self, key: tuple[int, int, int], image: QImage) -> QRectF:
        level, col, row = key
        ds = self._mosaic.info.levels[level].downsample
        return QRectF(col * TILE_PX * ds, row * TILE_PX * ds, image.width() * ds,
                      image.height() * ds)

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, QColor(0, 0, 0))
        mosaic = self._mosaic
        if mosaic is None:
            return
        info = mosaic.info
        image_rect = QRectF(0, 0, info.width, info.height)
        visible = rect.intersected(image_rect)
        smooth = self.zoom < 0.99  # minifying: filter; magnifying: show the real pixels
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        if self._overview is not None:
            painter.drawImage(image_rect, self._overview)
        level = self.choose_level()
        if level != self._current_level:
            self._current_level = level
            self.levelChanged.emit(level)
        if visible.isEmpty():
            self.last_drawn = []
            return
        keys = self.tiles_for(level, visible)
        if len(keys) > 400:  # levels not built yet: never decode a flat giant for one frame
            keys = []
        missing = []
        drawn = []
        for key in keys:
            image = self.tiles.image(key)
            if image is None:
                missing.append(key)
            else:
                drawn.append((key, image))
        # coarser cached tiles under the missing ones, so detail sharpens instead of popping
        if missing:
            for coarser in range(min(mosaic.level_count - 1, level + 2), level, -1):
                for key in self.tiles_for(coarser, visible):
                    image = self.tiles.image(key)
                    if image is not None:
                        painter.drawImage(self._tile_scene_rect(key, image), image)
        for key, image in drawn:
            painter.drawImage(self._tile_scene_rect(key, image), image)
        self.last_drawn = [key for key, _ in drawn]
        self.last_requested = keys
        if missing:
            self.tiles.request(missing)
        if self._overlay is not None and self._overlay_visible:
            painter.setOpacity(self._overlay_opacity)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self._overlay_rect, self._overlay)
            painter.setOpacity(1.0)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self._mosaic is None:
            return
        painter.save()
        painter.resetTransform()
        self._draw_scale_bar(painter)
        painter.restore()

    def _draw_scale_bar(self, painter: QPainter) -> None:
        pixel_um = self._mosaic.info.pixel_size_um
        vp = self.viewport().rect()
        font = QFont(self.font())
        font.setPointSizeF(max(9.0, font.pointSizeF()))
        font.setBold(True)
        painter.setFont(font)
        margin = 16
        if not pixel_um:
            text = "scale unknown: set the pixel size (Ctrl+Shift+P)"
            painter.setPen(QColor(255, 200, 80))
            painter.drawText(margin, vp.height() - margin, text)
            return
        length_um, length_px = nice_scale_bar(pixel_um, self.zoom)
        x1 = vp.width() - margin
        x0 = x1 - length_px
        y = vp.height() - margin - 4
        label = format_length(length_um)
        metrics = painter.fontMetrics()
        box = QRectF(x0 - 8, y - metrics.height() - 10, length_px + 16, metrics.height() + 20)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 150))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QPen(QColor(255, 255, 255), 4, Qt.PenStyle.SolidLine,
                            Qt.PenCapStyle.FlatCap))
        painter.drawLine(QPointF(x0, y), QPointF(x1, y))
        painter.setPen(QColor(255, 255, 255))
        text_w = metrics.horizontalAdvance(label)
        painter.drawText(QPointF(x0 + (length_px - text_w) / 2, y - 8), label)
