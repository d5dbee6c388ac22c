"""Classifying in the window: a worker thread, progress, cancel, results behind the gate.

Uses a tiny ResNet-18 trained in the fixture on synthetic mosaics (tests/inference's
kit), never random weights presented as a result.
"""

from __future__ import annotations

import time
from pathlib import Path

import inference_testkit as kit
import pytest
from PySide6.QtCore import QElapsedTimer, QPointF, QTimer

from rcm_viewer.cases import CaseStore
from rcm_viewer.ui.main_window import MainWindow


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory, tiny_trained_bundle):
    sources = kit.render_sources()
    root = tmp_path_factory.mktemp("classify-ui")
    bundle = tiny_trained_bundle
    mosaic = kit.write_tiff(root / "composite.tif", kit.composite(sources), pyramid=True)
    other = kit.write_tiff(root / "naevus.tif", sources["naevus"], pyramid=True)
    return bundle, mosaic, other


@pytest.fixture
def window(make_window, trained_model, tmp_path, monkeypatch):
    monkeypatch.setenv("RCM_VIEWER_MODEL_DIR", str(trained_model[0].path))
    store = CaseStore(tmp_path / "cases.sqlite3")
    yield make_window(store, (1100, 750))
    store.close()


def _open(qtbot, win: MainWindow, path: Path) -> None:
    win.open_path(path)
    qtbot.waitUntil(lambda: win.case_id is not None, timeout=30000)


def test_classify_while_panning_then_reveal(qtbot, window, trained_model) -> None:
    _, mosaic, _ = trained_model
    _open(qtbot, window, mosaic)
    # a probe measures how long the event loop is ever blocked while the model runs
    ticks: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    probe = QTimer()
    probe.timeout.connect(lambda: ticks.append(clock.elapsed()))
    probe.start(5)
    window.classify()
    assert window.ai_panel.cancel_button.isVisibleTo(window.ai_panel)
    view = window.view
    steps = 0
    deadline = time.monotonic() + 120
    while window.prediction is None or window.prediction.partial:
        view.zoom_by(1.05 if steps % 20 < 10 else 1 / 1.05)
        view.pan_by_fraction(0.02 if steps % 8 < 4 else -0.02, 0.01)
        view.viewport().repaint()
        qtbot.wait(20)
        steps += 1
        assert time.monotonic() < deadline, "classification did not finish"
    probe.stop()
    prediction = window.prediction
    assert prediction.ok and prediction.top_class in ("naevus", "bcc")
    assert steps > 5  # we panned and zoomed while the model ran
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    # the GUI thread kept ticking; the 50 ms goal is measured by benchmarks on a quiet machine
    assert len(ticks) > 20 and max(gaps) < 1000
    # reader first: stored, but hidden until the initial assessment is committed
    case = window.store.get_case(window.case_id, include_hidden_ai=True)
    assert case.ai_result is not None
    assert case.ai_result.weights_sha256 == prediction.weights_sha256
    assert not window.ai_panel.isVisible() and view._overlay is None
    form = window.form
    form.diagnosis_combo.setCurrentIndex(form.diagnosis_combo.findData("uncertain"))
    form.commit_button.click()
    qtbot.waitUntil(window.ai_panel.isVisible, timeout=5000)
    assert window.ai_panel.banner.isVisible()  # the tiny model is marked synthetic
    assert view._overlay is not None
    # hovering a classified tile shows its own probabilities
    box = prediction.tile_boxes[0]
    tile = window.tile_probabilities_at(box[0] + box[2] / 2, box[1] + box[3] / 2)
    assert tile is not None and sum(tile.values()) == pytest.approx(1.0, abs=1e-4)
    # the overlay stays aligned with the mosaic at any zoom: it spans the heatmap's cells
    span = prediction.heatmap.shape[2] * prediction.heatmap_cell_px
    assert view._overlay_rect.width() == pytest.approx(span)
    view.set_zoom(2.0, QPointF(800, 800))
    view.viewport().repaint()
    assert view._overlay_rect.width() == pytest.approx(span)
    # a second-opinion map (pytorch-grad-cam) of the region on screen, on demand
    window.explain_visible_region("gradcam", "layer4")
    qtbot.waitUntil(lambda: window.region_explanation is not None, timeout=120000)
    x, y, w, h = window.region_explanation.rect
    assert view._overlay_rect.left() == pytest.approx(x) and view._overlay_rect.width() == w
    assert window.ai_panel.clear_explain_button.isVisibleTo(window.ai_panel)
    window.clear_region_explanation()
    assert view._overlay_rect.width() == pytest.approx(span)


def test_cancel_and_opening_another_mosaic_stop_the_job(qtbot, window, trained_model) -> None:
    _, mosaic, other = trained_model
    _open(qtbot, window, mosaic)
    window.classify()
    job = window._classify_job
    window.cancel_classification()
    qtbot.waitUntil(job.done.is_set, timeout=60000)
    assert window.prediction is None or window.prediction.partial
    assert window.store.get_case(window.case_id, include_hidden_ai=True).ai_result is None
    # start again and switch mosaics mid-run: the old job is cancelled, nothing leaks over
    window.classify()
    job = window._classify_job
    first_case = window.case_id
    window.open_path(other)
    qtbot.waitUntil(lambda: window.case_id not in (None, first_case), timeout=30000)
    qtbot.waitUntil(job.done.is_set, timeout=60000)
    assert job.is_cancelled()
    assert window.store.get_case(first_case, include_hidden_ai=True).ai_result is None
    assert window.prediction is None
