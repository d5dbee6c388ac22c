"""How the prediction moves when the pixel size is off by +-10 % and +-25 % (JSON).

    PYTHONPATH=. python benchmarks/bench_scale.py --data benchmarks/data/ood_fresh --limit 9

For each synthetic mosaic (true pixel size in the file), classify at the true size and at
0.75, 0.9, 1.1 and 1.25 times it; report per factor the share of mosaics whose top class
changed, the mean absolute change of the true class's probability, and the OOD score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rcm_viewer.inference import load_bundle
from rcm_viewer.inference.engine import classify_mosaic
from rcm_viewer.mosaic import open_mosaic

FACTORS = (0.75, 0.9, 1.0, 1.1, 1.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/rcm-demo-resnet34"))
    parser.add_argument("--data", type=Path, default=Path("benchmarks/data/ood_fresh"))
    parser.add_argument("--limit", type=int, default=9)
    args = parser.parse_args()
    bundle = load_bundle(args.model)
    paths = sorted(args.data.rglob("*.ome.tif"))
    by_class: dict[str, list[Path]] = {}
    for p in paths:
        by_class.setdefault(p.parent.name, []).append(p)
    chosen = [
        p for i in range(args.limit) for ps in by_class.values() if i < len(ps) for p in [ps[i]]
    ][: args.limit]
    started = time.perf_counter()
    rows = []
    for path in chosen:
        with open_mosaic(path) as mosaic:
            true_um = float(mosaic.info.pixel_size_um)
            for f in FACTORS:
                p = classify_mosaic(mosaic, bundle, pixel_size_um=true_um * f, device="cpu")
                rows.append(
                    {
                        "file": path.name,
                        "class": path.parent.name,
                        "factor": f,
                        "top": p.top_class,
                        "p_true": p.probability(path.parent.name),
                        "ood_score": p.ood_score,
                        "in_distribution": p.in_distribution,
                    }
                )
    summary = {}
    for f in FACTORS:
        changed, delta, ood = [], [], []
        for r in (r for r in rows if r["factor"] == f):
            base = next(b for b in rows if b["file"] == r["file"] and b["factor"] == 1.0)
            changed.append(r["top"] != base["top"])
            delta.append(abs((r["p_true"] or 0) - (base["p_true"] or 0)))
            ood.append(r["ood_score"] or 0)
        summary[f"{(f - 1) * 100:+.0f}%"] = {
            "top_class_changed": round(float(np.mean(changed)), 3),
            "mean_abs_change_p_true": round(float(np.mean(delta)), 3),
            "median_ood_score": round(float(np.median(ood)), 3),
            "accuracy": round(
                float(np.mean([r["top"] == r["class"] for r in rows if r["factor"] == f])), 3
            ),
        }
    print(
        json.dumps(
            {
                "benchmark": "bench_scale",
                "model": bundle.manifest.display_name,
                "mosaics": len(chosen),
                "seconds": round(time.perf_counter() - started, 1),
                "by_factor": summary,
                "rows": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
