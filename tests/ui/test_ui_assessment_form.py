"""The assessment form: built from checklist data, saves every edit at once, reader-first commit.

Real widgets and a real SQLite store on a temporary file; "saved" is always
checked by opening a *second* CaseStore on the same file, which sees only what
was committed to disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from rcm_viewer.cases import CaseStore, checklist_from_dict
from rcm_viewer.cases.checklists import BUILTIN_CHECKLIST_DATA
from rcm_viewer.errors import CaseStoreError
from rcm_viewer.ui.assessment_form import AssessmentForm
from rcm_viewer.ui.settings import reader_name

MELANOMA = "melanoma_score"


def reopen(path: Path):
    """A second store on the same file: it sees only what was committed."""
    return CaseStore(path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cases.sqlite3"


@pytest.fixture
def store(db_path: Path):
    with CaseStore(db_path) as opened:
        yield opened


@pytest.fixture
def case_id(store: CaseStore) -> str:
    return store.create_case("P-0042", user="Dr Test", lesion_site="left upper back").case_id


def make_form(qtbot, store: CaseStore, case_id: str | None, debounce_ms: int = 30):
    form = AssessmentForm(debounce_ms=debounce_ms)
    qtbot.addWidget(form)
    form.set_store(store)
    form.resize(390, 900)
    form.show()
    if case_id is not None:
        form.load_case(case_id)
    return form


def click(qtbot, form: AssessmentForm, checklist_id: str, item_id: str, value: str) -> None:
    qtbot.mouseClick(
        form.choice_for(checklist_id, item_id).button(value), Qt.MouseButton.LeftButton
    )


def test_both_major_criteria_score_four_and_show_threshold_met(qtbot, store, case_id, db_path):
    form = make_form(qtbot, store, case_id)
    label = form.score_label(MELANOMA)
    assert label.property("thresholdMet") is False

    click(qtbot, form, MELANOMA, "non_edged_papillae", "present")
    assert form.current_scores()[MELANOMA].total == 2
    assert label.property("thresholdMet") is False
    click(qtbot, form, MELANOMA, "atypical_basal_cells", "present")

    score = form.current_scores()[MELANOMA]
    assert score.total == 4 and score.threshold_met
    assert "4 / 8" in label.text() and "threshold 3 met" in label.text()
    assert "suggests melanoma" in label.text()  # the engine's interpretation line
    assert label.property("thresholdMet") is True
    assert label.autoFillBackground()  # highlighted

    click(qtbot, form, MELANOMA, "cerebriform_clusters", "not_assessable")
    assert "1 not assessable" in label.text()

    with reopen(db_path) as again:
        answers = again.get_case(case_id).initial.answers[MELANOMA]
    assert answers == {
        "non_edged_papillae": "present",
        "atypical_basal_cells": "present",
        "cerebriform_clusters": "not_assessable",
    }


def test_clicking_the_chosen_answer_again_clears_it(qtbot, store, case_id, db_path):
    form = make_form(qtbot, store, case_id)
    click(qtbot, form, MELANOMA, "non_edged_papillae", "absent")
    click(qtbot, form, MELANOMA, "non_edged_papillae", "present")  # exclusive: replaces absent
    choice = form.choice_for(MELANOMA, "non_edged_papillae")
    assert choice.value() == "present"
    assert not choice.button("absent").isChecked()
    click(qtbot, form, MELANOMA, "non_edged_papillae", "present")
    assert choice.value() is None
    with reopen(db_path) as again:
        assert again.get_case(case_id).initial.answer(MELANOMA, "non_edged_papillae") is None


def test_every_choice_is_in_the_store_at_once(qtbot, store, case_id, db_path):
    form = make_form(qtbot, store, case_id)
    changed: list[str] = []
    form.assessmentChanged.connect(changed.append)

    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("bcc"))
    qtbot.mouseClick(form.confidence_choice.button("4"), Qt.MouseButton.LeftButton)
    form.management_combo.setCurrentIndex(form.management_combo.findData("excision_biopsy"))
    click(qtbot, form, "bcc_two_step_first", "basaloid_nodules", "present")

    with reopen(db_path) as again:
        initial = again.get_case(case_id).initial
    assert initial.diagnosis == "bcc"
    assert initial.confidence == 4
    assert initial.management == "excision_biopsy"
    assert initial.answer("bcc_two_step_first", "basaloid_nodules") == "present"
    assert changed == [case_id] * 4


def test_typed_notes_are_saved_after_the_debounce(qtbot, store, case_id, db_path):
    form = make_form(qtbot, store, case_id, debounce_ms=50)
    qtbot.keyClicks(form.notes_edit, "dense nests at DEJ")

    def saved() -> None:
        with reopen(db_path) as again:
            assert again.get_case(case_id).initial.notes == "dense nests at DEJ"

    qtbot.waitUntil(saved, timeout=3000)
    # One debounced save, not one audit row per keystroke.
    note_rows = [e for e in store.audit_trail(case_id) if e.field == "initial.notes"]
    assert len(note_rows) == 1


def test_pending_text_is_flushed_on_case_switch_and_on_close(qtbot, store, case_id, db_path):
    other = store.create_case("P-0099", user="Dr Test").case_id
    form = make_form(qtbot, store, case_id, debounce_ms=60_000)  # the timer never fires here
    qtbot.keyClicks(form.notes_edit, "switching soon")
    qtbot.keyClicks(form.pseudonym_edit, "-b")
    form.load_case(other)
    with reopen(db_path) as again:
        first = again.get_case(case_id)
    assert first.initial.notes == "switching soon"
    assert first.patient_pseudonym == "P-0042-b"

    qtbot.keyClicks(form.lesion_site_edit, "scalp")
    form.close()
    with reopen(db_path) as again:
        second = again.get_case(other)
    assert second.initial.lesion_site == "scalp"
    assert second.lesion_site == "scalp"  # case header too (case list, reports)


def test_reader_name_is_saved_and_remembered(qtbot, store, case_id, db_path):
    form = make_form(qtbot, store, case_id)
    form.reader_edit.clear()
    qtbot.keyClicks(form.reader_edit, "Dr Rossi")
    form.flush()
    assert reader_name() == "Dr Rossi"
    with reopen(db_path) as again:
        assert again.get_case(case_id).initial.reader_name == "Dr Rossi"
    # The next change is attributed to the reader in the audit trail.
    click(qtbot, form, MELANOMA, "non_edged_papillae", "absent")
    assert store.audit_trail(case_id)[-1].user == "Dr Rossi"
    # A new form (next session) starts with the remembered name.
    fresh = make_form(qtbot, store, None)
    assert fresh.reader_edit.text() == "Dr Rossi"


def test_commit_needs_a_diagnosis(qtbot, store, case_id):
    form = make_form(qtbot, store, case_id)
    assert form.commit_button.isVisible()
    assert not form.commit_button.isEnabled()
    assert "Choose a diagnosis" in form.commit_hint.text()
    assert form.commit_button.shortcut() == QKeySequence("Ctrl+Return")
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("uncertain"))
    assert form.commit_button.isEnabled()
    form.diagnosis_combo.setCurrentIndex(0)
    assert not form.commit_button.isEnabled()


def test_after_commit_edits_go_to_the_revision_and_the_initial_is_kept(
    qtbot, store, case_id, db_path
):
    form = make_form(qtbot, store, case_id)
    click(qtbot, form, MELANOMA, "non_edged_papillae", "present")
    click(qtbot, form, MELANOMA, "cerebriform_clusters", "absent")
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("melanoma"))
    qtbot.mouseClick(form.confidence_choice.button("3"), Qt.MouseButton.LeftButton)

    with qtbot.waitSignal(form.initialCommitted, timeout=2000) as blocker:
        qtbot.mouseClick(form.commit_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [case_id]
    assert form.current_stage == "revised"
    assert "Revised assessment (after AI)" in form.stage_label.text()
    assert form.initially_label.isVisible()
    assert "Initially: Melanoma, confidence 3" in form.initially_label.text()
    assert not form.commit_button.isVisible()

    click(qtbot, form, MELANOMA, "cerebriform_clusters", "present")
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("naevus"))
    assert form.initially_for(MELANOMA, "cerebriform_clusters").isVisible()
    assert "absent" in form.initially_for(MELANOMA, "cerebriform_clusters").text()
    assert not form.initially_for(MELANOMA, "non_edged_papillae").isVisible()

    with reopen(db_path) as again:
        case = again.get_case(case_id)
    assert case.initial.committed
    assert case.initial.diagnosis == "melanoma"
    assert case.initial.answer(MELANOMA, "cerebriform_clusters") == "absent"
    assert case.revised is not None
    assert case.revised.diagnosis == "naevus"
    assert case.revised.answer(MELANOMA, "cerebriform_clusters") == "present"

    # Reloading the committed case shows the revision, not the initial answers.
    form.load_case(case_id)
    assert form.current_stage == "revised"
    assert form.diagnosis_combo.currentData() == "naevus"


def test_ctrl_return_commits(qtbot, store, case_id):
    form = make_form(qtbot, store, case_id)
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("uncertain"))
    with qtbot.waitActive(form):
        form.activateWindow()
    form.notes_edit.setFocus()
    with qtbot.waitSignal(form.initialCommitted, timeout=2000):
        # The button's shortcut works anywhere in the window, even while typing notes.
        qtbot.keyClick(form.notes_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert store.get_case(case_id).initial.committed
    assert form.notes_edit.toPlainText() == ""  # the shortcut did not also type a line break


def test_a_failed_save_is_reported_and_the_choice_is_kept(qtbot, store, case_id):
    form = make_form(qtbot, store, case_id)
    errors: list[str] = []
    form.errorOccurred.connect(errors.append)
    store.close()

    click(qtbot, form, MELANOMA, "non_edged_papillae", "present")
    assert errors and "closed" in errors[-1]
    assert form.choice_for(MELANOMA, "non_edged_papillae").value() == "present"  # kept
    assert form.current_scores()[MELANOMA].total == 2
    assert form.error_frame.isVisible()
    assert "NOT saved" in form.error_label.text()
    assert len(form.unsaved_changes()) == 1

    qtbot.keyClicks(form.notes_edit, "typed while broken")
    form.flush()
    assert form.notes_edit.toPlainText() == "typed while broken"
    assert len(form.unsaved_changes()) == 2

    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("melanoma"))
    assert not form.commit_initial()  # never commit something that is not what was saved
    assert "not committed" in errors[-1]


def test_refused_edits_are_retried(qtbot, store, case_id, db_path, monkeypatch):
    form = make_form(qtbot, store, case_id)
    errors: list[str] = []
    form.errorOccurred.connect(errors.append)
    real_set_answer = store.set_answer

    def disk_full(*args, **kwargs):
        raise CaseStoreError("Could not save the answer: the disk is full")

    monkeypatch.setattr(store, "set_answer", disk_full)
    click(qtbot, form, MELANOMA, "atypical_basal_cells", "present")
    assert errors == [
        "Could not save answer 'Cytological atypia at the basal layer' (case "
        f"{case_id}): Could not save the answer: the disk is full"
    ]
    assert form.error_frame.isVisible()

    monkeypatch.setattr(store, "set_answer", real_set_answer)
    qtbot.mouseClick(form.retry_button, Qt.MouseButton.LeftButton)
    assert form.unsaved_changes() == []
    assert not form.error_frame.isVisible()
    with reopen(db_path) as again:
        assert again.get_case(case_id).initial.answer(MELANOMA, "atypical_basal_cells") == (
            "present"
        )


def test_unknown_case_reports_an_error(qtbot, store):
    form = make_form(qtbot, store, None)
    with qtbot.waitSignal(form.errorOccurred, timeout=1000) as blocker:
        assert form.load_case("NO-SUCH-CASE") is None
    assert "NO-SUCH-CASE" in blocker.args[0]
    assert form.current_case_id is None
    assert not form.body.isEnabled()


def test_form_is_built_from_checklist_data(qtbot, tmp_path):
    """A clinic checklist (data only) gets its own section and live score, no code change."""
    extra = checklist_from_dict(
        {
            "id": "clinic_bcc_nori",
            "title": "Clinic BCC list",
            "description": "Five features; 4 or more suggests BCC.",
            "reference": "Nori 2004 (verify)",
            "items": [
                {"id": f"feature_{n}", "label": f"Feature {n}", "points": 1, "group": "f"}
                for n in range(5)
            ],
            "scoring": {"score_label": "Nori score", "threshold": 4},
        }
    )
    checklists = {data["id"]: checklist_from_dict(data) for data in BUILTIN_CHECKLIST_DATA}
    checklists[extra.id] = extra
    with CaseStore(tmp_path / "custom.sqlite3", checklists=checklists) as custom:
        case_id = custom.create_case("P-1", user="Dr Test").case_id
        form = make_form(qtbot, custom, case_id)
        assert "Nori 2004" in form.section(extra.id).title.toolTip()
        for n in range(4):
            click(qtbot, form, extra.id, f"feature_{n}", "present")
        assert form.score_label(extra.id).property("thresholdMet") is True
        assert custom.get_case(case_id).initial.answers[extra.id] == {
            f"feature_{n}": "present" for n in range(4)
        }


def test_clear_disables_the_form(qtbot, store, case_id):
    form = make_form(qtbot, store, case_id)
    form.clear()
    assert form.current_case_id is None
    assert not form.body.isEnabled()
    assert not form.commit_button.isEnabled()


def test_screenshots_before_and_after_commit(qtbot, store, case_id):
    """Saved for a human look at the layout (not compared pixel by pixel)."""
    form = make_form(qtbot, store, case_id)
    form.resize(390, 1400)
    click(qtbot, form, MELANOMA, "non_edged_papillae", "present")
    click(qtbot, form, MELANOMA, "atypical_basal_cells", "present")
    click(qtbot, form, MELANOMA, "cerebriform_clusters", "not_assessable")
    click(qtbot, form, "bcc_two_step_first", "basaloid_nodules", "absent")
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("melanoma"))
    qtbot.mouseClick(form.confidence_choice.button("3"), Qt.MouseButton.LeftButton)
    qtbot.wait(30)
    before = form.grab()
    assert before.width() >= 340
    before.save("/tmp/form_before.png")

    assert form.commit_initial()
    click(qtbot, form, MELANOMA, "cerebriform_clusters", "present")
    qtbot.wait(30)
    form.grab().save("/tmp/form_after.png")
    assert Path("/tmp/form_after.png").stat().st_size > 0


def test_one_refused_edit_does_not_block_the_others(qtbot, store, case_id, db_path, monkeypatch):
    form = make_form(qtbot, store, case_id)
    real_set_answer = store.set_answer

    def refuse_one(case, stage, checklist_id, item_id, value, user):
        if item_id == "roundish_pagetoid_cells":
            raise CaseStoreError("refused")
        return real_set_answer(case, stage, checklist_id, item_id, value, user)

    monkeypatch.setattr(store, "set_answer", refuse_one)
    click(qtbot, form, MELANOMA, "roundish_pagetoid_cells", "present")
    click(qtbot, form, MELANOMA, "widespread_pagetoid_infiltration", "absent")
    with reopen(db_path) as again:
        answers = again.get_case(case_id).initial.answers.get(MELANOMA, {})
    assert answers == {"widespread_pagetoid_infiltration": "absent"}
    assert len(form.unsaved_changes()) == 1

    qtbot.mouseClick(form.discard_button, Qt.MouseButton.LeftButton)
    assert form.unsaved_changes() == []
    assert not form.error_frame.isVisible()
    assert form.choice_for(MELANOMA, "roundish_pagetoid_cells").value() is None  # as saved
    assert form.choice_for(MELANOMA, "widespread_pagetoid_infiltration").value() == "absent"
