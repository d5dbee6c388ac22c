"""The parts built in their own modules, reached from the window as a reader would."""

from __future__ import annotations

from rcm_viewer.cases import CaseStore
from rcm_viewer.paths import demo_mosaic
from rcm_viewer.ui.batch_dialog import BatchDialog
from rcm_viewer.ui.classification import BACKEND_KEY, chosen_backend
from rcm_viewer.ui.settings import app_settings


def test_the_model_runs_at_open_and_stays_behind_the_gate(qtbot, make_window, tmp_path):
    """Reader-first: the result is ready at commit, never shown before (issue 15)."""
    store = CaseStore(tmp_path / "cases.sqlite3")
    window = make_window(store)
    window.open_path(demo_mosaic("melanoma"))
    qtbot.waitUntil(lambda: window.case_id is not None, timeout=60000)
    qtbot.waitUntil(
        lambda: store.get_case(window.case_id, include_hidden_ai=True).ai_result is not None,
        timeout=240000,
    )
    assert not window.ai_gate.is_revealed()
    assert not window.ai_gate.content().isVisible()
    assert store.get_case(window.case_id).ai_result is None  # hidden by the store too
    assert "result is ready" in window.ai_gate.placeholder().text()
    assert window.prediction is not None and window.prediction.backend
    assert "Tissue reviewed" in window.coverage_label.text()
    store.close()


def test_batch_dialog_and_runtime_choice_from_the_menus(qtbot, make_window):
    window = make_window()
    window.batch_action.trigger()
    assert isinstance(window._batch_dialog, BatchDialog) and window._batch_dialog.isVisible()
    assert not window._batch_dialog.isModal()
    window.fill_backend_menu()
    labels = [a.text() for a in window.backend_menu.actions()]
    assert labels[0].startswith("Automatic") and len(labels) >= 2
    assert next(a for a in window.backend_menu.actions() if a.isChecked()).text() == labels[0]
    window.backend_menu.actions()[1].trigger()
    assert chosen_backend() != "auto"
    assert app_settings().value(BACKEND_KEY) == chosen_backend()
    window.fill_model_menu()
    assert any("models folder" in a.text().replace("&", "") for a in window.model_menu.actions())


def test_the_window_classifies_without_torch_and_says_what_needs_it(tmp_path):
    """The small app has no torch: classify runs on OpenVINO, explanations say why not."""
    import os
    import subprocess
    import sys

    import pytest

    pytest.importorskip("openvino")
    from test_inference_backends import BLOCK_TORCH

    code = BLOCK_TORCH + (
        "import os, sys, time\n"
        "from rcm_viewer.ui.app import create_app\n"
        "from rcm_viewer.ui.main_window import MainWindow\n"
        "from rcm_viewer.paths import demo_mosaic\n"
        "app = create_app(); w = MainWindow(); w.show()\n"
        "w.open_path(demo_mosaic('bcc')); assert w.wait_until_idle(120)\n"
        "w.classify(); t = time.time()\n"
        "while w._classify_job is not None and time.time() - t < 300:\n"
        "    app.processEvents(); time.sleep(0.02)\n"
        "p = w.prediction\n"
        "assert p is not None and p.ok and p.backend == 'openvino', (p, w.last_error)\n"
        "assert not w.ai_panel.explain_button.isEnabled()\n"
        "assert 'PyTorch' in w.ai_panel.explain_button.toolTip()\n"
        "assert 'torch' not in sys.modules\n"
        "w.close(); print('ok')\n"
    )
    env = dict(os.environ, RCM_VIEWER_DATA_DIR=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=400, env=env
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
