"""The case list: find a case by id, pseudonym, diagnosis or date, open it, export it.

The dialog is non-modal so the reader can keep it beside the viewer and hop
between cases. It is a view over ``CaseStore.search``; the only thing it adds
is the AI's top class, which it shows only where the reader-first rule allows
(``CaseRecord.ai_visible``): a case list must not leak the AI answer for a
case whose unaided reading is still open.

Exporting goes through :func:`export_case_to`, a plain function so it can be
tested (and reused by a menu action) without a file dialog.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from PySide6.QtCore import QDate, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import DIAGNOSES, DIAGNOSIS_LABELS, CaseStore, CaseSummary
from rcm_viewer.errors import CaseStoreError, RcmError
from rcm_viewer.fileio import atomic_write
from rcm_viewer.session import resolve_reader
from rcm_viewer.ui import settings as app_settings
from rcm_viewer.ui.histology_dialog import HistologyDialog
from rcm_viewer.ui.my_reads_dialog import MyReadsDialog

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "Case id",
    "Pseudonym",
    "Date",
    "Initial diagnosis",
    "Revised diagnosis",
    "AI top class",
    "Histology",
    "Mosaic file",
)
MOSAIC_COLUMN = COLUMNS.index("Mosaic file")
AI_HIDDEN_TEXT = "hidden (reader first)"
EXPORT_FOLDER_KEY = "case_export"
#: Widest a column other than the mosaic file gets from resizing to contents.
MAX_COLUMN_PX = 220
SEARCH_DEBOUNCE_MS = 200


def export_case_to(path: str | Path, store: CaseStore, case_id: str) -> Path:
    """Write one case as JSON (``CaseStore.export_case_json``) to ``path``; returns the path.

    Written to a temporary file in the same folder and renamed over the target,
    so an interrupted export never leaves a half-written file that looks valid.
    Follows the reader-first rule: a hidden AI result is not exported.
    """
    target = Path(path)
    text = store.export_case_json(case_id)
    try:
        atomic_write(target, text + "\n")
    except OSError as exc:
        raise CaseStoreError(
            f"Cannot export case {case_id} to {target.name}: {exc.strerror or exc}"
        ) from exc
    return target


def _diagnosis_text(value: str | None) -> str:
    return DIAGNOSIS_LABELS.get(value, value) if value else ""


class _SortItem(QTableWidgetItem):
    """A table cell that sorts by a hidden key (dates sort as time, blanks sort last)."""

    def __init__(self, text: str, key: str | None = None) -> None:
        super().__init__(text)
        self._key = key if key is not None else text.casefold()

    def __lt__(self, other: QTableWidgetItem) -> bool:
        other_key = other._key if isinstance(other, _SortItem) else other.text()
        return self._key < other_key


class CaseListDialog(QDialog):
    """Table of stored cases with search, diagnosis and date filters; open or export one."""

    caseOpenRequested = Signal(str, str)  # case_id, mosaic_path ('' when none)
    errorOccurred = Signal(str)
    histologyChanged = Signal(str)  # case_id, after the reader saved a histology change

    def __init__(self, store: CaseStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Cases")
        self.setModal(False)
        self.resize(980, 520)
        self._store: CaseStore | None = None
        self._summaries: list[CaseSummary] = []
        # case_id -> (updated_at of the case when looked up, AI top class text)
        self._ai_cache: dict[str, tuple[object, str]] = {}
        self.histology_dialog: HistologyDialog | None = None
        self.my_reads_dialog: MyReadsDialog | None = None

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self.refresh)
        self._build()
        if store is not None:
            self.set_store(store)

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.search_edit = QLineEdit(self)
        self.search_edit.setPlaceholderText("Search case id or pseudonym")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setToolTip("Part of a case id or patient pseudonym (any letter case).")
        self.search_edit.textChanged.connect(lambda _t: self._search_timer.start())

        self.diagnosis_combo = QComboBox(self)
        self.diagnosis_combo.addItem("Any diagnosis", None)
        for value in DIAGNOSES:
            self.diagnosis_combo.addItem(DIAGNOSIS_LABELS[value], value)
        self.diagnosis_combo.setToolTip(
            "Cases whose initial, revised or histology diagnosis is this one."
        )
        self.diagnosis_combo.currentIndexChanged.connect(lambda _i: self.refresh())

        today = QDate.currentDate()
        self.from_check = QCheckBox("From", self)
        self.from_check.setToolTip("Only cases created on or after this day.")
        self.from_date = QDateEdit(today.addMonths(-1), self)
        self.to_check = QCheckBox("to", self)
        self.to_check.setToolTip("Only cases created on or before this day.")
        self.to_date = QDateEdit(today, self)
        for check, edit in ((self.from_check, self.from_date), (self.to_check, self.to_date)):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
            edit.setToolTip(check.toolTip())
            check.toggled.connect(edit.setEnabled)
            check.toggled.connect(lambda _on: self.refresh())
            edit.dateChanged.connect(lambda _d: self.refresh())

        self.untouched_check = QCheckBox("Show untouched", self)
        self.untouched_check.setToolTip(
            "Also list mosaics that were only looked at: nothing recorded, no AI result."
        )
        self.untouched_check.toggled.connect(lambda _on: self.refresh())

        filters = QHBoxLayout()
        filters.addWidget(self.search_edit, 2)
        filters.addWidget(self.diagnosis_combo, 1)
        filters.addWidget(self.from_check)
        filters.addWidget(self.from_date)
        filters.addWidget(self.to_check)
        filters.addWidget(self.to_date)
        filters.addWidget(self.untouched_check)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # The file name takes the room that is left and elides in the middle (start and
        # extension stay readable); the full path is its tooltip.
        header.setSectionResizeMode(MOSAIC_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.table.cellDoubleClicked.connect(lambda _r, _c: self.open_selected())
        self.table.itemSelectionChanged.connect(self._refresh_buttons)

        self.count_label = QLabel(self)
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)
        self.open_button = QPushButton("Open", self)
        self.open_button.setDefault(True)
        self.open_button.setToolTip("Open the selected case and its mosaic (or double-click).")
        self.open_button.clicked.connect(self.open_selected)
        self.export_button = QPushButton("Export JSON…", self)
        self.export_button.setToolTip(
            "Save the selected case (assessments, scores, AI result if visible, audit trail) "
            "as a JSON file."
        )
        self.export_button.clicked.connect(lambda: self.export_selected())
        self.histology_button = QPushButton("Enter &histology…", self)
        self.histology_button.setToolTip(
            "Enter or correct the histological diagnosis, report date and report number of "
            "the selected case (any time, also after commit)."
        )
        self.histology_button.clicked.connect(lambda: self.edit_histology())
        self.reads_button = QPushButton("&My reads…", self)
        self.reads_button.setToolTip(
            "Your diagnoses and the model's against histology: sensitivity, specificity and "
            "how the AI reveal changed your reads."
        )
        self.reads_button.clicked.connect(lambda: self.show_my_reads())
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Read the case list again from the case database.")
        self.refresh_button.clicked.connect(self.refresh)
        close_button = QPushButton("Close", self)
        close_button.clicked.connect(self.close)

        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label)
        buttons.addStretch(1)
        buttons.addWidget(self.reads_button)
        buttons.addWidget(self.histology_button)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self._refresh_buttons()

    # ------------------------------------------------------------------ public API

    def set_store(self, store: CaseStore | None) -> None:
        self._store = store
        self._ai_cache.clear()
        self.refresh()

    def refresh(self) -> None:
        """Run the search with the current filters and redraw the table."""
        self._search_timer.stop()
        selected = self.selected_case_id()
        if self._store is None:
            self._summaries = []
            self._fill()
            self.count_label.setText("No case database open")
            return
        try:
            self._summaries = self._store.search(
                self.search_edit.text().strip() or None,
                self.diagnosis_combo.currentData(),
                self._date(self.from_check, self.from_date),
                self._date(self.to_check, self.to_date),
                include_untouched=self.untouched_check.isChecked(),
            )
        except RcmError as exc:
            self._report(str(exc))
            return
        self.status_label.clear()
        self._fill()
        count = len(self._summaries)
        self.count_label.setText(f"{count} case{'s' if count != 1 else ''}")
        if selected:
            self.select_case(selected)

    def row_count(self) -> int:
        return self.table.rowCount()

    def case_ids(self) -> list[str]:
        """Case ids in the order the table shows them."""
        return [
            self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            for row in range(self.table.rowCount())
        ]

    def select_case(self, case_id: str) -> bool:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == case_id:
                self.table.selectRow(row)
                return True
        return False

    def selected_case_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def open_selected(self) -> None:
        case_id = self.selected_case_id()
        if case_id is None:
            return
        summary = next((s for s in self._summaries if s.case_id == case_id), None)
        mosaic = summary.mosaic_path if summary is not None else None
        self.caseOpenRequested.emit(case_id, mosaic or "")
        self.hide()  # out of the way of the image; the Cases action brings it back

    def edit_histology(self, user: str | None = None) -> HistologyDialog | None:
        """Open the histology dialog for the selected case (``user``: who the audit names)."""
        case_id = self.selected_case_id()
        if case_id is None or self._store is None:
            return None
        if self.histology_dialog is not None:
            self.histology_dialog.done(0)
            self.histology_dialog.deleteLater()
        dialog = HistologyDialog(
            self._store, case_id, user or resolve_reader(app_settings.reader_name()), self
        )
        dialog.histologyChanged.connect(self._on_histology_changed)
        dialog.errorOccurred.connect(self.errorOccurred)
        self.histology_dialog = dialog
        dialog.show()
        dialog.raise_()
        return dialog

    def show_my_reads(self) -> MyReadsDialog | None:
        if self._store is None:
            return None
        if self.my_reads_dialog is None:
            self.my_reads_dialog = MyReadsDialog(self._store, self)
        else:
            self.my_reads_dialog.refresh()
        self.my_reads_dialog.show()
        self.my_reads_dialog.raise_()
        return self.my_reads_dialog

    def _on_histology_changed(self, case_id: str) -> None:
        self.refresh()
        if self.my_reads_dialog is not None and self.my_reads_dialog.isVisible():
            self.my_reads_dialog.refresh()
        self.histologyChanged.emit(case_id)

    def export_selected(self, path: str | Path | None = None) -> Path | None:
        """Export the selected case; asks for a file name when ``path`` is None."""
        case_id = self.selected_case_id()
        if case_id is None or self._store is None:
            return None
        if path is None:
            folder = app_settings.last_folder(EXPORT_FOLDER_KEY) or str(Path.home())
            chosen, _filter = QFileDialog.getSaveFileName(
                self,
                f"Export case {case_id}",
                str(Path(folder) / f"{case_id}.json"),
                "JSON files (*.json)",
            )
            if not chosen:
                return None
            path = chosen
        try:
            written = export_case_to(path, self._store, case_id)
        except RcmError as exc:
            self._report(str(exc))
            return None
        app_settings.set_last_folder(EXPORT_FOLDER_KEY, str(written.parent))
        self.status_label.setText(f"Case {case_id} exported to {written}.")
        return written

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _date(check: QCheckBox, edit: QDateEdit) -> date | None:
        if not check.isChecked():
            return None
        qdate = edit.date()
        return date(qdate.year(), qdate.month(), qdate.day())

    def _ai_top_class(self, summary: CaseSummary) -> str:
        """The AI's answer, only where the reader-first rule allows it; cached per edit."""
        if not summary.ai_result_stored:
            return ""
        if summary.reader_mode == "reader_first" and not summary.initial_committed:
            return AI_HIDDEN_TEXT
        cached = self._ai_cache.get(summary.case_id)
        if cached is not None and cached[0] == summary.updated_at:
            return cached[1]
        assert self._store is not None
        try:
            case = self._store.get_case(summary.case_id)
        except RcmError as exc:
            log.warning("AI result of case %s not readable: %s", summary.case_id, exc)
            return "?"
        text = ""
        if case.ai_result is not None:
            top = case.ai_result.top_class
            probability = case.ai_result.probability_by_class.get(top, 0.0)
            text = f"{_diagnosis_text(top)} ({probability:.0%})"
        self._ai_cache[summary.case_id] = (summary.updated_at, text)
        return text

    def _fill(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self._summaries))
        for row, summary in enumerate(self._summaries):
            created = summary.created_at.astimezone()
            mosaic = summary.mosaic_path or ""
            cells = [
                _SortItem(summary.case_id),
                _SortItem(summary.patient_pseudonym),
                _SortItem(created.strftime("%Y-%m-%d %H:%M"), created.isoformat()),
                _SortItem(_diagnosis_text(summary.initial_diagnosis)),
                _SortItem(_diagnosis_text(summary.revised_diagnosis)),
                _SortItem(self._ai_top_class(summary)),
                _SortItem(_diagnosis_text(summary.histology_diagnosis)),
                _SortItem(Path(mosaic).name if mosaic else ""),
            ]
            cells[0].setData(Qt.ItemDataRole.UserRole, summary.case_id)
            if not summary.initial_committed:
                cells[3].setToolTip("Initial assessment not committed yet")
            if mosaic:
                cells[7].setToolTip(mosaic)
            for column, cell in enumerate(cells):
                self.table.setItem(row, column, cell)
        self.table.setSortingEnabled(True)
        for column in range(self.table.columnCount()):
            if column != MOSAIC_COLUMN:
                self.table.resizeColumnToContents(column)
                if self.table.columnWidth(column) > MAX_COLUMN_PX:
                    self.table.setColumnWidth(column, MAX_COLUMN_PX)
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        has_selection = self.selected_case_id() is not None
        self.open_button.setEnabled(has_selection)
        self.export_button.setEnabled(has_selection)
        self.histology_button.setEnabled(has_selection and self._store is not None)
        self.reads_button.setEnabled(self._store is not None)

    def _report(self, message: str) -> None:
        self.status_label.setText(message)
        self.errorOccurred.emit(message)
