"""My reads: the reader's calls and the model's against histology, with the statistics.

A thin view over ``rcm_viewer.cases.reads`` (which holds every rule: what
counts as unaided, why "uncertain" counts as a positive call, the Wilson
intervals), so the table, the numbers and the exported CSV cannot disagree.
Loading reads every case with histology once; for a clinic's few hundred
cases that takes milliseconds, so it runs on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import CaseStore
from rcm_viewer.cases.reads import (
    READER_LABELS,
    TARGET_LABELS,
    ReadRow,
    ReadsSummary,
    collect_reads,
    diagnosis_text,
    export_csv,
    summarize,
)
from rcm_viewer.errors import RcmError
from rcm_viewer.ui import settings as app_settings

CASE_COLUMNS: tuple[str, ...] = (
    "Case id",
    "Pseudonym",
    "Histology",
    "Report date",
    "Report no.",
    "You, unaided",
    "You, after reveal",
    "Model",
    "Reveal",
)
STAT_COLUMNS: tuple[str, ...] = ("Target", "Who", "Sensitivity (95 % CI)", "Specificity (95 % CI)")
EFFECT_TEXT = {
    "unchanged": "unchanged",
    "better": "changed, now right",
    "worse": "changed, now wrong",
    "changed_both_wrong": "changed, still wrong",
}
RULES_TEXT = (
    "Unaided = your committed initial diagnosis (reader-first cases only). "
    "\u201cUncertain\u201d counts as a positive call. The model's class is shown only once "
    "the reader-first rule reveals it. Intervals: 95 % Wilson."
)
EXPORT_FOLDER_KEY = "my_reads_export"
# mid-tone green/red: readable on the dark theme and on a light system style
_RIGHT = QColor(70, 170, 85)
_WRONG = QColor(215, 80, 65)


class MyReadsDialog(QDialog):
    """Per-case table, sensitivity/specificity table, reveal effect and CSV export."""

    def __init__(self, store: CaseStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._rows: list[ReadRow] = []
        self.setWindowTitle("My reads against histology")
        self.setModal(False)
        self.resize(1100, 640)
        self._build()
        self.refresh()

    def _build(self) -> None:
        self.cases_table = self._table(CASE_COLUMNS)
        self.cases_table.setSortingEnabled(True)
        self.stats_table = self._table(STAT_COLUMNS)
        self.summary_label = QLabel(self)
        self.summary_label.setWordWrap(True)
        self.reveal_label = QLabel(self)
        self.reveal_label.setWordWrap(True)
        self.reveal_label.setToolTip(
            "Cases read unaided and again after the AI result was shown: did the reveal "
            "change your diagnosis, and was the new one the histological diagnosis?"
        )
        rules = QLabel(RULES_TEXT, self)
        rules.setWordWrap(True)
        rules.setStyleSheet("color: #aaaaaa;")
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)

        self.export_button = QPushButton("Export CSV…", self)
        self.export_button.setToolTip(
            "Save the table as CSV, and the statistics beside it (NAME-summary.csv)."
        )
        self.export_button.clicked.connect(lambda: self.export())
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Read the cases again from the case database.")
        self.refresh_button.clicked.connect(self.refresh)
        close_button = QPushButton("Close", self)
        close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status_label, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.cases_table, 3)
        layout.addWidget(self.stats_table, 2)
        layout.addWidget(self.reveal_label)
        layout.addWidget(rules)
        layout.addLayout(buttons)

    def _table(self, columns: tuple[str, ...]) -> QTableWidget:
        table = QTableWidget(0, len(columns), self)
        table.setHorizontalHeaderLabels(list(columns))
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().hide()
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        table.horizontalHeader().setStretchLastSection(True)
        return table

    # ------------------------------------------------------------------ public API

    @property
    def rows(self) -> list[ReadRow]:
        return list(self._rows)

    def refresh(self) -> None:
        try:
            self._rows = collect_reads(self._store)
        except RcmError as exc:
            self.status_label.setText(str(exc))
            return
        summary = summarize(self._rows)
        self._fill_cases()
        self._fill_stats(summary)
        self.summary_label.setText(
            f"<b>{summary.cases} case{'s' if summary.cases != 1 else ''} with histology.</b>"
            if summary.cases
            else "<b>No case has histology yet.</b> Enter it with "
            "\u201cEnter histology\u2026\u201d in the case list when the pathology report "
            "arrives."
        )
        reveal = summary.reveal
        if reveal.compared:
            self.reveal_label.setText(
                f"AI reveal, {reveal.compared} case(s) read before and after: "
                f"{reveal.unchanged} unchanged, {reveal.changed} changed \u2014 "
                f"{reveal.better} for the better, {reveal.worse} for the worse, "
                f"{reveal.changed_both_wrong} still wrong."
            )
        else:
            self.reveal_label.setText("AI reveal: no case read both before and after it yet.")
        self.export_button.setEnabled(bool(self._rows))

    def export(self, path: str | Path | None = None) -> tuple[Path, Path] | None:
        """Write the CSV files; with no ``path``, asks for one (starting in the last folder)."""
        if path is None:
            folder = app_settings.last_folder(EXPORT_FOLDER_KEY) or str(Path.home())
            chosen, _filter = QFileDialog.getSaveFileName(
                self, "Export My reads", str(Path(folder) / "my-reads.csv"), "CSV files (*.csv)"
            )
            if not chosen:
                return None
            path = chosen
        try:
            written = export_csv(path, self._rows)
        except (OSError, RcmError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self.status_label.setText(f"Not exported to {Path(path).name}: {reason}")
            return None
        app_settings.set_last_folder(EXPORT_FOLDER_KEY, str(written[0].parent))
        self.status_label.setText(f"Exported {written[0].name} and {written[1].name}.")
        return written

    # ------------------------------------------------------------------ internals

    def _fill_cases(self) -> None:
        table = self.cases_table
        table.setSortingEnabled(False)
        table.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows):
            values = [
                row.case_id,
                row.patient_pseudonym,
                diagnosis_text(row.histology),
                row.histology_date.isoformat() if row.histology_date else "",
                row.report_number or "",
                diagnosis_text(row.unaided),
                diagnosis_text(row.after_reveal),
                diagnosis_text(row.model),
                EFFECT_TEXT.get(row.reveal_effect or "", ""),
            ]
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                call = {5: row.unaided, 6: row.after_reveal, 7: row.model}.get(c)
                if call is not None:
                    item.setForeground(QBrush(_RIGHT if call == row.histology else _WRONG))
                    item.setToolTip(
                        "matches histology" if call == row.histology else "differs from histology"
                    )
                if c == 8 and row.reveal_effect in ("better", "worse"):
                    item.setForeground(QBrush(_RIGHT if row.reveal_effect == "better" else _WRONG))
                table.setItem(r, c, item)
        table.setSortingEnabled(True)
        table.resizeColumnsToContents()

    def _fill_stats(self, summary: ReadsSummary) -> None:
        table = self.stats_table
        table.setRowCount(len(summary.accuracies))
        for r, item in enumerate(summary.accuracies):
            values = [
                TARGET_LABELS[item.target],
                READER_LABELS[item.reader],
                item.sensitivity.text(),
                item.specificity.text(),
            ]
            for c, text in enumerate(values):
                cell = QTableWidgetItem(text)
                if c >= 2:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    cell.setToolTip(f"TP {item.tp}, FN {item.fn}, TN {item.tn}, FP {item.fp}")
                table.setItem(r, c, cell)
        table.resizeColumnsToContents()
