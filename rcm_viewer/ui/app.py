"""Start the desktop application."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def create_app():
    from PySide6.QtWidgets import QApplication

    from rcm_viewer.ui.theme import apply_dark_theme

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("rcm-viewer")
        app.setOrganizationName("rcm-viewer")
        apply_dark_theme(app)
    return app


def _install_excepthook(window) -> None:
    """An exception in a slot is logged and shown in one line; the app keeps running."""

    def hook(exc_type, exc, tb):
        log.error("unhandled: %s", "".join(traceback.format_exception(exc_type, exc, tb)))
        with contextlib.suppress(Exception):  # the window itself may be gone
            window.show_error("Unexpected error", f"{exc_type.__name__}: {exc} (details in the "
                              "log)")

    sys.excepthook = hook


def run_app(paths: Sequence[Path] = ()) -> int:
    from PySide6.QtCore import QTimer

    from rcm_viewer.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    _install_excepthook(window)
    window.show()
    if paths:
        first = Path(paths[0])
        QTimer.singleShot(0, lambda: window.open_path(first))
    return app.exec()
