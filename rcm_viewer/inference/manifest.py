"""The model manifest: everything needed to run a bundled classifier the way it was trained.

Torch-free on purpose: the GUI lists installed models and shows their model card before
torch is imported, and the training room writes manifests with the same code.

A manifest is *sealed*: ``manifest_sha256`` is the SHA-256 of the manifest's own canonical
JSON (sorted keys, no whitespace, without the seal), and it records the SHA-256 of the
weights and of the model card. Any edit after export (a hand-tuned temperature, a swapped
weights file) makes the bundle refuse to load: to change a bundle, export it again. This
guards against accidents and mix-ups, not against someone who recomputes the checksums.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rcm_viewer.errors import ModelBundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_CARD_NAME = "MODEL_CARD.md"
#: The network exported to ONNX (two outputs: logits, layer-4 features), when there is one.
ONNX_NAME = "network.onnx"
ONNX_OUTPUTS = ("logits", "features")
#: Largest weights or exported network accepted (a ResNet-50 in float32 is ~100 MB).
MAX_NETWORK_BYTES = 1024**3

ARCHITECTURES = ("resnet18", "resnet34", "resnet50")
DEFAULT_ARCHITECTURE = "resnet34"
#: Every supported ResNet halves the tile five times: tiles and strides are multiples of
#: this, so each tile's class activation map lands exactly on the mosaic heatmap grid.
NETWORK_STRIDE_PX = 32

CHANNEL_RULES = {
    "grayscale_to_rgb": "the grayscale reflectance is copied into the three input channels",
}
INTENSITY_RULES = {
    "full_scale": "pixel value divided by the full scale of its type (255 or 65535)",
    "robust_white": (
        "pixel value divided by the mosaic's robust white point (99.5th percentile of its "
        "smallest level), clipped to 0-1"
    ),
}
AGGREGATION_RULES = {
    "mean_logits": (
        "the mosaic's logits are the mean of the logits of all tissue tiles (tiles with at "
        "least min_tissue_fraction of tissue); probabilities = softmax(mean logits / "
        "temperature)"
    ),
    "mean_probabilities": (
        "the mosaic's probabilities are the mean over all tissue tiles of softmax(tile "
        "logits / temperature)"
    ),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INTENDED_USE = (
    "Research and reader-assist software for reflectance confocal microscopy mosaics of skin "
    "lesions. Not a diagnostic device: results are to be used together with other clinical "
    "information and the clinician's professional judgement, and the clinician reviews the "
    "full images."
)
WEIGHTS_FORMATS = {"torch_state_dict": ".pt", "safetensors": ".safetensors"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The byte form the seal is computed on: whitespace and key order do not matter."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def manifest_seal(data: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest without its own ``manifest_sha256`` entry."""
    return sha256_bytes(canonical_json({k: v for k, v in data.items() if k != "manifest_sha256"}))


@dataclass(frozen=True)
class ModelManifest:
    """A parsed, validated manifest (one model bundle's contract with the engine)."""

    name: str
    version: str
    architecture: str
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    #: Side of the square tile the network sees, in model pixels.
    tile_px: int
    #: Step between tile origins, in model pixels (== tile_px: no overlap).
    tile_stride_px: int
    #: µm per pixel of the tissue as the model sees it; mosaics are resampled to this.
    pixel_size_um: float
    channels: str
    intensity_scaling: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: A tile is classified when at least this fraction of it is tissue (see tissue.py).
    min_tissue_fraction: float
    aggregation: str
    #: Temperature scaling: probabilities = softmax(logits / temperature).
    temperature: float
    calibration_note: str
    weights_file: str
    weights_sha256: str
    weights_format: str
    weights_dtype: str
    model_card_file: str
    model_card_sha256: str
    #: True when the model was trained on synthetic images (a demonstration model).
    synthetic: bool
    intended_use: str
    created: str
    schema_version: int = SCHEMA_VERSION
    #: Free-form provenance: data description, counts per class, metrics, code version...
    training: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: The ONNX export (``rcm-viewer export-onnx``), sealed like the weights; "" when none.
    onnx_file: str = ""
    onnx_sha256: str = ""
    onnx_bytes: int = 0
    #: Out-of-distribution statistics (inference/ood.py), sealed like the weights; None
    #: for a bundle without them.
    ood_file: str | None = None
    ood_sha256: str | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)

    @property
    def aggregation_description(self) -> str:
        return AGGREGATION_RULES[self.aggregation]

    @property
    def display_name(self) -> str:
        demo = " (demonstration, synthetic training data)" if self.synthetic else ""
        return f"{self.name} {self.version}{demo}"

    def class_name(self, class_id: str) -> str:
        return self.class_names[self.class_ids.index(class_id)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``manifest.json`` (without the seal)."""
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "classes": [
                {"id": cid, "display_name": cname}
                for cid, cname in zip(self.class_ids, self.class_names, strict=True)
            ],
            "input": {
                "tile_px": self.tile_px,
                "tile_stride_px": self.tile_stride_px,
                "pixel_size_um": self.pixel_size_um,
                "channels": self.channels,
                "channels_description": CHANNEL_RULES[self.channels],
                "intensity_scaling": self.intensity_scaling,
                "intensity_description": INTENSITY_RULES[self.intensity_scaling],
                "normalisation": {"mean": list(self.mean), "std": list(self.std)},
                "min_tissue_fraction": self.min_tissue_fraction,
            },
            "aggregation": {
                "rule": self.aggregation,
                "description": AGGREGATION_RULES[self.aggregation],
            },
            "calibration": {"temperature": self.temperature, "note": self.calibration_note},
            "weights": {
                "file": self.weights_file,
                "sha256": self.weights_sha256,
                "format": self.weights_format,
                "dtype": self.weights_dtype,
            },
            "model_card": {"file": self.model_card_file, "sha256": self.model_card_sha256},
            "training": {**dict(self.training), "synthetic": self.synthetic},
            "intended_use": self.intended_use,
            "created": self.created,
            **(
                {"onnx": onnx_entry(self.onnx_file, self.onnx_sha256, self.onnx_bytes)}
                if self.onnx_file
                else {}
            ),
            **(
                {"ood": {"file": self.ood_file, "sha256": self.ood_sha256}} if self.ood_file else {}
            ),
        }

    def sealed_dict(self) -> dict[str, Any]:
        data = self.to_dict()
        data["manifest_sha256"] = manifest_seal(data)
        return data


# ----------------------------------------------------------------------------- parsing


class _Reader:
    """Typed access to a JSON object that names the offending key in its error."""

    def __init__(self, where: str, data: Any, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise ModelBundleError(f"{where}: {prefix or 'the manifest'} must be a JSON object")
        self.where, self.data, self.prefix = where, data, prefix

    def _fail(self, key: str, what: str) -> ModelBundleError:
        return ModelBundleError(f"{self.where}: '{self.prefix}{key}' {what}")

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self._fail(key, "is missing")
            return default
        return self.data[key]

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, "must be a non-empty text")
        return value.strip()

    def number(self, key: str, default: Any = ..., *, low: float, high: float) -> float:
        value = self.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._fail(key, "must be a number")
        if not low <= value <= high:
            raise self._fail(key, f"must be between {low:g} and {high:g}, not {value:g}")
        return float(value)

    def integer(self, key: str, default: Any = ..., *, low: int, high: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "must be a whole number")
        if not low <= value <= high:
            raise self._fail(key, f"must be between {low} and {high}, not {value}")
        return value

    def choice(self, key: str, options: Sequence[str], default: Any = ...) -> str:
        value = self.get(key, default)
        if value not in options:
            raise self._fail(key, f"must be one of {', '.join(options)}, not {value!r}")
        return str(value)

    def child(self, key: str, default: Any = ...) -> _Reader:
        return _Reader(self.where, self.get(key, default), f"{self.prefix}{key}.")

    def triple(self, key: str, default: Any = ...) -> tuple[float, float, float]:
        value = self.get(key, default)
        if (
            not isinstance(value, list | tuple)
            or len(value) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise self._fail(key, "must be a list of 3 numbers")
        return (float(value[0]), float(value[1]), float(value[2]))


def onnx_entry(file: str, sha256: str, size: int) -> dict[str, Any]:
    """The manifest's ``onnx`` object: the exported network, sealed by its own checksum."""
    return {
        "file": file,
        "sha256": sha256,
        "bytes": size,
        "outputs": list(ONNX_OUTPUTS),
        "initialiser_dtype": "float16",
    }


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def parse_manifest(
    data: Any, where: str = MANIFEST_NAME, *, check_seal: bool = True
) -> ModelManifest:
    """Validate a manifest's JSON object; raise ``ModelBundleError`` naming the bad field."""
    r = _Reader(where, data)
    schema = r.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise ModelBundleError(
            f"{where} has schema version {schema!r}; this rcm-viewer reads version "
            f"{SCHEMA_VERSION} (update rcm-viewer or re-export the model)"
        )
    if check_seal:
        seal = data.get("manifest_sha256")
        if not isinstance(seal, str):
            raise ModelBundleError(f"{where} has no manifest_sha256 seal: re-export the bundle")
        if seal != manifest_seal(data):
            raise ModelBundleError(
                f"{where} was modified after the bundle was exported (its checksum does not "
                "match): re-export the bundle instead of editing it"
            )

    classes = r.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise ModelBundleError(f"{where}: 'classes' must list at least 2 classes")
    class_ids, class_names = [], []
    for index, item in enumerate(classes):
        c = _Reader(where, item, f"classes[{index}].")
        class_ids.append(c.text("id"))
        class_names.append(c.text("display_name"))
    if len(set(class_ids)) != len(class_ids):
        raise ModelBundleError(f"{where}: class ids must be unique")

    inp = r.child("input")
    tile_px = inp.integer("tile_px", low=NETWORK_STRIDE_PX, high=4096)
    stride = inp.integer("tile_stride_px", tile_px, low=NETWORK_STRIDE_PX, high=tile_px)
    for key, value in (("tile_px", tile_px), ("tile_stride_px", stride)):
        if value % NETWORK_STRIDE_PX:
            raise ModelBundleError(
                f"{where}: 'input.{key}' must be a multiple of {NETWORK_STRIDE_PX}, not {value}"
            )
    norm = inp.child("normalisation")
    std = norm.triple("std")
    if min(std) <= 0:
        raise ModelBundleError(f"{where}: 'input.normalisation.std' must be positive")

    agg = r.child("aggregation")
    cal = r.child("calibration")
    weights = r.child("weights")
    weights_sha = weights.text("sha256").lower()
    card = r.child("model_card")
    card_sha = card.text("sha256").lower()
    for label, digest in (("weights.sha256", weights_sha), ("model_card.sha256", card_sha)):
        if not _is_sha256(digest):
            raise ModelBundleError(f"{where}: '{label}' is not a SHA-256 hex digest")
    training = r.get("training")
    if not isinstance(training, dict) or not isinstance(training.get("synthetic"), bool):
        raise ModelBundleError(f"{where}: 'training.synthetic' must be true or false")
    weights_file = weights.text("file")
    card_file = card.text("file")
    onnx_file, onnx_sha, onnx_bytes = "", "", 0
    if "onnx" in data:
        onnx = r.child("onnx")
        onnx_file = onnx.text("file")
        onnx_sha = onnx.text("sha256").lower()
        onnx_bytes = onnx.integer("bytes", low=1, high=MAX_NETWORK_BYTES)
        if not _is_sha256(onnx_sha):
            raise ModelBundleError(f"{where}: 'onnx.sha256' is not a SHA-256 hex digest")
    for label, name in (
        ("weights.file", weights_file),
        ("model_card.file", card_file),
        *((("onnx.file", onnx_file),) if onnx_file else ()),
    ):
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ModelBundleError(f"{where}: '{label}' must be a file name inside the bundle")

    return ModelManifest(
        schema_version=SCHEMA_VERSION,
        name=r.text("name"),
        version=r.text("version"),
        architecture=r.choice("architecture", ARCHITECTURES),
        class_ids=tuple(class_ids),
        class_names=tuple(class_names),
        tile_px=tile_px,
        tile_stride_px=stride,
        pixel_size_um=inp.number("pixel_size_um", low=0.05, high=50.0),
        channels=inp.choice("channels", tuple(CHANNEL_RULES)),
        intensity_scaling=inp.choice("intensity_scaling", tuple(INTENSITY_RULES)),
        mean=norm.triple("mean"),
        std=std,
        min_tissue_fraction=inp.number("min_tissue_fraction", 0.5, low=0.0, high=1.0),
        aggregation=agg.choice("rule", tuple(AGGREGATION_RULES)),
        temperature=cal.number("temperature", low=1e-3, high=1e3),
        calibration_note=str(cal.get("note", "")),
        weights_file=weights_file,
        weights_sha256=weights_sha,
        weights_format=weights.choice("format", tuple(WEIGHTS_FORMATS)),
        weights_dtype=weights.choice("dtype", ("float32", "float16")),
        model_card_file=card_file,
        model_card_sha256=card_sha,
        synthetic=bool(training["synthetic"]),
        intended_use=r.text("intended_use"),
        created=str(r.get("created", "")),
        training={k: v for k, v in training.items() if k != "synthetic"},
        onnx_file=onnx_file,
        onnx_sha256=onnx_sha,
        onnx_bytes=onnx_bytes,
        **_parse_ood(r, where),
    )


def _parse_ood(r: _Reader, where: str) -> dict[str, str]:
    """The optional ``ood`` entry: {file, sha256} of the sealed OOD statistics."""
    if "ood" not in r.data:
        return {}
    ood = r.child("ood")
    name, digest = ood.text("file"), ood.text("sha256").lower()
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ModelBundleError(f"{where}: 'ood.file' must be a file name inside the bundle")
    if not _is_sha256(digest):
        raise ModelBundleError(f"{where}: 'ood.sha256' is not a SHA-256 hex digest")
    return {"ood_file": name, "ood_sha256": digest}


def build_manifest(
    fields: Mapping[str, Any],
    *,
    weights_file: str,
    weights_sha256: str,
    weights_format: str,
    weights_dtype: str,
    model_card_sha256: str = "0" * 64,
) -> ModelManifest:
    """Turn the friendly keyword form that ``save_bundle`` takes into a validated manifest.

    ``fields`` keys: ``name``, ``version``, ``pixel_size_um`` and ``training`` (a dict with
    at least ``synthetic`` and ``data``) are required; ``classes`` (ids, ``(id, name)``
    pairs or an ``{id: name}`` mapping; default the three lesion classes), ``architecture``,
    ``tile_px``, ``tile_stride_px``, ``channels``, ``intensity_scaling``, ``mean``, ``std``,
    ``min_tissue_fraction``, ``aggregation``, ``temperature``, ``calibration_note``,
    ``intended_use`` have defaults.
    """
    known = {
        "name",
        "version",
        "architecture",
        "classes",
        "tile_px",
        "tile_stride_px",
        "pixel_size_um",
        "channels",
        "intensity_scaling",
        "mean",
        "std",
        "min_tissue_fraction",
        "aggregation",
        "temperature",
        "calibration_note",
        "training",
        "intended_use",
        "created",
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelBundleError(f"unknown manifest field(s): {', '.join(unknown)}")
    classes = fields.get("classes", ("melanoma", "bcc", "naevus"))
    if isinstance(classes, Mapping):
        pairs = [(str(k), str(v)) for k, v in classes.items()]
    else:
        pairs = []
        for item in classes:
            if isinstance(item, str):
                pairs.append((item, _default_display_name(item)))
            else:
                cid, cname = item
                pairs.append((str(cid), str(cname)))
    training = dict(fields.get("training") or {})
    if "data" not in training:
        raise ModelBundleError("manifest field 'training' must describe the training 'data'")
    tile_px = int(fields.get("tile_px", 224))
    data = {
        "schema_version": SCHEMA_VERSION,
        "name": fields.get("name"),
        "version": fields.get("version"),
        "architecture": fields.get("architecture", DEFAULT_ARCHITECTURE),
        "classes": [{"id": cid, "display_name": cname} for cid, cname in pairs],
        "input": {
            "tile_px": tile_px,
            "tile_stride_px": int(fields.get("tile_stride_px", tile_px)),
            "pixel_size_um": fields.get("pixel_size_um"),
            "channels": fields.get("channels", "grayscale_to_rgb"),
            "intensity_scaling": fields.get("intensity_scaling", "robust_white"),
            "normalisation": {
                "mean": list(fields.get("mean", IMAGENET_MEAN)),
                "std": list(fields.get("std", IMAGENET_STD)),
            },
            "min_tissue_fraction": fields.get("min_tissue_fraction", 0.5),
        },
        "aggregation": {"rule": fields.get("aggregation", "mean_logits")},
        "calibration": {
            "temperature": fields.get("temperature", 1.0),
            "note": fields.get("calibration_note", "not calibrated (temperature 1)"),
        },
        "weights": {
            "file": weights_file,
            "sha256": weights_sha256,
            "format": weights_format,
            "dtype": weights_dtype,
        },
        "model_card": {"file": MODEL_CARD_NAME, "sha256": model_card_sha256},
        "training": training,
        "intended_use": fields.get("intended_use", DEFAULT_INTENDED_USE),
        "created": fields.get("created") or datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    return parse_manifest(data, "manifest fields", check_seal=False)


def _default_display_name(class_id: str) -> str:
    names = {"melanoma": "Melanoma", "bcc": "Basal cell carcinoma", "naevus": "Benign naevus"}
    return names.get(class_id, class_id.replace("_", " ").capitalize())
