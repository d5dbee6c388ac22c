"""Whole-mosaic classification and on-demand saliency maps.

``classify_mosaic`` looks at tissue near native resolution, as the published method and
the BCC-at-1000-px result suggest (shared/DOMAIN.md), instead of shrinking the mosaic:

1. the mosaic is resampled to the model's µm/px region by region: the pyramid level just
   sharper than needed is read and the rest of the factor is done by antialiased bilinear
   resampling, one run of adjacent tiles at a time (never the whole mosaic in float32);
2. a tissue mask from a low-resolution level (tissue.py) skips the black unscanned
   margin, blank and saturated areas;
3. tiles of ``tile_px`` at ``tile_stride_px`` go through the ResNet in batches, run by
   a backend chosen per run (backends.py: torch, or OpenVINO, which needs no torch);
   every backend returns logits and layer-4 features, and the class activation map
   (Grad-CAM of layer 4, see network.py) is computed here from those features, so the
   heatmap costs no extra pass and is the same code whatever ran the network;
4. tile logits are aggregated by the manifest's rule and calibrated by its temperature.

This module imports no torch: preprocessing and resampling are numpy (the resampling is
torch's antialiased bilinear ``interpolate``, reproduced); only ``explain_region`` (the
pytorch-grad-cam methods) and ``to_model_input`` (training) need torch.

Cancelling raises ``ClassificationCancelled`` carrying the partial result: a cancelled
run must never be mistaken for a result by a batch, but the viewer may still show what
was computed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rcm_viewer.errors import InferenceError
from rcm_viewer.inference import ood as ood_scoring
from rcm_viewer.inference.backends import load_backend
from rcm_viewer.inference.bundle import ModelBundle
from rcm_viewer.inference.manifest import NETWORK_STRIDE_PX, ModelManifest
from rcm_viewer.inference.prediction import (
    FLAG_CANCELLED,
    FLAG_PARTIAL,
    FLAG_PIXEL_SIZE_CONFIRMED,
    FLAG_PIXEL_SIZE_GIVEN,
    FLAG_RGB_CONVERTED,
    FLAG_SYNTHETIC_MODEL,
    FLAG_UPSAMPLED,
    STATUS_NO_TISSUE,
    STATUS_OK,
    ClassificationCancelled,
    Prediction,
    RegionExplanation,
)
from rcm_viewer.inference.tissue import TissueMask, tissue_mask, to_gray, white_point
from rcm_viewer.mosaic import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM, Mosaic

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: What ``explain_region`` says where torch is not installed (one line for the window).
EXPLAIN_NEEDS_TORCH = (
    "Explain visible region needs PyTorch, which is not installed in this app; the class "
    "activation map of the classification is still shown."
)

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]
PartialCallback = Callable[[Prediction], None]

#: Adjacent tissue tiles read and resampled together (fewer, larger reads).
MAX_RUN_TILES = 16

#: pytorch-grad-cam methods offered by ``explain_region`` (name -> class name).
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class ModelGeometry:
    """How mosaic pixels map to model pixels (public: training crops use the same rule)."""

    mosaic_um: float
    model_um: float
    #: level-0 pixels per model pixel
    factor: float
    level: int
    #: pixels of ``level`` per model pixel
    level_per_model: float
    model_width: int
    model_height: int

    @classmethod
    def of(cls, mosaic: Mosaic, mosaic_um: float, model_um: float) -> ModelGeometry:
        factor = model_um / mosaic_um
        level = mosaic.best_level(max(factor, 1.0))
        per_model = factor / mosaic.info.levels[level].downsample
        if abs(per_model - round(per_model)) < 1e-6:
            per_model = float(round(per_model))
        info = mosaic.info
        return cls(
            mosaic_um,
            model_um,
            factor,
            level,
            per_model,
            max(1, math.ceil(info.width / factor - 1e-6)),
            max(1, math.ceil(info.height / factor - 1e-6)),
        )


def read_model_pixels(
    mosaic: Mosaic,
    level: int,
    level_per_model: float,
    x: int,
    y: int,
    width: int,
    height: int,
    white: float,
) -> tuple[np.ndarray, bool]:
    """A model-resolution rectangle of the mosaic as float32 gray in 0-1.

    ``x, y, width, height`` are model pixels; ``level_per_model`` level pixels make one
    model pixel. Reads only the footprint (plus a margin for the interpolation kernel);
    outside the mosaic is 0 (black). Returns the pixels and whether colour was converted.
    """
    r = level_per_model
    if r == 1.0:
        region, converted = to_gray(mosaic.read_region(level, x, y, width, height))
        return np.clip(region / white, 0.0, 1.0, dtype=np.float32), converted
    if r == int(r):
        # Integer factor: a k x k mean, as pyramid levels are built, so a flat file and its
        # pyramidal twin give the model the same pixels.
        k = int(r)
        region, converted = to_gray(mosaic.read_region(level, x * k, y * k, width * k, height * k))
        region = region.reshape(height, k, width, k).mean(axis=(1, 3))
        return np.clip(region / white, 0.0, 1.0, dtype=np.float32), converted
    margin = math.ceil(r) + 1
    lx0, ly0 = math.floor(x * r) - margin, math.floor(y * r) - margin
    lx1, ly1 = math.ceil((x + width) * r) + margin, math.ceil((y + height) * r) + margin
    region, converted = to_gray(mosaic.read_region(level, lx0, ly0, lx1 - lx0, ly1 - ly0))
    scaled = resample_bilinear(region, 1.0 / r)
    ox, oy = round(x - lx0 / r), round(y - ly0 / r)
    out = np.zeros((height, width), dtype=np.float32)
    part = scaled[oy : oy + height, ox : ox + width]
    out[: part.shape[0], : part.shape[1]] = part
    return np.clip(out / white, 0.0, 1.0, dtype=np.float32), converted


def _bilinear_weights(
    in_size: int, scale_factor: float, antialias: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (out, taps) and weights (out, taps) of torch's bilinear resampling.

    Mirrors ``F.interpolate(mode="bilinear", align_corners=False, antialias=...,
    recompute_scale_factor=False)`` along one axis (aten UpSampleKernel: the triangle
    filter widened by the scale when shrinking, the PIL rule).
    """
    out_size = int(math.floor(in_size * scale_factor))
    scale = 1.0 / scale_factor  # input pixels per output pixel
    centres = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    if antialias:
        support = scale if scale >= 1.0 else 1.0
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        lo = np.maximum(np.trunc(centres - support + 0.5), 0).astype(np.int64)
        hi = np.minimum(np.trunc(centres + support + 0.5), in_size).astype(np.int64)
        taps = max(int((hi - lo).max(initial=1)), 1)
        index = lo[:, None] + np.arange(taps)[None, :]
        weight = np.maximum(0.0, 1.0 - np.abs((index - centres[:, None] + 0.5) * invscale))
        weight[index >= hi[:, None]] = 0.0
        total = weight.sum(axis=1, keepdims=True)
        weight = np.divide(weight, total, out=np.zeros_like(weight), where=total != 0)
        return np.minimum(index, in_size - 1), weight.astype(np.float32)
    source = np.maximum(centres - 0.5, 0.0)
    i0 = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = (source - i0).astype(np.float32)
    return np.stack([i0, i1], axis=1), np.stack([1 - lam, lam], axis=1)


def resample_bilinear(image: np.ndarray, scale_factor: float) -> np.ndarray:
    """A 2-D float image resized by ``scale_factor`` (antialiased when shrinking), in numpy.

    The same pixels as torch's ``F.interpolate(image[None, None], scale_factor=...,
    mode="bilinear", align_corners=False, antialias=scale_factor < 1,
    recompute_scale_factor=False)`` (tested to 1e-5), without torch: separable, a few taps
    per output pixel.
    """
    antialias = scale_factor < 1.0
    image = np.asarray(image, dtype=np.float32)
    rows_i, rows_w = _bilinear_weights(image.shape[0], scale_factor, antialias)
    cols_i, cols_w = _bilinear_weights(image.shape[1], scale_factor, antialias)
    tall = np.einsum("otw,ot->ow", image[rows_i], rows_w)
    return np.einsum("hot,ot->ho", tall[:, cols_i], cols_w).astype(np.float32)


def _resolve_pixel_size(mosaic: Mosaic, pixel_size_um: float | None) -> tuple[float, list[str]]:
    info = mosaic.info
    flags: list[str] = []
    if pixel_size_um is not None:
        if not MIN_PIXEL_SIZE_UM <= float(pixel_size_um) <= MAX_PIXEL_SIZE_UM:
            raise InferenceError(
                f"pixel size {pixel_size_um:g} µm/px is not plausible for a confocal mosaic "
                f"({MIN_PIXEL_SIZE_UM:g}-{MAX_PIXEL_SIZE_UM:g} µm/px)"
            )
        note = FLAG_PIXEL_SIZE_GIVEN
        if info.pixel_size_um is not None and abs(info.pixel_size_um - pixel_size_um) > 1e-6:
            note += f" ({pixel_size_um:g} µm/px; the file says {info.pixel_size_um:g})"
        flags.append(note)
        return float(pixel_size_um), flags
    if info.pixel_size_um is None:
        raise InferenceError(
            f"{info.path.name}: the pixel size is unknown: confirm it (--pixel-size-um) "
            "before classifying"
        )
    if info.pixel_size_source == "user":
        flags.append(FLAG_PIXEL_SIZE_CONFIRMED)
    return float(info.pixel_size_um), flags


def model_input(tiles: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """(B, H, W) gray in 0-1 -> (B, 3, H, W) float32 normalised as the manifest says."""
    mean = np.asarray(manifest.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(manifest.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return ((np.asarray(tiles, dtype=np.float32)[:, None] - mean) / std).astype(np.float32)


def to_model_input(
    tiles: np.ndarray, manifest: ModelManifest, device: torch.device
) -> torch.Tensor:
    """``model_input`` as a tensor on ``device`` (training and explain; imports torch)."""
    import torch

    return torch.from_numpy(model_input(tiles, manifest)).to(device)


def class_activation_maps(features: np.ndarray, fc_weight: np.ndarray) -> np.ndarray:
    """(B, K, h, w) layer-4 features, (C, K) fc weight -> (B, C, h, w) maps (no fc bias)."""
    return np.einsum("bkhw,ck->bchw", features, fc_weight, optimize=True)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from logits (the last axis), divided by the calibration temperature."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- classify


@dataclass
class _Tile:
    column: int
    row: int


class _Accumulator:
    """Tile results so far, turned into a ``Prediction`` (final or partial) on demand."""

    def __init__(
        self,
        bundle: ModelBundle,
        geometry: ModelGeometry,
        columns: int,
        rows: int,
        base: dict[str, object],
    ) -> None:
        m = bundle.manifest
        self.manifest, self.geometry, self.base = m, geometry, base
        cells_per_tile = m.tile_px // NETWORK_STRIDE_PX
        step = m.tile_stride_px // NETWORK_STRIDE_PX
        self.step = step
        grid_h = (rows - 1) * step + cells_per_tile
        grid_w = (columns - 1) * step + cells_per_tile
        self.cam_sum = np.zeros((m.n_classes, grid_h, grid_w), dtype=np.float64)
        self.cam_count = np.zeros((grid_h, grid_w), dtype=np.int32)
        self.logits: list[np.ndarray] = []
        self.boxes: list[tuple[int, int, int, int]] = []
        self.out_h = math.ceil(geometry.model_height / NETWORK_STRIDE_PX)
        self.out_w = math.ceil(geometry.model_width / NETWORK_STRIDE_PX)
        # OOD (inference/ood.py): pooled layer-4 features and heatmap cells of each tile
        self.ood_model = bundle.ood_model()
        self.pooled: list[np.ndarray] = []
        self.cells: list[tuple[int, int, int, int]] = []
        self.keep_features = False

    def add_pooled(self, tiles: list[_Tile], pooled: np.ndarray) -> None:
        side = self.manifest.tile_px // NETWORK_STRIDE_PX
        for tile, vector in zip(tiles, pooled, strict=True):
            self.pooled.append(np.asarray(vector, dtype=np.float32))
            self.cells.append((tile.row * self.step, tile.column * self.step, side, side))

    def ood_fields(self) -> dict[str, object]:
        kept = (
            {"tile_features": np.stack(self.pooled)} if self.keep_features and self.pooled else {}
        )
        if self.ood_model is None or not self.pooled:
            return {**kept, "ood_note": ood_scoring.NO_OOD_NOTE if self.ood_model is None else ""}
            return {"ood_note": ood_scoring.NO_OOD_NOTE if self.ood_model is None else ""}
        result = self.ood_model.assess(np.stack(self.pooled))
        return {
            **kept,
            "ood_score": result.mosaic_score,
            "in_distribution": result.in_distribution,
            "ood_tile_share": result.tile_share,
            "tile_ood_scores": result.tile_scores,
            "ood_heatmap": ood_scoring.ood_heatmap(
                result.tile_scores, self.cells, (self.out_h, self.out_w)
            ),
        }

    def add(self, tiles: list[_Tile], logits: np.ndarray, cams: np.ndarray) -> None:
        m, f = self.manifest, self.geometry.factor
        size = round(m.tile_px * f)
        for tile, tile_logits, cam in zip(tiles, logits, cams, strict=True):
            cy, cx = tile.row * self.step, tile.column * self.step
            h, w = cam.shape[1:]
            self.cam_sum[:, cy : cy + h, cx : cx + w] += cam
            self.cam_count[cy : cy + h, cx : cx + w] += 1
            self.logits.append(tile_logits)
            self.boxes.append(
                (
                    round(tile.column * m.tile_stride_px * f),
                    round(tile.row * m.tile_stride_px * f),
                    size,
                    size,
                )
            )

    def prediction(self, *, partial: bool, flags: list[str], seconds: float) -> Prediction:
        m = self.manifest
        logits = np.asarray(self.logits, dtype=np.float64).reshape(-1, m.n_classes)
        tile_probabilities = softmax(logits, m.temperature)
        if m.aggregation == "mean_probabilities":
            probabilities = tile_probabilities.mean(axis=0)
        else:
            probabilities = softmax(logits.mean(axis=0), m.temperature)
        count = self.cam_count[: self.out_h, : self.out_w]
        cam = np.maximum(self.cam_sum[:, : self.out_h, : self.out_w], 0.0)
        cam = np.divide(cam, count, out=np.zeros_like(cam), where=count > 0)
        scale = float(cam.max()) if cam.size else 0.0
        heatmap = (cam / scale if scale > 0 else cam).astype(np.float32)
        top = int(np.argmax(probabilities))
        return Prediction(
            status=STATUS_OK,
            class_ids=m.class_ids,
            class_names=m.class_names,
            probabilities=tuple(float(p) for p in probabilities),
            top_class=m.class_ids[top],
            logits=tuple(float(v) for v in logits.mean(axis=0)),
            tile_boxes=np.asarray(self.boxes, dtype=np.int64).reshape(-1, 4),
            tile_probabilities=tile_probabilities.astype(np.float32),
            heatmap=heatmap,
            heatmap_cell_px=NETWORK_STRIDE_PX * self.geometry.factor,
            heatmap_scale=scale,
            n_tiles=len(self.logits),
            seconds=seconds,
            flags=tuple(flags),
            partial=partial,
            **self.ood_fields(),  # type: ignore[arg-type]
            **self.base,  # type: ignore[arg-type]
        )


def _tile_grid(length: int, tile_px: int, stride: int) -> int:
    return 1 if length <= tile_px else math.ceil((length - tile_px) / stride) + 1


def _runs(columns: list[int]) -> Iterator[list[int]]:
    """Group sorted tile columns into runs of adjacent tiles (at most ``MAX_RUN_TILES``)."""
    run: list[int] = []
    for column in columns:
        if run and (column != run[-1] + 1 or len(run) >= MAX_RUN_TILES):
            yield run
            run = []
        run.append(column)
    if run:
        yield run


def classify_mosaic(
    mosaic: Mosaic,
    bundle: ModelBundle,
    *,
    pixel_size_um: float | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    on_partial: PartialCallback | None = None,
    device: str = "auto",
    batch_size: int = 16,
    backend: str = "auto",
    keep_features: bool = False,
) -> Prediction:
    """Classify a whole mosaic; see the module docstring for the method.

    ``backend`` is one of ``backends.BACKEND_CHOICES`` (``auto``: the fastest installed
    for the device); the prediction records which one ran.

    ``pixel_size_um`` overrides the file's (the user confirmed it); without either an
    ``InferenceError`` asks for it, since a wrong scale silently changes what the model
    sees. ``progress(tiles_done, tiles_total)`` counts tissue tiles, from (0, total) up to
    (total, total). ``cancel()`` is polled between batches; when it returns True,
    ``ClassificationCancelled`` is raised with the partial result. ``on_partial`` receives
    a partial ``Prediction`` after each batch, so a heatmap can fill in while it runs.
    A mosaic without tissue returns status ``STATUS_NO_TISSUE`` and no probabilities.
    ``keep_features`` puts the pooled layer-4 features on ``Prediction.tile_features``
    (fitting the OOD statistics, inference/ood_fit.py).
    """
    started = time.perf_counter()
    manifest = bundle.manifest
    if manifest.training.get("input") == "whole_mosaic":
        raise InferenceError(
            f"{manifest.name} was trained on whole mosaics shrunk to one image (the published "
            "baseline); it cannot classify tiles: use rcm-viewer evaluate for it"
        )
    mosaic_um, flags = _resolve_pixel_size(mosaic, pixel_size_um)
    if batch_size < 1:
        raise InferenceError("batch size must be at least 1")
    runner = load_backend(bundle, backend, device, batch_size=batch_size)
    geometry = ModelGeometry.of(mosaic, mosaic_um, manifest.pixel_size_um)
    if geometry.factor < 0.9:
        flags.append(FLAG_UPSAMPLED)
    if mosaic.info.channels >= 3:
        flags.append(FLAG_RGB_CONVERTED)
    if manifest.synthetic:
        flags.append(FLAG_SYNTHETIC_MODEL)

    tile_px, stride, f = manifest.tile_px, manifest.tile_stride_px, geometry.factor
    columns = _tile_grid(geometry.model_width, tile_px, stride)
    rows = _tile_grid(geometry.model_height, tile_px, stride)
    white = white_point(mosaic, manifest.intensity_scaling)
    mask = tissue_mask(mosaic, mosaic_um, white_point(mosaic, "robust_white"))
    tissue_rows = _tissue_tiles(
        mask, columns, rows, tile_px, stride, f, manifest.min_tissue_fraction
    )
    total = sum(len(c) for c in tissue_rows.values())
    base: dict[str, object] = {
        "model_name": manifest.name,
        "model_version": manifest.version,
        "weights_sha256": manifest.weights_sha256,
        "model_synthetic": manifest.synthetic,
        "model_trust": bundle.trust,
        "pixel_size_um": mosaic_um,
        "model_pixel_size_um": manifest.pixel_size_um,
        "n_tiles_grid": columns * rows,
        "device": runner.device,
        "backend": runner.name,
        "mosaic_path": str(mosaic.info.path),
        "mosaic_size": (mosaic.info.width, mosaic.info.height),
    }
    if progress is not None:
        progress(0, total)
    if total == 0:
        return Prediction(
            status=STATUS_NO_TISSUE,
            class_ids=manifest.class_ids,
            class_names=manifest.class_names,
            seconds=time.perf_counter() - started,
            flags=tuple(flags),
            **base,  # type: ignore[arg-type]
        )

    accumulator = _Accumulator(bundle, geometry, columns, rows, base)
    accumulator.keep_features = keep_features
    batch = np.zeros((batch_size, tile_px, tile_px), dtype=np.float32)
    pending: list[_Tile] = []
    done = 0
    converted = False

    def cancelled() -> ClassificationCancelled:
        partial = None
        if done:
            partial = accumulator.prediction(
                partial=True,
                flags=[*flags, FLAG_CANCELLED],
                seconds=time.perf_counter() - started,
            )
        return ClassificationCancelled(partial)

    def run_batch() -> None:
        nonlocal done
        if cancel is not None and cancel():
            raise cancelled()
        n = len(pending)
        logits, features = runner.run(model_input(batch[:n], manifest))
        accumulator.add_pooled(pending, features.mean(axis=(2, 3)))  # OOD: pooled layer 4
        accumulator.add(pending, logits, class_activation_maps(features, runner.fc_weight))
        pending.clear()
        done += n
        if progress is not None:
            progress(done, total)
        if on_partial is not None and done < total:
            on_partial(
                accumulator.prediction(
                    partial=True,
                    flags=[*flags, FLAG_PARTIAL],
                    seconds=time.perf_counter() - started,
                )
            )

    for row in sorted(tissue_rows):
        for run in _runs(tissue_rows[row]):
            if cancel is not None and cancel():
                raise cancelled()
            x0, y0 = run[0] * stride, row * stride
            width = (run[-1] - run[0]) * stride + tile_px
            pixels, was_colour = read_model_pixels(
                mosaic, geometry.level, geometry.level_per_model, x0, y0, width, tile_px, white
            )
            converted |= was_colour
            for column in run:
                offset = (column - run[0]) * stride
                batch[len(pending)] = pixels[:, offset : offset + tile_px]
                pending.append(_Tile(column, row))
                if len(pending) == batch_size:
                    run_batch()
    if pending:
        run_batch()
    if converted and FLAG_RGB_CONVERTED not in flags:
        flags.append(FLAG_RGB_CONVERTED)
    flags.extend(damage_flags(mosaic, verify=True, cancel=cancel))
    return accumulator.prediction(partial=False, flags=flags, seconds=time.perf_counter() - started)


def damage_flags(
    mosaic: Mosaic, *, verify: bool = False, cancel: CancelCallback | None = None, limit: int = 3
) -> list[str]:
    """Issue 16 hook: damaged tiles anywhere in the file are flagged on the result.

    ``verify`` decodes every stored tile once (``Mosaic.check_damage``, strict decoders,
    one tile at a time), so damaged full-resolution tiles are found even when the
    classifier read only an intact reduced level; it costs a fraction of the classification
    itself. Without it, only damage already met (viewer, earlier reads) is reported.
    """
    if verify and hasattr(mosaic, "check_damage"):
        mosaic.check_damage(cancel=cancel)
    report = mosaic.damage_report() if hasattr(mosaic, "damage_report") else []
    flags = [f"damaged image data: {line}" for line in report[:limit]]
    if len(report) > limit:
        flags.append(f"damaged image data: {len(report) - limit} more damaged tiles")
    return flags


def _tissue_tiles(
    mask: TissueMask,
    columns: int,
    rows: int,
    tile_px: int,
    stride: int,
    factor: float,
    min_fraction: float,
) -> dict[int, list[int]]:
    """Tile row -> sorted columns of the tiles with enough tissue to classify."""
    chosen: dict[int, list[int]] = {}
    if not mask.any:
        return chosen
    for row in range(rows):
        y0 = row * stride * factor
        for column in range(columns):
            x0 = column * stride * factor
            fraction = mask.fraction(x0, y0, x0 + tile_px * factor, y0 + tile_px * factor)
            if fraction > 0 and fraction >= min_fraction:
                chosen.setdefault(row, []).append(column)
    return chosen


# ----------------------------------------------------------------------------- explain


def explain_region(
    mosaic: Mosaic,
    bundle: ModelBundle,
    level0_rect: tuple[int, int, int, int],
    method: str = "gradcam",
    target_class: str | None = None,
    *,
    layer: str = "layer4",
    pixel_size_um: float | None = None,
    device: str = "auto",
    max_side_px: int = 1024,
) -> RegionExplanation:
    """A pytorch-grad-cam saliency map of one rectangle (x, y, w, h in level-0 pixels).

    The region is resampled to the model's µm/px and fed as one input (a ResNet takes any
    size), so the map has no tile seams; regions smaller than a tile grow to one tile
    around their centre. ``target_class`` defaults to the region's most likely class.
    Methods: see ``CAM_METHODS``; Score-CAM and Ablation-CAM run hundreds of forwards
    (minutes on a CPU). Grad-CAM is the default: the others are second opinions, and with
    a global-average-pool + linear head Grad-CAM++ weights every channel whose class
    weight is positive almost alike, so its map can light up tissue typical of another
    class (seen on the test model: bcc map bright over naevus); use ``layer="layer3"``
    for a map twice as fine. Regions above ``max_side_px`` model pixels a side are refused
    rather than shrunk, since shrinking changes what the model sees.
    """
    try:
        import pytorch_grad_cam
        import torch
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from rcm_viewer.inference.network import load_network, resolve_device, target_layer
    except ImportError:
        raise InferenceError(EXPLAIN_NEEDS_TORCH) from None

    started = time.perf_counter()
    manifest = bundle.manifest
    if method not in CAM_METHODS:
        raise InferenceError(f"unknown method {method!r}: use {', '.join(CAM_METHODS)}")
    if target_class is not None and target_class not in manifest.class_ids:
        raise InferenceError(f"unknown class {target_class!r}: use {', '.join(manifest.class_ids)}")
    mosaic_um, flags = _resolve_pixel_size(mosaic, pixel_size_um)
    torch_device = resolve_device(device)
    geometry = ModelGeometry.of(mosaic, mosaic_um, manifest.pixel_size_um)
    f = geometry.factor
    x, y, w, h = (float(v) for v in level0_rect)
    if w <= 0 or h <= 0:
        raise InferenceError("the region to explain is empty")
    width = max(manifest.tile_px, math.ceil(w / f))
    height = max(manifest.tile_px, math.ceil(h / f))
    if max(width, height) > max_side_px:
        side_mm = max_side_px * manifest.pixel_size_um / 1000
        raise InferenceError(
            f"the region is too large to explain at once: choose at most {side_mm:.2g} mm a side"
        )
    mx = round((x + w / 2) / f - width / 2)
    my = round((y + h / 2) / f - height / 2)
    white = white_point(mosaic, manifest.intensity_scaling)
    pixels, converted = read_model_pixels(
        mosaic, geometry.level, geometry.level_per_model, mx, my, width, height, white
    )
    if converted:
        flags.append(FLAG_RGB_CONVERTED)
    network = load_network(bundle, torch_device, purpose="explain")
    inputs = to_model_input(pixels[None], manifest, torch_device)
    with torch.inference_mode():
        logits = network(inputs)[0].float().cpu().numpy()
    index = (
        int(np.argmax(logits)) if target_class is None else manifest.class_ids.index(target_class)
    )
    cam_type = getattr(pytorch_grad_cam, CAM_METHODS[method])
    heatmap = None
    # Grad-CAM needs a graph: fails under no_grad/inference_mode (grad-cam #381, #473).
    # The context manager releases its hooks (leaks otherwise: grad-cam #132, #195).
    with (
        torch.enable_grad(),
        cam_type(model=network, target_layers=[target_layer(network, layer)]) as cam,
    ):
        if hasattr(cam, "batch_size"):
            cam.batch_size = 16
        heatmap = cam(input_tensor=inputs.clone(), targets=[ClassifierOutputTarget(index)])[0]
    if heatmap is None:  # grad-cam's __exit__ swallows IndexError
        raise InferenceError(f"{method} failed on this region (details in the log)")
    return RegionExplanation(
        rect=(round(mx * f), round(my * f), round(width * f), round(height * f)),
        method=method,
        layer=layer,
        target_class=manifest.class_ids[index],
        heatmap=np.asarray(heatmap, dtype=np.float32),
        pixel_px=f,
        class_ids=manifest.class_ids,
        probabilities=tuple(float(p) for p in softmax(logits, manifest.temperature)),
        seconds=time.perf_counter() - started,
        flags=tuple(flags),
    )
