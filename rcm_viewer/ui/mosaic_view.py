"""The tiled mosaic view: only visible tiles of the level matching the zoom are drawn.

Scene coordinates are full-resolution (level 0) pixels. Each paint picks the
coarsest level that still has at least one stored pixel per screen pixel,
draws the tiles of the chosen level that have arrived and asks the tile cache
for the missing ones (nearest to the centre first). Only where tiles are
missing does it draw something underneath: the part of the always-resident
overview that is on screen, then cached coarser tiles of that area. Nothing is
decoded on the GUI thread.

Tiles arrive as 8-bit grayscale QImages (compact, 1 byte per pixel). Drawing
those costs a format conversion inside QPainter on every frame, so the view
keeps the tiles it drew recently converted once to the raster engine's native
32-bit format (a small LRU): a cached frame is then a handful of plain blits.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
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
from rcm_viewer.reports.display import format_length, nice_scale_bar
from rcm_viewer.ui.tiles import TILE_PX, TileCache

MAX_ZOOM = 16.0  # screen pixels per full-resolution pixel
#: Tiles kept converted to the native 32-bit format for drawing (about 1 MB each): a couple
#: of viewports' worth, so panning back and forth and level changes rarely convert again.
#: It grows to twice the tiles of the current frame if that is more (never converts the
#: same tile twice in one frame).
DRAW_CACHE_TILES = 48
#: While fine tiles are missing, the view draws cached tiles up to this many levels coarser
#: and asks for the coarsest of them first: one tile of it covers 16 missing ones.
PREVIEW_LEVELS = 2
#: A pan keeps prefetching one row/column of tiles ahead for this long after the last move.
MOTION_MEMORY_S = 0.3
#: At most this many tiles beyond the visible ones are asked for at a time.
MAX_PREFETCH = 24
#: Tiles arriving in a burst repaint at most this often (a 60 Hz frame), not once each;
#: while the view is in motion the next motion frame shows them, so a repaint of its own
#: waits longer (only if the motion pauses).
TILE_REPAINT_INTERVAL_S = 1 / 60
TILE_REPAINT_IN_MOTION_S = 0.05
#: Frame after frame of pan/zoom (three or more frames in a row showing a changed view,
#: each less than this after the previous) is motion: minified tiles are then scaled
#: nearest-neighbour, about a third of the cost of bilinear filtering, and one filtered
#: frame follows this long after the motion stops. A single change (fit, 1:1, a jump from
#: the overview, opening a file) is drawn filtered straight away.
MOTION_FRAME_S = 0.1
MOTION_STREAK = 3


def _native(image: QImage) -> QImage:
    """The image in the format the raster paint engine blits without converting."""
    if image.format() in (QImage.Format.Format_RGB32, QImage.Format.Format_ARGB32_Premultiplied):
        return image
    if image.hasAlphaChannel():
        return image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    return image.convertToFormat(QImage.Format.Format_RGB32)


class MosaicView(QGraphicsView):
    """Pan/zoom view of one mosaic."""

    viewChanged = Signal()
    cursorMoved = Signal(float, float)  # level-0 pixel coordinates
    levelChanged = Signal(int)
    #: After each painted frame: the visible scene rect (level-0 px) and the zoom. For the
    #: reading aids (review coverage); a slot must stay well under a millisecond.
    frameShown = Signal(QRectF, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.tiles = TileCache(self)
        self.tiles.tileReady.connect(self._on_tile_ready)
        self._mosaic: Mosaic | None = None
        self._overview: QImage | None = None
        self._overview_draw: QImage | None = None  # the overview in the native format
        self._overview_level = 0
        self._draw_cache: OrderedDict[tuple[int, int, int], tuple[QImage, QImage]] = OrderedDict()
        self._draw_cache_size = DRAW_CACHE_TILES
        self._overlay: QImage | None = None
        self._overlay_rect = QRectF()
        self._overlay_opacity = 0.45
        self._overlay_visible = True
        self._current_level = 0
        self._space_down = False
        self._fitted = True
        self.last_drawn: list[tuple[int, int, int]] = []  # tiles of the current level drawn
        self.last_requested: list[tuple[int, int, int]] = []
        self._watched: set[tuple[int, int, int]] = set()  # tiles whose arrival changes the frame
        self._last_center: tuple[int, float, float] | None = None  # level, x, y of last paint
        self._motion: tuple[int, float, float, float] | None = None  # level, dx, dy, time
        self._last_paint = 0.0
        self._tiles_arrived = False  # watched tiles arrived since the last paint
        self._tile_timer = QTimer(self)
        self._tile_timer.setSingleShot(True)
        self._tile_timer.timeout.connect(self._repaint_for_tiles)
        self._changed_since_paint = False
        self._last_change_paint = -1.0  # when a frame last showed a changed view
        self._change_streak = 0  # frames in a row that showed a changed view
        self._moving_until = 0.0
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.timeout.connect(self.viewport().update)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        # No scroll bars: pan by dragging, the keys or the overview (as slide viewers do);
        # they also made "fit" show a bar and shift the image (issue 17).
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.horizontalScrollBar().valueChanged.connect(self._emit_view_changed)
        self.verticalScrollBar().valueChanged.connect(self._emit_view_changed)
        self.setToolTip("")
        #: Extra drawing on top of the mosaic, in scene (level-0 px) coordinates: callables
        #: ``fn(painter, view)`` (coverage overlay, hotspot marks, a linked cursor).
        self.scene_painters: list = []

    # -- content ------------------------------------------------------------------------

    @property
    def mosaic(self) -> Mosaic | None:
        return self._mosaic

    def set_mosaic(
        self, mosaic: Mosaic | None, overview: QImage | None, overview_level: int, display
    ) -> None:
        self._mosaic = mosaic
        self._set_overview_image(overview)
        self._overview_level = overview_level
        self._overlay = None
        self._draw_cache.clear()
        self._watched = set()
        self._last_center = self._motion = None
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
        self._set_overview_image(overview)
        self._overview_level = level
        self.viewport().update()

    def _set_overview_image(self, overview: QImage | None) -> None:
        self._overview = overview
        self._overview_draw = None if overview is None else _native(overview)

    def set_display(self, display) -> None:
        self.tiles.set_display(display)
        self._draw_cache.clear()
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
        """Centre the view on a level-0 point; an axis the view already shows whole stays
        centred (an overview click at fit must not push the image off centre)."""
        if self._mosaic is not None:
            visible = self.visible_scene_rect()
            if visible.width() >= self._mosaic.info.width:
                x = self._mosaic.info.width / 2
            if visible.height() >= self._mosaic.info.height:
                y = self._mosaic.info.height / 2
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
        self._changed_since_paint = True
        self.viewChanged.emit()

    def _on_tile_ready(self, key) -> None:
        # only tiles that fill a hole on screen (or a coarser preview of one) repaint;
        # prefetched ones wait in the cache until the view gets there
        if key not in self._watched or self._tiles_arrived:
            return
        self._tiles_arrived = True
        now = time.monotonic()
        interval = (
            TILE_REPAINT_IN_MOTION_S if now < self._moving_until else (TILE_REPAINT_INTERVAL_S)
        )
        wait = self._last_paint + interval - now
        if wait <= 0:
            self.viewport().update()
        elif not self._tile_timer.isActive():
            self._tile_timer.start(max(1, math.ceil(wait * 1000)))

    def _repaint_for_tiles(self) -> None:
        if self._tiles_arrived:  # no frame has shown them yet
            self.viewport().update()

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
        return QRectF(
            col * TILE_PX * ds, row * TILE_PX * ds, image.width() * ds, image.height() * ds
        )

    def _drawable(self, key: tuple[int, int, int]) -> QImage | None:
        """The tile in the native format, converted at most once while it stays in use."""
        image = self.tiles.image(key)
        if image is None:
            return None
        cache = self._draw_cache
        entry = cache.get(key)
        if entry is not None and entry[0] is image:  # same tile, same display table
            cache.move_to_end(key)
            return entry[1]
        native = _native(image)
        cache[key] = (image, native)
        cache.move_to_end(key)
        while len(cache) > self._draw_cache_size:
            cache.popitem(last=False)
        return native

    def _draw_overview(self, painter: QPainter, area: QRectF) -> None:
        """The part of the overview under ``area`` (level-0 px), not the whole image."""
        overview = self._overview_draw
        if overview is None or area.isEmpty():
            return
        info = self._mosaic.info
        sx, sy = overview.width() / info.width, overview.height() / info.height
        # whole overview pixels, so the sampling grid matches a full draw of the overview
        left, top = math.floor(area.left() * sx), math.floor(area.top() * sy)
        right = min(overview.width(), math.ceil(area.right() * sx))
        bottom = min(overview.height(), math.ceil(area.bottom() * sy))
        if right <= left or bottom <= top:
            return
        source = QRectF(left, top, right - left, bottom - top)
        target = QRectF(left / sx, top / sy, (right - left) / sx, (bottom - top) / sy)
        painter.drawImage(target, overview, source)

    def _in_motion(self, now: float) -> bool:
        """True while the view changes frame after frame (see MOTION_FRAME_S)."""
        if self._changed_since_paint:
            self._changed_since_paint = False
            if now - self._last_change_paint < MOTION_FRAME_S:
                self._change_streak += 1
            else:
                self._change_streak = 1
            self._last_change_paint = now
            if self._change_streak >= MOTION_STREAK:
                self._moving_until = now + MOTION_FRAME_S
        return now < self._moving_until

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        now = time.monotonic()
        self._last_paint = now
        self._tiles_arrived = False
        moving = self._in_motion(now)
        painter.fillRect(rect, QColor(0, 0, 0))
        mosaic = self._mosaic
        if mosaic is None:
            return
        info = mosaic.info
        image_rect = QRectF(0, 0, info.width, info.height)
        visible = rect.intersected(image_rect)
        # minifying: filter (once the view is still); magnifying: show the real pixels
        smooth = self.zoom < 0.99
        if smooth and moving:
            smooth = False
            self._settle_timer.start(max(1, math.ceil((self._moving_until - now) * 1000)))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        level = self.choose_level()
        if level != self._current_level:
            self._current_level = level
            self.levelChanged.emit(level)
        if visible.isEmpty():
            self.last_drawn = []
            self._draw_overlay(painter)
            return
        keys = self.tiles_for(level, visible)
        if len(keys) > 400:  # levels not built yet: never decode a flat giant for one frame
            keys = []
        self._draw_cache_size = max(DRAW_CACHE_TILES, 2 * len(keys))
        missing = []
        drawn = []
        for key in keys:
            image = self._drawable(key)
            if image is None:
                missing.append(key)
            else:
                drawn.append((key, image))
        preview = []
        if missing or not keys:
            # only under the holes: the overview, then coarser cached tiles, so detail
            # sharpens instead of popping
            holes = self._keys_rect(missing).intersected(visible) if keys else visible
            self._draw_overview(painter, holes)
            if missing:
                top = min(mosaic.level_count - 1, level + PREVIEW_LEVELS)
                for coarser in range(top, level, -1):
                    for key in self.tiles_for(coarser, holes):
                        image = self._drawable(key)
                        if image is not None:
                            painter.drawImage(self._tile_scene_rect(key, image), image)
                        elif coarser == top and len(missing) > 2:
                            preview.append(key)
        for key, image in drawn:
            painter.drawImage(self._tile_scene_rect(key, image), image)
        self.last_drawn = [key for key, _ in drawn]
        self.last_requested = keys
        self._watched = set(missing) | set(preview)
        ahead = self._prefetch(level, visible, keys, bool(missing)) if keys else []
        if missing or preview or ahead:
            self.tiles.request(preview + missing + ahead)
        self._draw_overlay(painter)

    def _prefetch(
        self, level: int, visible: QRectF, keys: list[tuple[int, int, int]], loading: bool
    ) -> list[tuple[int, int, int]]:
        """Tiles just outside the view that are not cached yet, to ask for after the visible.

        Panning: one row/column of tiles ahead in the direction of the motion. Standing
        still with everything on screen: the ring of tiles around the view.
        """
        center = visible.center()
        now = time.monotonic()
        last, self._last_center = self._last_center, (level, center.x(), center.y())
        if last is not None and last[0] == level and (last[1], last[2]) != (center.x(), center.y()):
            self._motion = (level, center.x() - last[1], center.y() - last[2], now)
        span = TILE_PX * self._mosaic.info.levels[level].downsample
        motion = self._motion
        if motion is not None and motion[0] == level and now - motion[3] < MOTION_MEMORY_S:
            dx = math.copysign(span, motion[1]) if abs(motion[1]) >= 1 else 0.0
            dy = math.copysign(span, motion[2]) if abs(motion[2]) >= 1 else 0.0
            area = visible.translated(dx, dy)
        elif loading:
            return []
        else:
            area = visible.adjusted(-span, -span, span, span)
        known = set(keys)
        ahead = []
        for key in self.tiles_for(level, area):
            if key not in known and self.tiles.image(key) is None:
                ahead.append(key)
                if len(ahead) >= MAX_PREFETCH:
                    break
        return ahead

    def _keys_rect(self, keys: list[tuple[int, int, int]]) -> QRectF:
        """Bounding rectangle (level-0 px) of tiles of one level."""
        if not keys:
            return QRectF()
        ds = self._mosaic.info.levels[keys[0][0]].downsample
        cols = [k[1] for k in keys]
        rows = [k[2] for k in keys]
        span = TILE_PX * ds
        return QRectF(
            min(cols) * span,
            min(rows) * span,
            (max(cols) - min(cols) + 1) * span,
            (max(rows) - min(rows) + 1) * span,
        )

    def _draw_overlay(self, painter: QPainter) -> None:
        if self._overlay is not None and self._overlay_visible:
            painter.setOpacity(self._overlay_opacity)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self._overlay_rect, self._overlay)
            painter.setOpacity(1.0)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self._mosaic is None:
            return
        for paint in self.scene_painters:
            painter.save()
            paint(painter, self)
            painter.restore()
        self.frameShown.emit(self.visible_scene_rect(), self.zoom)
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
        painter.setPen(
            QPen(QColor(255, 255, 255), 4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap)
        )
        painter.drawLine(QPointF(x0, y), QPointF(x1, y))
        painter.setPen(QColor(255, 255, 255))
        text_w = metrics.horizontalAdvance(label)
        painter.drawText(QPointF(x0 + (length_px - text_w) / 2, y - 8), label)
