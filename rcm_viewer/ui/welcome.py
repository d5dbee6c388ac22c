"""The welcome panel of the first start: what the tool is, the demonstration-model warning,
where cases are stored, and "Don't show again".

A small non-modal dialog over the main window (which shows the demo mosaic behind it), so the
reader sees the viewer at once and can close the panel whenever. Whether it has been seen is
the ``ui/welcome_shown`` setting in the user settings file, so ``RCM_VIEWER_DATA_DIR`` gives a
fresh first start (tests, portable installs). It states facts that are true offline: nothing
here touches the network. ``first_start(window, paths)`` is the one call ``run_app`` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.intended_use import DEMONSTRATION_BANNER, INTENDED_USE
from rcm_viewer.paths import demo_mosaic, user_data_dir, user_models_dir

SETTING_KEY = "ui/welcome_shown"


def welcome_shown() -> bool:
    from rcm_viewer.ui.settings import app_settings

    value = app_settings().value(SETTING_KEY, False)
    return value in (True, "true", "1", 1)


def set_welcome_shown(shown: bool) -> None:
    from rcm_viewer.ui.settings import app_settings

    settings = app_settings()
    settings.setValue(SETTING_KEY, bool(shown))
    settings.sync()


class WelcomeDialog(QDialog):
    """The panel itself; closing it with the box ticked records ``ui/welcome_shown``."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        data_dir: Path | None = None,
        models_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("welcomeDialog")
        self.setWindowTitle("Welcome to rcm-viewer")
        self.setModal(False)
        self.setMinimumWidth(520)
        data = data_dir if data_dir is not None else user_data_dir()
        models = models_dir if models_dir is not None else user_models_dir()
        layout = QVBoxLayout(self)

        title = QLabel("<h2>Welcome to rcm-viewer</h2>")
        what = QLabel(
            "A viewer for reflectance confocal microscopy (RCM) skin mosaics: pan and zoom "
            "large mosaics, record a structured RCM assessment, and keep cases in a local "
            "case store. The mosaic behind this panel is a synthetic demonstration mosaic."
        )
        warning = QLabel(f"<b>{DEMONSTRATION_BANNER}.</b> {INTENDED_USE}")
        warning.setObjectName("welcomeWarning")
        warning.setStyleSheet(
            "QLabel#welcomeWarning { background: #5a3d12; color: #ffe9c2;"
            " padding: 8px; border-radius: 4px; }"
        )
        where = QLabel(
            f"Cases, settings and logs are stored on this computer only, in<br>"
            f"<code>{data}</code><br>Extra model bundles go in <code>{models}</code> "
            "(Analysis &gt; Model &gt; Open models folder). rcm-viewer never uses the network."
        )
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for label in (what, warning, where):
            label.setWordWrap(True)
        self.dont_show = QCheckBox("&Don't show this again")
        self.dont_show.setChecked(True)
        self.dont_show.setToolTip("Untick to see this panel at the next start too")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("&Start")
        buttons.accepted.connect(self.accept)
        for widget in (title, what, warning, where, self.dont_show, buttons):
            layout.addWidget(widget)
        self.finished.connect(self._remember)

    def _remember(self, _result: int) -> None:
        set_welcome_shown(self.dont_show.isChecked())


def first_start(window: QWidget, paths: Sequence[Path] = ()) -> list[Path]:
    """On the very first start: show the welcome panel over ``window`` and add the demo.

    Returns the paths to open: ``paths`` unchanged after the first start, or when the user
    named files; otherwise the demo mosaic. The panel opens once the event loop runs.
    """
    paths = [Path(p) for p in paths]
    if welcome_shown():
        return paths
    dialog = WelcomeDialog(window)
    window._welcome_dialog = dialog  # type: ignore[attr-defined]  # keep it alive
    QTimer.singleShot(0, dialog, dialog.show)  # cancelled if the window goes first
    demo = demo_mosaic()
    if not paths and demo.is_file():
        return [demo]
    return paths
