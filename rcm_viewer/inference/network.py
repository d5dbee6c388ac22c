"""The ResNet and its class activation map, computed in the same forward pass.

For a ResNet the logits are ``fc(mean_xy(F))`` with ``F`` the layer-4 features. Grad-CAM
of layer 4 weights each feature channel by the mean gradient of the class logit, which
for this head is ``fc.weight[c] / (h * w)`` everywhere; so Grad-CAM is ``ReLU(sum_k
fc.weight[c, k] F_k)`` up to a positive factor, i.e. the class activation map (Zhou 2016),
and it costs one einsum on features the forward pass computed anyway. The map also adds
up to the logit: ``mean_xy(CAM_c) + fc.bias[c] == logit_c``.
"""

from __future__ import annotations

import io
import logging
import os
import threading

import torch
import torchvision
from torch import nn

from rcm_viewer.errors import InferenceError, ModelBundleError
from rcm_viewer.inference.bundle import ModelBundle
from rcm_viewer.inference.manifest import ARCHITECTURES

log = logging.getLogger(__name__)

_BUILDERS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}
_cache_lock = threading.Lock()
_network_cache: dict[tuple[ModelBundle, str, str], nn.Module] = {}
_threads_configured = False


def build_network(architecture: str, n_classes: int) -> nn.Module:
    """An untrained torchvision ResNet with an ``n_classes`` head (never downloads weights)."""
    if architecture not in _BUILDERS:
        raise ModelBundleError(
            f"architecture {architecture!r} is not supported (use {', '.join(ARCHITECTURES)})"
        )
    return _BUILDERS[architecture](weights=None, num_classes=n_classes)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU with at most 4 threads.

    Four threads: beyond that a ResNet forward on a desktop CPU gains little and the GUI
    thread starves. ``$RCM_VIEWER_TORCH_THREADS`` overrides (shared build machines).
    """
    global _threads_configured
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InferenceError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError("device cuda was asked for, but no CUDA GPU is available")
    if device == "cpu" and not _threads_configured:
        _threads_configured = True
        wanted = os.environ.get("RCM_VIEWER_TORCH_THREADS")
        threads = int(wanted) if wanted and wanted.isdigit() else min(4, os.cpu_count() or 1)
        torch.set_num_threads(max(1, threads))
    return torch.device(device)


def load_network(bundle: ModelBundle, device: torch.device, *, purpose: str = "classify") -> (
    nn.Module
):
    """The bundle's network in eval mode, float32, on ``device``; cached per purpose.

    ``classify`` networks have gradients switched off (less memory); ``explain`` ones keep
    them, because Grad-CAM methods need a graph and their hooks must not touch the
    classifier another thread may be running.
    """
    key = (bundle, str(device), purpose)
    with _cache_lock:
        cached = _network_cache.get(key)
        if cached is not None:
            return cached
        network = _load(bundle)
        network.requires_grad_(purpose != "classify")
        network = network.to(device).eval()
        # keep at most one network per purpose: a second bundle replaces the first
        for old in [k for k in _network_cache if k[2] == purpose]:
            del _network_cache[old]
        _network_cache[key] = network
        return network


def clear_network_cache() -> None:
    with _cache_lock:
        _network_cache.clear()


def _load(bundle: ModelBundle) -> nn.Module:
    manifest = bundle.manifest
    data = bundle.read_weights()
    where = f"{manifest.weights_file} in {bundle.path}"
    try:
        if manifest.weights_format == "safetensors":
            try:
                from safetensors.torch import load as safetensors_load
            except ImportError:
                raise ModelBundleError(
                    f"{where} needs the 'safetensors' package, which is not installed"
                ) from None
            state = safetensors_load(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        del data  # a ResNet-34 is 85 MB: do not hold it three times over
    except ModelBundleError:
        raise
    except Exception as exc:
        raise ModelBundleError(f"{where} cannot be read as weights ({exc})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelBundleError(f"{where} is not a dictionary of tensors")
    network = build_network(manifest.architecture, manifest.n_classes)
    try:
        network.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
            strict=True,
        )
    except RuntimeError as exc:
        raise ModelBundleError(
            f"{where} does not fit a {manifest.architecture} with {manifest.n_classes} "
            f"classes ({str(exc).splitlines()[0]})"
        ) from None
    return network


def forward_with_cam(network: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and the class activation maps (B, C, h, w), without the fc bias.

    Same arithmetic as torchvision's ``ResNet.forward`` (its avgpool is a mean over
    h x w), so the logits equal ``network(batch)``.
    """
    x = network.conv1(batch)
    x = network.bn1(x)
    x = network.relu(x)
    x = network.maxpool(x)
    x = network.layer1(x)
    x = network.layer2(x)
    x = network.layer3(x)
    features = network.layer4(x)
    logits = network.fc(features.mean(dim=(2, 3)))
    cam = torch.einsum("bkhw,ck->bchw", features, network.fc.weight)
    return logits, cam


def target_layer(network: nn.Module, layer: str) -> nn.Module:
    """The last block of ``layer1``..``layer4`` (Grad-CAM's usual target for ResNets)."""
    if layer not in ("layer1", "layer2", "layer3", "layer4"):
        raise InferenceError(f"unknown layer {layer!r}: use layer1, layer2, layer3 or layer4")
    return getattr(network, layer)[-1]
