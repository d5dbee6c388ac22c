"""Dark theme: readers work in dim rooms and judge grey levels, so the chrome stays neutral."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

STYLESHEET = """
QToolTip { color: #e8e8e8; background-color: #2b2b2b; border: 1px solid #555; padding: 4px; }
QDockWidget::title { background: #262626; padding: 4px 6px; }
QStatusBar QLabel { padding: 0 6px; }
QLabel#DemoBanner { background: #7a4a00; color: #fff3d6; font-weight: bold; padding: 6px;
                    border-radius: 3px; }
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(40, 40, 40), QColor(225, 225, 225)
    disabled = QColor(120, 120, 120)
    roles = {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor(46, 46, 46),
        QPalette.ColorRole.ToolTipBase: QColor(43, 43, 43),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor(52, 52, 52),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 90, 90),
        QPalette.ColorRole.Link: QColor(110, 170, 255),
        QPalette.ColorRole.Highlight: QColor(52, 110, 190),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.PlaceholderText: QColor(140, 140, 140),
    }
    for role, color in roles.items():
        palette.setColor(role, color)
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    app.setPalette(palette)
    app.setStyleSheet(STYLESHEET)
