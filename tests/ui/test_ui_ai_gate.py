"""The reader-first gate: the AI panel cannot be seen before the initial assessment is committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel
from rcm_test_helpers import sample_ai_result

from rcm_viewer.cases import CaseStore
from rcm_viewer.ui.ai_gate import (
    HIDDEN_TEXT,
    READER_FIRST_KEY,
    AIGate,
    reader_first_enabled,
    reader_mode_for_new_cases,
    set_reader_first_enabled,
)
from rcm_viewer.ui.assessment_form import AssessmentForm
from rcm_viewer.ui.settings import app_settings


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite3") as opened:
        yield opened


def make_gate(qtbot) -> tuple[AIGate, QLabel]:
    gate = AIGate()
    qtbot.addWidget(gate)
    content = QLabel("Melanoma 70%")
    gate.set_content(content)
    gate.show()
    return gate, content


def test_reader_first_is_the_default_setting():
    assert reader_first_enabled() is True
    assert reader_mode_for_new_cases() == "reader_first"
    set_reader_first_enabled(False)
    assert app_settings().value(READER_FIRST_KEY) in (False, "false")
    assert reader_first_enabled() is False
    assert reader_mode_for_new_cases() == "ai_visible"


def test_content_hidden_until_commit_in_reader_first_mode(qtbot, store):
    gate, content = make_gate(qtbot)
    case = store.create_case("P-1", user="Dr Test")
    store.save_ai_result(case.case_id, sample_ai_result(), user="model")
    gate.update_from_case(store.get_case(case.case_id))
    assert not content.isVisible()
    assert not gate.is_revealed()
    assert HIDDEN_TEXT in gate.placeholder().text()
    assert gate.placeholder().isVisible()

    content.show()  # a stray show() elsewhere must not leak the result
    assert not content.isVisible()

    store.update_assessment_fields(case.case_id, None, "Dr Test", diagnosis="naevus")
    with qtbot.waitSignal(gate.revealedChanged, timeout=1000) as blocker:
        gate.update_from_case(store.commit_initial_assessment(case.case_id, "Dr Test"))
    assert blocker.args == [True]
    assert content.isVisible()
    assert not gate.placeholder().isVisible()

    # The next (uncommitted) case closes the gate again.
    other = store.create_case("P-2", user="Dr Test")
    gate.update_from_case(other)
    assert not content.isVisible()


def test_content_visible_at_once_in_ai_visible_mode(qtbot, store):
    gate, content = make_gate(qtbot)
    case = store.create_case("P-1", user="Dr Test", reader_mode="ai_visible")
    gate.update_from_case(case)
    assert content.isVisible()


def test_without_a_case_the_setting_decides(qtbot):
    gate, content = make_gate(qtbot)
    gate.update_from_case(None)
    assert not content.isVisible()
    set_reader_first_enabled(False)
    gate.update_from_case(None)
    assert content.isVisible()


def test_content_set_after_the_gate_closed_stays_hidden(qtbot, store):
    gate = AIGate()
    qtbot.addWidget(gate)
    gate.show()
    gate.update_from_case(store.create_case("P-1", user="Dr Test"))
    late = QLabel("result from a worker")
    gate.set_content(late)
    assert not late.isVisible()
    replaced = gate.set_content(QLabel("newer"))
    assert replaced is late and late.parent() is None


def test_form_commit_opens_the_gate(qtbot, store):
    """The wiring the main window uses: initialCommitted -> update_from_case."""
    case_id = store.create_case("P-1", user="Dr Test").case_id
    store.save_ai_result(case_id, sample_ai_result(), user="model")
    form = AssessmentForm()
    qtbot.addWidget(form)
    form.set_store(store)
    form.load_case(case_id)
    gate, content = make_gate(qtbot)
    gate.update_from_case(store.get_case(case_id))
    form.initialCommitted.connect(lambda cid: gate.update_from_case(store.get_case(cid)))

    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("melanoma"))
    assert not content.isVisible()
    assert form.commit_initial()
    assert content.isVisible()
