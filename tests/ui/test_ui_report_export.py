"""The Export report dialog runs the shared export in a worker and keeps the choices."""

from __future__ import annotations

import json
from pathlib import Path

from report_case_helpers import PSEUDONYM, make_case

from rcm_viewer.ui.report_export import (
    INSTITUTION_KEY,
    ReportExportDialog,
    institution_setting,
)
from rcm_viewer.ui.settings import app_settings


def test_export_from_the_dialog_writes_pdf_and_json(qtbot, tmp_path: Path) -> None:
    case = make_case(tmp_path / "case")
    dialog = ReportExportDialog(case.store, case.case_id, case.mosaic)
    qtbot.addWidget(dialog)
    dialog.show()
    out = tmp_path / "out" / "r.pdf"
    out.parent.mkdir()
    dialog.path_edit.setText(str(out))
    dialog.json_box.setChecked(True)
    dialog.institution_edit.setText("Skin Clinic Nord")
    dialog.anonymise_box.setChecked(True)
    dialog.grab().save(str(tmp_path / "dialog.png"))  # looked at while building it
    with qtbot.waitSignal(dialog.exported, timeout=60000) as blocker:
        dialog.export_button.click()
        assert not dialog.export_button.isEnabled()  # one export at a time
    assert blocker.args == [str(out)]
    assert out.read_bytes().startswith(b"%PDF")
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["header"]["institution"] == "Skin Clinic Nord"
    assert data["header"]["patient_pseudonym"] is None and PSEUDONYM not in json.dumps(data)
    assert institution_setting() == "Skin Clinic Nord"  # remembered for next time
    reopened = ReportExportDialog(case.store, case.case_id)
    qtbot.addWidget(reopened)
    assert reopened.institution_edit.text() == "Skin Clinic Nord"
    assert Path(reopened.path_edit.text()).parent == out.parent
    case.store.close()


def test_an_unwritable_path_shows_one_line_and_keeps_the_dialog(qtbot, tmp_path: Path) -> None:
    case = make_case(tmp_path / "case")
    app_settings().remove(INSTITUTION_KEY)
    dialog = ReportExportDialog(case.store, case.case_id)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.path_edit.setText(str(tmp_path / "missing-folder" / "r.pdf"))
    with qtbot.waitSignal(dialog.failed, timeout=60000) as blocker:
        dialog.export_button.click()
    message = blocker.args[0]
    assert "missing-folder does not exist" in message and "\n" not in message
    assert dialog.isVisible() and dialog.export_button.isEnabled()
    assert dialog.status.text() == message
    case.store.close()
