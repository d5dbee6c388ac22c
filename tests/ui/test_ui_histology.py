"""Histology entry, My reads and the case-list fixes of issue 17, on a real store with qtbot."""

from __future__ import annotations

import csv
import os
from datetime import date
from pathlib import Path

import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QFileDialog, QHeaderView
from rcm_test_helpers import sample_ai_result

from rcm_viewer.cases import CaseStore
from rcm_viewer.ui.case_list import COLUMNS, MOSAIC_COLUMN, CaseListDialog
from rcm_viewer.ui.histology_dialog import HistologyDialog
from rcm_viewer.ui.my_reads_dialog import CASE_COLUMNS, MyReadsDialog

READER = "Dr Test"
LONG_PATH = "/data/clinic/2025/march/" + "very-long-mosaic-name-" * 4 + "lesion-17.tif"
SCREENSHOTS = os.environ.get("RCM_SCREENSHOT_DIR")


def _read(store: CaseStore, cid: str, unaided: str, after: str, histology: str | None) -> None:
    store.create_case(f"P-{cid}", user=READER, case_id=cid, mosaic_path=LONG_PATH)
    store.save_ai_result(cid, sample_ai_result(), READER)  # top class: melanoma
    store.update_assessment_fields(cid, None, READER, diagnosis=unaided)
    store.commit_initial_assessment(cid, READER)
    store.update_assessment_fields(cid, None, READER, diagnosis=after)
    if histology:
        store.update_histology(cid, "pathology", diagnosis=histology)


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite3") as opened:
        _read(opened, "C-1", "naevus", "melanoma", "melanoma")  # better
        _read(opened, "C-2", "naevus", "melanoma", "naevus")  # worse
        _read(opened, "C-3", "bcc", "bcc", "bcc")  # unchanged
        _read(opened, "C-4", "melanoma", "melanoma", None)  # no histology yet
        yield opened


@pytest.fixture
def case_list(qtbot, store):
    dialog = CaseListDialog(store)
    qtbot.addWidget(dialog)
    dialog.resize(980, 480)  # its default size, fits a 1366 x 768 laptop screen
    dialog.show()
    return dialog


def test_histology_is_saved_field_by_field_after_commit(qtbot, store):
    dialog = HistologyDialog(store, "C-4", READER)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.diagnosis_combo.currentData() is None
    dialog.diagnosis_combo.setCurrentIndex(dialog.diagnosis_combo.findData("naevus"))
    assert store.get_case("C-4").histology_diagnosis == "naevus"  # saved at once
    dialog.date_check.setChecked(True)
    dialog.date_edit.setDate(QDate(2025, 5, 6))
    qtbot.keyClicks(dialog.report_edit, "H-25/77")
    qtbot.keyClick(dialog.report_edit, Qt.Key.Key_Return)
    case = store.get_case("C-4")
    assert case.histology_date == date(2025, 5, 6) and case.histology_report_number == "H-25/77"
    assert "Saved" in dialog.status_label.text()
    fields = [e.field for e in store.audit_trail("C-4") if e.field.startswith("histology.")]
    assert fields.count("histology.diagnosis") == 1 and "histology.report_number" in fields

    # text still being typed is saved when the dialog closes
    dialog.detail_edit.setText("junctional naevus")
    dialog.close()
    assert store.get_case("C-4").histology_detail == "junctional naevus"

    # a second dialog shows what was saved
    again = HistologyDialog(store, "C-4", READER)
    qtbot.addWidget(again)
    assert again.diagnosis_combo.currentData() == "naevus"
    assert again.date_check.isChecked() and again.date_edit.date() == QDate(2025, 5, 6)
    assert again.report_edit.text() == "H-25/77"
    if SCREENSHOTS:
        again.show()
        again.grab().save(str(Path(SCREENSHOTS) / "histology_dialog.png"))


def test_refused_text_stays_in_the_field_with_the_reason(qtbot, store):
    dialog = HistologyDialog(store, "C-4", READER)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.errorOccurred, timeout=1000):
        dialog.report_edit.setText("x" * 10_001)
        dialog.report_edit.editingFinished.emit()
    assert dialog.report_edit.text() == "x" * 10_001
    assert "Not saved" in dialog.status_label.text()
    assert store.get_case("C-4").histology_report_number is None


def test_case_list_enters_histology_and_shows_it(qtbot, case_list, store):
    assert not case_list.histology_button.isEnabled()  # nothing selected
    assert case_list.select_case("C-4")
    qtbot.mouseClick(case_list.histology_button, Qt.MouseButton.LeftButton)
    dialog = case_list.histology_dialog
    assert dialog is not None and dialog.isVisible() and dialog.case_id == "C-4"
    with qtbot.waitSignal(case_list.histologyChanged, timeout=1000):
        dialog.diagnosis_combo.setCurrentIndex(dialog.diagnosis_combo.findData("bcc"))
    row = case_list.case_ids().index("C-4")
    assert case_list.table.item(row, COLUMNS.index("Histology")).text() == "Basal cell carcinoma"


def test_mosaic_column_stretches_elides_and_has_the_path_as_tooltip(qtbot, case_list):
    header = case_list.table.horizontalHeader()
    assert header.sectionResizeMode(MOSAIC_COLUMN) == QHeaderView.ResizeMode.Stretch
    assert case_list.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    item = case_list.table.item(0, MOSAIC_COLUMN)
    assert item.toolTip() == LONG_PATH and item.text() == Path(LONG_PATH).name

    # the column ends at the table's right edge: nothing hidden behind a scroll bar
    def right_edge() -> int:
        return header.sectionViewportPosition(MOSAIC_COLUMN) + header.sectionSize(MOSAIC_COLUMN)

    qtbot.waitUntil(lambda: right_edge() == case_list.table.viewport().width(), timeout=2000)
    assert case_list.table.horizontalScrollBar().maximum() == 0
    assert header.sectionSize(MOSAIC_COLUMN) >= 100
    if SCREENSHOTS:
        case_list.select_case("C-1")
        case_list.grab().save(str(Path(SCREENSHOTS) / "case_list.png"))


def test_open_hides_the_case_list(qtbot, case_list):
    case_list.select_case("C-1")
    with qtbot.waitSignal(case_list.caseOpenRequested, timeout=1000):
        qtbot.mouseClick(case_list.open_button, Qt.MouseButton.LeftButton)
    assert not case_list.isVisible()


def test_json_export_starts_in_the_last_export_folder(qtbot, case_list, tmp_path, monkeypatch):
    asked: list[str] = []
    folder = tmp_path / "exports"
    folder.mkdir()

    def fake_dialog(_parent, _title, start, _filter):
        asked.append(start)
        return (str(folder / Path(start).name), "")

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_dialog))
    case_list.select_case("C-1")
    qtbot.mouseClick(case_list.export_button, Qt.MouseButton.LeftButton)
    assert (folder / "C-1.json").exists()
    assert Path(asked[0]).parent == Path.home()
    case_list.select_case("C-2")
    qtbot.mouseClick(case_list.export_button, Qt.MouseButton.LeftButton)
    assert Path(asked[1]) == folder / "C-2.json"  # remembered in the settings


def test_my_reads_dialog_table_statistics_and_export(qtbot, case_list, tmp_path, monkeypatch):
    qtbot.mouseClick(case_list.reads_button, Qt.MouseButton.LeftButton)
    dialog = case_list.my_reads_dialog
    assert isinstance(dialog, MyReadsDialog) and dialog.isVisible()
    table = dialog.cases_table
    assert table.rowCount() == 3  # C-4 has no histology
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    reveal = CASE_COLUMNS.index("Reveal")
    assert table.item(rows["C-1"], reveal).text() == "changed, now right"
    assert table.item(rows["C-2"], reveal).text() == "changed, now wrong"
    assert "1 for the better, 1 for the worse" in dialog.reveal_label.text()
    stats = dialog.stats_table
    cells = {
        (stats.item(r, 0).text(), stats.item(r, 1).text()): stats.item(r, 2).text()
        for r in range(stats.rowCount())
    }
    # melanoma: one melanoma (C-1); unaided said naevus -> 0/1, after the reveal 1/1
    assert cells[("Melanoma", "Reader, unaided")].startswith("0 % (0/1;")
    assert cells[("Melanoma", "Reader, after the AI reveal")].startswith("100 % (1/1;")
    assert cells[("Malignancy (melanoma or BCC)", "Model")].startswith("100 % (2/2;")

    target = tmp_path / "out" / "reads.csv"
    target.parent.mkdir()
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    with target.open(newline="", encoding="utf-8") as fh:
        assert [line["case_id"] for line in csv.DictReader(fh)] == ["C-1", "C-2", "C-3"]
    assert (tmp_path / "out" / "reads-summary.csv").exists()
    assert "Exported" in dialog.status_label.text()
    assert dialog.export(tmp_path / "missing" / "x.csv") is None  # reported, not raised
    assert "Not exported" in dialog.status_label.text()
    if SCREENSHOTS:
        dialog.resize(1100, 640)
        dialog.grab().save(str(Path(SCREENSHOTS) / "my_reads.png"))
