"""Overview (minimap): the whole mosaic with the visible rectangle; click or drag to jump."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class OverviewWidget(QWidget):
    jumpRequested = Signal(float, float)  # level-0 pixel coordinates of the new centre

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._full_size = (1, 1)
        self._view_rect = QRectF()
        self._markers: list[tuple[float, float, str]] = []  # level-0 x, y, label
        self._shade: QImage | None = None  # stretched over the whole mosaic
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Overview of the whole mosaic. Click or drag to move the view there.")
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:
        return QSize(240, 240)

    def set_image(self, image: QImage | None, full_width: int, full_height: int) -> None:
        self._image = image
        self._full_size = (max(1, full_width), max(1, full_height))
        self.update()

    def set_view_rect(self, rect: QRectF) -> None:
        self._view_rect = QRectF(rect)
        self.update()

    def set_markers(self, markers: list[tuple[float, float, str]]) -> None:
        """Numbered markers (hotspot tour) at level-0 ``(x, y, label)``; [] clears them."""
        self._markers = list(markers)
        self.update()

    def set_shade(self, image: QImage | None) -> None:
        """A semi-transparent image over the whole mosaic (unreviewed tissue); None clears."""
        self._shade = image
        self.update()

    def _image_rect(self) -> QRectF:
        w, h = self._full_size
        scale = min(self.width() / w, self.height() / h)
        dw, dh = w * scale, h * scale
        return QRectF((self.width() - dw) / 2, (self.height() - dh) / 2, dw, dh)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(12, 12, 12))
        if self._image is None:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no mosaic")
            return
        target = self._image_rect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self._image)
        if self._shade is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            painter.setOpacity(0.4)  # a hint of what is unreviewed; the tissue stays readable
            painter.drawImage(target, self._shade)
            painter.setOpacity(1.0)
        w, h = self._full_size
        sx, sy = target.width() / w, target.height() / h
        if self._markers:
            self._draw_markers(painter, target, sx, sy)
        r = self._view_rect.intersected(QRectF(0, 0, w, h))
        if not r.isEmpty():
            box = QRectF(
                target.left() + r.left() * sx,
                target.top() + r.top() * sy,
                max(3.0, r.width() * sx),
                max(3.0, r.height() * sy),
            )
            painter.setPen(QPen(QColor(255, 190, 40), 2))
            painter.drawRect(box)

    def _draw_markers(self, painter: QPainter, target: QRectF, sx: float, sy: float) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        font = painter.font()
        font.setBold(True)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        radius = 8.0
        for x, y, label in self._markers:
            centre = QPointF(target.left() + x * sx, target.top() + y * sy)
            painter.setPen(QPen(QColor(0, 0, 0), 1.5))
            painter.setBrush(QColor(40, 200, 255, 220))
            painter.drawEllipse(centre, radius, radius)
            painter.setPen(QColor(0, 0, 0))
            painter.drawText(
                QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius),
                Qt.AlignmentFlag.AlignCenter,
                label,
            )
        painter.restore()  # the view rectangle after this is an outline, not filled

    def _jump(self, pos: QPointF) -> None:
        target = self._image_rect()
        if target.width() <= 0:
            return
        w, h = self._full_size
        x = (pos.x() - target.left()) / target.width() * w
        y = (pos.y() - target.top()) / target.height() * h
        self.jumpRequested.emit(min(max(x, 0.0), w), min(max(y, 0.0), h))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._jump(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._jump(event.position())
