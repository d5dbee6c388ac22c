"""The bundled demo mosaics in resources/demo/ (one per class), and how to remake them.

    python -m rcm_viewer.synthetic.demo [OUT_DIR]

JPEG-compressed (quality 80) pyramidal OME-TIFFs keep the three files at a
few MB in all, and exercise the JPEG-in-TIFF reading path at every start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rcm_viewer.synthetic.generator import MosaicSpec, SyntheticMosaic, write_tiff

DEMO_SPECS: dict[str, MosaicSpec] = {
    "naevus": MosaicSpec("naevus", 2048, 2048, pixel_size_um=0.75, seed=20261125),
    "melanoma": MosaicSpec("melanoma", 2048, 2048, pixel_size_um=0.75, seed=20261126),
    "bcc": MosaicSpec("bcc", 2048, 2048, pixel_size_um=0.75, seed=20261127),
}


def write_demo_mosaics(out_dir: Path) -> list[Path]:
    written = []
    for name, spec in DEMO_SPECS.items():
        path = Path(out_dir) / f"demo_{name}.tif"
        written.append(write_tiff(SyntheticMosaic(spec), path, compression="jpeg", jpeg_quality=80))
    return written


if __name__ == "__main__":
    from rcm_viewer.paths import DEMO_DIR

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_DIR
    for p in write_demo_mosaics(target):
        print(p, p.stat().st_size // 1024, "KiB")
