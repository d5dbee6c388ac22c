"""How well the field-grid pixel-size estimator does on synthetic mosaics and no-grid images.

    PYTHONPATH=. python benchmarks/bench_field_grid.py --n 48 --seed 91000 > benchmarks/out/fg.json

Grid set: ``--n`` synthetic mosaics (rcm_viewer.synthetic, fresh seeds from ``--seed``),
random class, pixel size 0.5-1.0 µm/px, side 1024-2048 px, field 250 µm (500 µm, the
VivaScope field, on a share of the 2048 px ones), each estimated at full resolution and on a
2x-reduced overview (``downsample=2``, as the dialog passes a pyramid level). An answer is
correct within 5 % of the true pixel size. Mosaics with fewer than ``MIN_FIELDS`` fields
across are counted apart (``too_few_fields``): "cannot tell" is the right answer there.

No-grid set: noise, smooth gradients, a Brownian surface, scikit-image's sample
photographs (if installed) and synthetic tissue rendered with the acquisition stage's field
grid switched off (no per-field gain, vignetting, seams or missing fields): the right answer
is "cannot tell". Prints one JSON object; ``--cache DIR`` keeps rendered mosaics (.npy).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from rcm_viewer.mosaic.field_grid import estimate_pixel_size
from rcm_viewer.synthetic import LESION_CLASSES, MosaicSpec, SyntheticMosaic

#: Mosaics with fewer whole fields across than this are scored apart (too few to tell).
MIN_FIELDS = 3.0


def _halve(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    b = a[:h, :w].astype(np.float32)
    return ((b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]) / 4).astype(a.dtype)


def _render(spec: MosaicSpec, cache: Path | None, no_grid: bool = False) -> np.ndarray:
    name = (
        f"{spec.lesion_class}_{spec.width}_{spec.pixel_size_um:.4f}_{spec.seed}_"
        f"{spec.field_um:g}{'_nogrid' if no_grid else ''}.npy"
    )
    if cache is not None and (cache / name).exists():
        return np.load(cache / name)
    mosaic = SyntheticMosaic(spec)
    if no_grid:
        mosaic.acquisition = dataclasses.replace(
            mosaic.acquisition,
            field_gain_sd=0.0,
            vignetting=0.0,
            seam=0.0,
            missing_fields=frozenset(),
        )
    image = mosaic.to_array()
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / name, image)
    return image


def _grid_specs(n: int, seed: int) -> list[MosaicSpec]:
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        side = int(rng.choice([1024, 1024, 1280, 1536, 2048]))
        um = round(float(rng.uniform(0.5, 1.0)), 3)
        field = 500.0 if side == 2048 and rng.random() < 0.5 else 250.0
        cls = LESION_CLASSES[int(rng.integers(len(LESION_CLASSES)))]
        specs.append(MosaicSpec(cls, side, side, um, seed * 1000 + i, field_um=field))
    return specs


def _brownian(rng: np.random.Generator, side: int) -> np.ndarray:
    s = np.cumsum(np.cumsum(rng.normal(0, 1, (side, side)), axis=0), axis=1)
    s -= s.min()
    return (30 + 200 * s / s.max()).astype(np.uint8)


def _no_grid_images(seed: int, cache: Path | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    side = 1024
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    images: dict[str, np.ndarray] = {
        "uniform noise": rng.integers(0, 256, (side, side), dtype=np.uint8),
        "gaussian noise": np.clip(rng.normal(120, 30, (side, side)), 0, 255).astype(np.uint8),
        "linear gradient": (40 + 180 * x / side).astype(np.uint8),
        "radial gradient": (220 - 180 * np.hypot(x - 400, y - 600) / side).astype(np.uint8),
        "brownian surface": _brownian(rng, side),
        "flat": np.full((side, side), 100, np.uint8),
    }
    try:
        from skimage import data

        names = [
            "camera",
            "astronaut",
            "coins",
            "moon",
            "text",
            "page",
            "brick",
            "grass",
            "gravel",
            "rocket",
            "coffee",
            "chelsea",
            "hubble_deep_field",
            "immunohistochemistry",
            "retina",
            "cell",
            "human_mitosis",
            "microaneurysms",
            "skin",
            "logo",
            "clock",
            "horse",
            "checkerboard",
            "binary_blobs",
        ]
        for name in names:
            try:
                image = np.asarray(getattr(data, name)())
            except Exception:  # noqa: BLE001 - a sample not shipped offline: skip it
                continue
            if image.dtype == bool:
                image = image.astype(np.uint8) * 255
            images[f"skimage {name}"] = image
    except ImportError:
        pass
    for i in range(6):
        cls = LESION_CLASSES[i % len(LESION_CLASSES)]
        um = round(float(rng.uniform(0.5, 1.0)), 3)
        spec = MosaicSpec(cls, side, side, um, seed * 1000 + 500 + i, field_um=250.0)
        images[f"synthetic without field grid {i} ({cls}, {um} µm/px)"] = _render(
            spec, cache, no_grid=True
        )
    return images


def _row(estimate, truth: float | None) -> dict:
    row = {
        "answered": estimate.found,
        "level": estimate.level,
        "confidence": estimate.confidence,
        "estimate_um": estimate.pixel_size_um,
    }
    if truth is not None and estimate.found:
        row["error"] = round(estimate.pixel_size_um / truth - 1, 4)
        row["correct"] = abs(row["error"]) <= 0.05
    return row


def _share(k: int, n: int) -> float | None:
    return round(k / n, 3) if n else None


def _grid_summary(rows: list[dict]) -> dict:
    answered = [r for r in rows if r["answered"]]
    correct = [r for r in answered if r["correct"]]
    wrong = [r for r in answered if not r["correct"]]
    return {
        "n": len(rows),
        "answered": _share(len(answered), len(rows)),
        "correct_among_answered": _share(len(correct), len(answered)),
        "correct_of_all": _share(len(correct), len(rows)),
        "wrong": len(wrong),
        "wrong_high_confidence": sum(r["level"] == "high" for r in wrong),
        "median_abs_error_answered": (
            round(float(np.median([abs(r["error"]) for r in answered])), 4) if answered else None
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--seed", type=int, default=91000)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument(
        "--no-overview", action="store_true", help="skip the 2x-reduced overview runs"
    )
    parser.add_argument("--verbose", action="store_true", help="one row per image")
    args = parser.parse_args()
    started = time.perf_counter()
    grid_rows: list[dict] = []
    few_rows: list[dict] = []
    estimate_seconds: list[float] = []
    for spec in _grid_specs(args.n, args.seed):
        image = _render(spec, args.cache)
        fields = spec.width * spec.pixel_size_um / spec.field_um
        runs = [(image, 1.0)] + ([] if args.no_overview else [(_halve(image), 2.0)])
        for pixels, downsample in runs:
            t0 = time.perf_counter()
            estimate = estimate_pixel_size(pixels, downsample=downsample, field_um=spec.field_um)
            estimate_seconds.append(time.perf_counter() - t0)
            row = _row(estimate, spec.pixel_size_um)
            row.update(
                seed=spec.seed,
                side=spec.width,
                true_um=spec.pixel_size_um,
                field_um=spec.field_um,
                fields_across=round(fields, 2),
                downsample=downsample,
            )
            (grid_rows if fields >= MIN_FIELDS else few_rows).append(row)
    no_grid_rows: list[dict] = []
    for name, image in _no_grid_images(args.seed, args.cache).items():
        t0 = time.perf_counter()
        estimate = estimate_pixel_size(image, field_um=250.0 if "synthetic" in name else 500.0)
        estimate_seconds.append(time.perf_counter() - t0)
        no_grid_rows.append({"image": name, **_row(estimate, None)})
    wrongly_answered = [r for r in no_grid_rows if r["answered"]]
    result = {
        "grid": _grid_summary(grid_rows),
        "too_few_fields": {"n": len(few_rows), "min_fields": MIN_FIELDS, **_grid_summary(few_rows)},
        "no_grid": {
            "n": len(no_grid_rows),
            "cannot_tell": _share(len(no_grid_rows) - len(wrongly_answered), len(no_grid_rows)),
            "answered": [
                {"image": r["image"], "estimate_um": r["estimate_um"], "level": r["level"]}
                for r in wrongly_answered
            ],
        },
        "grid_failures": [r for r in grid_rows if not r.get("correct")],
        "estimate_seconds_median": round(float(np.median(estimate_seconds)), 3),
        "total_seconds": round(time.perf_counter() - started, 1),
        "params": {"n": args.n, "seed": args.seed},
    }
    if args.verbose:
        result["rows"] = {"grid": grid_rows, "too_few_fields": few_rows, "no_grid": no_grid_rows}
    json.dump(result, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
