"""Model bundles: round trip, refusal of anything changed after export, discovery."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import inference_testkit as kit
import pytest
import torch

from rcm_viewer.inference import (
    ModelBundle,
    ModelBundleError,
    default_bundle_dir,
    list_bundles,
    load_bundle,
    read_manifest,
    save_bundle,
)
from rcm_viewer.inference.manifest import manifest_seal, sha256_bytes
from rcm_viewer.inference.network import build_network, load_network


@pytest.fixture
def bundle_copy(random_bundle: ModelBundle, tmp_path: Path) -> Path:
    """A private copy of the session bundle that a test may damage."""
    return Path(shutil.copytree(random_bundle.path, tmp_path / "bundle"))


def _reseal(directory: Path, edit) -> None:
    """Edit the manifest and recompute its seal (a deliberate, consistent re-export)."""
    path = directory / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    data["manifest_sha256"] = manifest_seal(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_round_trip_keeps_manifest_and_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    network = build_network("resnet18", 3)
    fields = kit.bundle_fields(
        temperature=1.7, calibration_note="fitted on validation", tile_stride_px=64
    )
    bundle = save_bundle(network, fields, tmp_path / "b")
    assert sorted(p.name for p in bundle.path.iterdir()) == [
        "MODEL_CARD.md",
        "manifest.json",
        "weights.pt",
    ]
    again = load_bundle(tmp_path / "b")
    m = again.manifest
    assert m == bundle.manifest
    assert (m.name, m.architecture, m.tile_px, m.tile_stride_px) == (
        "test-model",
        "resnet18",
        96,
        64,
    )
    assert m.class_ids == ("melanoma", "bcc", "naevus")
    assert m.class_names[1] == "Basal cell carcinoma"
    assert m.temperature == 1.7 and m.synthetic is True
    assert m.weights_sha256 == sha256_bytes((again.path / "weights.pt").read_bytes())
    loaded = load_network(again, torch.device("cpu"), purpose="roundtrip")
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    card = again.model_card()
    assert "Model card: test-model 0.0.1" in card and "Demonstration model" in card
    assert "Intended use" in card and "Not a diagnostic device" in card
    raw = json.loads((again.path / "manifest.json").read_text(encoding="utf-8"))
    assert "mean of the logits of all tissue tiles" in raw["aggregation"]["description"]


def test_fp16_weights_are_half_the_size_and_load_as_float32(tmp_path: Path) -> None:
    torch.manual_seed(4)
    network = build_network("resnet18", 3).eval()
    full = save_bundle(network, kit.bundle_fields(), tmp_path / "full")
    half = save_bundle(network, kit.bundle_fields(), tmp_path / "half", fp16=True)
    assert half.manifest.weights_dtype == "float16"
    assert half.weights_path.stat().st_size < 0.6 * full.weights_path.stat().st_size
    loaded = load_network(half, torch.device("cpu"), purpose="fp16")
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), network(x), atol=2e-2)


def test_weights_of_another_shape_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ModelBundleError, match="do not fit a resnet18 with 3 classes"):
        save_bundle(build_network("resnet18", 2), kit.bundle_fields(), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_one_changed_byte_of_weights_is_refused(bundle_copy: Path) -> None:
    weights = bundle_copy / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelBundleError) as caught:
        load_bundle(bundle_copy)
    message = str(caught.value)
    assert "weights.pt" in message and "checksum" in message and "\n" not in message


def test_weights_changed_after_loading_the_bundle_are_refused(bundle_copy: Path) -> None:
    bundle = load_bundle(bundle_copy)
    (bundle_copy / "weights.pt").write_bytes(b"swapped")
    with pytest.raises(ModelBundleError, match="weights.pt"):
        bundle.read_weights()


def test_edited_manifest_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["calibration"]["temperature"] = 0.5  # a hand-tuned temperature
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    with pytest.raises(ModelBundleError, match=r"manifest.json .*modified after the bundle"):
        load_bundle(bundle_copy)


def test_reformatted_manifest_is_accepted(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data, indent=8, sort_keys=True), encoding="utf-8")
    assert load_bundle(bundle_copy).manifest.name == "test-model"


@pytest.mark.parametrize("name", ["weights.pt", "MODEL_CARD.md", "manifest.json"])
def test_missing_file_is_named(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(ModelBundleError, match=f"{name} in .* is missing"):
        load_bundle(bundle_copy)


def test_edited_model_card_is_refused(bundle_copy: Path) -> None:
    card = bundle_copy / "MODEL_CARD.md"
    card.write_text(card.read_text(encoding="utf-8") + "\nTrust me.\n", encoding="utf-8")
    with pytest.raises(ModelBundleError, match="MODEL_CARD.md"):
        load_bundle(bundle_copy)


def test_unsupported_schema_and_bad_fields_are_named(bundle_copy: Path) -> None:
    _reseal(bundle_copy, lambda d: d.update(schema_version=99))
    with pytest.raises(ModelBundleError, match="schema version 99"):
        read_manifest(bundle_copy)
    _reseal(bundle_copy, lambda d: d.update(schema_version=1, architecture="vgg16"))
    with pytest.raises(ModelBundleError, match="'architecture' must be one of"):
        read_manifest(bundle_copy)
    _reseal(
        bundle_copy, lambda d: (d.update(architecture="resnet18"), d["input"].update(tile_px=100))
    )
    with pytest.raises(ModelBundleError, match="multiple of 32"):
        read_manifest(bundle_copy)


def test_pickled_objects_in_weights_are_never_executed(bundle_copy: Path, tmp_path: Path) -> None:
    """A weights file with a pickled Python object (here: a call to print) is refused."""
    buffer = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(1), "evil": print}, buffer)
    (bundle_copy / "weights.pt").write_bytes(buffer.getvalue())
    _reseal(bundle_copy, lambda d: d["weights"].update(sha256=sha256_bytes(buffer.getvalue())))
    bundle = load_bundle(bundle_copy)
    with pytest.raises(ModelBundleError, match="cannot be read as weights"):
        load_network(bundle, torch.device("cpu"), purpose="evil")


def test_list_bundles_reports_broken_ones(random_bundle: ModelBundle, tmp_path: Path) -> None:
    shutil.copytree(random_bundle.path, tmp_path / "a_good")
    shutil.copytree(random_bundle.path, tmp_path / "b_broken")
    (tmp_path / "b_broken" / "MODEL_CARD.md").unlink()
    (tmp_path / "not_a_bundle").mkdir()
    entries = list_bundles(tmp_path)
    assert [e.path.name for e in entries] == ["a_good", "b_broken"]
    assert entries[0].manifest is not None and entries[0].problem is None
    assert entries[1].manifest is None and "MODEL_CARD.md" in (entries[1].problem or "")
    assert list_bundles(tmp_path / "nowhere") == []


def test_default_bundle_dir(
    random_bundle: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RCM_VIEWER_MODEL_DIR", raising=False)
    with pytest.raises(ModelBundleError, match="no classifier model is installed"):
        default_bundle_dir(tmp_path)
    shutil.copytree(random_bundle.path, tmp_path / "one")
    assert default_bundle_dir(tmp_path) == tmp_path / "one"
    shutil.copytree(random_bundle.path, tmp_path / "two")
    with pytest.raises(ModelBundleError, match="several models"):
        default_bundle_dir(tmp_path)
    (tmp_path / "DEFAULT").write_text("two\n", encoding="utf-8")
    assert default_bundle_dir(tmp_path) == tmp_path / "two"
    monkeypatch.setenv("RCM_VIEWER_MODEL_DIR", str(tmp_path / "one"))
    assert default_bundle_dir() == tmp_path / "one"


def test_importing_the_package_does_not_import_torch() -> None:
    code = (
        "import sys, rcm_viewer.inference as i; "
        "i.load_bundle; i.Prediction; i.list_bundles; "
        "i.classify_mosaic; i.available_backends(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
