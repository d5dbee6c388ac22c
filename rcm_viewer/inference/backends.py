"""Inference backends: the runtime that turns preprocessed tiles into logits and features.

Every backend takes a batch of preprocessed tiles (numpy float32, NCHW, normalised as the
manifest says) and returns ``(logits, features)``: logits (B, C) and the last block's
(layer 4) feature maps (B, K, h, w), both float32 numpy. The class activation map, the
heatmap and anything computed later on pooled features are therefore one piece of numpy
code in the engine, whatever ran the network; each backend also hands over the fc weight
(C, K) the CAM needs.

- ``torch-fp32``: torchvision's ResNet in float32, NCHW: the reference (today's path).
- ``torch``: channels_last, plus bfloat16 autocast where the CPU computes bfloat16
  natively (AVX-512 BF16 or AMX); on CUDA the same as ``torch-fp32``.
- ``openvino``: the bundle's sealed ``network.onnx`` compiled by OpenVINO for the CPU,
  with the compiled blob cached per ONNX sha256 in the user cache folder (a changed
  bundle gets a new compiled model). Needs no torch: this is what lets the app classify
  with torch not installed.

``auto`` picks the fastest installed for the device: OpenVINO on the CPU when it is
installed and the bundle has an export, else torch; torch on CUDA. Which backend ran is
recorded in every ``Prediction``. ONNX Runtime is not offered: measured on this project's
machine it was slower than OpenVINO and gives nothing OpenVINO does not.

Nothing here imports torch or OpenVINO at module level.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rcm_viewer.errors import InferenceError, ModelBundleError

if TYPE_CHECKING:
    from rcm_viewer.inference.bundle import ModelBundle

log = logging.getLogger(__name__)

BACKENDS = ("torch-fp32", "torch", "openvino")
BACKEND_CHOICES = ("auto", *BACKENDS)
#: Threads for the network on the CPU (torch and OpenVINO alike); see ``cpu_threads``.
THREADS_ENV = "RCM_VIEWER_TORCH_THREADS"


class Backend(Protocol):
    #: One of ``BACKENDS``.
    name: str
    #: Where it runs: "cpu", "cuda", "cuda:1"...
    device: str
    #: What exactly runs, for logs and the window ("torch, channels_last, bfloat16").
    description: str
    #: (C, K) float32: the fc weight the class activation map is made of.
    fc_weight: np.ndarray

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, t, t) float32 -> logits (B, C), layer-4 features (B, K, h, w)."""
        ...


# ----------------------------------------------------------------------------- choice


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> tuple[str, ...]:
    """The backends whose runtime is installed, in ``BACKENDS`` order."""
    names: list[str] = []
    if _installed("torch") and _installed("torchvision"):
        names += ["torch-fp32", "torch"]
    if _installed("openvino"):
        names.append("openvino")
    return tuple(names)


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()


def resolve_device(device: str = "auto") -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU; checks an explicit choice.

    Torch is imported only when a GPU may be there (an NVIDIA driver is loaded), so a
    laptop without one never pays for importing torch to learn it.
    """
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InferenceError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    has_torch = _installed("torch")
    if device == "auto" and not (has_torch and _nvidia_driver_present()):
        return "cpu"
    if not has_torch:
        raise InferenceError("device cuda was asked for, but PyTorch is not installed")
    from rcm_viewer.inference.network import resolve_device as torch_device

    return str(torch_device(device))


def resolve_backend(name: str, device: str = "cpu", bundle: ModelBundle | None = None) -> str:
    """The backend that ``name`` means on ``device`` (a resolved device) for ``bundle``.

    Raises ``InferenceError`` with one line when the choice cannot run here.
    """
    if name not in BACKEND_CHOICES:
        raise InferenceError(f"unknown backend {name!r}: use {', '.join(BACKEND_CHOICES)}")
    installed = available_backends()
    has_export = bundle is None or bool(bundle.manifest.onnx_file)
    if name == "auto":
        if device == "cpu" and "openvino" in installed and (has_export or "torch" not in installed):
            return "openvino"
        if "torch" in installed:
            return "torch"
        raise InferenceError(
            "no inference runtime is installed: install openvino (or torch and torchvision)"
        )
    if name not in installed:
        package = "openvino" if name == "openvino" else "torch and torchvision"
        raise InferenceError(f"backend {name} needs {package}, which is not installed")
    if name == "openvino" and device != "cpu":
        raise InferenceError(
            f"backend openvino runs on the CPU only, not on {device}: use --device cpu or "
            "--backend torch"
        )
    return name


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend`` for the commands that classify (classify, evaluate)."""
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="inference runtime: auto (the fastest installed: openvino on the CPU when the "
        "model has an ONNX export, torch on CUDA), torch (channels_last, bfloat16 where "
        "the CPU has it), torch-fp32 (the reference) or openvino",
    )


_cache_lock = threading.Lock()
_backend_cache: dict[tuple[ModelBundle, str, str, int], Backend] = {}


def load_backend(
    bundle: ModelBundle, name: str = "auto", device: str = "auto", *, batch_size: int = 16
) -> Backend:
    """The ready-to-run backend for ``bundle`` (cached: one per backend name).

    ``batch_size`` is the batch the engine sends (OpenVINO compiles for that shape; a
    smaller last batch is padded).
    """
    resolved_device = resolve_device(device)
    resolved = resolve_backend(name, resolved_device, bundle)
    key = (bundle, resolved, resolved_device, batch_size if resolved == "openvino" else 0)
    with _cache_lock:
        cached = _backend_cache.get(key)
        if cached is not None:
            return cached
        backend: Backend
        if resolved == "openvino":
            backend = OpenVinoBackend(bundle, batch_size)
        else:
            backend = TorchBackend(bundle, resolved_device, fast=resolved == "torch")
        for old in [k for k in _backend_cache if k[1] == resolved]:
            del _backend_cache[old]
        _backend_cache[key] = backend
        log.info("inference backend: %s on %s", backend.description, backend.device)
        return backend


def clear_backend_cache() -> None:
    with _cache_lock:
        _backend_cache.clear()


def cpu_threads() -> int:
    """At most 4 threads (beyond that a ResNet gains little and the GUI thread starves);
    ``$RCM_VIEWER_TORCH_THREADS`` overrides (shared build machines)."""
    wanted = os.environ.get(THREADS_ENV)
    return max(1, int(wanted) if wanted and wanted.isdigit() else min(4, os.cpu_count() or 1))


def cpu_has_native_bfloat16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX-BF16).

    Elsewhere bfloat16 autocast is emulated and slower than float32, so it is never used.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    if _installed("torch"):
        import torch

        probe = getattr(torch._C._cpu, "_is_avx512_bf16_supported", None)  # noqa: SLF001
        return bool(probe()) if probe is not None else False
    return False


# ----------------------------------------------------------------------------- torch


class TorchBackend:
    """torchvision's ResNet (network.py); ``fast``: channels_last + native bfloat16."""

    def __init__(self, bundle: ModelBundle, device: str, *, fast: bool) -> None:
        import torch

        from rcm_viewer.inference.network import load_network
        from rcm_viewer.inference.network import resolve_device as torch_device

        self._torch = torch
        self._device = torch_device(device)
        self.device = str(self._device)
        on_cpu = self._device.type == "cpu"
        self.channels_last = fast and on_cpu
        self.bfloat16 = fast and on_cpu and cpu_has_native_bfloat16()
        network = load_network(
            bundle, self._device, purpose="classify-fast" if self.channels_last else "classify"
        )
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self.name = "torch" if fast else "torch-fp32"
        details = ["channels_last"] if self.channels_last else []
        details += ["bfloat16 autocast"] if self.bfloat16 else ["float32"]
        self.description = f"{self.name} ({', '.join(details)})"
        self.fc_weight = network.fc.weight.detach().float().cpu().numpy()

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from rcm_viewer.inference.network import forward_features

        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(self._device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16),
        ):
            logits, features = forward_features(self.network, x)
        return (logits.float().cpu().numpy(), features.float().contiguous().cpu().numpy())


# ----------------------------------------------------------------------------- openvino


def user_cache_dir() -> Path:
    """Per-user cache folder; under ``$RCM_VIEWER_DATA_DIR/cache`` when that is set."""
    override = os.environ.get("RCM_VIEWER_DATA_DIR")
    if override:
        return Path(override) / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("rcm-viewer"))


def compiled_cache_dir(onnx_sha256: str) -> Path:
    """Where OpenVINO keeps the compiled model of one export (one folder per sha256)."""
    return user_cache_dir() / "openvino" / onnx_sha256


class OpenVinoBackend:
    """The bundle's sealed ONNX export, compiled once by OpenVINO for the CPU."""

    name = "openvino"
    device = "cpu"

    def __init__(self, bundle: ModelBundle, batch_size: int) -> None:
        import openvino as ov

        data = bundle.read_onnx()  # checked against the seal; the file is not read again
        self.fc_weight = _onnx_cam_weight(data, bundle)
        core = ov.Core()
        cache = compiled_cache_dir(bundle.manifest.onnx_sha256)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache)})
        except OSError as exc:  # a read-only home still classifies, compiling each time
            log.warning("OpenVINO cache %s unavailable: %s", cache, exc)
        try:
            model = core.read_model(data)
        except Exception as exc:
            raise ModelBundleError(
                f"{bundle.manifest.onnx_file} in {bundle.path} cannot be read by OpenVINO "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from None
        del data
        tile = bundle.manifest.tile_px
        self.batch_size = batch_size
        model.reshape({model.inputs[0]: [batch_size, 3, tile, tile]})
        self._compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": cpu_threads(),
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        self._request = self._compiled.create_infer_request()
        self._outputs = (self._compiled.output("logits"), self._compiled.output("features"))
        precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
        self.description = f"openvino {ov.get_version().split('-')[0]} (CPU, {precision})"
        self.cache_dir = cache

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(tiles)
        batch = np.ascontiguousarray(tiles, dtype=np.float32)
        if n < self.batch_size:
            batch = np.concatenate(
                [batch, np.zeros((self.batch_size - n, *batch.shape[1:]), np.float32)]
            )
        if n > self.batch_size:
            parts = [self.run(batch[i : i + self.batch_size]) for i in range(0, n, self.batch_size)]
            return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        result = self._request.infer({0: batch})
        logits, features = (result[output] for output in self._outputs)
        return np.array(logits[:n], dtype=np.float32), np.array(features[:n], dtype=np.float32)


def _onnx_cam_weight(data: bytes, bundle: ModelBundle) -> np.ndarray:
    """The fc weight (C, K) from the export, named by its metadata (see network.py)."""
    import onnx
    from onnx import numpy_helper

    where = f"{bundle.manifest.onnx_file} in {bundle.path}"
    try:
        model = onnx.load_from_string(data)
    except Exception:
        raise ModelBundleError(f"{where} is not an ONNX model") from None
    meta = {p.key: p.value for p in model.metadata_props}
    name = meta.get("rcm_viewer.cam_weight")
    for init in model.graph.initializer:
        if init.name == name:
            weight = numpy_helper.to_array(init).astype(np.float32)
            if weight.ndim == 2 and weight.shape[0] == bundle.manifest.n_classes:
                return weight
    raise ModelBundleError(f"{where} has no class activation weights: export it again")
