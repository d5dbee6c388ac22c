"""How often the out-of-distribution check flags in-distribution and foreign images (JSON).

    PYTHONPATH=. python benchmarks/bench_ood.py --model models/rcm-demo-resnet34 \
        --fresh benchmarks/data/ood_fresh [--limit 12] > benchmarks/out/ood.json

Sets: fresh synthetic mosaics (seeds never used in training or fitting), the same at 4x
and 1/4 the true pixel size, synthetic mosaics whose acquisition stage was changed (gain,
speckle, vignetting), photographs and other microscopy shipped by scikit-image (bench-only
extra ``bench-ood``) and by installed packages' test data, brightfield IHC histology,
noise and flat fields. Foreign images carry no pixel size: they are classified at 0.75
µm/px, a typical RCM value (what a reader might type). Images without assessable tissue
are counted apart (``no_tissue``): the model gives no answer on them at all.
Also prints the pixel-size estimator's accuracy on synthetic grids (``--grid N``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import tifffile

from rcm_viewer.inference import load_bundle
from rcm_viewer.inference.engine import classify_mosaic
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.synthetic import LESION_CLASSES, MosaicSpec, SyntheticMosaic

FOREIGN_UM = 0.75


def _tiff(path: Path, image: np.ndarray, um: float | None) -> Path:
    kwargs: dict = {"photometric": "rgb" if image.ndim == 3 else "minisblack"}
    if um is not None:
        kwargs.update(resolution=(1e4 / um, 1e4 / um), resolutionunit="CENTIMETER")
    tifffile.imwrite(path, image, **kwargs)
    return path


def _classify(bundle, path: Path, um: float | None) -> dict:
    with open_mosaic(path) as mosaic:
        p = classify_mosaic(mosaic, bundle, pixel_size_um=um, device="cpu", batch_size=32)
    return {
        "file": path.name,
        "status": p.status,
        "ood_score": p.ood_score,
        "in_distribution": p.in_distribution,
        "tile_share": p.ood_tile_share,
        "top": p.top_class,
        "p_top": None if p.top_class is None else round(p.probability(p.top_class) or 0, 3),
    }


def _summary(rows: list[dict]) -> dict:
    scored = [r for r in rows if r["in_distribution"] is not None]
    flagged = sum(1 for r in scored if not r["in_distribution"])
    return {
        "n": len(rows),
        "classified": len(scored),
        "no_tissue": sum(1 for r in rows if r["status"] != "ok"),
        "flagged": flagged,
        "share_flagged": round(flagged / len(scored), 4) if scored else None,
        "median_ood_score": (
            round(float(np.median([r["ood_score"] for r in scored])), 3) if scored else None
        ),
    }


def _package_images() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    try:
        import skimage.data as data
    except ImportError:
        return out
    for name in (
        "astronaut",
        "camera",
        "coffee",
        "chelsea",
        "rocket",
        "coins",
        "moon",
        "page",
        "text",
        "brick",
        "grass",
        "gravel",
        "retina",
        "human_mitosis",
        "cell",
        "hubble_deep_field",
        "clock",
        "horse",
        "checkerboard",
        "colorwheel",
        "microaneurysms",
        "nickel_solidification",
        "protein_transport",
        "palisades_of_vogt",
        "skin",
        "lily",
        "cat",
        "logo",
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - images that need a download are skipped
            continue
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        if image.ndim == 3 and image.shape[2] != 3:
            image = image[image.shape[0] // 2]
        if image.dtype != np.uint8:
            a = image.astype(np.float64)
            image = (255 * (a - a.min()) / max(np.ptp(a), 1e-9)).astype(np.uint8)
        out[name] = image
    return out


def _ihc() -> dict[str, np.ndarray]:
    try:
        import skimage.data as data
    except ImportError:
        return {}
    ihc = np.asarray(data.immunohistochemistry())
    return {
        "ihc": ihc,
        "ihc_gray": ihc.mean(axis=2).astype(np.uint8),
        "ihc_tiled": np.tile(ihc, (2, 2, 1)),
    }


def _changed_acquisition(cls: str, seed: int, um: float, kind: str) -> np.ndarray:
    mosaic = SyntheticMosaic(MosaicSpec(cls, 1024, 1024, um, seed=seed))
    acq = mosaic.acquisition
    changes = {
        "gain": {"white_level": 0.25, "black_level": 0.2},
        "speckle": {"speckle": 0.9, "read_noise": 0.12},
        "vignetting": {"vignetting": 0.95, "field_gain_sd": 0.45, "seam": 0.5},
    }[kind]
    mosaic.acquisition = dataclasses.replace(acq, **changes)
    return mosaic.to_array()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/rcm-demo-resnet34"))
    parser.add_argument("--fresh", type=Path, default=Path("benchmarks/data/ood_fresh"))
    parser.add_argument("--limit", type=int, default=0, help="at most N fresh mosaics")
    parser.add_argument("--sets", default="all", help="comma list of sets to run")
    args = parser.parse_args()
    bundle = load_bundle(args.model)
    if bundle.manifest.ood_file is None:
        print(f"{args.model} has no OOD statistics", file=sys.stderr)
        return 2
    started = time.perf_counter()
    wanted = set(args.sets.split(",")) if args.sets != "all" else None
    # complete files only (a data set may still be being written)
    fresh = sorted(
        p
        for p in args.fresh.rglob("*.ome.tif")
        if p.stat().st_size > 0 and time.time() - p.stat().st_mtime > 30
    )
    if args.limit:
        fresh = fresh[: args.limit]
    results: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_ood_"))

    def run(name: str, items: list[tuple[Path, float | None]]) -> None:
        if wanted is not None and name not in wanted:
            return
        rows = [_classify(bundle, path, um) for path, um in items]
        results[name] = {**_summary(rows), "rows": rows}
        print(f"{name}: {results[name]['share_flagged']}", file=sys.stderr, flush=True)

    def true_um(path: Path) -> float:
        with open_mosaic(path) as m:
            return float(m.info.pixel_size_um)

    run("in_distribution_fresh_synthetic", [(p, None) for p in fresh])
    run("synthetic_pixel_size_4x", [(p, true_um(p) * 4) for p in fresh[:12]])
    run("synthetic_pixel_size_quarter", [(p, true_um(p) / 4) for p in fresh[:12]])
    acq_items = []
    if wanted is None or "synthetic_acquisition_changed" in wanted:
        for i, kind in enumerate(["gain", "speckle", "vignetting"] * 4):
            cls = LESION_CLASSES[i % 3]
            seed, um = 900_000 + i, 0.5 + 0.04 * i
            path = _tiff(tmp / f"acq_{kind}_{i}.tif", _changed_acquisition(cls, seed, um, kind), um)
            acq_items.append((path, None))
    run("synthetic_acquisition_changed", acq_items)
    photos = _package_images()
    run(
        "photographs_and_other_microscopy",
        [(_tiff(tmp / f"{n}.tif", im, None), FOREIGN_UM) for n, im in photos.items()],
    )
    ihc = _ihc()
    ihc_items = [(_tiff(tmp / f"{n}.tif", im, None), FOREIGN_UM) for n, im in ihc.items()]
    if ihc:
        ihc_items += [
            (_tiff(tmp / f"ihc_{um}.tif", ihc["ihc"], None), um) for um in (0.5, 1.5, 3.0)
        ]
    run("brightfield_histology_ihc", ihc_items)
    rng = np.random.default_rng(0)
    noise = {
        "uniform": rng.integers(0, 256, (1024, 1024), dtype=np.uint8),
        "gaussian": np.clip(rng.normal(128, 40, (1024, 1024)), 0, 255).astype(np.uint8),
        "speckle_only": np.clip(rng.exponential(60, (1024, 1024)), 0, 255).astype(np.uint8),
        "rgb_uniform": rng.integers(0, 256, (768, 768, 3), dtype=np.uint8),
        "salt_pepper": (rng.random((1024, 1024)) < 0.3).astype(np.uint8) * 255,
        "smooth_noise": np.clip(
            np.kron(rng.normal(128, 50, (64, 64)), np.ones((16, 16))), 0, 255
        ).astype(np.uint8),
    }
    run("noise", [(_tiff(tmp / f"noise_{n}.tif", im, None), FOREIGN_UM) for n, im in noise.items()])
    y = np.linspace(0, 1, 1024)[:, None] * np.ones((1, 1024))
    flats = {
        "flat_mid": np.full((1024, 1024), 128, np.uint8),
        "flat_dark": np.full((1024, 1024), 40, np.uint8),
        "flat_gradient": (60 + 120 * y).astype(np.uint8),
        "flat_noisy": np.clip(128 + rng.normal(0, 3, (1024, 1024)), 0, 255).astype(np.uint8),
    }
    run("flat_fields", [(_tiff(tmp / f"{n}.tif", im, None), FOREIGN_UM) for n, im in flats.items()])
    report = {
        "benchmark": "bench_ood",
        "model": bundle.manifest.display_name,
        "ood_file": bundle.manifest.ood_file,
        "seconds": round(time.perf_counter() - started, 1),
        "sets": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in results.items()},
        "rows": {k: v["rows"] for k, v in results.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
