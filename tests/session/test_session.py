"""The headless case session: case lookup, view state per case, stale jobs, the gate.

No display and no torch: a real SQLite case store and real TIFF files written by
tifffile, driven the way the window drives them.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rcm_viewer.cases import CaseStore, file_sha256
from rcm_viewer.inference.prediction import STATUS_OK, Prediction
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.session import (
    FALLBACK_READER,
    CaseSession,
    resolve_reader,
    stored_from_prediction,
    view_from_prediction,
    view_from_stored,
)
from rcm_viewer.session.case_session import AI_CHANGED, CASE_CHANGED, GATE_CHANGED

CLASSES = ("melanoma", "bcc", "naevus")


def _mosaic_file(path: Path, value: int, shape=(300, 500)) -> Path:
    image = np.full(shape, value, np.uint8)
    image[50:120, 60:200] = 255 - value  # content differs per file, so do the hashes
    tifffile.imwrite(path, image, resolution=(1e4 / 0.75, 1e4 / 0.75), resolutionunit="CENTIMETER")
    return path


def _prediction(width: int = 500, height: int = 300) -> Prediction:
    cell = 50.0
    heatmap = np.zeros((3, int(height / cell), int(width / cell)), np.float32)
    heatmap[1, 1, 2] = 1.0
    return Prediction(
        status=STATUS_OK,
        class_ids=CLASSES,
        class_names=("Melanoma", "BCC", "Naevus"),
        probabilities=(0.1, 0.8, 0.1),
        top_class="bcc",
        heatmap=heatmap,
        heatmap_cell_px=cell,
        heatmap_scale=1.0,
        model_name="test",
        model_version="1",
        weights_sha256="0" * 64,
        model_synthetic=True,
        n_tiles=4,
    )


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite3") as case_store:
        yield case_store


def _open(session: CaseSession, path: Path):
    token = session.begin_open()
    assert session.attach_mosaic(token, open_mosaic(path))
    return session.attach_case(token, file_sha256(path))


def test_each_case_keeps_its_own_view_state(store, tmp_path) -> None:
    """Open A, move, open B, reopen A: A's view comes back, not B's (the old leak)."""
    a = _mosaic_file(tmp_path / "a.tif", 40)
    b = _mosaic_file(tmp_path / "b.tif", 90)
    session = CaseSession(store, reader_name=lambda: "dr test")
    opened_a = _open(session, a)
    assert opened_a is not None and not opened_a.restored
    session.save_view_state({"center_x": 123.0, "center_y": 45.0, "zoom": 2.0})
    opened_b = _open(session, b)
    assert opened_b is not None and not opened_b.restored
    session.save_view_state({"center_x": 250.0, "center_y": 150.0, "zoom": 0.22})
    again = _open(session, a)
    assert again is not None and again.restored
    assert again.case.case_id == opened_a.case.case_id
    assert dict(again.view_state) == {"center_x": 123.0, "center_y": 45.0, "zoom": 2.0}
    session.close()


def test_a_late_result_never_lands_in_the_next_case(store, tmp_path) -> None:
    a = _mosaic_file(tmp_path / "a.tif", 40)
    b = _mosaic_file(tmp_path / "b.tif", 90)
    session = CaseSession(store, reader_mode=lambda: "ai_visible")
    _open(session, a)
    token_a = session.token
    _open(session, b)
    assert not session.is_current(token_a)
    assert not session.finish_prediction(token_a, _prediction())
    assert session.ai is None
    assert store.get_case(session.case_id, include_hidden_ai=True).ai_result is None
    stale = open_mosaic(a)
    assert not session.attach_mosaic(token_a, stale)  # a slow open of A arrives late
    assert session.mosaic is not None and session.mosaic.path.name == "b.tif"
    session.close()


def test_reader_first_gate_follows_the_case(store, tmp_path) -> None:
    path = _mosaic_file(tmp_path / "a.tif", 40)
    session = CaseSession(store, reader_name=lambda: "dr gate", reader_mode=lambda: "reader_first")
    events: list[tuple[str, object]] = []
    for name in (CASE_CHANGED, AI_CHANGED, GATE_CHANGED):
        session.subscribe(name, lambda payload, n=name: events.append((n, payload)))
    _open(session, path)
    assert not session.ai_revealed()
    assert session.finish_prediction(session.token, _prediction())
    assert session.ai is not None and session.ai.top_class == "bcc"
    assert not session.ai_revealed()  # stored, but hidden until the unaided read is committed
    assert store.get_case(session.case_id).ai_result is None
    store.update_assessment_fields(session.case_id, "initial", session.reader(), diagnosis="naevus")
    store.commit_initial_assessment(session.case_id, session.reader())
    session.refresh_case()
    assert session.ai_revealed()
    assert (GATE_CHANGED, True) in events
    audit = store.audit_trail(session.case_id)
    assert {entry.user for entry in audit} == {"dr gate"}  # one reader identity throughout
    # reopening brings the stored result back in the same canonical form
    again = CaseSession(store, reader_name=lambda: "dr gate")
    _open(again, path)
    assert again.ai is not None and again.ai.top_class == "bcc"
    assert again.ai.heatmap_span == session.ai.heatmap_span == (500.0, 300.0)
    session.close()
    again.close()


def test_canonical_view_spans_agree_between_live_and_stored() -> None:
    prediction = _prediction(width=500, height=300)
    live = view_from_prediction(prediction)
    stored = view_from_stored(stored_from_prediction(prediction))
    assert live.heatmap_span == stored.heatmap_span == (500.0, 300.0)
    assert live.heatmap.shape == stored.heatmap.shape
    assert stored.synthetic and live.synthetic
    np.testing.assert_allclose(live.heatmap, stored.heatmap, atol=1 / 255)


def test_one_reader_identity() -> None:
    assert resolve_reader("  Dr Ada  ") == "Dr Ada"
    try:
        login = getpass.getuser()
    except Exception:
        login = ""
    assert resolve_reader("") == (login or FALLBACK_READER)


def test_session_and_engine_rooms_import_without_qt_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import rcm_viewer.session, rcm_viewer.cases, rcm_viewer.mosaic, rcm_viewer.inference\n"
        "bad = [m for m in ('PySide6', 'pyqtgraph', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
