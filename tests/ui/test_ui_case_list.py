"""The case list dialog: search and filters, the reader-first rule for the AI column, export."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QFileDialog
from rcm_test_helpers import sample_ai_result

from rcm_viewer.cases import CaseStore
from rcm_viewer.errors import CaseStoreError
from rcm_viewer.ui.case_list import AI_HIDDEN_TEXT, COLUMNS, CaseListDialog, export_case_to

AI_COLUMN = COLUMNS.index("AI top class")


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite3") as opened:
        opened.create_case("ALPHA-7", user="Dr Test", case_id="C-1", mosaic_path="/data/a.tif")
        opened.create_case("BETA-2", user="Dr Test", case_id="C-2")
        third = opened.create_case("ALPHA-9", user="Dr Test", case_id="C-3")
        opened.update_assessment_fields(third.case_id, None, "Dr Test", diagnosis="bcc")
        yield opened


@pytest.fixture
def dialog(qtbot, store):
    dialog = CaseListDialog(store)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_lists_every_case_non_modal(dialog):
    assert not dialog.isModal()
    assert dialog.row_count() == 3
    assert sorted(dialog.case_ids()) == ["C-1", "C-2", "C-3"]
    assert dialog.table.columnCount() == len(COLUMNS)


def test_search_box_filters_rows(qtbot, dialog):
    qtbot.keyClicks(dialog.search_edit, "alpha")
    qtbot.waitUntil(lambda: dialog.row_count() == 2, timeout=2000)
    assert sorted(dialog.case_ids()) == ["C-1", "C-3"]
    dialog.search_edit.setText("C-2")
    dialog.refresh()
    assert dialog.case_ids() == ["C-2"]
    assert dialog.count_label.text() == "1 case"


def test_diagnosis_and_date_filters(dialog):
    dialog.diagnosis_combo.setCurrentIndex(dialog.diagnosis_combo.findData("bcc"))
    assert dialog.case_ids() == ["C-3"]
    dialog.diagnosis_combo.setCurrentIndex(0)
    assert dialog.row_count() == 3

    tomorrow = date.today() + timedelta(days=1)
    dialog.from_date.setDate(QDate(tomorrow.year, tomorrow.month, tomorrow.day))
    dialog.from_check.setChecked(True)
    assert dialog.row_count() == 0
    dialog.from_check.setChecked(False)
    today = date.today()
    dialog.to_date.setDate(QDate(today.year, today.month, today.day))
    dialog.to_check.setChecked(True)
    assert dialog.row_count() == 3


def test_ai_column_follows_the_reader_first_rule(store, dialog):
    store.save_ai_result("C-3", sample_ai_result(), user="model")
    dialog.refresh()
    row = dialog.case_ids().index("C-3")
    assert dialog.table.item(row, AI_COLUMN).text() == AI_HIDDEN_TEXT
    store.commit_initial_assessment("C-3", "Dr Test")
    dialog.refresh()
    row = dialog.case_ids().index("C-3")
    assert dialog.table.item(row, AI_COLUMN).text() == "Melanoma (70%)"
    assert dialog.table.item(row, COLUMNS.index("Initial diagnosis")).text() == (
        "Basal cell carcinoma"
    )


def test_double_click_and_open_emit_case_and_mosaic(qtbot, dialog):
    assert dialog.select_case("C-1")
    with qtbot.waitSignal(dialog.caseOpenRequested, timeout=1000) as blocker:
        qtbot.mouseClick(dialog.open_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["C-1", "/data/a.tif"]

    row = dialog.case_ids().index("C-2")
    dialog.table.selectRow(row)
    with qtbot.waitSignal(dialog.caseOpenRequested, timeout=1000) as blocker:
        dialog.table.cellDoubleClicked.emit(row, 1)
    assert blocker.args == ["C-2", ""]


def test_export_case_to_writes_valid_json(store, tmp_path):
    target = export_case_to(tmp_path / "c1.json", store, "C-1")
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["case"]["case_id"] == "C-1"
    assert document["case"]["patient_pseudonym"] == "ALPHA-7"
    assert not list(tmp_path.glob("*.part"))  # no temporary file left behind


def test_export_button_uses_the_file_dialog(qtbot, dialog, tmp_path, monkeypatch):
    target = tmp_path / "chosen.json"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    dialog.select_case("C-2")
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert json.loads(target.read_text(encoding="utf-8"))["case"]["case_id"] == "C-2"
    assert "exported" in dialog.status_label.text()


def test_export_failure_is_reported(qtbot, dialog, store, tmp_path):
    with pytest.raises(CaseStoreError, match="Cannot export case C-1"):
        export_case_to(tmp_path / "missing-folder" / "c1.json", store, "C-1")
    dialog.select_case("C-1")
    with qtbot.waitSignal(dialog.errorOccurred, timeout=1000):
        assert dialog.export_selected(tmp_path / "missing-folder" / "c1.json") is None


def test_closed_store_is_reported_not_raised(qtbot, dialog, store):
    store.close()
    with qtbot.waitSignal(dialog.errorOccurred, timeout=1000) as blocker:
        dialog.refresh()
    assert "closed" in blocker.args[0]


def test_untouched_cases_are_hidden_unless_asked_for(qtbot, store, dialog):
    """A mosaic only looked at starts a case with nothing in it: the list leaves it out."""
    store.create_case("", user="Dr Test", case_id="C-LOOKED", mosaic_path="/data/demo.tif")
    annotated = store.create_case("", user="Dr Test", case_id="C-ROI")
    store.add_roi(
        annotated.case_id,
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [10, 20]},
            "properties": {},
        },
        "Dr Test",
    )
    dialog.refresh()
    shown = {summary.case_id for summary in dialog._summaries}
    assert "C-LOOKED" not in shown and {"C-1", "C-2", "C-3", "C-ROI"} <= shown
    dialog.untouched_check.setChecked(True)
    assert "C-LOOKED" in {summary.case_id for summary in dialog._summaries}
    summaries = {s.case_id: s for s in store.search()}
    assert not summaries["C-LOOKED"].touched and summaries["C-ROI"].touched
