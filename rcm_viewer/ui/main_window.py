"""The main window: a view of one ``CaseSession``.

The mosaic view sits in the centre, with the overview and display docks on the left and
the assessment form and the AI result on the right. What is open, which case it is, who
reads, what the model said and whether the reader may see it all live in the headless
session (``rcm_viewer.session``); background jobs run through a ``JobRunner`` that drops
the results of a mosaic that is no longer open. The parts of the window have their own
modules: menus (``window_menus``), the status bar (``window_status``), the overview and
level build (``overview_levels``) and classification (``classification``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, Qt, QThreadPool, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QWidget,
)

from rcm_viewer.cases import CaseRecord, CaseStore, file_sha256
from rcm_viewer.errors import CaseStoreError
from rcm_viewer.intended_use import INTENDED_USE
from rcm_viewer.mosaic import Mosaic
from rcm_viewer.mosaic.field_grid import estimate_pixel_size
from rcm_viewer.mosaic.sniff import open_dialog_filter
from rcm_viewer.paths import DEMO_DIR
from rcm_viewer.session import AIView, CaseSession
from rcm_viewer.ui import settings as app_settings_module
from rcm_viewer.ui.ai_gate import AIGate, reader_mode_for_new_cases
from rcm_viewer.ui.ai_panel import AIPanel
from rcm_viewer.ui.annotation_panel import AnnotationPanel
from rcm_viewer.ui.annotations import AnnotationLayer
from rcm_viewer.ui.assessment_form import AssessmentForm
from rcm_viewer.ui.batch_dialog import BatchDialog
from rcm_viewer.ui.case_list import CaseListDialog
from rcm_viewer.ui.classification import (
    Classification,
)
from rcm_viewer.ui.contrast import ContrastPanel
from rcm_viewer.ui.coverage import CoverageController, CoverageLabel
from rcm_viewer.ui.hotspot_tour import HotspotPanel, HotspotTour
from rcm_viewer.ui.jobs import JobRunner
from rcm_viewer.ui.linked_views import LinkedViews
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget
from rcm_viewer.ui.overview_levels import OverviewLevels, open_with_overview
from rcm_viewer.ui.pixel_size_dialog import PixelSizeDialog
from rcm_viewer.ui.reading_settings import should_classify_at_open
from rcm_viewer.ui.report_export import ReportExportDialog
from rcm_viewer.ui.session_signals import SessionSignals
from rcm_viewer.ui.store_care import StoreCare
from rcm_viewer.ui.window_layout import WindowLayout
from rcm_viewer.ui.window_menus import MenuActions, build_menus
from rcm_viewer.ui.window_status import WindowStatus
from rcm_viewer.ui.workers import Worker

log = logging.getLogger(__name__)

__all__ = ["INTENDED_USE", "MainWindow"]


class MainWindow(MenuActions, WindowLayout, QMainWindow):
    def __init__(self, parent: QWidget | None = None, store: CaseStore | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("rcm-viewer")
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.last_error: str | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)

        self._owns_store = store is None
        self._store_warning: str | None = None
        if store is None:
            store = self._open_store()
        self.session = CaseSession(
            store,
            reader_name=self._configured_reader,
            reader_mode=reader_mode_for_new_cases,
        )
        self.session_signals = SessionSignals(self.session, self)
        self.jobs = JobRunner(self.session, self._pool, self)

        self.view = MosaicView(self)
        # the view, and a second mosaic beside it on demand (File > Open beside)
        self.linked = LinkedViews(self.view, pool=self._pool)
        self.setCentralWidget(self.linked)
        self.overview = OverviewWidget()
        self.contrast = ContrastPanel()
        self.overview_dock = self._dock(
            "Overview", self.overview, "OverviewDock", Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self.display_dock = self._dock(
            "Display", self.contrast, "DisplayDock", Qt.DockWidgetArea.LeftDockWidgetArea
        )

        self.form = AssessmentForm()
        self.form.set_store(self.store)
        self.form.setEnabled(False)
        self.form_dock = self._dock(
            "Assessment", self.form, "AssessmentDock", Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.ai_panel = AIPanel()
        self.ai_gate = AIGate()
        ai_scroll = QScrollArea()
        ai_scroll.setWidgetResizable(True)
        ai_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # never sideways: the banner and the bars must be read whole, not scrolled to
        ai_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        ai_scroll.setWidget(self.ai_panel)
        self.ai_gate.set_content(ai_scroll)
        self.ai_dock = self._dock(
            "AI result", self.ai_gate, "AIDock", Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.ai_gate.revealedChanged.connect(self._fit_ai_dock)
        self.case_list: CaseListDialog | None = None
        self.annotations = AnnotationLayer(self.view, self.store)
        self.annotation_panel = AnnotationPanel(self.annotations)
        self.annotation_dock = self._dock(
            "Annotations",
            self.annotation_panel,
            "AnnotationDock",
            Qt.DockWidgetArea.LeftDockWidgetArea,
        )
        self.tabifyDockWidget(self.display_dock, self.annotation_dock)
        self.display_dock.raise_()
        self.annotations.errorOccurred.connect(lambda m: self.show_error("Annotation", m))
        self.annotations.annotationsChanged.connect(
            lambda: self.form.set_annotation_links(self.annotations.features(copy=False))
        )
        self.form.annotationLinkActivated.connect(self.annotations.show_criterion)

        self.status = WindowStatus(self.statusBar(), self)
        self.status.cancelRequested.connect(self.cancel_background_work)
        self.status.pageRequested.connect(self.set_page)
        self.page_spin = self.status.page_spin
        self.progress = self.status.progress
        self.pixel_label = self.status.pixel_label
        self.levels = OverviewLevels(
            self.session,
            self.jobs,
            self.view,
            self.overview,
            self.contrast,
            self.status,
            self.show_error,
            self,
        )
        self.classification = Classification(
            self.session,
            self.jobs,
            self.view,
            self.ai_panel,
            self.status,
            self.show_error,
            self.ask_pixel_size,
            self,
        )
        # reading aids (issue 15): review coverage, the hotspot tour, the linked second view
        self.coverage = CoverageController(self.view, self.overview, self)
        self.hotspot_panel = HotspotPanel()
        self.ai_panel.layout().addWidget(self.hotspot_panel)
        self.tour = HotspotTour(
            self.session,
            self.view,
            self.overview,
            self.hotspot_panel,
            reviewed=self.coverage.was_reviewed,
            parent=self,
        )
        self.coverage_label = CoverageLabel(self.coverage)
        self.form.layout().addWidget(self.coverage_label)
        self.form.initialCommitted.connect(lambda _case_id: self.coverage.mark_commit())
        self.levels.pixelsChanged.connect(self.coverage.set_tissue)
        self.linked.openFailed.connect(lambda m: self.show_error("Cannot open mosaic", m))
        self._batch_dialog: BatchDialog | None = None

        self.session_signals.caseChanged.connect(self._on_case_changed)
        self.session_signals.aiChanged.connect(self._on_ai_changed)
        self.session_signals.gateChanged.connect(lambda _revealed: self._on_gate_changed())
        self.form.initialCommitted.connect(self._on_initial_committed)
        self.form.errorOccurred.connect(lambda message: self.show_error("Not saved", message))
        self.view.tiles.tileFailed.connect(self._on_tile_failed)
        self.store_care: StoreCare | None = None
        if self.store is not None:
            self.store_care = StoreCare(self.store, self._pool, self, self.show_error)
            QTimer.singleShot(300, self.store_care.start)  # after the window shows
        self.view.viewChanged.connect(self._on_view_changed)
        self.view.cursorMoved.connect(self._on_cursor)
        self.view.levelChanged.connect(self._update_status)
        self.overview.jumpRequested.connect(self.view.center_on)
        self.contrast.displayChanged.connect(self.view.set_display)

        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_view_menu)

        build_menus(self)
        self._enable_page_actions(1)
        self._restore_layout()
        self._fit_ai_dock(self.ai_gate.is_revealed())

    # -- what the session holds, for the widgets, tests and benchmarks -----------------

    @property
    def store(self) -> CaseStore | None:
        return self.session.store

    @property
    def mosaic(self) -> Mosaic | None:
        return self.session.mosaic

    @property
    def case_id(self) -> str | None:
        return self.session.case_id

    @property
    def prediction(self) -> Any:
        return self.session.prediction

    @prediction.setter
    def prediction(self, value: Any) -> None:  # benchmarks reset it between runs
        self.session.prediction = value

    @property
    def region_explanation(self) -> Any:
        return self.classification.region_explanation

    @property
    def _classify_job(self) -> Worker | None:
        return self.classification.job

    @property
    def _overview_pixels(self) -> Any:
        return self.levels.pixels

    def classify(self) -> None:
        self.classification.classify()

    def cancel_classification(self) -> None:
        self.classification.cancel()

    def explain_visible_region(self, method: str, layer: str) -> None:
        self.classification.explain_visible_region(method, layer)

    def clear_region_explanation(self) -> None:
        self.classification.clear_region_explanation()

    def tile_probabilities_at(self, x: float, y: float) -> dict[str, float] | None:
        return self.classification.tile_probabilities_at(x, y)

    # -- construction -------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, name: str, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _open_store(self) -> CaseStore | None:
        try:
            store = CaseStore()
        except CaseStoreError as exc:
            self._store_warning = f"The case database cannot be used: {exc}"
            QTimer.singleShot(0, lambda: self.show_error("Case database", self._store_warning))
            return None
        if store.startup_warning:
            warning = store.startup_warning
            QTimer.singleShot(0, lambda: self.show_error("Case database", warning))
        return store

    def _configured_reader(self) -> str:
        """The reader field of the form, else the setting (``resolve_reader`` falls back)."""
        form = getattr(self, "form", None)
        typed = form.reader_edit.text().strip() if form is not None else ""
        return typed or app_settings_module.reader_name()

    # -- opening ------------------------------------------------------------------------

    def open_dialog(self) -> None:
        start = str(app_settings_module.app_settings().value("files/last_dir", str(DEMO_DIR)))
        path, _ = QFileDialog.getOpenFileName(self, "Open RCM mosaic", start, open_dialog_filter())
        if path:
            self.open_path(Path(path))

    def open_path(self, path: str | Path) -> None:
        """Open in the background; the window stays usable and a failure is a dialog."""
        path = Path(path)
        self._leave_case()
        self.cancel_background_work()
        self.session.begin_open()
        self.status.message(f"Opening {path.name}…")

        def work(progress: Any, cancelled: Any, job: Worker) -> tuple[Mosaic, Any]:
            return open_with_overview(path)

        def failed(message: str) -> None:
            self.statusBar().clearMessage()
            self.show_error("Cannot open mosaic", message)

        self.jobs.start(
            work,
            name=f"opening {path.name}",
            finished=lambda result: self._on_opened(path, result),
            failed=failed,
            stale=lambda result: result[0].close(),
        )

    def _on_opened(self, path: Path, result: tuple[Mosaic, Any]) -> None:
        mosaic, overview = result
        if not self.session.attach_mosaic(self.session.token, mosaic):
            return
        info = mosaic.info
        self.levels.show_mosaic(mosaic, overview)
        self.coverage.start(info.width, info.height, self.levels.pixels)
        self.status.set_pages(info.pages)
        self.status.clear_cursor()  # no value or tile probabilities of the previous image
        self._enable_page_actions(info.pages)
        self.setWindowTitle(f"{path.name} — rcm-viewer")
        app_settings_module.add_recent_file(str(path.resolve()))
        app_settings_module.app_settings().setValue("files/last_dir", str(path.resolve().parent))
        message = f"Opened {path.name}: {info.width} x {info.height} px, {info.dtype}"
        if info.is_rgb:
            message += " — colour image: RCM is grayscale, shown as stored"
        self.status.message(message, 8000)
        self._update_status()
        self._start_case_lookup(path)

    # -- cases ------------------------------------------------------------------------------

    def _leave_case(self) -> None:
        """Before anything switches: keep the reader's place and typing in the open case."""
        self._save_view_state()
        self.form.flush()

    def _start_case_lookup(self, path: Path) -> None:
        """Hash the file off the GUI thread, then restore its case or start a new one."""
        if self.store is None:
            return
        self.jobs.start(
            lambda progress, cancelled, job: file_sha256(path, progress=progress),
            name=f"fingerprinting {path.name}",
            finished=lambda sha256: self._on_case_hash(path, sha256),
            failed=lambda message: self.show_error("Case not started", message),
        )

    def _on_case_hash(self, path: Path, sha256: str) -> None:
        try:
            opened = self.session.attach_case(self.session.token, sha256)
        except CaseStoreError as exc:
            self.show_error("Case database", str(exc))
            return
        if opened is None:
            return
        if opened.restored:
            self._restore_view_state(opened.view_state)
            self.coverage.restore(opened.view_state)
            self.status.message(f"Restored case {opened.case.case_id} for {path.name}", 8000)
        mosaic = self.session.mosaic
        if (
            mosaic is not None
            and self.session.ai is None
            and should_classify_at_open(
                opened.case.reader_mode, self.session.ai_revealed(), mosaic.info.pixel_size_um
            )
        ):
            self.classification.classify()  # ready when the reader commits; never asks

    def _on_case_changed(self, case: CaseRecord | None) -> None:
        """The session's case changed: the form and the gate follow it."""
        if case is None:
            self.form.clear()
            self.form.setEnabled(False)
            self.annotations.set_case(None, None)
        elif self.form.current_case_id != case.case_id:
            self.form.setEnabled(True)
            self.form.load_case(case.case_id)
            mosaic = self.session.mosaic
            self.annotations.set_case(
                case.case_id, mosaic.info.pixel_size_um if mosaic is not None else None
            )
        self.ai_gate.update_from_case(case)

    def _on_ai_changed(self, view: AIView | None) -> None:
        self.classification.show_view(view)
        self.tour.refresh()

    def _on_gate_changed(self) -> None:
        self.classification.refresh_overlay()
        self.tour.refresh()

    def _on_initial_committed(self, case_id: str) -> None:
        if case_id == self.session.case_id:
            self.session.refresh_case()

    def _save_view_state(self) -> None:
        if self.session.mosaic is None or self.session.case is None:
            return
        center = self.view.visible_scene_rect().center()
        self.session.save_view_state(
            {
                "center_x": round(center.x(), 1),
                "center_y": round(center.y(), 1),
                "zoom": round(self.view.zoom, 5),
                **self.coverage.state_for_view_state(),
            }
        )

    def _restore_view_state(self, state: Any) -> None:
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
            self.case_list.caseOpenRequested.connect(self.open_case)
            self.case_list.errorOccurred.connect(lambda m: self.show_error("Cases", m))
            self.case_list.histologyChanged.connect(self._on_histology_changed)
        self.case_list.refresh()
        self.case_list.show()
        self.case_list.raise_()

    def export_report(self) -> None:
        """File > Export report: options, then the one renderer in a worker (Ctrl+E)."""
        case_id = self.session.case_id
        if case_id is None or self.store is None:
            self.show_error("No case", "Open a mosaic first: the report is of its case.")
            return
        self.form.flush()  # the report holds what the reader typed a moment ago
        mosaic = self.session.mosaic
        dialog = ReportExportDialog(
            self.store, case_id, mosaic.path if mosaic is not None else None, self
        )
        dialog.exported.connect(lambda path: self.status.message(f"Report written: {path}", 8000))
        dialog.open()
        self.report_dialog = dialog

    def show_batch_dialog(self) -> None:
        """File > Classify folder: a worklist of cases, classified while the reader reads."""
        if self.store is None:
            self.show_error("Cases", self._store_warning or "No case database is open.")
            return
        if self._batch_dialog is None:
            self._batch_dialog = BatchDialog(self.store, self)
            self._batch_dialog.caseOpenRequested.connect(self.open_case)
        self._batch_dialog.show()
        self._batch_dialog.raise_()
        self._batch_dialog.activateWindow()

    def open_beside(self) -> None:
        """File > Open beside: a second mosaic, linked in µm (follow-up, other depth)."""
        start = str(app_settings_module.app_settings().value("files/last_dir", str(DEMO_DIR)))
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a mosaic beside this one", start, open_dialog_filter()
        )
        if path:
            self.linked.open_secondary(path)

    def _on_histology_changed(self, case_id: str) -> None:
        if case_id == self.session.case_id:
            self.session.refresh_case()

    def open_case(self, case_id: str, mosaic_path: str) -> None:
        """Open a stored case (case list, batch worklist): its mosaic brings the case back."""
        if not mosaic_path:
            self.show_error("Cases", f"Case {case_id} has no mosaic file recorded.")
            return
        if not Path(mosaic_path).exists():
            self.show_error(
                "Cases",
                f"The mosaic of case {case_id} is no longer at "
                f"{mosaic_path}: open it from its new place (File > Open) and "
                "the case follows it.",
            )
            return
        self.open_path(Path(mosaic_path))

    # -- pages, background work, closing -------------------------------------------------

    def _enable_page_actions(self, pages: int) -> None:
        for action in (self.next_page_action, self.previous_page_action):
            action.setEnabled(pages > 1)

    def step_page(self, step: int) -> None:
        if self.mosaic is not None and self.mosaic.pages > 1:
            self.status.step_page(step)

    def set_page(self, page: int) -> None:
        """Show page ``page`` (0-based) of a stack."""
        self.levels.set_page(page)

    def cancel_background_work(self) -> None:
        self.classification.cancel()
        self.levels.cancel()
        self.status.hide_progress()

    def close_mosaic(self) -> None:
        self._leave_case()
        self.cancel_background_work()
        self.session.close()
        self.levels.clear()
        self.coverage.stop()
        self.status.clear_cursor()
        self._enable_page_actions(1)
        self.setWindowTitle("rcm-viewer")
        self._update_status()

    # -- status ---------------------------------------------------------------------------

    def _on_view_changed(self) -> None:
        self.overview.set_view_rect(self.view.visible_scene_rect())
        self._update_status()

    def _on_cursor(self, x: float, y: float) -> None:
        mosaic = self.mosaic
        if mosaic is None or not (0 <= x < mosaic.info.width and 0 <= y < mosaic.info.height):
            self.status.clear_cursor()
            return
        level = self.view.current_level
        self.status.show_cursor(
            mosaic,
            x,
            y,
            self.view.tiles.raw_value(level, x, y),
            level,
            self.classification.tile_probabilities_at(x, y),
        )

    def _on_tile_failed(self, _key: Any, message: str) -> None:
        """A damaged tile is drawn hatched red; the status bar says which and why."""
        self.status.message(f"Damaged image data: {message}", 15000)

    def _update_status(self, *_args: Any) -> None:
        self.status.show_view(self.mosaic, self.view.zoom, self.view.current_level)

    def ask_pixel_size(self) -> None:
        """The reader types the pixel size; an estimate from the field grid is offered, never
        filled in (issue 14: Enter on a pre-filled 0.5 classified at a wrong scale)."""
        mosaic = self.mosaic
        if mosaic is None:
            return
        pixels = self.levels.pixels
        level = self.view._overview_level
        if pixels is None:  # no overview yet: the dialog works without a picture
            pixels, downsample = np.zeros((64, 64), np.uint8), 1.0
        else:
            downsample = mosaic.info.levels[level].downsample
        dialog = PixelSizeDialog(pixels, downsample, file_name=mosaic.path.name, parent=self)
        if self.levels.pixels is not None:
            dialog.estimate_async(lambda: estimate_pixel_size(pixels, downsample=downsample))
        self.pixel_size_dialog = dialog
        if dialog.exec() and (value := dialog.value()) is not None:
            self.set_pixel_size(value)

    def set_pixel_size(self, value: float) -> None:
        if self.mosaic is None:
            return
        try:
            self.session.record_pixel_size(value)
        except CaseStoreError as exc:
            self.show_error("Not saved", str(exc))
        self.annotations.set_pixel_size(value)
        self._update_status()
        self.view.viewport().update()

    # -- messages, models, recent files -------------------------------------------------

    def show_error(self, title: str, message: str) -> None:
        """A non-blocking dialog: the window stays usable, and tests can read last_error."""
        self.last_error = message
        log.info("%s: %s", title, message)
        box = QMessageBox(
            QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._leave_case()
        if self._batch_dialog is not None:
            self._batch_dialog.cancel()
            self._batch_dialog.wait(10)
        self.linked.close_secondary()
        self.save_layout()
        self.cancel_background_work()
        self._pool.waitForDone(3000)
        self.view.tiles.set_mosaic(None, None)
        self.view.tiles.wait_idle(3000)
        self.session.close()
        if self.store is not None and self._owns_store:
            self.store.close()
        super().closeEvent(event)

    def wait_until_idle(self, timeout_s: float = 30.0) -> bool:
        """For tests and benchmarks: process events until background jobs and tiles are done."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer

        deadline = QDeadlineTimer(int(timeout_s * 1000))
        while not deadline.hasExpired():
            QCoreApplication.processEvents()
            care_busy = self.store_care is not None and self.store_care.busy()
            if not self.jobs.busy() and not self.view.tiles.busy and not care_busy:
                QCoreApplication.processEvents()
                return True
            QTimer.singleShot(5, lambda: None)
            self._pool.waitForDone(5)
        return False
