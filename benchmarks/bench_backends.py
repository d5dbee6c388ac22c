"""Inference backends side by side: agreement with torch float32, speed, load time, memory.

    .venv/bin/python benchmarks/bench_backends.py [--n 120] [--size 1024] [--big 8000]

Prints one JSON object:

* ``agreement``: ``--n`` fresh synthetic mosaics (``--size`` px at 1 µm/px, seeds from
  881000 on, never used in training; classes in turn) classified by each backend and by
  the reference ``torch-fp32``: how many top classes agree, the largest probability
  difference, the lowest heatmap correlation (Pearson, all classes and cells);
* ``backends``: per backend, each in its own fresh process (so peak RSS is its own):
  ``first_load_s`` (importing the runtime, reading the bundle, compiling; for OpenVINO
  with an empty compiled-model cache and again with it warm), ``tiles_per_s`` (median of
  batches of ``--batch-size`` random tiles, network only), ``classify_big_s`` (end-to-end
  ``classify_mosaic`` of a ``--big`` px mosaic at 1 µm/px: tissue mask, reading and
  resampling, network, heatmap), ``peak_rss_mib`` of that process, and both speeds as a
  ratio to ``torch-fp32``;
* the 1-minute load average: on a shared machine, other jobs inflate every number.

The model is the bundled demo model (its sealed ``network.onnx``; exported into a copy
under benchmarks/out/ when the bundle has none). Mosaics go to benchmarks/data/ (ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
OUT = HERE / "out"
BACKENDS = ("torch-fp32", "torch", "openvino")
CLASSES = ("melanoma", "bcc", "naevus")


def _generate(paths_and_specs: list[tuple[Path, str, int, int]]) -> None:
    """Write the missing mosaics in a child process (its memory is not the backends')."""
    missing = [item for item in paths_and_specs if not item[0].exists()]
    if not missing:
        return
    DATA.mkdir(parents=True, exist_ok=True)
    code = (
        "import json, sys; from pathlib import Path\n"
        "from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic, write_tiff\n"
        "for path, cls, size, seed in json.loads(sys.argv[1]):\n"
        "    write_tiff(SyntheticMosaic(MosaicSpec(cls, size, size, 1.0, seed=seed)), "
        "Path(path))\n"
    )
    spec = json.dumps([[str(p), c, s, seed] for p, c, s, seed in missing])
    subprocess.run([sys.executable, "-c", code, spec], check=True, cwd=REPO)


def agreement_mosaics(n: int, size: int, first_seed: int) -> list[Path]:
    items = [
        (
            DATA / f"agree_{CLASSES[i % 3]}_{size}px_seed{first_seed + i}.tif",
            CLASSES[i % 3],
            size,
            first_seed + i,
        )
        for i in range(n)
    ]
    _generate(items)
    return [item[0] for item in items]


def big_mosaic(size: int) -> Path:
    path = DATA / f"bench_backends_naevus_{size}px_1um.tif"
    _generate([(path, "naevus", size, 8000)])
    return path


def ensure_bundle(model: Path | None) -> Path:
    """A bundle with a sealed ONNX export (the demo model, exported into a copy if need be)."""
    from rcm_viewer.inference import default_bundle_dir, export_onnx, load_bundle

    source = model or default_bundle_dir()
    if load_bundle(source, verify=False).manifest.onnx_file:
        return source
    copy = OUT / f"{Path(source).name}-with-onnx"
    if not copy.exists():
        shutil.copytree(source, copy)
    export_onnx(copy)
    return copy


# ----------------------------------------------------------------------------- agreement


def agreement(bundle_dir: Path, paths: list[Path], backends: list[str]) -> dict:
    import numpy as np

    from rcm_viewer.inference import classify_mosaic, load_bundle
    from rcm_viewer.mosaic import open_mosaic

    bundle = load_bundle(bundle_dir)
    stats = {
        b: {"top_class_agrees": 0, "max_abs_dp": 0.0, "min_heatmap_r": 1.0, "seconds": 0.0}
        for b in backends
        if b != "torch-fp32"
    }
    counted = 0
    for path in paths:
        with open_mosaic(path) as mosaic:
            started = time.perf_counter()
            ref = classify_mosaic(mosaic, bundle, backend="torch-fp32", device="cpu", batch_size=32)
            ref_s = time.perf_counter() - started
            if not ref.ok:
                continue
            counted += 1
            for name, s in stats.items():
                if name == "torch-fp32":  # the reference's own seconds, added below
                    continue
                started = time.perf_counter()
                got = classify_mosaic(mosaic, bundle, backend=name, device="cpu", batch_size=32)
                s["seconds"] += time.perf_counter() - started
                s["top_class_agrees"] += got.top_class == ref.top_class
                s["max_abs_dp"] = max(
                    s["max_abs_dp"],
                    float(np.abs(np.subtract(got.probabilities, ref.probabilities)).max()),
                )
                r = float(np.corrcoef(got.heatmap.ravel(), ref.heatmap.ravel())[0, 1])
                s["min_heatmap_r"] = min(s["min_heatmap_r"], r)
            stats.setdefault("torch-fp32", {"seconds": 0.0})
            stats["torch-fp32"]["seconds"] += ref_s
    return {"mosaics": counted, "size_px": None, **stats}


# ----------------------------------------------------------------------------- one backend


def child(args: argparse.Namespace) -> None:
    """Measure one backend in this (fresh) process and print its JSON."""
    import numpy as np

    started = time.perf_counter()
    from rcm_viewer.inference import classify_mosaic, load_backend, load_bundle
    from rcm_viewer.mosaic import open_mosaic

    bundle = load_bundle(args.bundle)
    backend = load_backend(bundle, args.child, "cpu", batch_size=args.batch_size)
    first_load = time.perf_counter() - started
    result: dict = {"description": backend.description, "first_load_s": round(first_load, 2)}
    if args.child == "openvino":
        from rcm_viewer.inference.backends import OpenVinoBackend

        started = time.perf_counter()
        OpenVinoBackend(bundle, args.batch_size)  # a second compile: the blob is cached now
        result["load_with_warm_cache_s"] = round(time.perf_counter() - started, 2)
    t = bundle.manifest.tile_px
    tiles = np.random.default_rng(0).normal(size=(args.batch_size, 3, t, t)).astype(np.float32)
    backend.run(tiles)
    times = []
    for _ in range(args.batches):
        started = time.perf_counter()
        backend.run(tiles)
        times.append(time.perf_counter() - started)
    result["tiles_per_s"] = round(args.batch_size / statistics.median(times), 1)
    if args.big_path:
        with open_mosaic(args.big_path) as mosaic:
            started = time.perf_counter()
            prediction = classify_mosaic(
                mosaic, bundle, backend=args.child, device="cpu", batch_size=args.batch_size
            )
            result["classify_big_s"] = round(time.perf_counter() - started, 2)
            result["classify_big_tiles"] = prediction.n_tiles
            result["classify_big_top_class"] = prediction.top_class
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


def run_child(name: str, args: argparse.Namespace, bundle: Path, big: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as user:
        env = {**os.environ, "RCM_VIEWER_DATA_DIR": user}  # an empty compiled-model cache
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            name,
            "--bundle",
            str(bundle),
            "--batch-size",
            str(args.batch_size),
            "--batches",
            str(args.batches),
        ]
        if big is not None:
            command += ["--big-path", str(big)]
        out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="mosaics for the agreement")
    parser.add_argument("--size", type=int, default=1024, help="side of those mosaics, px")
    parser.add_argument("--first-seed", type=int, default=881000)
    parser.add_argument("--big", type=int, default=8000, help="end-to-end mosaic side (0: skip)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--big-path", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("RCM_VIEWER_DATA_DIR", str(OUT / "user-data"))
    if args.child:
        child(args)
        return
    backends = [b for b in args.backends.split(",") if b]
    load_before = os.getloadavg()[0]
    bundle = ensure_bundle(args.model)
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "threads": os.environ.get("RCM_VIEWER_TORCH_THREADS", "default"),
        },
        "model": str(bundle),
    }
    big = big_mosaic(args.big) if args.big else None
    per_backend = {name: run_child(name, args, bundle, big) for name in backends}
    ref = per_backend.get("torch-fp32", {})
    for values in per_backend.values():
        if "tiles_per_s" in values and "tiles_per_s" in ref:
            values["tiles_per_s_ratio"] = round(values["tiles_per_s"] / ref["tiles_per_s"], 2)
        if "classify_big_s" in values and "classify_big_s" in ref:
            values["classify_big_speedup"] = round(
                ref["classify_big_s"] / values["classify_big_s"], 2
            )
    report["backends"] = per_backend
    report["big_mosaic"] = {"size_px": args.big, "pixel_size_um": 1.0}
    if args.n > 0:
        paths = agreement_mosaics(args.n, args.size, args.first_seed)
        report["agreement"] = {
            **agreement(bundle, paths, backends),
            "size_px": args.size,
            "first_seed": args.first_seed,
        }
    report["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
