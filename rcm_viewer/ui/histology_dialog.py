"""Enter or correct the histology of a case: diagnosis, report date, report number.

Shaped like the assessment form: every change is saved at once through
``CaseStore.update_histology`` (one field per call, so each change has its own
audit row), there is no Save button to forget, and a refused change leaves what
the reader typed in the field with the reason underneath. The histology is the
reference standard that arrives weeks after the read, so it may be entered on
any case at any time, also after the initial assessment is committed.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import DIAGNOSIS_LABELS, HISTOLOGY_DIAGNOSES, CaseRecord, CaseStore
from rcm_viewer.errors import RcmError

HISTOLOGY_LABELS: dict[str, str] = {
    "melanoma": "Melanoma",
    "bcc": "Basal cell carcinoma",
    "naevus": "Naevus (benign)",
    "other": "Other",
}
assert set(HISTOLOGY_LABELS) == set(HISTOLOGY_DIAGNOSES) <= set(DIAGNOSIS_LABELS)
NOT_KNOWN_TEXT = "Not known yet"


class HistologyDialog(QDialog):
    """Histology of one case, saved field by field as the reader enters it."""

    histologyChanged = Signal(str)  # case_id, after each saved change
    errorOccurred = Signal(str)

    def __init__(
        self, store: CaseStore, case_id: str, user: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._case_id = case_id
        self._user = user
        self._loading = False
        self.setWindowTitle(f"Histology of case {case_id}")
        self.setModal(False)
        self._build()
        self.reload()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.header_label = QLabel(self)
        self.header_label.setWordWrap(True)

        self.diagnosis_combo = QComboBox(self)
        self.diagnosis_combo.addItem(NOT_KNOWN_TEXT, None)
        for value in HISTOLOGY_DIAGNOSES:
            self.diagnosis_combo.addItem(HISTOLOGY_LABELS[value], value)
        self.diagnosis_combo.setToolTip(
            "The diagnosis of the pathology report (the reference standard My reads uses)."
        )
        self.diagnosis_combo.currentIndexChanged.connect(self._diagnosis_changed)

        self.date_check = QCheckBox("&Dated", self)
        self.date_check.setToolTip("Tick to record the date printed on the pathology report.")
        self.date_edit = QDateEdit(QDate.currentDate(), self)
        self.date_edit.setCalendarPopup(True)
        self.date_edit.setDisplayFormat("yyyy-MM-dd")
        self.date_edit.setToolTip("Date of the pathology report.")
        self.date_check.toggled.connect(self._date_changed)
        self.date_edit.dateChanged.connect(self._date_changed)
        date_row = QHBoxLayout()
        date_row.addWidget(self.date_check)
        date_row.addWidget(self.date_edit, 1)

        self.report_edit = QLineEdit(self)
        self.report_edit.setPlaceholderText("e.g. H-2025-01234")
        self.report_edit.setToolTip("The laboratory's report number, as printed (free text).")
        self.report_edit.editingFinished.connect(
            lambda: self._save_text("report_number", self.report_edit)
        )
        self.detail_edit = QLineEdit(self)
        self.detail_edit.setPlaceholderText("e.g. superficial spreading, Breslow 0.4 mm")
        self.detail_edit.setToolTip("Anything else from the report worth keeping (free text).")
        self.detail_edit.editingFinished.connect(
            lambda: self._save_text("detail", self.detail_edit)
        )

        form = QFormLayout()
        form.addRow("&Histological diagnosis:", self.diagnosis_combo)
        form.addRow("Report date:", date_row)
        form.addRow("Report &number:", self.report_edit)
        form.addRow("D&etails:", self.detail_edit)

        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        close_button = buttons.button(QDialogButtonBox.StandardButton.Close)
        close_button.setToolTip("Every change is already saved.")
        # Return in a text field saves that field; it must not close the dialog as well
        close_button.setAutoDefault(False)
        close_button.setDefault(False)

        layout = QVBoxLayout(self)
        layout.addWidget(self.header_label)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addWidget(buttons)
        self.setMinimumWidth(460)

    # ------------------------------------------------------------------ public API

    @property
    def case_id(self) -> str:
        return self._case_id

    def reload(self) -> None:
        """Show the saved histology of the case."""
        try:
            case = self._store.get_case(self._case_id)
        except RcmError as exc:
            self._report(str(exc))
            return
        self._show(case)

    # ------------------------------------------------------------------ internals

    def _show(self, case: CaseRecord) -> None:
        self._loading = True
        try:
            self.diagnosis_combo.setCurrentIndex(
                max(0, self.diagnosis_combo.findData(case.histology_diagnosis))
                if case.histology_diagnosis
                else 0
            )
            self.date_check.setChecked(case.histology_date is not None)
            if case.histology_date is not None:
                d = case.histology_date
                self.date_edit.setDate(QDate(d.year, d.month, d.day))
            self.date_edit.setEnabled(self.date_check.isChecked())
            self.report_edit.setText(case.histology_report_number or "")
            self.detail_edit.setText(case.histology_detail or "")
        finally:
            self._loading = False
        pseudonym = f" ({case.patient_pseudonym})" if case.patient_pseudonym else ""
        state = "committed" if case.initial.committed else "not committed yet"
        self.header_label.setText(
            f"<b>Case {case.case_id}</b>{pseudonym}. Initial assessment {state}. "
            "Changes are saved at once and recorded in the audit trail."
        )
        if case.histology_recorded_at is not None:
            at = case.histology_recorded_at.astimezone().strftime("%Y-%m-%d %H:%M")
            self.status_label.setText(f"Histology recorded {at}.")
        else:
            self.status_label.setText("No histology recorded yet.")

    def _save(self, **fields: Any) -> bool:
        if self._loading:
            return False
        try:
            case = self._store.update_histology(self._case_id, self._user, **fields)
        except RcmError as exc:
            self._report(f"Not saved: {exc}")
            return False
        at = case.updated_at.astimezone().strftime("%H:%M:%S")
        self.status_label.setText(f"Saved at {at}.")
        self.histologyChanged.emit(self._case_id)
        return True

    def _diagnosis_changed(self, _index: int) -> None:
        self._save(diagnosis=self.diagnosis_combo.currentData())

    def _date_changed(self, *_args: object) -> None:
        self.date_edit.setEnabled(self.date_check.isChecked())
        if not self.date_check.isChecked():
            self._save(date=None)
            return
        q = self.date_edit.date()
        self._save(date=date(q.year(), q.month(), q.day()))

    def _save_text(self, name: str, edit: QLineEdit) -> None:
        self._save(**{name: edit.text()})

    def _report(self, message: str) -> None:
        self.status_label.setText(message)
        self.errorOccurred.emit(message)

    def flush(self) -> None:
        """Save text still being typed (``editingFinished`` has not fired for it yet)."""
        if not self._loading:
            self._save(report_number=self.report_edit.text(), detail=self.detail_edit.text())

    def done(self, result: int) -> None:  # Close button, Escape and the window's close box
        self.flush()
        super().done(result)
