"""What a dermatologist trying the window for the first time ran into (issue 17)."""

from __future__ import annotations

import numpy as np
import tifffile
from PIL import Image

from rcm_viewer.paths import demo_mosaic
from rcm_viewer.ui import settings as ui_settings


def _open(window, path) -> None:
    window.open_path(path)
    assert window.wait_until_idle(60)
    assert window.last_error is None, window.last_error


def test_laptop_screen_gives_the_form_the_room(make_window) -> None:
    window = make_window(size=(1366, 768))
    _open(window, demo_mosaic("melanoma"))
    assert not window.ai_gate.is_revealed()
    assert window.ai_dock.height() <= 90  # one line while the AI result is hidden
    assert window.form_dock.height() >= 550
    assert window.view.width() >= 650


def test_fit_shows_no_scroll_bars_and_an_overview_click_keeps_it_centred(make_window) -> None:
    window = make_window()
    _open(window, demo_mosaic("bcc"))
    window.view.fit()
    assert not window.view.horizontalScrollBar().isVisible()
    assert not window.view.verticalScrollBar().isVisible()
    before = window.view.visible_scene_rect().center()
    window.view.center_on(100, 100)  # what an overview click does
    after = window.view.visible_scene_rect().center()
    assert abs(after.x() - before.x()) < 2 and abs(after.y() - before.y()) < 2


def test_help_lists_the_shortcuts_and_about_names_versions_and_folders(make_window) -> None:
    window = make_window()
    window.show_help()
    text = window.help_dialog.browser.toPlainText()
    assert "Classify mosaic" in text and "Ctrl+R" in text and "Fit to window" in text
    window.show_about()
    about = window.about_dialog.browser.toPlainText()
    assert "PySide6" in about and "Data folder" in about and "Log folder" in about
    assert "rcm-demo" in about or "none usable" in about


def test_recent_files_show_their_folder_and_can_be_cleared(make_window, tmp_path) -> None:
    window = make_window()
    _open(window, demo_mosaic("naevus"))
    window.fill_recent_menu()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert any("demo_naevus.tif" in t and "demo" in t.split("—")[-1] for t in texts)
    clear = next(a for a in window.recent_menu.actions() if a.text() == "Clear recent files")
    clear.trigger()
    assert ui_settings.recent_files() == []


def test_page_actions_only_for_stacks_and_cursor_text_cleared(make_window, tmp_path) -> None:
    window = make_window()
    _open(window, demo_mosaic("bcc"))
    assert not window.next_page_action.isEnabled()
    window.status.position_label.setText("tile: bcc 90%")  # as left by the last hover
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([np.full((300, 300), v, np.uint8) for v in (40, 200)]))
    _open(window, stack)
    assert window.next_page_action.isEnabled()
    assert window.status.position_label.text() == ""


def test_right_click_menu_exports_the_view(make_window, tmp_path, qtbot) -> None:
    window = make_window()
    _open(window, demo_mosaic("bcc"))
    window._show_view_menu(window.view.viewport().rect().center())
    labels = [a.text() for a in window.view_menu_popup.actions()]
    assert any(label.startswith("Copy position (x") and "µm" in label for label in labels)
    assert "Export view as PNG…" in labels
    window.view_menu_popup.close()
    target = window.export_view_png(tmp_path / "view.png")
    assert target is not None
    with Image.open(target) as image:
        assert image.size == (window.view.viewport().width(), window.view.viewport().height())


def test_a_new_case_opens_with_the_form_at_the_top(make_window, qtbot) -> None:
    window = make_window(size=(1366, 768))
    _open(window, demo_mosaic("bcc"))
    bar = window.form.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # the reader worked at the bottom of the form
    assert bar.value() > 0
    first = window.case_id
    _open(window, demo_mosaic("naevus"))
    qtbot.waitUntil(lambda: window.case_id not in (None, first), timeout=30000)
    qtbot.waitUntil(lambda: bar.value() == 0, timeout=5000)
