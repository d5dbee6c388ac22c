"""The window's dock layout: sized from the screen, remembered, and a one-line AI dock.

At 1366 x 768 the form needs the room (issue 17): the side columns are sized from the
screen the first time, the reader's own layout is restored afterwards, and while the AI
result is hidden its dock is one line.
"""

from __future__ import annotations

from PySide6.QtCore import Qt

from rcm_viewer.ui import settings as app_settings_module


class WindowLayout:
    """A mixin of ``MainWindow``: default, restored and saved dock layout."""

    def _fit_ai_dock(self, revealed: bool) -> None:
        """While the AI result is hidden its dock is one line, and the form gets the room."""
        if revealed:
            self.ai_dock.setMaximumHeight(16777215)
            total = self.form_dock.height() + self.ai_dock.height()
            self.resizeDocks(
                [self.form_dock, self.ai_dock],
                [total // 2, total - total // 2],
                Qt.Orientation.Vertical,
            )
        else:
            title = self.ai_dock.titleBarWidget()
            title_h = title.sizeHint().height() if title is not None else 24
            self.ai_dock.setMaximumHeight(
                self.ai_gate.placeholder().sizeHint().height() + title_h + 8
            )

    def _default_layout(self) -> None:
        """Side columns sized from the screen, so a 1366 x 768 laptop keeps the image wide."""
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        width = screen.width() if screen is not None else 1400
        height = screen.height() if screen is not None else 900
        self.resize(min(1400, width), min(900, height))
        left = max(200, min(300, int(width * 0.16)))
        right = max(360, min(500, int(width * 0.30)))
        self.resizeDocks(
            [self.overview_dock, self.display_dock], [left, left], Qt.Orientation.Horizontal
        )
        self.resizeDocks([self.form_dock, self.ai_dock], [right, right], Qt.Orientation.Horizontal)
        self.resizeDocks(
            [self.overview_dock, self.display_dock],
            [height // 2, height // 2],
            Qt.Orientation.Vertical,
        )

    def _restore_layout(self) -> None:
        settings = app_settings_module.app_settings()
        geometry = settings.value("window/geometry")
        state = settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:
            self._default_layout()

    def save_layout(self) -> None:
        settings = app_settings_module.app_settings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.sync()
