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
        w, h = self._full_size
        sx, sy = target.width() / w, target.height() / h
        r = self._view_rect.intersected(QRectF(0, 0, w, h))
        if not r.isEmpty():
            box = QRectF(target.left() + r.left() * sx, target.top() + r.top() * sy,
                         max(3.0, r.width() * sx), max(3.0, r.height() * sy))
            painter.setPen(QPen(QColor(255, 190, 40), 2))
            painter.drawRect(box)

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
