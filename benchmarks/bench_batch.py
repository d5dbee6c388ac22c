"""Batch classification: throughput, time to the first row of a huge folder, flat memory.

Prints one JSON object. Three measurements (issue 12):

1. ``throughput``: N synthetic 2048 x 2048 mosaics (tiled pyramidal TIFF, 0.75 µm/px),
   classified one by one (open + ``classify_mosaic``, the single-mosaic cost), then as a
   batch (``FileScan`` + ``classify_paths`` + ``RowWriter`` appending a CSV row per file,
   what ``rcm-viewer classify`` runs). ``ratio`` = batch time / sum of single times
   (aim <= 1.05: the batch adds hashing, scanning and one fsync per row).
2. ``first_row``: a folder of F files (all tiny and broken but one), time from calling
   the engine (network already loaded once, torch imported) to the first row.
3. ``memory``: peak and current RSS after 100 and after M small mosaics (256 px, classified
   for real): flat if the batch keeps nothing per file.

    python benchmarks/bench_batch.py --mosaics 4 --folder-files 10000 --rss-files 1000

Data goes to benchmarks/data/batch (ignored by git; re-used between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "inference"))


def _rss_mib() -> dict[str, float]:
    values = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kib = line.split()[:2]
                values["current" if key == "VmRSS:" else "peak"] = round(int(kib) / 1024, 1)
    return values


def _synthetic_mosaics(folder: Path, n: int) -> list[Path]:
    from rcm_viewer.synthetic import LESION_CLASSES, write_dataset

    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.rglob("*.tif"))
    if len(existing) >= n:
        return existing[:n]
    per_class = -(-n // len(LESION_CLASSES))
    write_dataset(
        folder,
        per_class=per_class,
        width=2048,
        height=2048,
        seed=500,
        pixel_size_um=0.75,
        bits=8,
        classes=LESION_CLASSES,
    )
    return sorted(folder.rglob("*.tif"))[:n]


def bench_throughput(bundle, files: list[Path], device: str) -> dict:
    from rcm_viewer.inference import classify_mosaic
    from rcm_viewer.inference.batch import FileScan, RowWriter, classify_paths
    from rcm_viewer.mosaic import open_mosaic

    # warm-up: load the network and touch every file once (page cache), so both runs
    # read from memory and the comparison is of the code, not of the disk
    for path in files:
        path.read_bytes()
    with open_mosaic(files[0]) as mosaic:
        classify_mosaic(mosaic, bundle, device=device)
    singles = []
    for path in files:
        started = time.perf_counter()
        with open_mosaic(path) as mosaic:
            classify_mosaic(mosaic, bundle, device=device)
        singles.append(time.perf_counter() - started)
    folder = files[0].parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with RowWriter(Path(tmp) / "rows.csv", bundle.manifest.class_ids) as writer:
            scan = FileScan([folder], recursive=True)
            wanted = set(files)
            rows = 0
            for row in classify_paths((p for p in scan if p in wanted), bundle, device=device):
                writer.write(row)
                rows += 1
        batch = time.perf_counter() - started
    return {
        "mosaics": len(files),
        "size_px": 2048,
        "rows": rows,
        "single_seconds": [round(s, 2) for s in singles],
        "sum_single_seconds": round(sum(singles), 2),
        "batch_seconds": round(batch, 2),
        "mosaics_per_minute": round(60 * len(files) / batch, 2),
        "ratio_batch_to_sum_of_singles": round(batch / sum(singles), 3),
    }


def bench_first_row(bundle, root: Path, n_files: int, good: Path, device: str) -> dict:
    from rcm_viewer.inference.batch import FileScan, classify_paths

    folder = root / f"folder-{n_files}"
    if not folder.exists() or sum(1 for _ in folder.iterdir()) != n_files:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_files - 1):
            (folder / f"tiny_{i:05d}.tif").write_bytes(b"II*\x00" + bytes(12))
        (folder / "zz_good.tif").write_bytes(good.read_bytes())
    started = time.perf_counter()
    scan = FileScan([folder])
    rows = classify_paths(scan, bundle, device=device)
    first = next(rows)
    first_s = time.perf_counter() - started
    rows.close()
    started = time.perf_counter()
    counted = FileScan([folder]).count()
    return {
        "files": n_files,
        "first_row_seconds": round(first_s, 3),
        "first_row_status": first.status[:80],
        "full_scan_seconds": round(time.perf_counter() - started, 3),
        "counted": counted,
        "note": "network already loaded once in this process (torch imported)",
    }


def bench_memory(bundle, root: Path, n_files: int, device: str) -> dict:
    import inference_testkit as kit

    from rcm_viewer.inference.batch import FileScan, RowWriter, classify_paths

    folder = root / f"small-{n_files}"
    folder.mkdir(parents=True, exist_ok=True)
    if sum(1 for _ in folder.iterdir()) != n_files:
        rng = np.random.default_rng(0)
        for i in range(n_files):
            image = (rng.random((256, 256)) * 180 + 40).astype(np.uint8)
            kit.write_tiff(folder / f"m{i:05d}.tif", image, 1.0)
    marks: dict[str, dict[str, float]] = {"before": _rss_mib()}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        RowWriter(Path(tmp) / "rows.jsonl", bundle.manifest.class_ids) as writer,
    ):
        for index, row in enumerate(
            classify_paths(FileScan([folder]), bundle, device=device), start=1
        ):
            writer.write(row)
            if index in (100, n_files):
                marks[f"after_{index}"] = _rss_mib()
    return {
        "files": n_files,
        "size_px": 256,
        "rss_mib": marks,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mosaics", type=int, default=4)
    parser.add_argument("--folder-files", type=int, default=10_000)
    parser.add_argument("--rss-files", type=int, default=1000)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle for the throughput run (default: the bundled one)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=REPO / "benchmarks" / "data" / "batch")
    args = parser.parse_args()
    os.environ.setdefault("RCM_VIEWER_TORCH_THREADS", "2")
    os.environ.setdefault("RCM_VIEWER_DATA_DIR", str(args.data / "user-data"))

    import inference_testkit as kit
    import torch

    from rcm_viewer.inference import default_bundle_dir, load_bundle

    args.data.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(args.model or default_bundle_dir())
    small = kit.random_bundle(Path(tempfile.mkdtemp()) / "random")
    files = _synthetic_mosaics(args.data / "mosaics", args.mosaics)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "model": f"{bundle.manifest.name} {bundle.manifest.version}",
        "throughput": bench_throughput(bundle, files, args.device),
        "first_row": bench_first_row(bundle, args.data, args.folder_files, files[0], args.device),
        "memory": {
            "model": "random ResNet-18, 96 px tiles at 2 µm/px",
            **bench_memory(small, args.data, args.rss_files, args.device),
        },
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
