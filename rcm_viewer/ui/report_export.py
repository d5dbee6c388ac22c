"""File > Export report...: the options dialog and the worker that runs ``export_report``.

A module of its own so the main window only wires a menu entry to it (the window is
being rewritten in parallel). The dialog takes plain objects (the case store, a case id,
the path of the open mosaic), remembers the institution line and the last folder in the
settings, and runs the one renderer (``rcm_viewer.reports.export_report``, the same as
``rcm-viewer report``) in a worker with a cancellable progress bar, so the GUI thread
never paints a PDF or waits for a flat mosaic's levels.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThreadPool, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import CaseStore
from rcm_viewer.reports.export import export_report
from rcm_viewer.reports.model import ReportOptions
from rcm_viewer.ui.settings import app_settings
from rcm_viewer.ui.workers import Worker

INSTITUTION_KEY = "report/institution"
FOLDER_KEY = "report/last_folder"


def institution_setting() -> str:
    return str(app_settings().value(INSTITUTION_KEY, "") or "")


class ReportExportDialog(QDialog):
    """Choose where and how; Export runs in the background and closes the dialog when done."""

    exported = Signal(str)  # PDF path
    failed = Signal(str)  # one-line message

    def __init__(
        self,
        store: CaseStore,
        case_id: str,
        mosaic_path: str | Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Export report of case {case_id}")
        self._store = store
        self._case_id = case_id
        self._mosaic_path = mosaic_path
        self._job: Worker | None = None
        self.last_error: str | None = None
        settings = app_settings()
        folder = Path(str(settings.value(FOLDER_KEY, "") or Path.home()))
        self.path_edit = QLineEdit(str(folder / f"report_{case_id}.pdf"))
        self.path_edit.setToolTip("PDF file to write (replaced only once it is complete)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.json_box = QCheckBox("Also write the report data as JSON next to it")
        self.json_box.setToolTip("Same content, machine-readable, with a schema version")
        self.institution_edit = QLineEdit(institution_setting())
        self.institution_edit.setPlaceholderText("e.g. Dermatology, St Example Hospital")
        self.institution_edit.setToolTip("Printed at the top of every report (remembered)")
        self.anonymise_box = QCheckBox("Anonymise (no pseudonym, file name or dates)")
        self.heatmap_box = QCheckBox("Include the heatmap")
        self.heatmap_box.setChecked(True)
        self.paper_combo = QComboBox()
        self.paper_combo.addItem("A4", "a4")
        self.paper_combo.addItem("Letter", "letter")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton(
            "Export", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.export_button.setDefault(True)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)

        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("PDF file", path_row)
        form.addRow("", self.json_box)
        form.addRow("Institution", self.institution_edit)
        form.addRow("Paper", self.paper_combo)
        form.addRow("", self.anonymise_box)
        form.addRow("", self.heatmap_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save report as", self.path_edit.text(), "PDF (*.pdf)"
        )
        if path:
            self.path_edit.setText(path if path.lower().endswith(".pdf") else f"{path}.pdf")

    def options(self) -> ReportOptions:
        return ReportOptions(
            institution=self.institution_edit.text().strip(),
            anonymise=self.anonymise_box.isChecked(),
            heatmap=self.heatmap_box.isChecked(),
            paper=self.paper_combo.currentData(),
        )

    def start(self) -> None:
        """Export in the background (the Export button)."""
        if self._job is not None:
            return
        pdf = Path(self.path_edit.text().strip()).expanduser()
        if pdf.suffix.lower() != ".pdf":
            pdf = pdf.with_suffix(".pdf")
        json_path = pdf.with_suffix(".json") if self.json_box.isChecked() else None
        options = self.options()
        settings = app_settings()
        settings.setValue(INSTITUTION_KEY, options.institution)
        settings.setValue(FOLDER_KEY, str(pdf.parent))
        settings.sync()
        store, case_id, mosaic_path = self._store, self._case_id, self._mosaic_path

        def work(progress, cancelled):
            return export_report(
                store,
                case_id,
                pdf,
                json_path,
                options,
                progress=progress,
                cancel=cancelled,
                mosaic_path=mosaic_path,
            )

        job = Worker(work, name=f"the report of case {case_id}")
        job.signals.progress.connect(self._on_progress)
        job.signals.finished.connect(lambda report: self._on_finished(report, pdf))
        job.signals.failed.connect(self._on_failed)
        job.signals.cancelled.connect(self._on_cancelled)
        self._job = job
        self.export_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status.setText("Making the report…")
        QThreadPool.globalInstance().start(job)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status.setText("Building the overview of the mosaic…")

    def _on_finished(self, report, pdf: Path) -> None:
        self._job = None
        self.progress.setVisible(False)
        if report is None:
            self._on_cancelled()
            return
        self.exported.emit(str(pdf))
        self.accept()

    def _on_failed(self, message: str) -> None:
        self._job = None
        self.last_error = message
        self.progress.setVisible(False)
        self.export_button.setEnabled(True)
        self.status.setText(message)  # the choices stay as they were: fix the path, retry
        self.failed.emit(message)

    def _on_cancelled(self) -> None:
        self._job = None
        self.progress.setVisible(False)
        self.export_button.setEnabled(True)
        self.status.setText("Cancelled: nothing was written.")

    def reject(self) -> None:
        """Cancel (button, Esc, close box): stops a running export first, writing nothing."""
        if self._job is not None:
            self._job.cancel()
            self.status.setText("Cancelling…")
            return
        super().reject()

    def wait_done(self, msecs: int = 60000) -> bool:
        """For tests: wait for the worker (signals still need the event loop)."""
        job = self._job
        return job is None or job.done.wait(msecs / 1000)
