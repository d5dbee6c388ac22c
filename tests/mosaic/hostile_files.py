"""The hostile-file generators of benchmarks/bench_hostile.py, for the tests (one copy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_hostile.py"
_spec = importlib.util.spec_from_file_location("bench_hostile", _PATH)
assert _spec is not None and _spec.loader is not None
bench_hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_hostile)

jpeg_bytes = bench_hostile._jpeg
texture = bench_hostile._texture
jpeg_cut_scan = bench_hostile.jpeg_cut_scan
jpeg_randomise_scan = bench_hostile.jpeg_randomise_scan
jpeg_patch_size = bench_hostile.jpeg_patch_size
write_pyramid_with_damaged_base = bench_hostile.write_pyramid_with_damaged_base
write_tiled_tiff = bench_hostile._tiff
zero_deflate = bench_hostile.zero_deflate
write_zero_png = bench_hostile.write_zero_png
