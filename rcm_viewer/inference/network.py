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
from typing import TYPE_CHECKING

import torch
import torchvision
from torch import nn

from rcm_viewer.errors import InferenceError, ModelBundleError
from rcm_viewer.inference.manifest import ARCHITECTURES

if TYPE_CHECKING:  # bundle.py imports this module lazily; no cycle at run time
    from rcm_viewer.inference.bundle import ModelBundle

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


def load_network(
    bundle: ModelBundle, device: torch.device, *, purpose: str = "classify"
) -> nn.Module:
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


def forward_features(network: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and the layer-4 feature maps (B, K, h, w): what every backend returns.

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
    return network.fc(features.mean(dim=(2, 3))), features


def forward_with_cam(network: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and the class activation maps (B, C, h, w), without the fc bias."""
    logits, features = forward_features(network, batch)
    cam = torch.einsum("bkhw,ck->bchw", features, network.fc.weight)
    return logits, cam


class LogitsAndFeatures(nn.Module):
    """The network with two outputs, ``(logits, features)``: the form exported to ONNX."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return forward_features(self.network, tiles)


def target_layer(network: nn.Module, layer: str) -> nn.Module:
    """The last block of ``layer1``..``layer4`` (Grad-CAM's usual target for ResNets)."""
    if layer not in ("layer1", "layer2", "layer3", "layer4"):
        raise InferenceError(f"unknown layer {layer!r}: use layer1, layer2, layer3 or layer4")
    return getattr(network, layer)[-1]


#: ONNX opset of the export (OpenVINO 2024+ and ONNX Runtime 1.16+ read it).
ONNX_OPSET = 17
#: Metadata key naming the float16 initialiser that holds the fc weight (for the CAM).
ONNX_CAM_WEIGHT_KEY = "rcm_viewer.cam_weight"


def export_onnx_bytes(bundle: ModelBundle) -> bytes:
    """The bundle's network as ONNX: input ``tiles`` (B, 3, t, t), outputs logits, features.

    Exported with torch's TorchScript-based exporter (batch norm folded into the
    convolutions), then every float initialiser is stored as float16 with a Cast to
    float32 in front of it: half the file, float32 arithmetic (the runtime decompresses the
    weights once when it compiles the model).
    """
    import warnings

    import onnx

    from rcm_viewer.inference.manifest import ONNX_OUTPUTS

    wrapper = LogitsAndFeatures(_load(bundle).eval()).eval()
    tile = bundle.manifest.tile_px
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.zeros(2, 3, tile, tile),),
            buffer,
            input_names=["tiles"],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in ("tiles", *ONNX_OUTPUTS)},
            opset_version=ONNX_OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    gemms = [node for node in model.graph.node if node.op_type == "Gemm"]
    if len(gemms) != 1:
        raise ModelBundleError(f"{bundle.path.name}: the exported network has no single fc layer")
    _float16_initialisers(model)
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_CAM_WEIGHT_KEY, gemms[0].input[1] + ".fp16"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _float16_initialisers(model: object) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    initialisers, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            half = numpy_helper.from_array(
                numpy_helper.to_array(init).astype("float16"), init.name + ".fp16"
            )
            initialisers.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            initialisers.append(init)
    nodes = [*casts, *graph.node]
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    del graph.node[:]
    graph.node.extend(nodes)
