"""The main window's menus and shortcuts, in one place, so each action is easy to find.

Every action is also added to the window itself, so its shortcut works wherever the
focus is (the image, the form, a dock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence

from rcm_viewer.paths import DEMO_DIR

if TYPE_CHECKING:
    from rcm_viewer.ui.main_window import MainWindow

Shortcut = str | QKeySequence.StandardKey | Sequence[str] | None


def make_action(
    window: MainWindow, text: str, slot: Callable[..., object], shortcut: Shortcut = None,
    tip: str = "",
) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        if isinstance(shortcut, list | tuple):
            action.setShortcuts([QKeySequence(s) for s in shortcut])
        else:
            action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    window.addAction(action)
    return action


def build_menus(window: MainWindow) -> None:
    """File, View, Analysis, Image and Help; actions the tests and docks use are kept on
    the window (``open_action``, ``classify_action``...)."""
    w = window
    menu = w.menuBar()

    file_menu = menu.addMenu("&File")
    w.open_action = make_action(w, "&Open mosaic…", w.open_dialog, QKeySequence.StandardKey.Open,
                                "Open an RCM mosaic (TIFF, OME-TIFF, PNG, JPEG, BMP)")
    file_menu.addAction(w.open_action)
    w.recent_menu = file_menu.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(w.fill_recent_menu)
    demo_menu = file_menu.addMenu("Open &demo mosaic")
    for name, label in (("naevus", "Benign naevus"), ("melanoma", "Melanoma"),
                        ("bcc", "Basal cell carcinoma")):
        demo_menu.addAction(make_action(
            w, f"{label} (synthetic)",
            lambda _=False, n=name: w.open_path(DEMO_DIR / f"demo_{n}.tif")))
    file_menu.addSeparator()
    w.export_report_action = make_action(w, "&Export report…", w.export_report, "Ctrl+E",
                                         "A PDF report of this case (and its JSON data) "
                                         "(Ctrl+E)")
    file_menu.addAction(w.export_report_action)
    w.cases_action = make_action(w, "&Cases…", w.show_case_list, "Ctrl+L",
                                 "Find, reopen and export saved cases (Ctrl+L)")
    file_menu.addAction(w.cases_action)
    file_menu.addSeparator()
    w.close_action = make_action(w, "&Close mosaic", w.close_mosaic,
                                 QKeySequence.StandardKey.Close)
    file_menu.addAction(w.close_action)
    file_menu.addAction(make_action(w, "&Quit", w.close, QKeySequence.StandardKey.Quit))
    w.file_menu = file_menu

    view_menu = menu.addMenu("&View")
    view = w.view
    view_menu.addAction(make_action(w, "Zoom &in", lambda: view.zoom_by(1.25), ["+", "="],
                                    "Zoom in (+, mouse wheel)"))
    view_menu.addAction(make_action(w, "Zoom &out", lambda: view.zoom_by(0.8), ["-"],
                                    "Zoom out (-, mouse wheel)"))
    view_menu.addAction(make_action(w, "&Fit to window", view.fit, ["F", "0"],
                                    "Show the whole mosaic (F or 0)"))
    view_menu.addAction(make_action(w, "&Actual pixels (1:1)", lambda: view.set_zoom(1.0), ["1"],
                                    "One screen pixel per stored pixel (1)"))
    view_menu.addSeparator()
    view_menu.addAction(make_action(w, "&Auto contrast", w.contrast.auto_contrast, ["A"],
                                    "Stretch the 0.5-99.5 % range to the screen (A)"))
    view_menu.addSeparator()
    for dock in (w.overview_dock, w.display_dock, w.form_dock, w.ai_dock):
        view_menu.addAction(dock.toggleViewAction())
    w.view_menu = view_menu

    analysis_menu = menu.addMenu("&Analysis")
    classification = w.classification
    w.classify_action = make_action(w, "&Classify mosaic", classification.classify, "Ctrl+R",
                                    "Run the classifier on the whole mosaic in the background "
                                    "(Ctrl+R)")
    analysis_menu.addAction(w.classify_action)
    w.cancel_classify_action = make_action(w, "C&ancel classification", classification.cancel)
    analysis_menu.addAction(w.cancel_classify_action)
    w.heatmap_action = make_action(w, "Show/hide &heatmap",
                                   lambda: w.ai_panel.show_heatmap.toggle(), "H",
                                   "Toggle the heatmap overlay (H)")
    analysis_menu.addAction(w.heatmap_action)
    w.model_menu = analysis_menu.addMenu("&Model")
    w.model_menu.aboutToShow.connect(w.fill_model_menu)
    w.analysis_menu = analysis_menu

    annotate_menu = menu.addMenu("A&nnotate")
    for action in w.annotations.tool_actions(w).values():
        annotate_menu.addAction(action)
    annotate_menu.addSeparator()
    undo = w.annotations.undo_stack.createUndoAction(w, "&Undo annotation change")
    undo.setShortcut(QKeySequence("Ctrl+Z"))
    redo = w.annotations.undo_stack.createRedoAction(w, "&Redo annotation change")
    redo.setShortcut(QKeySequence("Ctrl+Shift+Z"))
    for action in (undo, redo):
        w.addAction(action)
        annotate_menu.addAction(action)
    view_menu.addAction(w.annotation_dock.toggleViewAction())
    w.annotate_menu = annotate_menu

    w.next_page_action = make_action(w, "Next page", lambda: w.step_page(1), "PgDown",
                                     "Next page of a stack (PgDn)")
    w.previous_page_action = make_action(w, "Previous page", lambda: w.step_page(-1), "PgUp",
                                         "Previous page of a stack (PgUp)")
    image_menu = menu.addMenu("&Image")
    image_menu.addAction(w.next_page_action)
    image_menu.addAction(w.previous_page_action)
    w.pixel_size_action = make_action(w, "Set &pixel size…", w.ask_pixel_size, "Ctrl+Shift+P",
                                      "Set the size of one pixel in µm (remembered for this "
                                      "file)")
    image_menu.addAction(w.pixel_size_action)
    w.image_menu = image_menu

    help_menu = menu.addMenu("&Help")
    help_menu.addAction(make_action(w, "&Help and shortcuts…", w.show_help,
                                    QKeySequence.StandardKey.HelpContents,
                                    "How to read a case, and every keyboard shortcut (F1)"))
    help_menu.addAction(make_action(w, "Intended use…", w.show_intended_use))
    help_menu.addAction(make_action(w, "About rcm-viewer", w.show_about))
    w.help_menu = help_menu
