"""The main window's menus and shortcuts, in one place, so each action is easy to find.

Every action is also added to the window itself, so its shortcut works wherever the
focus is (the image, the form, a dock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox

from rcm_viewer.intended_use import INTENDED_USE
from rcm_viewer.paths import DEMO_DIR, open_models_folder
from rcm_viewer.ui import settings as app_settings_module
from rcm_viewer.ui.classification import chosen_backend, chosen_model_dir, set_chosen_backend
from rcm_viewer.ui.help_dialog import TextDialog, about_html, help_html

if TYPE_CHECKING:
    from rcm_viewer.ui.main_window import MainWindow

Shortcut = str | QKeySequence.StandardKey | Sequence[str] | None


def make_action(
    window: MainWindow,
    text: str,
    slot: Callable[..., object],
    shortcut: Shortcut = None,
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
    w.open_action = make_action(
        w,
        "&Open mosaic…",
        w.open_dialog,
        QKeySequence.StandardKey.Open,
        "Open an RCM mosaic (TIFF, OME-TIFF, PNG, JPEG, BMP)",
    )
    file_menu.addAction(w.open_action)
    w.recent_menu = file_menu.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(w.fill_recent_menu)
    demo_menu = file_menu.addMenu("Open &demo mosaic")
    for name, label in (
        ("naevus", "Benign naevus"),
        ("melanoma", "Melanoma"),
        ("bcc", "Basal cell carcinoma"),
    ):
        demo_menu.addAction(
            make_action(
                w,
                f"{label} (synthetic)",
                lambda _=False, n=name: w.open_path(DEMO_DIR / f"demo_{n}.tif"),
            )
        )
    file_menu.addSeparator()
    w.export_report_action = make_action(
        w,
        "&Export report…",
        w.export_report,
        "Ctrl+E",
        "A PDF report of this case (and its JSON data) (Ctrl+E)",
    )
    file_menu.addAction(w.export_report_action)
    w.batch_action = make_action(
        w,
        "Classify &folder…",
        w.show_batch_dialog,
        "Ctrl+Shift+R",
        "Classify every mosaic in a folder into a worklist of cases (Ctrl+Shift+R)",
    )
    file_menu.addAction(w.batch_action)
    w.open_beside_action = make_action(
        w,
        "Open &beside…",
        w.open_beside,
        "Ctrl+Shift+O",
        "Open a second mosaic beside this one, linked in µm (follow-up visit, another depth)",
    )
    file_menu.addAction(w.open_beside_action)
    w.cases_action = make_action(
        w, "&Cases…", w.show_case_list, "Ctrl+L", "Find, reopen and export saved cases (Ctrl+L)"
    )
    file_menu.addAction(w.cases_action)
    file_menu.addSeparator()
    w.close_action = make_action(w, "&Close mosaic", w.close_mosaic, QKeySequence.StandardKey.Close)
    file_menu.addAction(w.close_action)
    file_menu.addAction(make_action(w, "&Quit", w.close, QKeySequence.StandardKey.Quit))
    w.file_menu = file_menu

    view_menu = menu.addMenu("&View")
    view = w.view
    view_menu.addAction(
        make_action(
            w, "Zoom &in", lambda: view.zoom_by(1.25), ["+", "="], "Zoom in (+, mouse wheel)"
        )
    )
    view_menu.addAction(
        make_action(w, "Zoom &out", lambda: view.zoom_by(0.8), ["-"], "Zoom out (-, mouse wheel)")
    )
    view_menu.addAction(
        make_action(w, "&Fit to window", view.fit, ["F", "0"], "Show the whole mosaic (F or 0)")
    )
    view_menu.addAction(
        make_action(
            w,
            "&Actual pixels (1:1)",
            lambda: view.set_zoom(1.0),
            ["1"],
            "One screen pixel per stored pixel (1)",
        )
    )
    view_menu.addSeparator()
    view_menu.addAction(
        make_action(
            w,
            "&Auto contrast",
            w.contrast.auto_contrast,
            ["A"],
            "Stretch the 0.5-99.5 % range to the screen (A)",
        )
    )
    view_menu.addSeparator()
    for dock in (w.overview_dock, w.display_dock, w.form_dock, w.ai_dock):
        view_menu.addAction(dock.toggleViewAction())
    w.view_menu = view_menu

    analysis_menu = menu.addMenu("&Analysis")
    classification = w.classification
    w.classify_action = make_action(
        w,
        "&Classify mosaic",
        classification.classify,
        "Ctrl+R",
        "Run the classifier on the whole mosaic in the background (Ctrl+R)",
    )
    analysis_menu.addAction(w.classify_action)
    w.cancel_classify_action = make_action(w, "C&ancel classification", classification.cancel)
    analysis_menu.addAction(w.cancel_classify_action)
    w.heatmap_action = make_action(
        w,
        "Show/hide &heatmap",
        lambda: w.ai_panel.show_heatmap.toggle(),
        "H",
        "Toggle the heatmap overlay (H)",
    )
    analysis_menu.addAction(w.heatmap_action)
    w.model_menu = analysis_menu.addMenu("&Model")
    w.model_menu.aboutToShow.connect(w.fill_model_menu)
    w.backend_menu = analysis_menu.addMenu("Inference &runtime")
    w.backend_menu.aboutToShow.connect(w.fill_backend_menu)
    analysis_menu.addSeparator()
    for action in (
        w.tour.next_action,
        w.tour.previous_action,
        w.coverage.toggle_action,
        w.linked.link_action,
    ):
        analysis_menu.addAction(action)
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

    w.next_page_action = make_action(
        w, "Next page", lambda: w.step_page(1), "PgDown", "Next page of a stack (PgDn)"
    )
    w.previous_page_action = make_action(
        w, "Previous page", lambda: w.step_page(-1), "PgUp", "Previous page of a stack (PgUp)"
    )
    image_menu = menu.addMenu("&Image")
    image_menu.addAction(w.next_page_action)
    image_menu.addAction(w.previous_page_action)
    w.pixel_size_action = make_action(
        w,
        "Set &pixel size…",
        w.ask_pixel_size,
        "Ctrl+Shift+P",
        "Set the size of one pixel in µm (remembered for this file)",
    )
    image_menu.addAction(w.pixel_size_action)
    w.image_menu = image_menu

    help_menu = menu.addMenu("&Help")
    help_menu.addAction(
        make_action(
            w,
            "&Help and shortcuts…",
            w.show_help,
            QKeySequence.StandardKey.HelpContents,
            "How to read a case, and every keyboard shortcut (F1)",
        )
    )
    help_menu.addAction(make_action(w, "Intended use…", w.show_intended_use))
    help_menu.addAction(make_action(w, "About rcm-viewer", w.show_about))
    w.help_menu = help_menu


class MenuActions:
    """The window's menu-driven actions (help, about, recent files, models, runtimes, the
    image's right-click menu): a mixin of ``MainWindow``, kept here beside the menus."""

    def show_intended_use(self) -> None:
        from rcm_viewer.inference.ood import OOD_EXPLANATION

        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Intended use",
            f"{INTENDED_USE}\n\n{OOD_EXPLANATION}",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.open()  # not modal: the image stays in reach
        self.intended_use_box = box

    def show_help(self) -> None:
        dialog = TextDialog("rcm-viewer help", help_html(self.actions()), self)
        dialog.show()
        self.help_dialog = dialog

    def show_about(self) -> None:
        dialog = TextDialog("About rcm-viewer", about_html(self._active_model_text()), self)
        dialog.show()
        self.about_dialog = dialog

    def _active_model_text(self) -> str:
        """Name and version of the model a classification would use (no torch import)."""
        from rcm_viewer.errors import ModelBundleError
        from rcm_viewer.inference import default_bundle_dir, read_manifest

        try:
            manifest = read_manifest(chosen_model_dir() or default_bundle_dir())
        except ModelBundleError as exc:
            return f"none usable ({exc})"
        text = f"{manifest.name} {manifest.version}"
        return text + (" (demonstration, synthetic data)" if manifest.synthetic else "")

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = app_settings_module.recent_files()
        if not files:
            action = self.recent_menu.addAction("(none yet)")
            action.setEnabled(False)
        for index, path in enumerate(files, start=1):
            where = Path(path)
            self.recent_menu.addAction(
                f"&{index % 10} {where.name}  —  {where.parent}", lambda p=path: self.open_path(p)
            ).setToolTip(path)
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear recent files", self._clear_recent_files)

    def _clear_recent_files(self) -> None:
        settings = app_settings_module.app_settings()
        settings.setValue("recent_files", [])
        settings.sync()

    def fill_model_menu(self) -> None:
        from rcm_viewer.inference import list_bundles

        self.model_menu.clear()
        chosen = chosen_model_dir()
        if chosen is None:  # nothing picked: the default one is the active one
            from rcm_viewer.errors import ModelBundleError
            from rcm_viewer.inference import default_bundle_dir

            with contextlib.suppress(ModelBundleError, OSError):
                chosen = default_bundle_dir()
        entries = list_bundles()
        if not entries:
            self.model_menu.addAction("(no model installed in models/)").setEnabled(False)
        for entry in entries:
            if entry.manifest is None:
                action = self.model_menu.addAction(f"{entry.path.name}: {entry.problem}")
                action.setEnabled(False)
                continue
            label = f"{entry.manifest.name} {entry.manifest.version}"
            if entry.manifest.synthetic:
                label += " (demonstration, synthetic data)"
            if entry.trust.startswith("unverified"):  # inference/signing.py (issue 16)
                label += " — unverified model"
            action = self.model_menu.addAction(label)
            action.setToolTip(entry.trust)
            action.setCheckable(True)
            action.setChecked(chosen is not None and chosen.resolve() == entry.path.resolve())
            action.triggered.connect(lambda _=False, p=entry.path: self._choose_model(p))
        self.model_menu.addSeparator()
        folder = self.model_menu.addAction(
            "Open models &folder…",
            lambda: self.status.message(f"Models folder: {open_models_folder()}", 8000),
        )
        folder.setToolTip("Put extra model bundles here (one folder each); they appear above")

    def fill_backend_menu(self) -> None:
        """Analysis > Inference runtime: automatic (the fastest installed) or a fixed one."""
        from rcm_viewer.inference.backends import available_backends

        self.backend_menu.clear()
        chosen = chosen_backend()
        group = QActionGroup(self.backend_menu)
        installed = available_backends()
        labels = {
            "auto": "Automatic (fastest installed)",
            "openvino": "OpenVINO (CPU)",
            "torch": "PyTorch (channels-last, bfloat16 where native)",
            "torch-fp32": "PyTorch float32 (the reference)",
        }
        for name in ("auto", *installed):
            action = self.backend_menu.addAction(labels.get(name, name))
            action.setCheckable(True)
            action.setChecked(name == chosen)
            group.addAction(action)
            action.triggered.connect(lambda _=False, n=name: set_chosen_backend(n))

    def _choose_model(self, path: Path) -> None:
        settings = app_settings_module.app_settings()
        settings.setValue("model/dir", str(path))
        settings.sync()

    def _show_view_menu(self, pos: Any) -> None:
        """Right-click on the image: copy the position in µm, set the pixel size, export."""
        mosaic = self.mosaic
        if mosaic is None:
            return
        point = self.view.mapToScene(pos)
        menu = QMenu(self)
        px = mosaic.info.pixel_size_um
        if px:
            text = f"x {point.x() * px:.1f} µm, y {point.y() * px:.1f} µm"
        else:
            text = f"x {int(point.x())} px, y {int(point.y())} px"
        copy = menu.addAction(f"Copy position ({text})")
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(text))
        menu.addAction(self.pixel_size_action)
        menu.addAction("Export view as PNG…", self.export_view_png)
        menu.popup(self.view.viewport().mapToGlobal(pos))
        self.view_menu_popup = menu

    def export_view_png(self, path: str | Path | None = None) -> Path | None:
        """Save what the image view shows (with overlay and scale bar) as a PNG."""
        if path is None:
            start = str(app_settings_module.app_settings().value("files/last_export_dir", ""))
            name = f"{self.mosaic.path.stem}_view.png" if self.mosaic is not None else "view.png"
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Export view as PNG", str(Path(start) / name), "PNG (*.png)"
            )
            if not chosen:
                return None
            path = chosen
        target = Path(path)
        if not self.view.viewport().grab().save(str(target), "PNG"):
            self.show_error("View not exported", f"Cannot write {target.name} in {target.parent}")
            return None
        app_settings_module.app_settings().setValue("files/last_export_dir", str(target.parent))
        self.status.message(f"View saved as {target}", 6000)
        return target
