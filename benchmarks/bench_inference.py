"""Inference benchmark: raw ResNet-34 forward per tile vs whole-mosaic classify + heatmap.

    .venv/bin/python benchmarks/bench_inference.py [--device auto|cpu|cuda] [--size 8000]

Prints one JSON object:

* ``raw_forward``: seconds per tile of a batched ResNet-34 forward (``--batch-size`` tiles
  of 224 px, random input, ``torch.inference_mode``), plain ``network(x)`` and our
  ``forward_with_cam`` (the same pass plus the class activation map), interleaved batch by
  batch, median and minimum;
* ``classify``: ``classify_mosaic`` end to end on a synthetic ``--size`` x ``--size`` px
  mosaic at 1 µm/px (tissue mask, reading + resampling, batched forward, heatmap), its
  tile count, and ``overhead_ratio`` = end-to-end seconds / (tiles x median raw seconds
  per tile with the map): 1.0 would mean everything but the network is free; and the
  split of the same run into time inside the network calls and everything else (mask,
  reading, resampling, heatmap), which other jobs' load does not skew;
* ``peak_rss_mib`` (``ru_maxrss``) before and after classifying (the raw timing runs
  after, so it does not count); the mosaic is generated (once, into benchmarks/data/,
  ignored by git) in a separate process so it does not count either;
* the 1-minute load average before and after: on a shared machine, other jobs inflate
  every number here.

The model is an *untrained* ResNet-34 bundle (benchmarks/out/, ignored by git): timing
does not depend on the weights, and its outputs mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
OUT = HERE / "out"


def _mosaic_path(size: int) -> Path:
    return DATA / f"bench_inference_naevus_{size}px_1um.ome.tif"


def ensure_mosaic(size: int) -> tuple[Path, float | None]:
    """Generate the benchmark mosaic in a child process (its memory is not ours)."""
    path = _mosaic_path(size)
    if path.exists():
        return path, None
    DATA.mkdir(parents=True, exist_ok=True)
    code = (
        "import sys; from pathlib import Path; "
        "from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic, write_tiff; "
        f"write_tiff(SyntheticMosaic(MosaicSpec('naevus', {size}, {size}, 1.0, seed=8000)), "
        f"Path(sys.argv[1]))"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=REPO)
    return path, time.perf_counter() - started


def ensure_bundle() -> Path:
    from rcm_viewer.inference import load_bundle, save_bundle
    from rcm_viewer.inference.network import build_network

    directory = OUT / "untrained-resnet34"
    if (directory / "manifest.json").exists():
        load_bundle(directory)
        return directory
    import torch

    torch.manual_seed(0)
    save_bundle(
        build_network("resnet34", 3),
        {
            "name": "untrained-resnet34-benchmark",
            "version": "0",
            "architecture": "resnet34",
            "pixel_size_um": 1.0,
            "tile_px": 224,
            "training": {
                "synthetic": True,
                "data": "none: random weights, for timing only (not a model)",
            },
        },
        directory,
        overwrite=True,
    )
    return directory


def raw_forward(bundle_dir: Path, device: str, batch_size: int, batches: int) -> dict:
    import torch

    from rcm_viewer.inference import load_bundle
    from rcm_viewer.inference.network import forward_with_cam, load_network, resolve_device

    bundle = load_bundle(bundle_dir)
    torch_device = resolve_device(device)
    network = load_network(bundle, torch_device)
    x = torch.rand(batch_size, 3, 224, 224, device=torch_device)
    functions = {"plain": network, "with_cam": lambda t: forward_with_cam(network, t)}
    times: dict[str, list[float]] = {name: [] for name in functions}
    with torch.inference_mode():
        for fn in functions.values():
            fn(x)  # warm-up: kernel selection, allocations
        # interleaved, so a burst of load from other jobs hits both alike
        for _ in range(batches):
            for name, fn in functions.items():
                if torch_device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                fn(x)
                if torch_device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append((time.perf_counter() - started) / batch_size)
    result: dict[str, float] = {}
    for name, values in times.items():
        result[f"{name}_s_per_tile_median"] = statistics.median(values)
        result[f"{name}_s_per_tile_min"] = min(values)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--raw-batches", type=int, default=8)
    parser.add_argument(
        "--backend",
        default="torch-fp32",
        choices=("auto", "torch-fp32", "torch", "openvino"),
        help="backend of the end-to-end classify (default: the reference)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("RCM_VIEWER_DATA_DIR", str(OUT / "user-data"))

    mosaic_path, generated_s = ensure_mosaic(args.size)
    bundle_dir = ensure_bundle()

    import torch

    from rcm_viewer.inference import classify_mosaic, load_bundle
    from rcm_viewer.inference.network import resolve_device
    from rcm_viewer.mosaic import open_mosaic

    torch_device = resolve_device(args.device)
    bundle = load_bundle(bundle_dir)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_before = os.getloadavg()[0]
    # Time the network calls inside classify too: on a shared machine the load changes
    # between measurements, and this split (network vs everything else) does not care.
    from rcm_viewer.inference import load_backend

    runner = load_backend(bundle, args.backend, args.device, batch_size=args.batch_size)
    network_seconds = [0.0]
    original = runner.run

    def timed_forward(batch):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        out = original(batch)  # numpy out: the device has finished
        network_seconds[0] += time.perf_counter() - started
        return out

    runner.run = timed_forward  # type: ignore[method-assign]
    # classify first, so the peak RSS is the engine's (the raw timing runs its own batches)
    try:
        with open_mosaic(mosaic_path) as mosaic:
            started = time.perf_counter()
            prediction = classify_mosaic(
                mosaic, bundle, device=args.device, batch_size=args.batch_size, backend=runner.name
            )
            if torch_device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
    finally:
        runner.run = original  # type: ignore[method-assign]
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raw = raw_forward(bundle_dir, args.device, args.batch_size, args.raw_batches)
    per_tile = raw["with_cam_s_per_tile_median"]
    report = {
        "note": "untrained ResNet-34: timing only; it does not depend on the weights",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(torch_device),
            "backend": runner.description,
            "gpu": torch.cuda.get_device_name(0) if torch_device.type == "cuda" else None,
        },
        "mosaic": {
            "path": str(mosaic_path),
            "size_px": args.size,
            "pixel_size_um": 1.0,
            "generated_s": generated_s,
        },
        "raw_forward": {"batch_size": args.batch_size, "tile_px": 224, **raw},
        "classify": {
            "seconds": round(seconds, 2),
            "n_tiles": prediction.n_tiles,
            "n_tiles_grid": prediction.n_tiles_grid,
            "s_per_tile": seconds / max(prediction.n_tiles, 1),
            "overhead_ratio": seconds / max(prediction.n_tiles * per_tile, 1e-9),
            "network_seconds_inside": round(network_seconds[0], 2),
            "everything_else_seconds": round(seconds - network_seconds[0], 2),
            "ratio_to_network_inside": seconds / max(network_seconds[0], 1e-9),
            "heatmap_shape": list(prediction.heatmap.shape)
            if prediction.heatmap is not None
            else None,
            "heatmap_cell_um": prediction.heatmap_cell_px * prediction.pixel_size_um,
        },
        "peak_rss_mib": {
            "before_classify": round(rss_before, 1),
            "after_classify": round(rss_after, 1),
            "after_raw_forward": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
        },
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
