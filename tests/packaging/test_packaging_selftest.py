"""``rcm-viewer --self-test``: real steps on the bundled model, demo mosaic and window.

The classify step (a minute of ResNet-34 on this CPU) runs in the slow packaging test,
through the installed ``rcm-viewer --self-test``; here the other steps run for real.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rcm_viewer import selftest

FAST_STEPS = [s for s in selftest.STEPS if s[0] != "classify"]


def test_steps_pass_and_print_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = os.environ["RCM_VIEWER_DATA_DIR"]
    code, line, results = selftest.run_self_test(FAST_STEPS)
    assert code == 0, line
    assert "\n" not in line and line.startswith("rcm-viewer self-test OK in ")
    by_name = {r.name: r for r in results}
    assert by_name["seals"].status == "ok" and "rcm-demo-resnet34" in by_name["seals"].note
    assert by_name["open"].note.startswith("demo_naevus.tif 2048x2048")
    assert by_name["window"].status == "ok"
    assert "demo not shown" not in by_name["window"].note  # the demo reached the window
    # no classification, so no report; without rcm_viewer.reports it says why
    assert by_name["report"].status == "skipped"
    assert os.environ["RCM_VIEWER_DATA_DIR"] == data_dir  # the temporary folder is undone


def test_a_broken_seal_fails_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(__file__).resolve().parents[2] / "models"
    bundle = tmp_path / "models" / "rcm-demo-resnet34"
    bundle.mkdir(parents=True)
    for name in ("manifest.json", "MODEL_CARD.md", "network.onnx", "ood.npz"):
        shutil.copy2(source / "rcm-demo-resnet34" / name, bundle)
    (bundle / "weights.pt").write_bytes(b"not the sealed weights")
    monkeypatch.setattr("rcm_viewer.paths.MODELS_DIR", tmp_path / "models")
    code, line, results = selftest.run_self_test(
        [s for s in selftest.STEPS if s[0] in ("seals", "open", "classify")]
    )
    assert code == 1
    assert line.startswith("rcm-viewer self-test FAILED")
    seals, opened, classify = results
    assert seals.status == "failed" and "weights.pt" in seals.note
    assert opened.status == "ok"  # later steps still run and report
    assert classify.status == "skipped" and "seals" in classify.note
