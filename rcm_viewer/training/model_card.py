"""The model card written with every trained bundle (Mitchell et al. 2019 sections).

Torch-free. The card is written from the manifest's facts so it cannot drift from them;
for a synthetic-data model it says plainly what the model is not, and tells a clinic the
commands that train a real one.
"""

from __future__ import annotations

from typing import Any

from rcm_viewer.inference.manifest import ModelManifest

PUBLISHED = (
    "For orientation: the published method (Wodzinski et al., EMBC 2019; a ResNet on "
    "whole RCM mosaics, ImageNet-pretrained) reached **87% test accuracy on 429 "
    "histology-confirmed mosaics** (melanoma 167, basal cell carcinoma 116, benign naevi "
    "146). That number is from patients; a synthetic-data model's numbers are not comparable."
)


def _counts_table(counts: dict[str, dict[str, int]], class_ids: tuple[str, ...]) -> list[str]:
    lines = [
        "| split | " + " | ".join(class_ids) + " | total |",
        "|---|" + "---|" * (len(class_ids) + 1),
    ]
    for split, per_class in counts.items():
        values = [per_class.get(c, 0) for c in class_ids]
        lines.append(f"| {split} | " + " | ".join(str(v) for v in values) + f" | {sum(values)} |")
    return lines


def render_training_card(
    manifest: ModelManifest, config: Any, test_metrics: dict[str, Any] | None = None
) -> str:
    t = dict(manifest.training)
    synthetic = manifest.synthetic
    whole = t.get("input") == "whole_mosaic"
    lines = [f"# Model card: {manifest.name} {manifest.version}", ""]
    if synthetic:
        lines += [
            "> **Trained on synthetic images, no patient data, not for diagnosis.** This is a",
            "> demonstration model for rcm-viewer's reader-assist display. Its outputs say",
            "> nothing about real lesions.",
            "",
        ]
    if whole:
        lines += [
            "> **Baseline for comparison only**: each whole mosaic is resized to one",
            f"> {manifest.tile_px} x {manifest.tile_px} image (the published way). The app",
            "> tiles mosaics at the model's µm/px and must not load this bundle.",
            "",
        ]
    names = ", ".join(
        f"{n} (`{i}`)" for i, n in zip(manifest.class_ids, manifest.class_names, strict=True)
    )
    if whole:
        input_line = (
            f"- Input: the whole mosaic padded to a square and resized to "
            f"{manifest.tile_px} x {manifest.tile_px} px"
        )
    else:
        input_line = (
            f"- Input: {manifest.tile_px} x {manifest.tile_px} px tissue tiles at "
            f"{manifest.pixel_size_um:g} µm/px "
            f"({manifest.tile_px * manifest.pixel_size_um:g} µm a side), mosaic "
            f"result = {manifest.aggregation_description}"
        )
    pretrained = str(t.get("pretrained", "none"))
    start = (
        "trained from scratch (no pretrained weights)"
        if pretrained.startswith("none")
        else f"fine-tuned from ImageNet weights ({pretrained})"
    )
    lines += [
        "## Model details",
        f"- Architecture: {manifest.architecture} (torchvision), {start}",
        f"- Classes: {names}",
        input_line,
        f"- Intensity: {manifest.intensity_scaling.replace('_', ' ')}, grayscale copied to "
        "3 channels, ImageNet normalisation",
        f"- Calibration: temperature {manifest.temperature:.3f} ({manifest.calibration_note})",
        f"- Weights: `{manifest.weights_file}` ({manifest.weights_dtype})",
        f"- Training: {t.get('optimizer', '')}; {t.get('epochs_run')} of "
        f"{t.get('epochs_planned')} epochs, best epoch {t.get('metrics', {}).get('best_epoch')}"
        f", batch {t.get('batch_size')}, {t.get('crops_per_mosaic')} crops per mosaic per "
        f"epoch, seed {t.get('seed')}",
        "- Augmentations (published method): random crops, affine (rotation, scale, shear), "
        "linear brightness and contrast, horizontal and vertical flips",
        f"- Created: {manifest.created}; torch {t.get('torch')}; {t.get('machine')}",
        "",
        "## Intended use",
        manifest.intended_use,
        "",
        "## Training data",
        str(t.get("data", "")),
        "",
        *_counts_table(t.get("counts_per_class", {}), manifest.class_ids),
        "",
        "The split (which mosaic is in which split) is saved in `split.json` / `split.csv` "
        "in this folder, so the evaluation can be repeated.",
        "",
        "## Metrics",
        "Validation split, mosaic level, after calibration:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in t.get("metrics", {}).items()]
    lines += [
        "",
        "Test split: run `" + str(t.get("commands", {}).get("evaluate", "")) + "`"
        " (accuracy, balanced accuracy, per-class sensitivity and specificity with 95% "
        "Wilson intervals, ROC AUC, calibration error, plots).",
        "",
    ]
    if test_metrics:
        lines += ["Test results at export:", ""]
        lines += [f"- {k}: {v}" for k, v in test_metrics.items()]
        lines.append("")
    lines += [
        PUBLISHED,
        "",
        "## Caveats",
    ]
    if synthetic:
        lines += [
            "- Trained on procedurally generated images: the textures only imitate RCM "
            "patterns (cobblestone, pagetoid cells, tumour islands, nests). High accuracy "
            "here shows that the pipeline works, not that the model would work on patients.",
        ]
    lines += [
        "- Device generation (VivaScope 1500/3000), skin type, body site and depth change "
        "what a mosaic looks like; none of this was evaluated.",
        "- Review the whole mosaic; a heatmap shows where the model looked, not why.",
        "",
        "## Training your own model (a clinic)",
        "1. One folder per class: `DATA/melanoma/`, `DATA/bcc/`, `DATA/naevus/` (histology-"
        "confirmed mosaics; TIFF with pixel size, PNG/JPEG/BMP).",
        "2. A patients CSV (`path,patient_id`, paths relative to DATA) so no patient is in "
        "two splits.",
        "3. `rcm-viewer train DATA --out models/clinic-resnet34 --patients patients.csv "
        "--pretrained resnet34-b627a593.pth --fp16` (ImageNet weights copied locally; "
        "several GPUs: `torchrun --nproc_per_node=N -m rcm_viewer train ...`).",
        "4. `rcm-viewer evaluate DATA --model models/clinic-resnet34 --split test`.",
        "5. Keep the bundle folder in `models/` (or point `RCM_VIEWER_MODEL_DIR` at it).",
        "",
        "Commands that made this model:",
        "",
        "```",
        str(t.get("commands", {}).get("train", "")),
        str(t.get("commands", {}).get("evaluate", "")),
        "```",
        "",
    ]
    return "\n".join(lines)
