"""The first-start welcome panel: shown once with the demo mosaic, remembered in settings."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QLabel, QMainWindow

from rcm_viewer.intended_use import DEMONSTRATION_BANNER
from rcm_viewer.paths import demo_mosaic, user_data_dir
from rcm_viewer.ui.welcome import WelcomeDialog, first_start, set_welcome_shown, welcome_shown


def _text(dialog: WelcomeDialog) -> str:
    return " ".join(label.text() for label in dialog.findChildren(QLabel))


def test_panel_says_what_where_and_warns(qtbot) -> None:
    dialog = WelcomeDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    text = _text(dialog)
    assert DEMONSTRATION_BANNER in text and "not a diagnostic device" in text
    assert str(user_data_dir()) in text and "models" in text
    assert dialog.dont_show.isChecked()
    dialog.grab().save(os.environ.get("RCM_WELCOME_SHOT", str(user_data_dir() / "w.png")))


def test_first_start_shows_panel_and_demo_once(qtbot) -> None:
    window = QMainWindow()
    qtbot.addWidget(window)
    assert not welcome_shown()
    assert first_start(window, []) == [demo_mosaic()]
    dialog = window._welcome_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=3000)
    dialog.accept()  # "Start" with "Don't show again" ticked
    assert welcome_shown()
    named = [Path("/tmp/some.tif")]
    assert first_start(window, named) == named  # second start: nothing added
    assert first_start(window, []) == []


def test_unticked_box_shows_it_again(qtbot) -> None:
    window = QMainWindow()
    qtbot.addWidget(window)
    named = [Path("/data/lesion.tif")]
    assert first_start(window, named) == named  # the user's file wins over the demo
    dialog = window._welcome_dialog
    dialog.dont_show.setChecked(False)
    dialog.reject()
    assert not welcome_shown()
    set_welcome_shown(True)
    assert welcome_shown()
