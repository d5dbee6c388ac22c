"""Peak memory and time for hostile and damaged files (issue 16, findings 1, 2 and 6).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_hostile.py [--out benchmarks/data]
        [--only NAME ...] [--skip-classify] [--cases 10000]

Writes the hostile files into ``--out`` (ignored by git; a few MB each, however many pixels
they claim), then runs each probe in its own subprocess so ``ru_maxrss`` is that probe's
own peak:

* ``open``: ``open_mosaic`` + ``build_levels`` + reading the overview (what the viewer does
  before the first frame), then ``check_damage()``; outcome "ok", "damaged: ..." or the
  one-line ``MosaicError``;
* ``classify``: ``rcm-viewer classify FILE`` with the bundled demo model.

The zlib streams of all-zero pixels are built from full-flush deflate segments repeated
(each segment is independent after a full flush), so a 2 GiB stream takes a second, not a
minute. ``--cases N`` also times ``CaseStore.full_check()`` on a database of N cases.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
_CHUNK = 4 * 1024 * 1024


def zero_deflate(total: int) -> bytes:
    """A zlib stream of ``total`` zero bytes, fast (repeated full-flush segments)."""

    def segment(n: int) -> bytes:
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        return co.compress(bytes(n)) + co.flush(zlib.Z_FULL_FLUSH)

    full, rest = divmod(total, _CHUNK)
    parts = [b"\x78\xda"]
    if full:
        parts.append(segment(_CHUNK) * full)
    if rest:
        parts.append(segment(rest))
    parts.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))
    adler = 1
    block = bytes(_CHUNK)
    for _ in range(full):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(bytes(rest), adler)
    parts.append(struct.pack(">I", adler))
    return b"".join(parts)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_zero_png(path: Path, width: int, height: int) -> None:
    """A real, valid 8-bit grayscale PNG of zeros (filter 0 rows: the raw stream is zeros)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zero_deflate(height * (1 + width))
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr))
        for i in range(0, len(data), 1 << 20):
            fh.write(_png_chunk(b"IDAT", data[i : i + (1 << 20)]))
        fh.write(_png_chunk(b"IEND", b""))


def _tiff(
    path: Path,
    width: int,
    height: int,
    bits: int,
    tile: int,
    compression: int,
    tiles: list[bytes | None],
) -> None:
    """A minimal classic tiled TIFF; ``None`` tiles are sparse (offset and count 0)."""
    count = len(tiles)
    entries = []
    header = 8
    ifd_size = 2 + 12 * 11 + 4
    offsets_at = header + ifd_size
    counts_at = offsets_at + 4 * count
    res_at = counts_at + 4 * count
    data_at = res_at + 8
    offsets, counts, blobs, pos = [], [], [], data_at
    for t in tiles:
        if t is None:
            offsets.append(0)
            counts.append(0)
        else:
            offsets.append(pos)
            counts.append(len(t))
            blobs.append(t)
            pos += len(t)

    def entry(tag: int, kind: int, n: int, value: int) -> bytes:
        if kind == 3 and n == 1:
            return struct.pack("<HHIHH", tag, kind, n, value, 0)
        return struct.pack("<HHII", tag, kind, n, value)

    entries = [
        entry(256, 4, 1, width),
        entry(257, 4, 1, height),
        entry(258, 3, 1, bits),
        entry(259, 3, 1, compression),
        entry(262, 3, 1, 1),
        entry(277, 3, 1, 1),
        entry(282, 5, 1, res_at),
        entry(322, 3, 1, tile),
        entry(323, 3, 1, tile),
        entry(324, 4, count, offsets_at),
        entry(325, 4, count, counts_at),
    ]
    with open(path, "wb") as fh:
        fh.write(b"II*\x00" + struct.pack("<I", header))
        fh.write(struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0))
        fh.write(struct.pack(f"<{count}I", *offsets))
        fh.write(struct.pack(f"<{count}I", *counts))
        fh.write(struct.pack("<II", 20000, 1))  # 20,000 px per inch ~ 1.27 µm (no unit tag)
        for blob in blobs:
            fh.write(blob)


def _texture(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    image = 90 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + rng.normal(0, 18, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90, dpi=(25400 / 0.75, 25400 / 0.75))
    return buffer.getvalue()


def _scan_span(data: bytes) -> tuple[int, int]:
    sos = data.find(b"\xff\xda")
    length = int.from_bytes(data[sos + 2 : sos + 4], "big")
    return sos + 2 + length, len(data) - 2


def jpeg_cut_scan(data: bytes) -> bytes:
    start, end = _scan_span(data)
    return data[: start + (end - start) // 2] + b"\xff\xd9"


def jpeg_randomise_scan(data: bytes, fraction: float = 0.2, seed: int = 1) -> bytes:
    """Randomise a fraction of the entropy-coded bytes (never creating markers)."""
    start, end = _scan_span(data)
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    picks = rng.choice(np.arange(start, end), size=int((end - start) * fraction), replace=False)
    for i in picks:
        if out[i] != 0xFF and out[i - 1] != 0xFF:
            out[i] = int(rng.integers(0, 255))
    return bytes(out)


def jpeg_patch_size(data: bytes, width: int, height: int) -> bytes:
    sof = data.find(b"\xff\xc0")
    out = bytearray(data)
    out[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def write_pyramid_with_damaged_base(path: Path, size: int) -> None:
    """A JPEG-tiled SubIFD pyramid whose full-resolution tiles have randomised scans."""
    import tifffile

    image = _texture(size, 3)
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            image,
            tile=(256, 256),
            compression="jpeg",
            subifds=1,
            resolution=(1 / 0.75e-4, 1 / 0.75e-4),
            resolutionunit="CENTIMETER",
        )
        half = image.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3)).astype(np.uint8)
        tif.write(half, tile=(256, 256), compression="jpeg", subfiletype=1)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    data = bytearray(path.read_bytes())
    for n, (offset, count) in enumerate(spans):
        tile = bytes(data[offset : offset + count])
        data[offset : offset + count] = jpeg_randomise_scan(tile, 0.2, seed=n)
    path.write_bytes(bytes(data))


def make_files(out: Path, only: set[str] | None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    good = _jpeg(_texture(2048))
    makers = {
        "jpeg_scan_cut.jpg": lambda p: p.write_bytes(jpeg_cut_scan(good)),
        "jpeg_scan_20pct_random.jpg": lambda p: p.write_bytes(jpeg_randomise_scan(good)),
        "tiff_base_tiles_random.tif": lambda p: write_pyramid_with_damaged_base(p, 2048),
        "jpeg_header_46000px.jpg": lambda p: p.write_bytes(
            jpeg_patch_size(_jpeg(_texture(64)), 46000, 46000)
        ),
        "png_46000px.png": lambda p: write_zero_png(p, 46000, 46000),
        "tiff_sparse_100000px.tif": lambda p: _tiff(
            p, 100_000, 100_000, 8, 256, 8, [None] * (391 * 391)
        ),
        "tiff_one_tile_32768px_u16.tif": lambda p: _tiff(
            p, 32768, 32768, 16, 32768, 8, [zero_deflate(32768 * 32768 * 2)]
        ),
        "jpeg_good_2048px.jpg": lambda p: p.write_bytes(good),
    }
    paths = {}
    for name, make in makers.items():
        if only and name not in only:
            continue
        path = out / name
        if not path.exists():
            make(path)
        paths[name] = path
    return paths


_OPEN_PROBE = """
import json, resource, sys, time
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.errors import RcmError
t = time.perf_counter()
try:
    with open_mosaic(sys.argv[1]) as m:
        m.build_levels()
        top = m.level_count - 1
        m.read_region(top, 0, 0, m.info.levels[top].width if top < len(m.info.levels)
                      else 1024, 64)
        damage = m.check_damage() if hasattr(m, "check_damage") else []
        outcome = ("damaged: " + damage[0]) if damage else "ok"
except RcmError as exc:
    outcome = "refused: " + str(exc)
except MemoryError:
    outcome = "MemoryError"
print(json.dumps({"outcome": outcome[:200], "seconds": round(time.perf_counter() - t, 2)}))
"""


def _run(args: list[str], timeout: float) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"outcome": f"timeout after {timeout:.0f} s"}
    return {
        "rc": proc.returncode,
        "stdout": out.strip(),
        "stderr": err.strip()[-300:],
        "wall_s": round(time.perf_counter() - start, 2),
        "rusage_maxrss": rusage.ru_maxrss,
    }


def probe(path: Path, kind: str, timeout: float) -> dict:
    # each probe in a fresh interpreter started by a fresh helper, so RUSAGE_CHILDREN is its own
    if kind == "open":
        cmd = [sys.executable, "-c", _OPEN_PROBE, str(path)]
    else:
        # the pixel size is given: the sparse TIFF has none, and memory is what is measured
        cmd = [
            sys.executable,
            "-m",
            "rcm_viewer",
            "classify",
            str(path),
            "--device",
            "cpu",
            "--pixel-size-um",
            "0.75",
        ]
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': p.returncode, 'out': p.stdout.strip()[-300:],"
        " 'err': p.stderr.strip()[-300:], 'seconds': round(time.perf_counter() - t, 2),"
        " 'peak_rss_mb': round(r.ru_maxrss / 1024)}))\n"
    )
    result = _run([sys.executable, "-c", wrapper, *cmd], timeout)
    try:
        return json.loads(result["stdout"].splitlines()[-1])
    except (KeyError, IndexError, ValueError):
        return result


def bench_full_check(cases: int) -> dict:
    sys.path.insert(0, str(REPO))
    from rcm_viewer.cases import CaseStore

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "cases.sqlite3"
        with CaseStore(db) as store:
            conn = store._connection()
            now = "2025-01-01T00:00:00.000000+00:00"
            t = time.perf_counter()
            for i in range(cases):
                store.create_case(user="bench", reader_mode="ai_visible", case_id=f"B-{i:06d}")
            created = time.perf_counter() - t
            audit_rows = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
            size = db.stat().st_size + Path(f"{db}-wal").stat().st_size
            t = time.perf_counter()
            problems = store.full_check() if hasattr(store, "full_check") else None
            check_s = time.perf_counter() - t
            t = time.perf_counter()
            backup = store.backup_now() if hasattr(store, "backup_now") else None
            backup_s = time.perf_counter() - t
            del now
        return {
            "cases": cases,
            "audit_rows": audit_rows,
            "db_mb": round(size / 1e6, 1),
            "create_s": round(created, 1),
            "full_check_s": round(check_s, 2),
            "problems": problems,
            "backup_s": round(backup_s, 2),
            "backup_mb": round(backup.stat().st_size / 1e6, 1) if backup else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "data" / "hostile")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--skip-classify", action="store_true")
    parser.add_argument("--cases", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    baseline = probe(Path(os.devnull), "open", args.timeout)
    report: dict = {"python_baseline_open_probe": baseline, "probes": {}}
    for name, path in make_files(args.out, set(args.only) if args.only else None).items():
        entry = {
            "file_kb": round(path.stat().st_size / 1024, 1),
            "open": probe(path, "open", args.timeout),
        }
        if not args.skip_classify:
            entry["classify"] = probe(path, "classify", args.timeout)
        report["probes"][name] = entry
        print(name, json.dumps(entry), file=sys.stderr, flush=True)
    if args.cases:
        report["full_check"] = bench_full_check(args.cases)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
