"""The training loop: the published method, tiled at the model's µm/px, plus its baseline.

One function, ``train(config)``, used by ``rcm-viewer train`` and by the tests. Choices
and why:

- Class-weighted cross-entropy (inverse class frequency in the training split): clinic
  cohorts are unbalanced and the rare class must not be ignored.
- Validation at mosaic level through ``classify_mosaic`` itself (a temporary bundle each
  epoch): the number early stopping watches is the number the app will produce, tiling,
  tissue mask and aggregation included. The baseline (``whole_mosaic``) has its own
  one-image-per-mosaic path.
- Early stopping on the validation loss (mosaic-level NLL); the best epoch is exported.
- Temperature scaling fitted on the validation split's mosaic logits (LBFGS on the NLL,
  Guo et al. 2017), stored in the manifest, so "80%" means about 80%.
- A checkpoint after every epoch (weights, optimizer, scheduler, early-stopping state,
  history; loadable with ``weights_only=True``); ``resume`` continues from it and, since
  every crop is a function of (seed, epoch, position), repeats an uninterrupted run.
- Distributed: under ``torchrun`` each of W processes takes an interleaved 1/W of every
  global batch (a ``DistributedSampler`` over the epoch's positions) and DDP averages the
  gradients. The loss of a share is scaled so the average equals the single-process loss
  of the whole batch; with ``accumulation_steps`` = W a single process runs the same
  shares one after the other, so both compute the same updates (BatchNorm sees the same
  sub-batches). Only BatchNorm's running statistics differ (DDP keeps rank 0's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn
from torch.utils.data import DataLoader

from rcm_viewer.errors import MosaicError, TrainingError
from rcm_viewer.fileio import atomic_write_with
from rcm_viewer.inference import load_bundle, save_bundle
from rcm_viewer.inference.engine import classify_mosaic, softmax, to_model_input
from rcm_viewer.inference.manifest import (
    ARCHITECTURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NETWORK_STRIDE_PX,
    ModelManifest,
    build_manifest,
)
from rcm_viewer.inference.network import build_network, clear_network_cache
from rcm_viewer.inference.prediction import STATUS_OK
from rcm_viewer.inference.tissue import white_point
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.training.crops import (
    BRIGHTNESS_RANGE,
    CONTRAST_RANGE,
    ROTATION_DEGREES,
    SCALE_RANGE,
    SHEAR_DEGREES,
    WHOLE_MOSAIC_MARGIN,
    CropDataset,
    CropSettings,
    EpochSampler,
    center_crop,
    collate,
    whole_mosaic_pixels,
)
from rcm_viewer.training.data import (
    SPLIT_CSV,
    SPLIT_JSON,
    SPLITS,
    DataSet,
    MosaicRecord,
    class_weights,
    load_split,
    parse_split_fractions,
    save_split,
    scan_data_dir,
    split_dataset,
)
from rcm_viewer.training.metrics import classification_metrics, nan_to_none

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
HISTORY_NAME = "history.json"
CHECKPOINT_FORMAT = 1
INPUT_TILES = "tiles"
INPUT_WHOLE_MOSAIC = "whole_mosaic"
#: The published reference result, quoted in every model card for orientation.
PUBLISHED_REFERENCE = (
    "Wodzinski et al. (EMBC 2019): ResNet on whole RCM mosaics, 87% test accuracy on 429 "
    "histology-confirmed mosaics (melanoma 167, basal cell carcinoma 116, benign naevi 146)"
)

Progress = Callable[[str], None]


@dataclass
class TrainingConfig:
    """Everything ``rcm-viewer train`` takes; recorded in the manifest for provenance."""

    data_dir: Path
    out_dir: Path
    architecture: str = "resnet34"
    pretrained: Path | None = None
    tile_px: int = 128
    pixel_size_um: float = 1.0
    epochs: int = 15
    crops_per_mosaic: int = 8
    batch_size: int = 32
    patients_csv: Path | None = None
    split: str = "70/15/15"
    seed: int = 0
    resume: bool = False
    fp16: bool = False
    device: str = "auto"
    whole_mosaic: bool = False
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 4
    workers: int = 2
    accumulation_steps: int = 1
    work_dir: Path | None = None
    name: str | None = None
    version: str = "1.0"
    synthetic: bool | None = None
    min_tissue_fraction: float = 0.5
    validation_batch_size: int = 64
    #: Stop after this many epochs in this call (tests of ``resume``; None: run to the end).
    stop_after_epochs: int | None = None
    overwrite: bool = True
    command: str = ""

    def resolved_work_dir(self) -> Path:
        if self.work_dir is not None:
            return Path(self.work_dir)
        out = Path(self.out_dir)
        return out.with_name(f"{out.name}.training")


@dataclass
class TrainingResult:
    bundle_dir: Path
    work_dir: Path
    epochs_run: int
    best_epoch: int
    temperature: float
    validation_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    finished: bool = True


# ------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class _Distributed:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast(self, value: Any) -> Any:
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: Sequence[float]) -> list[float]:
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()


def _start_distributed(device: str) -> tuple[_Distributed, torch.device]:
    """Join the process group when started by ``torchrun``; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"unknown device {device!r}: use auto, cpu or cuda")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise TrainingError("device cuda was asked for, but no CUDA GPU is available")
    if world <= 1:
        if not use_cuda:
            _configure_cpu_threads()
        return _Distributed(), torch.device("cuda" if use_cuda else "cpu")
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # rank 0 validates alone while the others wait: allow long validations
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(hours=2))
    if use_cuda:
        torch.cuda.set_device(local)
        return _Distributed(world, rank, local), torch.device("cuda", local)
    _configure_cpu_threads(per_process=world)
    return _Distributed(world, rank, local), torch.device("cpu")


def _configure_cpu_threads(per_process: int = 1) -> None:
    """Torch threads: ``$RCM_VIEWER_TORCH_THREADS`` or the cores, shared among processes."""
    wanted = os.environ.get("RCM_VIEWER_TORCH_THREADS")
    cores = os.cpu_count() or 1
    threads = int(wanted) if wanted and wanted.isdigit() else max(1, cores // per_process)
    torch.set_num_threads(max(1, threads))


def _say(progress: Progress | None, text: str) -> None:
    log.info(text)
    if progress is not None:
        progress(text)


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _is_synthetic(data_dir: Path) -> bool:
    """A folder written by ``rcm-viewer synth`` says so in its README.txt."""
    readme = Path(data_dir) / "README.txt"
    try:
        return readme.read_text(encoding="utf-8").startswith("Synthetic RCM-like mosaics")
    except OSError:
        return False


def _load_pretrained(network: nn.Module, path: Path) -> str:
    """ImageNet weights from a local torchvision state_dict; the head is re-initialised."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainingError(
            f"pretrained weights {path} not found: rcm-viewer never downloads; copy "
            "torchvision's ImageNet state_dict (e.g. resnet34-b627a593.pth) to this machine "
            "and pass its path"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{path.name} cannot be read as a state_dict ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TrainingError(f"{path.name} is not a state_dict")
    own = network.state_dict()
    kept = {
        k: v
        for k, v in state.items()
        if not (k.startswith("fc.") and k in own and own[k].shape != v.shape)
    }
    result = network.load_state_dict(kept, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        first = (missing or result.unexpected_keys)[0]
        raise TrainingError(
            f"{path.name} does not fit this architecture (e.g. {first!r}): use the "
            "torchvision ImageNet weights of the same ResNet"
        )
    return path.name


def _rank_share(
    images: torch.Tensor, labels: torch.Tensor, parts: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Interleaved shares of a batch, like ``DistributedSampler`` (r, r + W, ...)."""
    return [(images[i::parts], labels[i::parts]) for i in range(parts)]


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T)."""
    if len(labels) == 0:
        return 1.0
    if (np.asarray(logits).argmax(axis=1) == np.asarray(labels)).all():
        # perfectly separated: the NLL falls forever as T -> 0, so a fit would only make
        # the model over-confident on the next mistake; keep the raw logits
        return 1.0
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    t = float(log_t.detach().exp())
    return float(min(max(t, 0.05), 20.0)) if math.isfinite(t) else 1.0


# ------------------------------------------------------------------------ validation


def _manifest_fields(
    config: TrainingConfig,
    class_ids: Sequence[str],
    *,
    temperature: float,
    training: dict[str, Any],
    calibration_note: str,
) -> dict[str, Any]:
    intended = (
        "Demonstration of rcm-viewer's reader-assist display: trained on synthetic images, "
        "no patient data, not for diagnosis."
        if training.get("synthetic")
        else None
    )
    if config.whole_mosaic:
        intended = (
            "Baseline for comparison (whole mosaic resized to one input image); "
            "not for use in the app, whose classifier tiles the mosaic."
        )
    fields: dict[str, Any] = {
        "name": config.name or Path(config.out_dir).name,
        "version": config.version,
        "architecture": config.architecture,
        "classes": list(class_ids),
        "tile_px": config.tile_px,
        "tile_stride_px": config.tile_px,
        "pixel_size_um": config.pixel_size_um,
        "channels": "grayscale_to_rgb",
        "intensity_scaling": "robust_white",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "min_tissue_fraction": config.min_tissue_fraction,
        "aggregation": "mean_logits",
        "temperature": temperature,
        "calibration_note": calibration_note,
        "training": training,
    }
    if intended:
        fields["intended_use"] = intended
    return fields


def whole_mosaic_input(mosaic: Any, manifest: ModelManifest) -> np.ndarray:
    """The baseline's one image of a mosaic (resized whole, centre of the crop margin)."""
    side = math.ceil(manifest.tile_px * WHOLE_MOSAIC_MARGIN)
    pixels = whole_mosaic_pixels(mosaic, white_point(mosaic, manifest.intensity_scaling), side)
    return center_crop(torch.from_numpy(pixels), manifest.tile_px).numpy()


def whole_mosaic_logits(
    network: nn.Module,
    manifest: ModelManifest,
    paths: Sequence[Path],
    device: torch.device,
    batch_size: int = 32,
) -> np.ndarray:
    """Logits of the whole-mosaic baseline, one image per mosaic."""
    out: list[np.ndarray] = []
    network.eval()
    for start in range(0, len(paths), batch_size):
        images = []
        for path in paths[start : start + batch_size]:
            with open_mosaic(path, cache_bytes=4 << 20) as mosaic:
                images.append(whole_mosaic_input(mosaic, manifest))
        with torch.inference_mode():
            logits = network(to_model_input(np.stack(images), manifest, device))
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, manifest.n_classes))


def mosaic_logits(
    bundle: Any, paths: Sequence[Path], device: torch.device, batch_size: int = 64
) -> tuple[np.ndarray, list[bool]]:
    """Mean tile logits of each mosaic by ``classify_mosaic`` (the app's own path).

    Returns the logits (zeros where a mosaic has no tissue) and which mosaics had tissue.
    """
    n = bundle.manifest.n_classes
    logits = np.zeros((len(paths), n))
    ok: list[bool] = []
    for i, path in enumerate(paths):
        with open_mosaic(path, cache_bytes=8 << 20) as mosaic:
            prediction = classify_mosaic(mosaic, bundle, device=str(device), batch_size=batch_size)
        ok.append(prediction.status == STATUS_OK)
        if prediction.status == STATUS_OK:
            logits[i] = prediction.logits
    return logits, ok


# ------------------------------------------------------------------------------ train


def _prepare_data(
    config: TrainingConfig, work_dir: Path, dist: _Distributed, progress: Progress | None
) -> tuple[DataSet, tuple[float, float, float]]:
    fractions = parse_split_fractions(config.split)
    split_file = work_dir / SPLIT_JSON
    if config.resume and split_file.is_file():
        data = load_split(split_file, config.data_dir)
        _say(progress, f"resuming with the saved split in {split_file}")
        return data, fractions
    data = scan_data_dir(config.data_dir, patients_csv=config.patients_csv)
    if data.skipped:
        _say(progress, f"{len(data.skipped)} file(s) skipped:")
        for item in data.skipped:
            _say(progress, f"  skipped {item.path}: {item.reason}")
    data = split_dataset(data, fractions, config.seed)
    if dist.main:
        save_split(data, work_dir, seed=config.seed, fractions=fractions)
    return data, fractions


def _state_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in state.items()}


def _save_atomic(payload: dict[str, Any], path: Path) -> None:
    atomic_write_with(path, lambda stream: torch.save(payload, stream))


def train(config: TrainingConfig, progress: Progress | None = print) -> TrainingResult:
    """Train, validate, calibrate and export a bundle; see the module docstring."""
    started = time.perf_counter()
    if config.architecture not in ARCHITECTURES:
        raise TrainingError(
            f"architecture {config.architecture!r} is not supported: use {', '.join(ARCHITECTURES)}"
        )
    if config.tile_px < NETWORK_STRIDE_PX or config.tile_px % NETWORK_STRIDE_PX:
        raise TrainingError(f"--tile-px must be a multiple of {NETWORK_STRIDE_PX}")
    if not 0.05 <= config.pixel_size_um <= 50:
        raise TrainingError("--pixel-size-um must be between 0.05 and 50")
    if config.epochs < 1 or config.batch_size < 1 or config.crops_per_mosaic < 1:
        raise TrainingError("--epochs, --batch-size and --crops-per-mosaic must be at least 1")
    dist, device = _start_distributed(config.device)
    if not dist.main:
        progress = None
    parts = dist.world_size * config.accumulation_steps
    if config.batch_size % parts:
        raise TrainingError(
            f"--batch-size {config.batch_size} must be divisible by processes x accumulation "
            f"steps ({parts})"
        )
    work_dir = config.resolved_work_dir()
    if dist.main:
        work_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    data, fractions = _prepare_data(config, work_dir, dist, progress)
    dist.barrier()
    class_ids = data.class_ids
    train_records = data.in_split("train")
    val_records = data.in_split("validation")
    counts = {s: data.counts(s) for s in SPLITS}
    synthetic = _is_synthetic(config.data_dir) if config.synthetic is None else config.synthetic
    _say(
        progress,
        "mosaics per split: "
        + "; ".join(f"{s} " + ", ".join(f"{c} {n}" for c, n in counts[s].items()) for s in SPLITS),
    )

    torch.manual_seed(config.seed)
    network = build_network(config.architecture, len(class_ids))
    pretrained_name = None
    if config.pretrained is not None:
        pretrained_name = _load_pretrained(network, config.pretrained)
    network = network.to(device)
    model: nn.Module = network
    if dist.active:
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    weights = torch.tensor(
        class_weights(counts["train"], class_ids), dtype=torch.float32, device=device
    )
    optimizer = torch.optim.AdamW(
        network.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        foreach=True,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    settings = CropSettings(
        config.tile_px,
        config.pixel_size_um,
        min_tissue_fraction=config.min_tissue_fraction,
        whole_mosaic=config.whole_mosaic,
    )
    # whole-mosaic baseline: each "crop" is another augmented view of the whole mosaic
    crops = config.crops_per_mosaic
    dataset = CropDataset(
        train_records,
        config.data_dir,
        class_ids,
        settings,
        crops_per_mosaic=crops,
        seed=config.seed,
        global_batch=config.batch_size,
    )
    if dataset.epoch_length(0) == 0:
        raise TrainingError(
            f"{len(train_records)} training mosaic(s) x {crops} crop(s) make less than one "
            f"batch of {config.batch_size}: lower --batch-size or raise --crops-per-mosaic"
        )
    _say(progress, f"reading tissue masks of {len(train_records)} training mosaics")
    dataset.prepare()
    sampler = EpochSampler(dataset, dist.world_size, dist.rank)
    local_batch = config.batch_size // dist.world_size
    loader = DataLoader(
        dataset,
        batch_size=local_batch,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )

    history: list[dict[str, Any]] = []
    start_epoch, best_loss, best_epoch, bad_epochs = 0, math.inf, -1, 0
    checkpoint_path = work_dir / CHECKPOINT_NAME
    if config.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{checkpoint_path} was written by another version: start anew")
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        history = json.loads(state["history_json"])
        torch.set_rng_state(state["rng_torch"])
        _say(progress, f"resumed from {checkpoint_path} after epoch {start_epoch}")
    elif config.resume:
        _say(progress, f"no checkpoint in {work_dir}: starting from the first epoch")

    steps_per_epoch = dataset.epoch_length(0) // config.batch_size
    epoch_seconds: list[float] = []
    stopped_early = False
    epoch = start_epoch
    manifest_base = {
        "synthetic": synthetic,
        "data": "validation",
        "input": INPUT_WHOLE_MOSAIC if config.whole_mosaic else INPUT_TILES,
    }
    for epoch in range(start_epoch, config.epochs):
        if bad_epochs >= config.patience:
            stopped_early = True
            break
        if config.stop_after_epochs is not None and epoch - start_epoch >= config.stop_after_epochs:
            break
        epoch_started = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        weighted_sum = samples = 0.0
        chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        for step, (images, labels) in enumerate(loader, start=1):
            if config.accumulation_steps > 1:
                chunks.extend(_rank_share(images, labels, config.accumulation_steps))
            else:
                chunks.append((images, labels))
            optimizer.zero_grad(set_to_none=True)
            for k, (chunk_images, chunk_labels) in enumerate(chunks):
                inputs = to_model_input(
                    chunk_images.numpy(), _input_manifest(config, class_ids), device
                )
                chunk_labels = chunk_labels.to(device)
                last = k == len(chunks) - 1
                sync = contextlib.nullcontext() if (last or not dist.active) else model.no_sync()
                with sync:
                    per_sample = F.cross_entropy(model(inputs), chunk_labels, reduction="none")
                    weighted = (per_sample * weights[chunk_labels]).sum()
                    (weighted * dist.world_size / config.batch_size).backward()
                weighted_sum += float(weighted.detach())
                samples += len(chunk_labels)
            chunks.clear()
            optimizer.step()
            if progress is not None and (step % 10 == 0 or step == steps_per_epoch):
                elapsed = time.perf_counter() - epoch_started
                per_step = elapsed / step
                remaining = (steps_per_epoch - step) * per_step
                if epoch_seconds:
                    remaining += (config.epochs - epoch - 1) * float(np.mean(epoch_seconds))
                else:
                    remaining += (config.epochs - epoch - 1) * per_step * steps_per_epoch * 1.15
                _say(
                    progress,
                    (
                        f"epoch {epoch + 1}/{config.epochs} step {step}/{steps_per_epoch} "
                        f"loss {weighted_sum / max(samples, 1):.4f} "
                        f"{step * config.batch_size / elapsed:.1f} crops/s "
                        f"ETA {_format_seconds(remaining)}"
                    ),
                )
        scheduler.step()
        total_weighted, total_samples = dist.sum([weighted_sum, samples])
        train_loss = total_weighted / max(total_samples, 1)

        record: dict[str, Any] | None = None
        if dist.main:
            val_logits, val_labels = _validate(
                network, config, class_ids, val_records, work_dir, device, manifest_base
            )
            val_loss = float(
                F.cross_entropy(torch.as_tensor(val_logits), torch.as_tensor(val_labels))
            )
            metrics = classification_metrics(val_labels, softmax(val_logits), class_ids)
            record = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": metrics["accuracy"],
                "val_balanced_accuracy": metrics["balanced_accuracy"],
                "learning_rate": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_started,
            }
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, bad_epochs = val_loss, epoch + 1, 0
                _save_atomic(
                    {
                        "model": _state_to_cpu(network.state_dict()),
                        "epoch": epoch + 1,
                        "val_logits": torch.as_tensor(val_logits),
                        "val_labels": torch.as_tensor(val_labels),
                    },
                    work_dir / BEST_NAME,
                )
            else:
                bad_epochs += 1
        record, best_loss, best_epoch, bad_epochs = dist.broadcast(
            (record, best_loss, best_epoch, bad_epochs)
        )
        history.append(record)
        epoch_seconds.append(record["seconds"])
        if dist.main:
            _save_atomic(
                {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch + 1,
                    "model": _state_to_cpu(network.state_dict()),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "history_json": json.dumps(history),
                    "rng_torch": torch.get_rng_state(),
                },
                checkpoint_path,
            )
            (work_dir / HISTORY_NAME).write_text(
                json.dumps(history, indent=1) + "\n", encoding="utf-8"
            )
        _say(
            progress,
            (
                f"epoch {epoch + 1}/{config.epochs} done: train loss {train_loss:.4f}, validation "
                f"loss {record['val_loss']:.4f}, validation accuracy "
                f"{record['val_accuracy']:.3f} ({_format_seconds(record['seconds'])})"
                + (" best" if best_epoch == epoch + 1 else "")
            ),
        )
        dist.barrier()
    completed = len(history)
    finished = (completed >= config.epochs) or stopped_early or bad_epochs >= config.patience
    stopped_early = stopped_early or (bad_epochs >= config.patience and completed < config.epochs)
    if dist.active:
        dist.barrier()
    result = TrainingResult(
        Path(config.out_dir),
        work_dir,
        completed,
        best_epoch,
        1.0,
        {},
        history,
        time.perf_counter() - started,
        stopped_early,
        finished,
    )
    if not finished:
        _say(progress, f"stopped after epoch {completed} (resume with --resume)")
        return result
    if dist.main:
        result = _export(
            config,
            class_ids,
            data,
            fractions,
            counts,
            synthetic,
            work_dir,
            device,
            history,
            pretrained_name,
            result,
            progress,
        )
    dist.barrier()
    return result


def _input_manifest(config: TrainingConfig, class_ids: Sequence[str]) -> ModelManifest:
    """A manifest with this run's input settings, for ``to_model_input`` (cached)."""
    key = (config.tile_px, config.pixel_size_um, tuple(class_ids))
    cached = _INPUT_MANIFESTS.get(key)
    if cached is None:
        cached = build_manifest(
            {
                "name": "training",
                "version": "0",
                "classes": list(class_ids),
                "tile_px": config.tile_px,
                "pixel_size_um": config.pixel_size_um,
                "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD,
                "training": {"synthetic": True, "data": "training"},
            },
            weights_file="w.pt",
            weights_sha256="0" * 64,
            weights_format="torch_state_dict",
            weights_dtype="float32",
        )
        _INPUT_MANIFESTS[key] = cached
    return cached


_INPUT_MANIFESTS: dict[tuple[Any, ...], ModelManifest] = {}


def _validate(
    network: nn.Module,
    config: TrainingConfig,
    class_ids: Sequence[str],
    records: Sequence[MosaicRecord],
    work_dir: Path,
    device: torch.device,
    training: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic-level logits and labels of the validation split with the current weights."""
    labels = np.array([list(class_ids).index(r.class_id) for r in records], dtype=np.int64)
    paths = [r.absolute(config.data_dir) for r in records]
    was_training = network.training
    network.eval()
    try:
        if config.whole_mosaic:
            logits = whole_mosaic_logits(
                network,
                _input_manifest(config, class_ids),
                paths,
                device,
                config.validation_batch_size,
            )
        else:
            fields = _manifest_fields(
                config,
                class_ids,
                temperature=1.0,
                training=training,
                calibration_note="validation during training",
            )
            bundle = save_bundle(network, fields, work_dir / "validation-bundle", overwrite=True)
            try:
                logits, _ = mosaic_logits(bundle, paths, device, config.validation_batch_size)
            finally:
                clear_network_cache()
    except MosaicError as exc:
        raise TrainingError(f"validation mosaic cannot be read: {exc}") from None
    finally:
        network.train(was_training)
    return logits, labels


# ------------------------------------------------------------------------------ export


def _export(
    config: TrainingConfig,
    class_ids: Sequence[str],
    data: DataSet,
    fractions: Sequence[float],
    counts: dict[str, dict[str, int]],
    synthetic: bool,
    work_dir: Path,
    device: torch.device,
    history: list[dict[str, Any]],
    pretrained_name: str | None,
    result: TrainingResult,
    progress: Progress | None,
) -> TrainingResult:
    from rcm_viewer.training.model_card import render_training_card

    best = torch.load(work_dir / BEST_NAME, map_location="cpu", weights_only=True)
    val_logits = best["val_logits"].numpy()
    val_labels = best["val_labels"].numpy()
    temperature = fit_temperature(val_logits, val_labels)
    before = classification_metrics(val_labels, softmax(val_logits), class_ids)
    after = classification_metrics(val_labels, softmax(val_logits, temperature), class_ids)
    metrics = {
        "validation_mosaics": after["n"],
        "validation_accuracy": round(after["accuracy"], 4),
        "validation_balanced_accuracy": round(after["balanced_accuracy"], 4),
        "validation_macro_roc_auc": nan_to_none(round(after["macro_roc_auc"], 4)),
        "validation_ece_before_calibration": round(before["expected_calibration_error"], 4),
        "validation_ece_after_calibration": round(after["expected_calibration_error"], 4),
        "best_epoch": int(best["epoch"]),
    }
    total = sum(sum(c.values()) for c in counts.values())
    description = (
        f"{total} {'synthetic ' if synthetic else ''}mosaics in {len(class_ids)} class folders "
        f"of {Path(config.data_dir).name}/ ({', '.join(class_ids)}); split "
        f"{'/'.join(f'{round(f * 100):g}' for f in fractions)} (seed {config.seed}), "
        "stratified by class, patient-disjoint"
        + (
            " (patients from " + Path(config.patients_csv).name + ")"
            if config.patients_csv
            else " (each mosaic its own patient)"
        )
    )
    command = config.command or "rcm-viewer train " + str(config.data_dir)
    training: dict[str, Any] = {
        "synthetic": synthetic,
        "data": description,
        "input": INPUT_WHOLE_MOSAIC if config.whole_mosaic else INPUT_TILES,
        "counts_per_class": {s: counts[s] for s in SPLITS},
        "skipped_files": len(data.skipped),
        "metrics": metrics,
        "history": [
            {k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in history
        ],
        "commands": {
            "train": command,
            "evaluate": f"rcm-viewer evaluate {config.data_dir} --model "
            f"{config.out_dir} --split test",
        },
        "pretrained": pretrained_name or "none (trained from scratch)",
        "architecture": config.architecture,
        "epochs_planned": config.epochs,
        "epochs_run": len(history),
        "stopped_early": result.stopped_early or len(history) < config.epochs,
        "batch_size": config.batch_size,
        "crops_per_mosaic": config.crops_per_mosaic,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "optimizer": "AdamW, cosine schedule, class-weighted cross-entropy",
        "augmentations": {
            "random_crop": "tissue-centred crops at the model's µm/px"
            if not config.whole_mosaic
            else "random crop of the resized mosaic",
            "affine": {
                "degrees": ROTATION_DEGREES,
                "scale": list(SCALE_RANGE),
                "shear": SHEAR_DEGREES,
            },
            "brightness": list(BRIGHTNESS_RANGE),
            "contrast": list(CONTRAST_RANGE),
            "flips": "horizontal and vertical, p=0.5 each",
        },
        "seed": config.seed,
        "split_file": SPLIT_JSON,
        "training_seconds": round(sum(float(h["seconds"]) for h in history), 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, "
        f"device {device.type}",
        "python": sys.version.split()[0],
        "reference": PUBLISHED_REFERENCE,
    }
    note = (
        f"temperature scaling fitted on the validation split ({after['n']} mosaics, "
        "LBFGS on the NLL of mosaic-level logits)"
    )
    if after["accuracy"] == 1.0:
        note = (
            f"temperature 1: the validation split ({after['n']} mosaics) was classified "
            "without error, so temperature scaling has no finite optimum"
        )
    fields = _manifest_fields(
        config, class_ids, temperature=temperature, training=training, calibration_note=note
    )
    from rcm_viewer.inference.bundle import safetensors_available

    safetensors = safetensors_available()  # the same choice save_bundle makes
    draft = build_manifest(
        fields,
        weights_file="model.safetensors" if safetensors else "weights.pt",
        weights_sha256="0" * 64,
        weights_format="safetensors" if safetensors else "torch_state_dict",
        weights_dtype="float16" if config.fp16 else "float32",
    )
    card = render_training_card(draft, config)
    bundle = save_bundle(
        best["model"],
        fields,
        config.out_dir,
        fp16=config.fp16,
        model_card=card,
        overwrite=config.overwrite,
    )
    for name in (SPLIT_JSON, SPLIT_CSV):
        shutil.copy2(work_dir / name, Path(config.out_dir) / name)
    if (work_dir / "validation-bundle").exists():
        shutil.rmtree(work_dir / "validation-bundle", ignore_errors=True)
    _say(
        progress,
        (
            f"exported {bundle.path} (best epoch {metrics['best_epoch']}, validation accuracy "
            f"{metrics['validation_accuracy']:.3f}, temperature {temperature:.3f})"
        ),
    )
    load_bundle(bundle.path)
    if not config.whole_mosaic:
        bundle = _fit_ood(bundle, config, data, device, progress)
    result.temperature = temperature
    result.validation_metrics = metrics
    result.bundle_dir = bundle.path
    return result


#: Training mosaics per class whose tiles the OOD statistics are fitted on.
OOD_FIT_PER_CLASS = 40


def _fit_ood(
    bundle: Any,
    config: TrainingConfig,
    data: DataSet,
    device: torch.device,
    progress: Progress | None,
) -> Any:
    """Fit the OOD statistics (training tiles) and thresholds (validation split)."""
    from rcm_viewer.inference.bundle import attach_ood
    from rcm_viewer.training.ood_fit import fit_from_items

    rng = np.random.default_rng(config.seed)
    fit: list[tuple[Path, str]] = []
    for class_id in bundle.manifest.class_ids:
        mine = [r for r in data.in_split("train") if r.class_id == class_id]
        for i in rng.permutation(len(mine))[:OOD_FIT_PER_CLASS]:
            fit.append((mine[i].absolute(config.data_dir), class_id))
    held = [(r.absolute(config.data_dir), r.class_id) for r in data.in_split("validation")]
    _say(
        progress,
        f"fitting the out-of-distribution check on {len(fit)} training mosaics, "
        f"thresholds on {len(held)} validation mosaics",
    )
    try:
        model = fit_from_items(bundle, fit, held, device=str(device))
    except TrainingError as exc:
        _say(progress, f"no out-of-distribution statistics: {exc}")
        return bundle
    return attach_ood(bundle.path, model)


def config_to_dict(config: TrainingConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def started_at() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
