"""Reader-first workflow in the whole window: a case per mosaic, saved at once, restored."""

from __future__ import annotations

import pytest

from rcm_viewer.cases import CaseStore
from rcm_viewer.paths import demo_mosaic
from rcm_viewer.ui.main_window import MainWindow


def _wait_case(qtbot, window: MainWindow) -> str:
    qtbot.waitUntil(lambda: window.case_id is not None, timeout=30000)
    assert window.wait_until_idle(30)
    return window.case_id


@pytest.fixture
def store(tmp_path):
    with CaseStore(tmp_path / "cases.sqlite3") as case_store:
        yield case_store


def test_ai_panel_stays_hidden_until_the_initial_assessment_is_committed(
    qtbot, store, make_window
) -> None:
    window = make_window(store)
    window.open_path(demo_mosaic("melanoma"))
    case_id = _wait_case(qtbot, window)
    assert window.form.isEnabled()
    content = window.ai_gate.content()
    assert not content.isVisible()
    assert not window.form.commit_button.isEnabled()  # no diagnosis yet
    major = window.form.choice_for("melanoma_score", "non_edged_papillae")
    major.button("present").click()
    window.form.diagnosis_combo.setCurrentIndex(window.form.diagnosis_combo.findData("melanoma"))
    assert not content.isVisible()
    assert window.form.commit_button.isEnabled()
    window.form.commit_button.click()
    qtbot.waitUntil(content.isVisible, timeout=5000)
    case = store.get_case(case_id)
    assert case.initial.committed
    assert case.initial.diagnosis == "melanoma"
    assert case.initial.answer("melanoma_score", "non_edged_papillae") == "present"
    window.close()


def test_reopening_a_mosaic_restores_its_case_and_view(qtbot, store, make_window) -> None:
    window = make_window(store)
    window.open_path(demo_mosaic("bcc"))
    case_id = _wait_case(qtbot, window)
    window.form.choice_for("bcc_two_step_first", "basaloid_nodules").button("present").click()
    window.view.set_zoom(1.0)
    window.view.center_on(300, 1700)
    window.close()  # saves the view state

    again = make_window(store)
    again.open_path(demo_mosaic("bcc"))
    assert _wait_case(qtbot, again) == case_id
    assert again.form.choice_for("bcc_two_step_first", "basaloid_nodules").value() == "present"
    assert again.view.zoom == pytest.approx(1.0, rel=1e-3)
    center = again.view.visible_scene_rect().center()
    assert abs(center.x() - 300) < 60 and abs(center.y() - 1700) < 60
    # a different mosaic gets its own case
    again.open_path(demo_mosaic("naevus"))
    qtbot.waitUntil(lambda: again.case_id not in (None, case_id), timeout=30000)
    again.close()


def test_each_case_gets_its_own_view_back_after_another_mosaic(
    qtbot, store, make_window, tmp_path
) -> None:
    """Open A, pan, open B (a PNG, fitted), reopen A: A's view comes back, not B's fit.

    Before the session, A's stored view was overwritten with B's fit view (zoom 0.22)."""
    from PIL import Image

    window = make_window(store)
    window.open_path(demo_mosaic("bcc"))
    case_a = _wait_case(qtbot, window)
    window.view.set_zoom(1.0)
    window.view.center_on(400, 900)
    other = tmp_path / "other.png"
    Image.new("L", (900, 700), 90).save(other)
    window.open_path(other)
    qtbot.waitUntil(lambda: window.case_id not in (None, case_a), timeout=30000)
    assert window.wait_until_idle(30)
    window.view.fit()
    window.open_path(demo_mosaic("bcc"))
    qtbot.waitUntil(lambda: window.case_id == case_a, timeout=30000)
    assert window.wait_until_idle(30)
    assert window.view.zoom == pytest.approx(1.0, rel=1e-3)
    center = window.view.visible_scene_rect().center()
    assert abs(center.x() - 400) < 60 and abs(center.y() - 900) < 60
    assert store.get_case(case_a).view_state["zoom"] == pytest.approx(1.0)


def test_a_stored_ai_result_and_heatmap_come_back_with_the_case(qtbot, store, make_window) -> None:
    import numpy as np

    from rcm_viewer.cases import AIResult, Heatmap

    window = make_window(store)
    window.open_path(demo_mosaic("naevus"))
    case_id = _wait_case(qtbot, window)
    plane = np.zeros((3, 16, 16), np.float32)
    plane[2, 8:, 8:] = 1.0
    stored = AIResult.from_probabilities(
        "rcm-demo",
        "1.0",
        "cd" * 32,
        {"melanoma": 0.1, "bcc": 0.1, "naevus": 0.8},
        heatmap=Heatmap.from_float(plane, ("melanoma", "bcc", "naevus"), (2048, 2048), (0.0, 1.0)),
        flags=["synthetic_model"],
    )
    store.save_ai_result(case_id, stored, "tester")
    window.close()

    again = make_window(store)
    again.open_path(demo_mosaic("naevus"))
    assert _wait_case(qtbot, again) == case_id
    panel = again.ai_panel
    assert panel.result is not None and panel.result.probabilities[2] == pytest.approx(0.8)
    assert not panel.isVisible() and again.view._overlay is None  # reader first: hidden
    form = again.form
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("naevus"))
    form.commit_button.click()
    qtbot.waitUntil(panel.isVisible, timeout=5000)
    assert panel.banner.isVisible()  # a synthetic model says so
    assert again.view._overlay is not None
    assert again.view._overlay_rect.width() == pytest.approx(2048)
    again.close()
