"""The batch dialog: a folder becomes a worklist of cases, run by the CLI's engine in a
worker, with progress, pause, cancel and the reader-first gate (issue 12).

Real TIFFs, a real SQLite store, the tiny random ResNet-18 of tests/inference (plumbing
only: its probabilities mean nothing), Qt offscreen.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "inference"))
import inference_testkit as kit  # noqa: E402

from rcm_viewer.cases import CaseStore  # noqa: E402
from rcm_viewer.ui.batch_dialog import HIDDEN_TEXT, BatchDialog  # noqa: E402

READER = "dr test"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ["RCM_VIEWER_TORCH_THREADS"] = "1"
    return kit.random_bundle(tmp_path_factory.mktemp("batch-ui") / "model").path


def _folder(root: Path, n_good: int, side: int = 384) -> Path:
    folder = root / "day"
    (folder / "sub").mkdir(parents=True)
    for i in range(n_good):
        rng = np.random.default_rng(i)
        image = (rng.random((side, side)) * 180 + 40).astype(np.uint8)
        kit.write_tiff(folder / ("sub" if i % 2 else "") / f"m{i}.tif", image)
    (folder / "broken.tif").write_bytes(b"II*\x00garbage")
    return folder


@pytest.fixture
def store(tmp_path: Path):
    with CaseStore(tmp_path / "cases.sqlite3") as case_store:
        yield case_store


def _dialog(qtbot, store: CaseStore, model_dir: Path, folder: Path, mode: str) -> BatchDialog:
    dialog = BatchDialog(store, user=READER, reader_mode=mode, device="cpu")
    qtbot.addWidget(dialog)
    dialog.set_model_dir(model_dir)
    dialog.add_paths([folder])
    dialog.show()
    return dialog


def _probability_cells(dialog: BatchDialog, row: int) -> list[str]:
    model = dialog.proxy
    headers = dialog.results.headers()
    return [model.index(row, c).data() for c, h in enumerate(headers) if h.startswith("p(")]


def test_reader_first_worklist_hides_probabilities_until_commit(
    qtbot, store: CaseStore, model_dir: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 3)
    dialog = _dialog(qtbot, store, model_dir, folder, "reader_first")
    assert not dialog.isModal()
    with qtbot.waitSignal(dialog.batchFinished, timeout=120_000) as finished:
        dialog.start()
        assert dialog.is_running() and dialog.cancel_button.isEnabled()
    assert finished.args[0].startswith("finished")
    entries = dialog.results.entries
    assert sorted(e.path.name for e in entries) == ["broken.tif", "m0.tif", "m1.tif", "m2.tif"]
    assert dialog.overall.maximum() == 4 and dialog.overall.value() == 4
    broken = next(e for e in entries if e.path.name == "broken.tif")
    assert not broken.ok and "broken.tif" in broken.status and broken.case_id is None
    good = [e for e in entries if e.ok]
    assert len(good) == 3 and all(e.case_id and e.hidden for e in good)
    # the store has each result, and hides it from the reader
    for entry in good:
        case = store.get_case(entry.case_id)
        assert case.ai_result_stored and case.ai_result is None
        assert case.reader_mode == "reader_first" and case.mosaic_sha256 == entry.row.sha256
    assert dialog.hidden_note.isVisibleTo(dialog)
    for row in range(dialog.proxy.rowCount()):
        if dialog.proxy.index(row, 0).data() != "broken.tif":
            assert set(_probability_cells(dialog, row)) == {HIDDEN_TEXT}
    dialog.grab().save(str(tmp_path / "batch_dialog_reader_first.png"))
    # export leaves the hidden probabilities out
    exported = dialog.export(tmp_path / "export.csv")
    with exported.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["p_melanoma"] == "" for r in rows)
    # the reader commits one case: its probabilities appear, the others stay hidden
    first = good[0]
    store.update_assessment_fields(first.case_id, None, READER, diagnosis="naevus")
    store.commit_initial_assessment(first.case_id, READER)
    dialog.refresh_cases()
    revealed = next(e for e in dialog.results.entries if e.case_id == first.case_id)
    assert not revealed.hidden and revealed.probabilities is not None
    assert sum(revealed.probabilities) == pytest.approx(1.0, abs=1e-4)
    assert sum(e.hidden for e in dialog.results.entries) == 2
    # running the same folder again updates the same cases (found by content)
    with qtbot.waitSignal(dialog.batchFinished, timeout=120_000):
        dialog.start()
    assert len(store.search()) == 3


def test_sort_filter_and_next_case_open_cases(
    qtbot, store: CaseStore, model_dir: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 3)
    dialog = _dialog(qtbot, store, model_dir, folder, "ai_visible")
    with qtbot.waitSignal(dialog.batchFinished, timeout=120_000):
        dialog.start()
    dialog.grab().save(str(tmp_path / "batch_dialog.png"))
    assert not dialog.hidden_note.isVisibleTo(dialog)
    headers = dialog.results.headers()
    column = headers.index("p(melanoma)")
    dialog.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    values = [dialog.proxy.index(r, column).data() for r in range(dialog.proxy.rowCount())]
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 3
    assert values[-1] == ""  # the failed file has no probability and sorts last
    # filter: failed files only, then one top class
    dialog.filter_box.setCurrentIndex(dialog.filter_box.findText("Failed"))
    assert dialog.proxy.rowCount() == 1
    assert dialog.proxy.index(0, headers.index("Status")).data().startswith("broken.tif")
    top = dialog.results.entries[0].top_class or dialog.results.entries[1].top_class
    dialog.filter_box.setCurrentIndex(dialog.filter_box.findText(f"Top class: {top}"))
    assert 1 <= dialog.proxy.rowCount() <= 3
    assert all(
        dialog.proxy.index(r, headers.index("Top class")).data() == top
        for r in range(dialog.proxy.rowCount())
    )
    dialog.filter_box.setCurrentIndex(0)
    # Next case walks the list in the table's order, skipping the failed file
    opened: list[tuple[str, str]] = []
    dialog.caseOpenRequested.connect(lambda case_id, path: opened.append((case_id, path)))
    for _ in range(4):
        dialog.next_case()
    assert len(opened) == 3 and len({c for c, _ in opened}) == 3
    for case_id, path in opened:
        assert store.get_case(case_id).mosaic_path == str(Path(path).resolve())
    # double-click opens the row's case
    dialog.table.setCurrentIndex(dialog.proxy.index(0, 0))
    with qtbot.waitSignal(dialog.caseOpenRequested, timeout=2000) as signal:
        rect = dialog.table.visualRect(dialog.proxy.index(0, 0))
        qtbot.mouseClick(dialog.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(dialog.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert signal.args[0] == opened[0][0]


def test_pause_then_cancel_keeps_finished_rows(
    qtbot, store: CaseStore, model_dir: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 6, side=512)
    out = tmp_path / "live.jsonl"
    dialog = _dialog(qtbot, store, model_dir, folder, "ai_visible")
    dialog.output.setText(str(out))
    with qtbot.waitSignal(dialog.rowAdded, timeout=120_000):
        dialog.start()
    dialog.pause_button.setChecked(True)
    assert dialog.pause_button.text() == "Resume"
    qtbot.wait(300)  # let the file in flight reach its next batch and stop there
    paused_at = len(dialog.results.entries)
    qtbot.wait(1500)
    assert len(dialog.results.entries) <= paused_at + 1 and dialog.is_running()
    with qtbot.waitSignal(dialog.batchFinished, timeout=60_000) as finished:
        dialog.cancel_button.click()
    assert finished.args[0] == "cancelled"
    assert not dialog.is_running() and dialog.start_button.isEnabled()
    done = len(dialog.results.entries)
    assert 1 <= done < 7
    from rcm_viewer.inference import read_rows

    assert len(read_rows(out)) == done  # the live file has each finished row


def test_bad_inputs_are_one_line_and_start_nothing(
    qtbot, store: CaseStore, model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a: shown.append(a[2]))
    dialog = BatchDialog(store, user=READER, reader_mode="ai_visible")
    qtbot.addWidget(dialog)
    dialog.start()
    assert shown[-1] == "Add at least one folder to classify." and not dialog.is_running()
    dialog.set_model_dir(model_dir)
    dialog.add_paths([tmp_path])
    dialog.output.setText(str(tmp_path))  # a folder, not a file
    dialog.start()
    assert "is a folder" in shown[-1] and "\n" not in shown[-1] and not dialog.is_running()
