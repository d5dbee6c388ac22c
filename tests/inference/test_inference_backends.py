"""Inference backends: choice, ONNX export and its seal, the compiled-model cache, the
torch-free app, numerical agreement with the torch float32 reference, and the numpy
resampling that replaced torch's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import inference_testkit as kit
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from rcm_viewer.errors import InferenceError, ModelBundleError
from rcm_viewer.inference import (
    ModelBundle,
    available_backends,
    classify_mosaic,
    export_onnx,
    load_backend,
    load_bundle,
    resolve_backend,
)
from rcm_viewer.inference.backends import compiled_cache_dir, cpu_has_native_bfloat16
from rcm_viewer.inference.engine import resample_bilinear
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic

pytest.importorskip("openvino")

#: Installs a meta-path finder that makes importing torch (and what needs it) fail.
BLOCK_TORCH = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchvision', 'pytorch_grad_cam'):\n"
    "            raise ImportError('blocked for the test: ' + name)\n"
    "        return None\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def _without_torch(code: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def exported_random(
    random_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory
) -> ModelBundle:
    directory = tmp_path_factory.mktemp("exported") / "random"
    shutil.copytree(random_bundle.path, directory)
    return export_onnx(directory)[0]


@pytest.fixture(scope="session")
def exported_trained(
    trained_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory
) -> ModelBundle:
    directory = tmp_path_factory.mktemp("exported") / "trained"
    shutil.copytree(trained_bundle.path, directory)
    return export_onnx(directory)[0]


# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("factor", [1.0 / 1.5, 1.0 / 1.37, 1.0 / 2.6, 1.6, 1.25])
def test_numpy_resampling_equals_torch_interpolate(factor: float) -> None:
    image = np.random.default_rng(1).random((97, 131), dtype=np.float32)
    ours = resample_bilinear(image, factor)
    theirs = F.interpolate(
        torch.from_numpy(image)[None, None],
        scale_factor=(factor, factor),
        mode="bilinear",
        align_corners=False,
        antialias=factor < 1.0,
        recompute_scale_factor=False,
    )[0, 0].numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-5


# ----------------------------------------------------------------------------- choice


def test_backend_choice(random_bundle: ModelBundle, exported_random: ModelBundle) -> None:
    assert set(available_backends()) == {"torch-fp32", "torch", "openvino"}
    assert resolve_backend("auto", "cpu", exported_random) == "openvino"
    # no export: auto falls back to torch, an explicit openvino says what to do
    assert resolve_backend("auto", "cpu", random_bundle) == "torch"
    assert resolve_backend("auto", "cuda", exported_random) == "torch"
    assert resolve_backend("torch-fp32", "cpu", exported_random) == "torch-fp32"
    with pytest.raises(InferenceError, match="CPU only"):
        resolve_backend("openvino", "cuda", exported_random)
    with pytest.raises(InferenceError, match="unknown backend 'tensorrt'"):
        resolve_backend("tensorrt", "cpu")
    with pytest.raises(ModelBundleError, match="export-onnx"):
        load_backend(random_bundle, "openvino", "cpu")
    fp32 = load_backend(exported_random, "torch-fp32", "cpu")
    fast = load_backend(exported_random, "torch", "cpu")
    vino = load_backend(exported_random, "openvino", "cpu", batch_size=4)
    assert (fp32.name, fast.name, vino.name) == ("torch-fp32", "torch", "openvino")
    assert "channels_last" in fast.description
    assert ("bfloat16" in fast.description) == cpu_has_native_bfloat16()
    tiles = np.random.default_rng(2).normal(size=(3, 3, 96, 96)).astype(np.float32)
    reference = fp32.run(tiles)
    for backend in (fast, vino):
        logits, features = backend.run(tiles)
        assert logits.shape == (3, 3) and features.shape == reference[1].shape == (3, 512, 3, 3)
        assert np.allclose(backend.fc_weight, fp32.fc_weight, atol=1e-3)
    assert np.abs(vino.run(tiles)[0] - reference[0]).max() < 0.05 * np.abs(reference[0]).max()


def test_choice_without_torch_is_openvino() -> None:
    result = _without_torch(
        "from rcm_viewer.inference import available_backends, resolve_backend\n"
        "print(available_backends(), resolve_backend('auto', 'cpu'))\n"
        "try:\n    resolve_backend('torch', 'cpu')\nexcept Exception as e:\n    print(e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "('openvino',) openvino" in result.stdout
    assert "backend torch needs torch and torchvision, which is not installed" in result.stdout


# ----------------------------------------------------------------------------- export + seal


def test_export_is_sealed_idempotent_and_a_changed_byte_is_refused(
    exported_random: ModelBundle, tmp_path: Path
) -> None:
    directory = Path(shutil.copytree(exported_random.path, tmp_path / "b"))
    manifest = load_bundle(directory).manifest
    assert manifest.onnx_file == "network.onnx"
    assert manifest.onnx_bytes == (directory / "network.onnx").stat().st_size
    assert manifest.weights_sha256 == exported_random.manifest.weights_sha256
    before = (directory / "manifest.json").read_bytes()
    bundle, written = export_onnx(directory)
    assert not written and (directory / "manifest.json").read_bytes() == before
    # float16 initialisers: about half a float32 ResNet-18 (45 MB)
    assert manifest.onnx_bytes < 0.6 * 4 * 11.2e6
    data = bytearray((directory / "network.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / "network.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelBundleError) as caught:
        load_bundle(directory)
    message = str(caught.value)
    assert "network.onnx" in message and "checksum" in message and "\n" not in message
    with pytest.raises(ModelBundleError, match="network.onnx"):
        bundle.read_onnx()
    # a damaged export is written again by the same command
    assert export_onnx(directory)[1] is True
    assert load_bundle(directory).manifest.onnx_sha256 == manifest.onnx_sha256


def test_compiled_model_is_cached_per_export(
    exported_random: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RCM_VIEWER_DATA_DIR", str(tmp_path / "user"))
    first = load_backend(exported_random, "openvino", "cpu", batch_size=2)
    cache = compiled_cache_dir(exported_random.manifest.onnx_sha256)
    assert first.cache_dir == cache and cache.is_relative_to(tmp_path / "user")
    assert any(cache.iterdir()), "no compiled blob was cached"
    other = kit.random_bundle(tmp_path / "other", seed=5)  # another network: a new sha256
    other = export_onnx(other.path)[0]
    assert other.manifest.onnx_sha256 != exported_random.manifest.onnx_sha256
    second = load_backend(other, "openvino", "cpu", batch_size=2)
    assert second.cache_dir != cache and any(second.cache_dir.iterdir())
    tiles = np.zeros((2, 3, 96, 96), np.float32) + 0.3
    assert not np.allclose(first.run(tiles)[0], second.run(tiles)[0])


# ----------------------------------------------------------------------------- agreement


def _agreement_mosaics(mosaic_files: dict[str, Path], tmp_path: Path) -> list[Path]:
    paths = [mosaic_files["composite"], mosaic_files["gray_512"]]
    for seed, cls in ((881001, "melanoma"), (881002, "bcc")):
        image = SyntheticMosaic(MosaicSpec(cls, 512, 512, 1.0, seed=seed)).to_array()
        paths.append(kit.write_tiff(tmp_path / f"{cls}_{seed}.tif", image))
    return paths


def test_fast_backends_agree_with_torch_float32(
    exported_trained: ModelBundle, mosaic_files: dict[str, Path], tmp_path: Path
) -> None:
    for path in _agreement_mosaics(mosaic_files, tmp_path):
        with open_mosaic(path) as mosaic:
            results = {
                name: classify_mosaic(mosaic, exported_trained, backend=name, device="cpu")
                for name in ("torch-fp32", "torch", "openvino")
            }
        reference = results.pop("torch-fp32")
        assert reference.backend == "torch-fp32"
        for name, prediction in results.items():
            assert prediction.backend == name and prediction.n_tiles == reference.n_tiles
            top_two = sorted(reference.probabilities)[-2:]
            if top_two[1] - top_two[0] > 0.04:  # closer: only |dp| <= 0.02 is meaningful
                assert prediction.top_class == reference.top_class, (path.name, name)
            delta = np.abs(np.subtract(prediction.probabilities, reference.probabilities))
            assert delta.max() <= 0.02, (path.name, name, delta)
            assert prediction.heatmap is not None and reference.heatmap is not None
            r = np.corrcoef(prediction.heatmap.ravel(), reference.heatmap.ravel())[0, 1]
            assert r >= 0.99, (path.name, name, r)


# ----------------------------------------------------------------------------- torch-free


def test_classify_command_runs_without_torch(
    exported_trained: ModelBundle, mosaic_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    result = _without_torch(
        "import runpy\n"
        "sys.argv = ['rcm-viewer'] + sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module('rcm_viewer', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        "    assert 'torch' not in sys.modules\n",
        "classify",
        str(mosaic_files["composite"]),
        "--model",
        str(exported_trained.path),
        "--backend",
        "auto",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "backend openvino" in result.stderr
    [row] = json.loads(out.read_text(encoding="utf-8"))
    assert row["status"] == "ok" and row["backend"] == "openvino"
    assert row["top_class"] in ("bcc", "naevus", "melanoma")


def test_without_torch_bundles_load_and_explain_says_why(
    exported_trained: ModelBundle, mosaic_files: dict[str, Path]
) -> None:
    result = _without_torch(
        "import rcm_viewer.inference as i\n"
        "from rcm_viewer.mosaic import open_mosaic\n"
        "b = i.load_bundle(sys.argv[1]); i.list_bundles(b.path.parent)\n"
        "with open_mosaic(sys.argv[2]) as m:\n"
        "    try:\n"
        "        i.explain_region(m, b, (0, 0, 256, 256))\n"
        "    except i.InferenceError as e:\n"
        "        print('refused:', e)\n",
        str(exported_trained.path),
        str(mosaic_files["gray_512"]),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "refused: Explain visible region needs PyTorch, which is not installed in this "
        "app; the class activation map of the classification is still shown."
    ) in (result.stdout)
