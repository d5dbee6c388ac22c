"""``rcm-viewer evaluate``: a bundle on a data folder, mosaic by mosaic, the app's way.

Each mosaic goes through ``classify_mosaic`` (the function the viewer and the batch
dialog call), so the report measures what a reader would see. Writes ``metrics.json``,
``metrics.md``, ``predictions.csv`` and three plots (ROC curves, reliability diagram,
confusion matrix; matplotlib, Agg backend, imported only here).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rcm_viewer.errors import MosaicError, TrainingError
from rcm_viewer.inference import load_bundle
from rcm_viewer.training.data import SPLIT_JSON, MosaicRecord, load_split, scan_data_dir
from rcm_viewer.training.metrics import (
    classification_metrics,
    nan_to_none,
    roc_curve,
)


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, Any]
    out_dir: Path
    files: tuple[Path, ...]


def _records(
    data_dir: Path,
    model_dir: Path,
    split: str,
    class_ids: Sequence[str],
    say: Callable[[str], None],
) -> list[MosaicRecord]:
    if split not in ("test", "validation", "train", "all"):
        raise TrainingError(f"unknown split {split!r}: use test or all")
    if split == "all":
        data = scan_data_dir(data_dir)
        for item in data.skipped:
            say(f"skipped {item.path}: {item.reason}")
        records = list(data.records)
    else:
        split_file = Path(model_dir) / SPLIT_JSON
        if not split_file.is_file():
            raise TrainingError(
                f"{model_dir} has no {SPLIT_JSON}: use --split all to evaluate every mosaic "
                "of the folder (e.g. a separate test set)"
            )
        records = load_split(split_file, data_dir).in_split(split)
    unknown = sorted({r.class_id for r in records} - set(class_ids))
    if unknown:
        say(f"class folder(s) {', '.join(unknown)} are not classes of this model: skipped")
        records = [r for r in records if r.class_id in class_ids]
    if not records:
        raise TrainingError(f"no mosaic to evaluate in {data_dir} ({split})")
    return records


def evaluate(
    data_dir: Path,
    model_dir: Path,
    *,
    split: str = "test",
    out_dir: Path | None = None,
    device: str = "auto",
    progress: Callable[[str], None] | None = print,
    backend: str = "auto",
    foreign: Sequence[Path] = (),
) -> EvaluationResult:
    """Classify every mosaic of the split and write the metrics and plots.

    ``backend``: the inference runtime for tile models (backends.py); whole-mosaic models
    always run in torch. With OOD statistics in the bundle, the share of mosaics flagged
    out of distribution is reported for the split (``ood_rate``) and for each ``foreign``
    folder.
    """
    from rcm_viewer.inference.engine import classify_mosaic, softmax
    from rcm_viewer.inference.network import load_network, resolve_device
    from rcm_viewer.inference.prediction import STATUS_OK
    from rcm_viewer.mosaic import open_mosaic
    from rcm_viewer.training.trainer import INPUT_WHOLE_MOSAIC, whole_mosaic_logits

    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    data_dir, model_dir = Path(data_dir), Path(model_dir)
    bundle = load_bundle(model_dir)
    manifest = bundle.manifest
    class_ids = manifest.class_ids
    records = _records(data_dir, model_dir, split, class_ids, say)
    out_dir = Path(out_dir) if out_dir else Path(f"evaluation-{manifest.name}-{split}")
    out_dir.mkdir(parents=True, exist_ok=True)
    whole = manifest.training.get("input") == INPUT_WHOLE_MOSAIC
    rows: list[dict[str, Any]] = []
    probabilities: list[np.ndarray] = []
    true: list[int] = []
    ood_flags: list[bool] = []  # OOD: one per classified mosaic of the split
    torch_device = resolve_device(device) if whole else None
    ran: set[str] = {"torch-fp32"} if whole else set()
    for i, record in enumerate(records, start=1):
        path = record.absolute(data_dir)
        status = STATUS_OK
        try:
            if whole:
                network = load_network(bundle, torch_device)
                logits = whole_mosaic_logits(network, manifest, [path], torch_device)[0]
                p = softmax(logits, manifest.temperature)
            else:
                with open_mosaic(path) as mosaic:
                    prediction = classify_mosaic(
                        mosaic, bundle, device=device, batch_size=64, backend=backend
                    )
                status = prediction.status
                ran.add(prediction.backend)
                p = np.asarray(prediction.probabilities, dtype=np.float64)
        except MosaicError as exc:
            say(f"skipped {record.path}: {exc}")
            continue
        if status != STATUS_OK:
            say(f"{record.path}: {status}; not counted")
            rows.append(
                {"path": record.path, "true": record.class_id, "predicted": "", "status": status}
            )
            continue
        k = int(np.argmax(p))
        if not whole and prediction.in_distribution is not None:
            ood_flags.append(not prediction.in_distribution)
        probabilities.append(p)
        true.append(class_ids.index(record.class_id))
        rows.append(
            {
                "path": record.path,
                "true": record.class_id,
                "predicted": class_ids[k],
                "status": status,
                **{f"p_{c}": round(float(v), 5) for c, v in zip(class_ids, p, strict=True)},
            }
        )
        if i % 10 == 0 or i == len(records):
            say(f"[{i}/{len(records)}] evaluated")
    if not true:
        raise TrainingError("no mosaic could be classified")
    probs = np.stack(probabilities)
    metrics = classification_metrics(true, probs, class_ids)
    metrics.update(
        {
            "model": manifest.display_name,
            "model_dir": str(model_dir),
            "data_dir": str(data_dir),
            "split": split,
            "not_classified": sum(1 for r in rows if r["status"] != STATUS_OK),
            "synthetic_model": manifest.synthetic,
            "temperature": manifest.temperature,
            "input": "whole_mosaic" if whole else "tiles",
            "backend": ", ".join(sorted(ran)),
        }
    )
    metrics.update(_ood_metrics(bundle, ood_flags, foreign, device, say))
    files = _write_outputs(out_dir, metrics, rows, true, probs, class_ids)
    say(
        f"accuracy {metrics['accuracy']:.3f}, balanced accuracy "
        f"{metrics['balanced_accuracy']:.3f} on {metrics['n']} mosaics; report in {out_dir}"
    )
    return EvaluationResult(metrics, out_dir, files)


def _ood_metrics(
    bundle: Any,
    flags: Sequence[bool],
    foreign: Sequence[Path],
    device: str,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """OOD rate on the split and on each foreign folder (None: no OOD statistics)."""
    from rcm_viewer.mosaic.sniff import is_openable_name
    from rcm_viewer.training.ood_fit import ood_rate

    if bundle.manifest.ood_file is None:
        if foreign:
            say(
                "this model has no out-of-distribution statistics: no OOD rate "
                "(rcm-viewer fit-ood adds them)"
            )
        return {"ood_rate": None, "ood_foreign": {}}
    out: dict[str, Any] = {
        "ood_rate": round(sum(flags) / len(flags), 4) if flags else None,
        "ood_flagged": int(sum(flags)),
        "ood_checked": len(flags),
        "ood_foreign": {},
    }
    say(f"out of distribution: {out['ood_flagged']}/{out['ood_checked']} mosaics of the split")
    for folder in foreign:
        paths = sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_openable_name(p))
        rate = ood_rate(bundle, paths, device=device)
        out["ood_foreign"][str(folder)] = rate
        say(f"out of distribution in {folder}: {rate['flagged']}/{rate['mosaics']} images")
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def render_markdown(metrics: dict[str, Any]) -> str:
    class_ids = metrics["class_ids"]
    lo, hi = metrics["accuracy_ci95"]
    lines = [
        f"# Evaluation: {metrics.get('model', '')}",
        "",
        f"Data: `{metrics.get('data_dir', '')}`, split **{metrics.get('split', '')}**, "
        f"{metrics['n']} mosaics ("
        + (
            "one resized image per mosaic: the published baseline"
            if metrics.get("input") == "whole_mosaic"
            else "mosaic level, as the app classifies them"
        )
        + ").",
        "",
        f"- Accuracy: **{_fmt(metrics['accuracy'])}** (95% CI {_fmt(lo)}-{_fmt(hi)})",
        f"- Balanced accuracy: {_fmt(metrics['balanced_accuracy'])}",
        f"- Macro one-vs-rest ROC AUC: {_fmt(metrics['macro_roc_auc'])}",
        f"- Expected calibration error ({metrics['ece_bins']} bins): "
        f"{_fmt(metrics['expected_calibration_error'])}",
        "",
        "| class | n | sensitivity (95% CI) | specificity (95% CI) | ROC AUC |",
        "|---|---|---|---|---|",
    ]
    for c in class_ids:
        r = metrics["per_class"][c]
        s_lo, s_hi = r["sensitivity_ci95"]
        p_lo, p_hi = r["specificity_ci95"]
        lines.append(
            f"| {c} | {r['n']} | {_fmt(r['sensitivity'])} ({_fmt(s_lo)}-{_fmt(s_hi)}) | "
            f"{_fmt(r['specificity'])} ({_fmt(p_lo)}-{_fmt(p_hi)}) | {_fmt(r['roc_auc'])} |"
        )
    lines += [
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(class_ids) + " |",
        "|---|" + "---|" * len(class_ids),
    ]
    for c, row in zip(class_ids, metrics["confusion_matrix"], strict=True):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    if metrics.get("ood_rate") is not None:
        lines += [
            "",
            f"Out of distribution (OOD check): {_fmt(metrics['ood_rate'])} of the "
            f"split's mosaics ({metrics['ood_flagged']}/{metrics['ood_checked']}).",
        ]
    for folder, rate in (metrics.get("ood_foreign") or {}).items():
        lines.append(
            f"- foreign `{folder}`: {_fmt(rate['ood_rate'])} flagged "
            f"({rate['flagged']}/{rate['mosaics']})"
        )
    if metrics.get("synthetic_model"):
        lines += ["", "Model trained on synthetic images, no patient data, not for diagnosis."]
    return "\n".join(lines) + "\n"


def _write_outputs(
    out_dir: Path,
    metrics: dict[str, Any],
    rows: list[dict[str, Any]],
    true: Sequence[int],
    probs: np.ndarray,
    class_ids: Sequence[str],
) -> tuple[Path, ...]:
    json_path = out_dir / "metrics.json"
    json_path.write_text(json.dumps(nan_to_none(metrics), indent=1) + "\n", encoding="utf-8")
    md_path = out_dir / "metrics.md"
    md_path.write_text(render_markdown(metrics), encoding="utf-8")
    csv_path = out_dir / "predictions.csv"
    columns = ["path", "true", "predicted", "status", *[f"p_{c}" for c in class_ids]]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plots = write_plots(out_dir, metrics, true, probs, class_ids)
    return (json_path, md_path, csv_path, *plots)


def write_plots(
    out_dir: Path,
    metrics: dict[str, Any],
    true: Sequence[int],
    probs: np.ndarray,
    class_ids: Sequence[str],
) -> tuple[Path, ...]:
    """ROC curves, reliability diagram and confusion matrix as PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    true_arr = np.asarray(true)
    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for k, c in enumerate(class_ids):
        labels = true_arr == k
        if labels.all() or not labels.any():
            continue
        fpr, tpr = roc_curve(labels, probs[:, k])
        ax.plot(fpr, tpr, label=f"{c} (AUC {_fmt(metrics['per_class'][c]['roc_auc'])})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, one vs rest")
    ax.legend(loc="lower right")
    paths.append(out_dir / "roc.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    bins = [b for b in metrics["reliability"] if b["count"]]
    centres = [(b["lower"] + b["upper"]) / 2 for b in metrics["reliability"]]
    width = 1.0 / max(len(metrics["reliability"]), 1)
    ax.bar(
        centres,
        [b["accuracy"] if b["count"] else 0 for b in metrics["reliability"]],
        width=width * 0.9,
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        "o",
        color="red",
        label="mean confidence",
    )
    ax.set(
        xlabel="confidence (top class)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability (ECE {_fmt(metrics['expected_calibration_error'])})",
    )
    ax.legend(loc="upper left")
    paths.append(out_dir / "reliability.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    matrix = np.asarray(metrics["confusion_matrix"])
    ax.imshow(matrix, cmap="Blues")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    ax.set_xticks(range(len(class_ids)), class_ids)
    ax.set_yticks(range(len(class_ids)), class_ids)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    paths.append(out_dir / "confusion.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return tuple(paths)
