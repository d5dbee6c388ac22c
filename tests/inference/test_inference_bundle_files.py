"""Bundle files that are not what they claim (issue 16, finding 3): a FIFO, a link to
/dev/zero, an oversized file. Each is refused with one line, fast, in bounded memory,
and the model list (the window's model menu) neither hangs nor fills the memory."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from rcm_viewer.inference import ModelBundle, ModelBundleError, list_bundles, load_bundle

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(),
        reason="needs FIFOs and /dev/zero",
    ),
    pytest.mark.timeout(60),  # a hang is the bug: fail instead of waiting forever
]


@pytest.fixture
def bundle_copy(random_bundle: ModelBundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(random_bundle.path, tmp_path / "models" / "bundle"))


def _replace_with(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
@pytest.mark.parametrize("name", ["manifest.json", "MODEL_CARD.md", "weights.pt"])
def test_non_regular_bundle_file_is_refused_in_one_line(
    bundle_copy: Path, name: str, kind: str
) -> None:
    _replace_with(bundle_copy / name, kind)
    started = time.monotonic()
    with pytest.raises(ModelBundleError) as caught:
        load_bundle(bundle_copy)
    message = str(caught.value)
    assert name in message and "not a regular file" in message and "\n" not in message
    assert time.monotonic() - started < 5
    entries = list_bundles(bundle_copy.parent)
    assert [e.path.name for e in entries] == ["bundle"]
    assert entries[0].manifest is None and "not a regular file" in (entries[0].problem or "")


def test_oversized_model_card_is_refused(bundle_copy: Path) -> None:
    card = bundle_copy / "MODEL_CARD.md"
    with card.open("r+b") as handle:
        handle.truncate(64 * 1024**2)  # sparse: no disk used
    with pytest.raises(ModelBundleError, match=r"MODEL_CARD.md in .* is too large"):
        load_bundle(bundle_copy)


def test_export_larger_than_the_manifest_says_is_refused(bundle_copy: Path) -> None:
    from rcm_viewer.inference import export_onnx

    pytest.importorskip("onnx")
    bundle, _ = export_onnx(bundle_copy)
    with (bundle_copy / "network.onnx").open("ab") as handle:
        handle.write(b"\0" * 16)
    with pytest.raises(ModelBundleError, match=r"network.onnx in .* is too large"):
        bundle.read_onnx()
    _replace_with(bundle_copy / "network.onnx", "fifo")
    with pytest.raises(ModelBundleError, match="network.onnx .*not a regular file"):
        load_bundle(bundle_copy, verify=False)
