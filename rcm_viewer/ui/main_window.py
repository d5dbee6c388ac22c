"""The main window: mosaic view in the centre, overview, display and assessment docks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QWidget,
)

from rcm_viewer import __version__
from rcm_viewer.cases import CaseStore, file_sha256
from rcm_viewer.errors import CaseStoreError
from rcm_viewer.mosaic import (
    MAX_PIXEL_SIZE_UM,
    MIN_PIXEL_SIZE_UM,
    Mosaic,
    display_range_of,
    open_mosaic,
)
from rcm_viewer.mosaic.sniff import open_dialog_filter
from rcm_viewer.paths import DEMO_DIR
from rcm_viewer.session import (
    case_for_mosaic,
    resolve_reader,
    stored_from_prediction,
    view_from_prediction,
    view_from_stored,
)
from rcm_viewer.ui import settings as app_settings_module
from rcm_viewer.ui.ai_gate import AIGate, reader_mode_for_new_cases
from rcm_viewer.ui.ai_panel import AIPanel
from rcm_viewer.ui.assessment_form import AssessmentForm
from rcm_viewer.ui.case_list import CaseListDialog
from rcm_viewer.ui.contrast import ContrastPanel
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget
from rcm_viewer.ui.tiles import DisplaySettings, to_qimage
from rcm_viewer.ui.workers import Worker

log = logging.getLogger(__name__)

OVERVIEW_MAX_PX = 2048
INTENDED_USE = (
    "rcm-viewer is a reader-assist tool for reflectance confocal microscopy. It is not a "
    "diagnostic device. Any classifier output is to be used together with other clinical "
    "information and the clinician's professional judgement; the clinician reviews the full "
    "images. The bundled demonstration model is trained on synthetic images only and is not "
    "for diagnosis."
)


def _overview_level(mosaic: Mosaic) -> int | None:
    """Smallest existing level small enough to keep in memory, or None (levels not built)."""
    for index in range(mosaic.level_count - 1, -1, -1):
        info = mosaic.info.levels[index]
        if max(info.width, info.height) <= OVERVIEW_MAX_PX:
            return index
    return None


def _load_overview(mosaic: Mosaic) -> tuple[int, np.ndarray, tuple[float, float]] | None:
    level = _overview_level(mosaic)
    if level is None:
        return None
    info = mosaic.info.levels[level]
    pixels = mosaic.read_region(level, 0, 0, info.width, info.height)
    return level, pixels, mosaic.display_range()


class MainWindow(QMainWindow):
    def __init__(self, parent: QWidget | None = None, store: CaseStore | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("rcm-viewer")
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.mosaic: Mosaic | None = None
        self.last_error: str | None = None
        self._open_token = 0
        self._jobs: list[Worker] = []
        self._build_job: Worker | None = None
        self._showing_preview = False  # the overview is a preview until the levels exist
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)

        self.view = MosaicView(self)
        self.setCentralWidget(self.view)
        self.overview = OverviewWidget()
        self.contrast = ContrastPanel()
        self.overview_dock = self._dock("Overview", self.overview, "OverviewDock",
                                        Qt.DockWidgetArea.LeftDockWidgetArea)
        self.display_dock = self._dock("Display", self.contrast, "DisplayDock",
                                       Qt.DockWidgetArea.LeftDockWidgetArea)

        self.store: CaseStore | None = store
        self._owns_store = store is None
        self.case_id: str | None = None
        self._store_warning: str | None = None
        if self.store is None:
            self._open_store()
        self.form = AssessmentForm()
        self.form.set_store(self.store)
        self.form.setEnabled(False)
        self.form_dock = self._dock("Assessment", self.form, "AssessmentDock",
                                    Qt.DockWidgetArea.RightDockWidgetArea)
        self.ai_panel = AIPanel()
        self.ai_panel.classifyRequested.connect(self.classify)
        self.ai_panel.cancelRequested.connect(self.cancel_classification)
        self.ai_panel.heatmapChanged.connect(self._refresh_overlay)
        self.ai_panel.explainRequested.connect(self.explain_visible_region)
        self.ai_panel.clearExplanationRequested.connect(self.clear_region_explanation)
        self.region_explanation = None  # RegionExplanation on screen instead of the map
        self._explain_job: Worker | None = None
        self.ai_gate = AIGate()
        ai_scroll = QScrollArea()
        ai_scroll.setWidgetResizable(True)
        ai_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        ai_scroll.setWidget(self.ai_panel)
        self.ai_gate.set_content(ai_scroll)
        self.ai_gate.revealedChanged.connect(lambda _revealed: self._refresh_overlay())
        self._classify_job: Worker | None = None
        self.prediction = None  # the live Prediction of the current mosaic, if any
        self.ai_dock = self._dock("AI result", self.ai_gate, "AIDock",
                                  Qt.DockWidgetArea.RightDockWidgetArea)
        self.form.initialCommitted.connect(self._on_initial_committed)
        self.form.errorOccurred.connect(lambda message: self.show_error("Not saved", message))
        self.case_list: CaseListDialog | None = None

        self.view.viewChanged.connect(self._on_view_changed)
        self.view.cursorMoved.connect(self._on_cursor)
        self.view.levelChanged.connect(self._update_status)
        self.overview.jumpRequested.connect(self.view.center_on)
        self.contrast.displayChanged.connect(self.view.set_display)

        self._build_status_bar()
        self._build_menus()
        self._restore_layout()

    # -- construction -------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, name: str, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.position_label = QLabel("")
        self.position_label.setToolTip("Cursor position in µm (and full-resolution pixels)")
        self.value_label = QLabel("")
        self.value_label.setToolTip("Stored pixel value under the cursor")
        self.zoom_label = QLabel("")
        self.zoom_label.setToolTip("Zoom (100 % = one screen pixel per stored pixel) and the "
                                   "resolution level being shown")
        self.pixel_label = QLabel("")
        self.page_spin = QSpinBox()
        self.page_spin.setPrefix("page ")
        self.page_spin.setToolTip("Page of a multi-page stack (VivaStack): PgUp / PgDn")
        self.page_spin.setVisible(False)
        self.page_spin.valueChanged.connect(lambda value: self.set_page(value - 1))
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setVisible(False)
        self.progress_cancel = QPushButton("Cancel")
        self.progress_cancel.setVisible(False)
        self.progress_cancel.clicked.connect(self.cancel_background_work)
        for widget in (self.position_label, self.value_label):
            bar.addWidget(widget)
        for widget in (self.progress, self.progress_cancel, self.page_spin, self.zoom_label,
                       self.pixel_label):
            bar.addPermanentWidget(widget)

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, list | tuple):
                action.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = self._action("&Open mosaic…", self.open_dialog,
                                        QKeySequence.StandardKey.Open,
                                        "Open an RCM mosaic (TIFF, OME-TIFF, PNG, JPEG, BMP)")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        demo_menu = file_menu.addMenu("Open &demo mosaic")
        for name, label in (("naevus", "Benign naevus"), ("melanoma", "Melanoma"),
                            ("bcc", "Basal cell carcinoma")):
            demo_menu.addAction(
                self._action(f"{label} (synthetic)",
                             lambda _=False, n=name: self.open_path(DEMO_DIR / f"demo_{n}.tif"))
            )
        file_menu.addSeparator()
        self.cases_action = self._action("&Cases…", self.show_case_list, "Ctrl+L",
                                         "Find, reopen and export saved cases (Ctrl+L)")
        file_menu.addAction(self.cases_action)
        file_menu.addSeparator()
        self.close_action = self._action("&Close mosaic", self.close_mosaic,
                                         QKeySequence.StandardKey.Close)
        file_menu.addAction(self.close_action)
        file_menu.addAction(self._action("&Quit", self.close, QKeySequence.StandardKey.Quit))

        view_menu = menu.addMenu("&View")
        view_menu.addAction(self._action("Zoom &in", lambda: self.view.zoom_by(1.25),
                                         ["+", "="], "Zoom in (+, mouse wheel)"))
        view_menu.addAction(self._action("Zoom &out", lambda: self.view.zoom_by(0.8), ["-"],
                                         "Zoom out (-, mouse wheel)"))
        view_menu.addAction(self._action("&Fit to window", self.view.fit, ["F", "0"],
                                         "Show the whole mosaic (F or 0)"))
        view_menu.addAction(self._action("&Actual pixels (1:1)", lambda: self.view.set_zoom(1.0),
                                         ["1"], "One screen pixel per stored pixel (1)"))
        view_menu.addSeparator()
        view_menu.addAction(self._action("&Auto contrast", self.contrast.auto_contrast, ["A"],
                                         "Stretch the 0.5-99.5 % range to the screen (A)"))
        view_menu.addSeparator()
        for dock in (self.overview_dock, self.display_dock, self.form_dock, self.ai_dock):
            view_menu.addAction(dock.toggleViewAction())
        self.view_menu = view_menu

        analysis_menu = menu.addMenu("&Analysis")
        self.classify_action = self._action("&Classify mosaic", self.classify, "Ctrl+R",
                                            "Run the classifier on the whole mosaic in the "
                                            "background (Ctrl+R)")
        analysis_menu.addAction(self.classify_action)
        self.cancel_classify_action = self._action("C&ancel classification",
                                                   self.cancel_classification)
        analysis_menu.addAction(self.cancel_classify_action)
        self.heatmap_action = self._action("Show/hide &heatmap",
                                           lambda: self.ai_panel.show_heatmap.toggle(), "H",
                                           "Toggle the heatmap overlay (H)")
        analysis_menu.addAction(self.heatmap_action)
        self.model_menu = analysis_menu.addMenu("&Model")
        self.model_menu.aboutToShow.connect(self._fill_model_menu)

        self.next_page_action = self._action("Next page", lambda: self._step_page(1), "PgDown",
                                             "Next page of a stack (PgDn)")
        self.previous_page_action = self._action("Previous page", lambda: self._step_page(-1),
                                                 "PgUp", "Previous page of a stack (PgUp)")
        image_menu = menu.addMenu("&Image")
        image_menu.addAction(self.next_page_action)
        image_menu.addAction(self.previous_page_action)
        self.pixel_size_action = self._action("Set &pixel size…", self.ask_pixel_size,
                                              "Ctrl+Shift+P",
                                              "Set the size of one pixel in µm (remembered for "
                                              "this file)")
        image_menu.addAction(self.pixel_size_action)

        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("Intended use…", self.show_intended_use))
        help_menu.addAction(self._action("About rcm-viewer", self.show_about))

    # -- opening ------------------------------------------------------------------------

    def open_dialog(self) -> None:
        start = str(app_settings_module.app_settings().value("files/last_dir", str(DEMO_DIR)))
        path, _ = QFileDialog.getOpenFileName(self, "Open RCM mosaic", start, open_dialog_filter())
        if path:
            self.open_path(Path(path))

    def open_path(self, path: str | Path) -> None:
        """Open in the background; the window stays usable and a failure is a dialog."""
        path = Path(path)
        self.cancel_background_work()
        self._open_token += 1
        token = self._open_token
        self.statusBar().showMessage(f"Opening {path.name}…")

        def work(progress, cancelled):
            mosaic = open_mosaic(path)
            try:
                return mosaic, _load_overview(mosaic)
            except BaseException:
                mosaic.close()
                raise

        job = Worker(work, name=f"opening {path.name}")
        job.signals.finished.connect(lambda result: self._on_opened(token, path, result))
        job.signals.failed.connect(lambda message: self._on_open_failed(token, message))
        self._start(job)

    def _start(self, job: Worker) -> None:
        self._jobs = [j for j in self._jobs if not j.done.is_set()]
        self._jobs.append(job)
        self._pool.start(job)

    def _on_open_failed(self, token: int, message: str) -> None:
        if token != self._open_token:
            return
        self.statusBar().clearMessage()
        self.show_error("Cannot open mosaic", message)

    def _on_opened(self, token: int, path: Path, result) -> None:
        mosaic, overview = result
        if token != self._open_token:
            mosaic.close()
            return
        previous = self.mosaic
        self.mosaic = mosaic
        info = mosaic.info
        if overview is not None:
            level, pixels, display_range = overview
            self._apply_overview(level, pixels, display_range)
        else:
            maximum = 65535.0 if np.dtype(info.dtype).itemsize == 2 else 255.0
            self.contrast.set_data(None, np.dtype(info.dtype), (0.0, maximum))
            self.view.set_mosaic(mosaic, None, 0, self.contrast.settings())
            self.overview.set_image(None, info.width, info.height)
        if previous is not None:
            previous.close()
        self.view.tiles.set_page(0)
        self.page_spin.blockSignals(True)
        self.page_spin.setRange(1, max(1, info.pages))
        self.page_spin.setValue(1)
        self.page_spin.blockSignals(False)
        self.page_spin.setSuffix(f" / {info.pages}")
        self.page_spin.setVisible(info.pages > 1)
        self.setWindowTitle(f"{path.name} — rcm-viewer")
        app_settings_module.add_recent_file(str(path.resolve()))
        settings = app_settings_module.app_settings()
        settings.setValue("files/last_dir", str(path.resolve().parent))
        message = f"Opened {path.name}: {info.width} x {info.height} px, {info.dtype}"
        if info.is_rgb:
            message += " — colour image: RCM is grayscale, shown as stored"
        self.statusBar().showMessage(message, 8000)
        self._update_status()
        if not mosaic.levels_ready():
            self._start_building_levels(token)
        self._start_case_lookup(token, path)

    # -- cases ------------------------------------------------------------------------------

    def _open_store(self) -> None:
        try:
            self.store = CaseStore()
        except CaseStoreError as exc:
            self.store = None
            self._store_warning = f"The case database cannot be used: {exc}"
            QTimer.singleShot(0, lambda: self.show_error("Case database", self._store_warning))
            return
        if self.store.startup_warning:
            warning = self.store.startup_warning
            QTimer.singleShot(0, lambda: self.show_error("Case database", warning))

    def _reader(self) -> str:
        return resolve_reader(app_settings_module.reader_name())

    def _start_case_lookup(self, token: int, path: Path) -> None:
        """Hash the file off the GUI thread, then restore its case or start a new one."""
        self._save_view_state()
        self.form.flush()
        self.case_id = None
        self.prediction = None
        self.region_explanation = None
        self.ai_panel.clear()
        self._refresh_overlay()
        self.form.clear()
        self.form.setEnabled(False)
        self.ai_gate.update_from_case(None)
        if self.store is None:
            return
        self._pending_case_path = path
        job = Worker(lambda progress, cancelled: file_sha256(path, progress=progress),
                     name=f"fingerprinting {path.name}")
        job.signals.finished.connect(lambda sha: self._on_case_hash(token, path, sha))
        job.signals.failed.connect(lambda message: self.show_error("Case not started", message))
        self._start(job)

    def _on_case_hash(self, token: int, path: Path, sha256: str) -> None:
        if token != self._open_token or self.store is None or self.mosaic is None:
            return
        try:
            case, restored = case_for_mosaic(
                self.store, path, sha256, user=self._reader(),
                reader_mode=reader_mode_for_new_cases(),
                pixel_size_um=self.mosaic.info.pixel_size_um)
        except CaseStoreError as exc:
            self.show_error("Case database", str(exc))
            return
        self.case_id = case.case_id
        self.form.setEnabled(True)
        self.form.load_case(case.case_id)
        self.ai_gate.update_from_case(self.store.get_case(case.case_id))
        if restored:
            self._restore_view_state(case.view_state)
            self.statusBar().showMessage(f"Restored case {case.case_id} for {path.name}", 8000)
        self.caseLoaded(case.case_id)

    def caseLoaded(self, case_id: str) -> None:
        """Show a stored AI result of the restored case (still behind the reader-first gate)."""
        case = self.store.get_case(case_id, include_hidden_ai=True) if self.store else None
        if case is None or case.ai_result is None or self.prediction is not None:
            return
        self.ai_panel.show_result(view_from_stored(case.ai_result))

    # -- classification -----------------------------------------------------------------------

    def _model_dir(self) -> Path | None:
        chosen = app_settings_module.app_settings().value("model/dir", "")
        return Path(str(chosen)) if chosen else None

    def _fill_model_menu(self) -> None:
        from rcm_viewer.inference import list_bundles

        self.model_menu.clear()
        chosen = self._model_dir()
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
            action = self.model_menu.addAction(label)
            action.setCheckable(True)
            action.setChecked(chosen is not None and chosen.resolve() == entry.path.resolve())
            action.triggered.connect(lambda _=False, p=entry.path: self._choose_model(p))

    def _choose_model(self, path: Path) -> None:
        settings = app_settings_module.app_settings()
        settings.setValue("model/dir", str(path))
        settings.sync()

    def classify(self) -> None:
        """Classify the open mosaic in the background; the window stays fully usable."""
        mosaic = self.mosaic
        if mosaic is None:
            self.statusBar().showMessage("Open a mosaic first", 4000)
            return
        if self._classify_job is not None and not self._classify_job.done.is_set():
            return
        pixel_um = mosaic.info.pixel_size_um
        if not pixel_um:
            self.ask_pixel_size()
            pixel_um = mosaic.info.pixel_size_um
            if not pixel_um:
                self.show_error("Pixel size needed", f"{mosaic.path.name}: the pixel size is "
                                "unknown; the classifier's scale depends on it. Set it first "
                                "(Image > Set pixel size).")
                return
        model_dir = self._model_dir()
        token = self._open_token
        job: Worker  # assigned below, before the work runs

        def work(progress, cancelled):
            from rcm_viewer.inference import classify_mosaic, default_bundle_dir, load_bundle

            bundle = load_bundle(model_dir if model_dir is not None else default_bundle_dir())
            job.signals.partial.emit(("model", bundle.manifest))
            return classify_mosaic(mosaic, bundle, progress=progress, cancel=cancelled,
                                   on_partial=job.signals.partial.emit)

        job = Worker(work, name=f"classifying {mosaic.path.name}")
        job.signals.progress.connect(self._on_classify_progress)
        job.signals.partial.connect(lambda item: self._on_classify_partial(token, item))
        job.signals.finished.connect(lambda prediction: self._on_classified(token, prediction))
        job.signals.failed.connect(lambda message: self._on_classify_failed(token, message))
        job.signals.cancelled.connect(self._on_classify_cancelled)
        self._classify_job = job
        self.prediction = None
        self.ai_panel.set_running(True)
        self._show_progress("classifying %v/%m tiles")
        self.statusBar().showMessage(f"Classifying {mosaic.path.name} in the background…")
        self._start(job)

    def cancel_classification(self) -> None:
        job = self._classify_job
        if job is not None and not job.done.is_set():
            job.cancel()
        self._classify_job = None
        self.ai_panel.set_running(False)
        self._hide_progress()

    def _on_classify_progress(self, done: int, total: int) -> None:
        self.ai_panel.set_progress(done, total)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_classify_partial(self, token: int, item) -> None:
        if token != self._open_token:
            return
        if isinstance(item, tuple) and item and item[0] == "model":
            manifest = item[1]
            self.ai_panel.set_model_info(manifest.name, manifest.version, manifest.synthetic)
            return
        self.prediction = item
        self.ai_panel.show_result(view_from_prediction(item))

    def _on_classified(self, token: int, prediction) -> None:
        self._classify_job = None
        self.ai_panel.set_running(False)
        self._hide_progress()
        if token != self._open_token:
            return
        self.prediction = prediction
        self.ai_panel.show_result(view_from_prediction(prediction))
        self.statusBar().showMessage(
            f"Classified in {prediction.seconds:.1f} s ({prediction.n_tiles} tiles)"
            if prediction.ok else f"Not classified: {prediction.status}", 8000)
        if prediction.ok and self.store is not None and self.case_id is not None:
            try:
                self.store.save_ai_result(self.case_id, stored_from_prediction(prediction),
                                          self._reader())
                self.ai_gate.update_from_case(self.store.get_case(self.case_id))
            except CaseStoreError as exc:
                self.show_error("AI result not saved", str(exc))
        self._refresh_overlay()

    def _on_classify_failed(self, token: int, message: str) -> None:
        self._classify_job = None
        self.ai_panel.set_running(False)
        self._hide_progress()
        if token == self._open_token:
            self.show_error("Classification failed", message)

    def _on_classify_cancelled(self) -> None:
        self.ai_panel.set_running(False)
        self._hide_progress()
        self.statusBar().showMessage("Classification cancelled", 5000)

    def explain_visible_region(self, method: str, layer: str) -> None:
        """A pytorch-grad-cam map of the region on screen, in a worker (can take a while)."""
        mosaic = self.mosaic
        if mosaic is None or self.ai_panel.result is None or not self.ai_gate.is_revealed():
            return
        if self._explain_job is not None and not self._explain_job.done.is_set():
            return
        rect = self.view.visible_scene_rect().intersected(
            QRectF(0, 0, mosaic.info.width, mosaic.info.height))
        if rect.isEmpty():
            return
        x, y = int(rect.left()), int(rect.top())
        region = (x, y, max(1, int(rect.width())), max(1, int(rect.height())))
        target = self.ai_panel.class_combo.currentData()
        pixel_um = mosaic.info.pixel_size_um
        model_dir = self._model_dir()
        token = self._open_token

        def work(progress, cancelled):
            from rcm_viewer.inference import default_bundle_dir, explain_region, load_bundle

            bundle = load_bundle(model_dir if model_dir is not None else default_bundle_dir())
            return explain_region(mosaic, bundle, region, method, target, layer=layer,
                                  pixel_size_um=pixel_um)

        job = Worker(work, name=f"{method} of the visible region")
        job.signals.finished.connect(lambda result: self._on_explained(token, result))
        job.signals.failed.connect(lambda message: self._on_explain_failed(token, message))
        self._explain_job = job
        self.ai_panel.set_explanation_state(f"Computing {method} over the visible region…",
                                            False, busy=True)
        self._start(job)

    def _on_explained(self, token: int, explanation) -> None:
        if token != self._open_token:
            return
        self.region_explanation = explanation
        x, y, w, h = explanation.rect
        self.ai_panel.set_explanation_state(
            f"Showing {explanation.method} ({explanation.layer}) for "
            f"{explanation.target_class} over the region {w} x {h} px at ({x}, {y}), "
            f"{explanation.seconds:.1f} s. Values are relative within this region.", True)
        self._refresh_overlay()

    def _on_explain_failed(self, token: int, message: str) -> None:
        self.ai_panel.set_explanation_state("", self.region_explanation is not None)
        if token == self._open_token:
            self.show_error("Explanation failed", message)

    def clear_region_explanation(self) -> None:
        self.region_explanation = None
        self.ai_panel.set_explanation_state("", False)
        self._refresh_overlay()

    def _refresh_overlay(self) -> None:
        if self.region_explanation is not None and self.ai_gate.is_revealed():
            from rcm_viewer.ui.ai_panel import heatmap_image

            explanation = self.region_explanation
            image = heatmap_image(explanation.heatmap, self.ai_panel.colormap.currentText(),
                                  self.ai_panel.threshold.value() / 100)
            x, y, w, h = explanation.rect
            self.view.set_overlay_opacity(self.ai_panel.opacity_value())
            self.view.set_overlay_visible(self.ai_panel.show_heatmap.isChecked())
            self.view.set_overlay(image, QRectF(x, y, w, h))
            return
        overlay = self.ai_panel.overlay() if self.ai_gate.is_revealed() else None
        self.view.set_overlay_visible(True)
        if overlay is None:
            self.view.set_overlay(None)
            return
        image, (span_w, span_h) = overlay
        self.view.set_overlay_opacity(self.ai_panel.opacity_value())
        self.view.set_overlay(image, QRectF(0, 0, span_w, span_h))

    def tile_probabilities_at(self, x: float, y: float) -> dict[str, float] | None:
        """The probabilities of the classified tile under a level-0 point (live result only)."""
        prediction = self.prediction
        if prediction is None or not self.ai_gate.is_revealed():
            return None
        boxes = prediction.tile_boxes
        if boxes is None or len(boxes) == 0:
            return None
        inside = ((boxes[:, 0] <= x) & (x < boxes[:, 0] + boxes[:, 2])
                  & (boxes[:, 1] <= y) & (y < boxes[:, 1] + boxes[:, 3]))
        hits = np.flatnonzero(inside)
        if hits.size == 0:
            return None
        probs = prediction.tile_probabilities[hits].mean(axis=0)
        return dict(zip(prediction.class_ids, (float(p) for p in probs), strict=True))

    def _on_initial_committed(self, case_id: str) -> None:
        if self.store is not None and case_id == self.case_id:
            self.ai_gate.update_from_case(self.store.get_case(case_id))

    def _save_view_state(self) -> None:
        if self.store is None or self.case_id is None or self.mosaic is None:
            return
        center = self.view.visible_scene_rect().center()
        try:
            self.store.save_view_state(self.case_id, {"center_x": round(center.x(), 1),
                                                      "center_y": round(center.y(), 1),
                                                      "zoom": round(self.view.zoom, 5)})
        except CaseStoreError as exc:
            log.info("view state not saved: %s", exc)

    def _restore_view_state(self, state) -> None:
        if not state:
            return
        try:
            zoom = float(state["zoom"])
            center = QPointF(float(state["center_x"]), float(state["center_y"]))
        except (KeyError, TypeError, ValueError):
            return
        self.view.set_zoom(zoom, center)

    def show_case_list(self) -> None:
        if self.store is None:
            self.show_error("Cases", self._store_warning or "No case database is open.")
            return
        if self.case_list is None:
            self.case_list = CaseListDialog(self.store, self)
            self.case_list.caseOpenRequested.connect(self._open_case_from_list)
            self.case_list.errorOccurred.connect(lambda m: self.show_error("Cases", m))
        self.case_list.refresh()
        self.case_list.show()
        self.case_list.raise_()

    def _open_case_from_list(self, case_id: str, mosaic_path: str) -> None:
        if not mosaic_path:
            self.show_error("Cases", f"Case {case_id} has no mosaic file recorded.")
            return
        if not Path(mosaic_path).exists():
            self.show_error("Cases", f"The mosaic of case {case_id} is no longer at "
                            f"{mosaic_path}: open it from its new place (File > Open) and "
                            "the case follows it.")
            return
        self.open_path(Path(mosaic_path))

    def _step_page(self, step: int) -> None:
        if self.mosaic is not None and self.mosaic.pages > 1:
            self.page_spin.setValue(self.page_spin.value() + step)

    def set_page(self, page: int) -> None:
        """Show page ``page`` (0-based) of a stack; overview and tiles are read for it."""
        mosaic = self.mosaic
        if mosaic is None or not 0 <= page < mosaic.pages or page == self.view.tiles.page:
            return
        self.view.tiles.set_page(page)
        self.view.viewport().update()
        self.statusBar().showMessage(f"Page {page + 1} of {mosaic.pages}", 3000)
        self._load_page_overview(page)

    def _load_page_overview(self, page: int) -> None:
        mosaic = self.mosaic
        level = _overview_level(mosaic)
        if level is None:
            return
        info = mosaic.info.levels[level]
        token = self._open_token
        job = Worker(lambda progress, cancelled: mosaic.read_region(
            level, 0, 0, info.width, info.height, page=page), name=f"overview of page {page + 1}")
        job.signals.finished.connect(lambda pixels: self._on_page_overview(token, page, pixels))
        job.signals.failed.connect(lambda message: self.show_error("Page not shown", message))
        self._start(job)  # decoding stays off the GUI thread

    def _on_page_overview(self, token: int, page: int, pixels) -> None:
        if token != self._open_token or page != self.view.tiles.page:
            return
        self._overview_pixels = pixels
        self._refresh_overview_image(self.contrast.settings())

    def _apply_overview(self, level: int, pixels: np.ndarray, display_range,
                        keep_display: bool = False) -> None:
        mosaic = self.mosaic
        info = mosaic.info
        if not keep_display:
            self.contrast.set_data(pixels, np.dtype(info.dtype), display_range)
        display = self.contrast.settings()
        image = to_qimage(pixels, display.lut(np.dtype(info.dtype)))
        self.overview.set_image(image, info.width, info.height)
        if self.view.mosaic is mosaic:
            self.view.set_overview(image, level)
            if not keep_display:
                self.view.set_display(display)
        else:
            self.view.set_mosaic(mosaic, image, level, display)
        self._overview_pixels = pixels
        self.contrast.displayChanged.connect(self._refresh_overview_image,
                                             Qt.ConnectionType.UniqueConnection)

    def _refresh_overview_image(self, display: DisplaySettings) -> None:
        pixels = getattr(self, "_overview_pixels", None)
        if pixels is None or self.mosaic is None:
            return
        image = to_qimage(pixels, display.lut(np.dtype(self.mosaic.info.dtype)))
        self.overview.set_image(image, self.mosaic.info.width, self.mosaic.info.height)
        self.view.set_overview(image, self.view._overview_level)

    def _start_building_levels(self, token: int) -> None:
        mosaic = self.mosaic
        job: Worker  # assigned below, before the work runs

        def preview(pixels: np.ndarray) -> None:  # build thread: the range is computed here
            job.signals.partial.emit((pixels, display_range_of(pixels, mosaic.info.channels)))

        def work(progress, cancelled):
            if not mosaic.build_levels(progress=progress, cancel=cancelled, preview=preview):
                return None
            return _load_overview(mosaic)

        job = Worker(work, name="building overview levels")
        job.signals.progress.connect(self._on_build_progress)
        job.signals.partial.connect(lambda result: self._on_levels_preview(token, result))
        job.signals.finished.connect(lambda result: self._on_levels_built(token, result))
        job.signals.failed.connect(lambda message: self._on_build_failed(token, message))
        job.signals.cancelled.connect(self._hide_progress)
        self._build_job = job
        self._showing_preview = False
        self._show_progress("building levels %p%")
        self._start(job)

    def _on_build_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_levels_preview(self, token: int, result) -> None:
        """A quick approximation of the smallest level: the whole mosaic on screen at once,
        sharpened when the real levels arrive."""
        if token != self._open_token or self.mosaic is None:
            return
        if self.view.tiles.page != 0:  # the preview is of the first page
            return
        pixels, display_range = result
        self._apply_overview(len(self.mosaic.planned_levels) - 1, pixels, display_range)
        self._showing_preview = True
        self.progress.setFormat("preview · levels %p%")

    def _on_levels_built(self, token: int, overview) -> None:
        self._hide_progress()
        if token != self._open_token or overview is None:
            return
        # after a preview, keep the contrast the reader may have set meanwhile
        self._apply_overview(*overview, keep_display=self._showing_preview)
        self._showing_preview = False
        if self.view.tiles.page != 0:  # the reader went to another page of a stack meanwhile
            self._load_page_overview(self.view.tiles.page)
        self.view.viewport().update()
        self._update_status()

    def _on_build_failed(self, token: int, message: str) -> None:
        self._hide_progress()
        if token == self._open_token:
            self.show_error("Overview levels could not be built", message)

    def _show_progress(self, text_format: str) -> None:
        """The status-bar progress bar with its Cancel button; busy until the first
        progress report sets the range."""
        self.progress.setFormat(text_format)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.progress_cancel.setVisible(True)

    def _hide_progress(self) -> None:
        self.progress.setVisible(False)
        self.progress_cancel.setVisible(False)

    def cancel_background_work(self) -> None:
        self.cancel_classification()
        if self._build_job is not None:
            self._build_job.cancel()
            self._build_job = None
        self._hide_progress()

    def close_mosaic(self) -> None:
        self._save_view_state()
        self.form.flush()
        self.form.clear()
        self.form.setEnabled(False)
        self.case_id = None
        self.prediction = None
        self.region_explanation = None
        self.ai_panel.clear()
        self.ai_gate.update_from_case(None)
        self.cancel_background_work()
        self._open_token += 1
        self.view.set_mosaic(None, None, 0, None)
        self.overview.set_image(None, 1, 1)
        if self.mosaic is not None:
            self.mosaic.close()
        self.mosaic = None
        self._overview_pixels = None
        self.setWindowTitle("rcm-viewer")
        self._update_status()

    # -- status ---------------------------------------------------------------------------

    def _on_view_changed(self) -> None:
        self.overview.set_view_rect(self.view.visible_scene_rect())
        self._update_status()

    def _on_cursor(self, x: float, y: float) -> None:
        mosaic = self.mosaic
        if mosaic is None or not (0 <= x < mosaic.info.width and 0 <= y < mosaic.info.height):
            self.position_label.setText("")
            self.value_label.setText("")
            return
        px = mosaic.info.pixel_size_um
        if px:
            self.position_label.setText(f"x {x * px:,.1f} µm  y {y * px:,.1f} µm  "
                                        f"({int(x)}, {int(y)} px)")
        else:
            self.position_label.setText(f"x {int(x)} px  y {int(y)} px")
        tile = self.tile_probabilities_at(x, y)
        if tile is not None:
            parts = ", ".join(f"{cid} {p * 100:.0f}%" for cid, p in tile.items())
            self.position_label.setText(self.position_label.text() + f"   tile: {parts}")
        level = self.view.current_level
        value = self.view.tiles.raw_value(level, x, y)
        if value is None:
            self.value_label.setText("")
        else:
            suffix = "" if level == 0 else f" (level {level})"
            self.value_label.setText(f"value {value}{suffix}")

    def _update_status(self, *_args) -> None:
        mosaic = self.mosaic
        if mosaic is None:
            self.zoom_label.setText("")
            self.pixel_label.setText("")
            return
        self.zoom_label.setText(f"zoom {self.view.zoom * 100:.0f} %  level "
                                f"{self.view.current_level + 1}/{mosaic.level_count}")
        px = mosaic.info.pixel_size_um
        if px:
            self.pixel_label.setText(f"{px:g} µm/px ({mosaic.info.pixel_size_source})")
            self.pixel_label.setStyleSheet("")
            self.pixel_label.setToolTip("Pixel size and where it came from")
        else:
            self.pixel_label.setText("pixel size unknown")
            self.pixel_label.setStyleSheet("color: #ffc850; font-weight: bold;")
            self.pixel_label.setToolTip("No pixel size in the file: set it with Image > Set "
                                        "pixel size (Ctrl+Shift+P). Scale bar and classifier "
                                        "need it.")

    def ask_pixel_size(self) -> None:
        if self.mosaic is None:
            return
        current = self.mosaic.info.pixel_size_um or 0.5
        value, ok = QInputDialog.getDouble(
            self, "Pixel size", "Size of one pixel in µm (VivaScope fields: often about 0.5):",
            current, MIN_PIXEL_SIZE_UM, MAX_PIXEL_SIZE_UM, 4)
        if ok:
            self.set_pixel_size(value)
            if self.store is not None and self.case_id is not None:
                try:
                    self.store.update_case_fields(self.case_id, self._reader(),
                                                  pixel_size_um=value)
                except CaseStoreError as exc:
                    self.show_error("Not saved", str(exc))

    def set_pixel_size(self, value: float) -> None:
        if self.mosaic is None:
            return
        self.mosaic.set_pixel_size(value, remember=True)
        self._update_status()
        self.view.viewport().update()

    # -- messages -------------------------------------------------------------------------

    def show_error(self, title: str, message: str) -> None:
        """A non-blocking dialog: the window stays usable, and tests can read last_error."""
        self.last_error = message
        log.info("%s: %s", title, message)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok,
                          self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_intended_use(self) -> None:
        QMessageBox.information(self, "Intended use", INTENDED_USE)

    def show_about(self) -> None:
        QMessageBox.about(self, "About rcm-viewer",
                          f"rcm-viewer {__version__}\n\nReader-assist viewer for reflectance "
                          f"confocal microscopy mosaics.\n\n{INTENDED_USE}")

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = app_settings_module.recent_files()
        if not files:
            action = self.recent_menu.addAction("(none yet)")
            action.setEnabled(False)
        for index, path in enumerate(files, start=1):
            self.recent_menu.addAction(f"&{index % 10} {Path(path).name}",
                                       lambda p=path: self.open_path(p)).setToolTip(path)

    # -- drag and drop, layout ---------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    def _restore_layout(self) -> None:
        settings = app_settings_module.app_settings()
        geometry = settings.value("window/geometry")
        state = settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:
            self.resizeDocks([self.overview_dock, self.display_dock], [280, 280],
                             Qt.Orientation.Horizontal)
            self.resizeDocks([self.form_dock, self.ai_dock], [440, 440],
                             Qt.Orientation.Horizontal)
            self.resizeDocks([self.form_dock, self.ai_dock], [480, 420],
                             Qt.Orientation.Vertical)
            self.resizeDocks([self.overview_dock, self.display_dock], [300, 260],
                             Qt.Orientation.Vertical)

    def save_layout(self) -> None:
        settings = app_settings_module.app_settings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._save_view_state()
        self.form.flush()
        self.save_layout()
        self.cancel_background_work()
        self._pool.waitForDone(3000)
        self.view.tiles.set_mosaic(None, None)
        self.view.tiles.wait_idle(3000)
        if self.mosaic is not None:
            self.mosaic.close()
            self.mosaic = None
        if self.store is not None and self._owns_store:
            self.store.close()
        super().closeEvent(event)

    def wait_until_idle(self, timeout_s: float = 30.0) -> bool:
        """For tests and benchmarks: process events until background jobs and tiles are done."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer

        deadline = QDeadlineTimer(int(timeout_s * 1000))
        while not deadline.hasExpired():
            QCoreApplication.processEvents()
            jobs_busy = any(not j.done.is_set() for j in self._jobs)
            if not jobs_busy and not self.view.tiles.busy:
                QCoreApplication.processEvents()
                return True
            QTimer.singleShot(5, lambda: None)
            self._pool.waitForDone(5)
        return False


__all__ = ["MainWindow", "QRectF"]
