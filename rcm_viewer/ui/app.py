"""Start the desktop application.

Ctrl+C in the terminal closes the window the way File > Quit does (form flushed, case
store closed): Python only runs signal handlers between bytecodes, and Qt's event loop
is C++, so a short no-op timer gives the interpreter a moment every 200 ms to notice
SIGINT, and the handler queues ``window.close()`` on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
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
            window.show_error(
                "Unexpected error", f"{exc_type.__name__}: {exc} (details in the log)"
            )

    sys.excepthook = hook


def _startup_problem(app) -> str | None:
    """One line when the data folder cannot be used (shown before any window is built)."""
    from rcm_viewer.errors import RcmError
    from rcm_viewer.paths import restrict_new_files, user_data_dir

    restrict_new_files()  # settings, case data, backups: 0600 in 0700 folders
    try:
        user_data_dir()
    except RcmError as exc:
        return str(exc)
    return None


def install_sigint_handler(app) -> dict:
    """SIGINT (Ctrl+C, ``kill -INT``) closes the window cleanly, then the loop quits.

    Installed before the window is built: a Ctrl+C during start-up is remembered and
    honoured as soon as the window exists. Put the window in the returned dict under
    ``"window"``; a second Ctrl+C while closing quits at once.
    """
    from PySide6.QtCore import QTimer

    state: dict = {"closing": False, "window": None}

    def close_now() -> None:
        window = state["window"]
        if window is not None:
            window.close()
        app.quit()

    def on_sigint(signum, frame) -> None:
        if state["closing"] and state["window"] is not None:
            app.quit()
            return
        state["closing"] = True
        log.info("SIGINT: closing the window")
        if state["window"] is not None:
            QTimer.singleShot(0, close_now)

    signal.signal(signal.SIGINT, on_sigint)
    timer = QTimer(app)
    timer.setInterval(200)
    timer.timeout.connect(lambda: None)  # lets the interpreter run the Python handler
    timer.start()
    state["timer"] = timer
    return state


def _first_start(window, paths: Sequence[Path]) -> list[Path]:
    """The welcome panel (and the demo mosaic) of the very first start; see ui/welcome.py."""
    from rcm_viewer.ui.welcome import first_start

    return first_start(window, paths)


def run_app(paths: Sequence[Path] = ()) -> int:
    from PySide6.QtCore import QTimer

    app = create_app()
    problem = _startup_problem(app)
    if problem is not None:
        print(f"rcm-viewer: error: {problem}", file=sys.stderr)
        if app.platformName() != "offscreen":
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.critical(None, "rcm-viewer cannot start", problem)
        return 2

    sigint = install_sigint_handler(app)
    from rcm_viewer.ui.main_window import MainWindow

    window = MainWindow()
    _install_excepthook(window)
    sigint["window"] = window
    window.show()
    if sigint["closing"]:  # Ctrl+C while the window was being built
        QTimer.singleShot(0, window.close)
    paths = _first_start(window, paths)
    if paths:
        first = Path(paths[0])
        QTimer.singleShot(0, lambda: window.open_path(first))
    return app.exec()
