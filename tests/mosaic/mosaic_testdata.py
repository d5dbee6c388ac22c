"""Helpers that write real test images (and broken ones) for the mosaic tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def gradient(height: int, width: int, dtype: str = "uint16", channels: int = 1) -> np.ndarray:
    """An image where every pixel value differs from its neighbours (catches off-by-ones)."""
    yy, xx = np.mgrid[0:height, 0:width]
    top = 250 if dtype == "uint8" else 65000
    base = (yy * 31 + xx * 7 + (yy * xx) % 13) % top
    if channels == 1:
        return base.astype(dtype)
    planes = [(base + 40 * c) % top for c in range(channels)]
    return np.stack(planes, axis=-1).astype(dtype)


def noise(height: int, width: int, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == "uint8" else 65535
    return rng.integers(0, top + 1, size=(height, width), dtype=np.int64).astype(dtype)


def reference_downsample(image: np.ndarray) -> np.ndarray:
    """2x2 mean, odd edges replicated, rounded half up: what build_levels must produce."""
    arr = image if image.ndim == 3 else image[:, :, None]
    h, w = arr.shape[:2]
    padded = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.float64)
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, arr.shape[2])
    mean = blocks.mean(axis=(1, 3))
    out = np.floor(mean + 0.5).astype(image.dtype)
    return out if image.ndim == 3 else out[:, :, 0]


def expected_region(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """The region as read_region must return it: zeros outside the image."""
    out = np.zeros((h, w, *image.shape[2:]), dtype=image.dtype)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
    if x0 < x1 and y0 < y1:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return out


def border_regions(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Regions inside, across every border and corner, the whole image, and fully outside."""
    return [
        (0, 0, 37, 29),
        (width // 3, height // 4, 150, 90),
        (-20, -15, 60, 50),
        (width - 40, height - 30, 100, 80),
        (width - 10, 5, 50, 20),
        (3, height - 7, 64, 64),
        (0, 0, width, height),
        (-5, -5, width + 10, height + 10),
        (width + 5, height + 5, 16, 16),
        (-100, -100, 50, 50),
    ]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_fake_huge_png(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A tiny but well-formed PNG (valid CRCs) whose header claims a gigantic image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def patch_bmp_size(src: Path, dst: Path, width: int, height: int) -> None:
    """Copy a BMP and overwrite the width/height fields of its BITMAPINFOHEADER."""
    data = bytearray(src.read_bytes())
    data[18:26] = struct.pack("<ii", width, height)
    dst.write_bytes(bytes(data))


def write_minimal_tiff(
    path: Path,
    width: int,
    height: int,
    strip_offsets: list[int],
    strip_bytecounts: list[int],
    rows_per_strip: int,
    payload: bytes = b"",
    compression: int = 1,
    bits: int = 8,
) -> None:
    """Hand-made classic little-endian TIFF: lets a test put any claim in the header.

    ``payload`` (the pixel bytes, if any) starts at byte 1024 of the file.
    """
    n = len(strip_offsets)
    entries: list[tuple[int, int, int, int | bytes]] = []
    header_size = 8
    ifd_size = 2 + 9 * 12 + 4
    extra_at = header_size + ifd_size
    extra = b""

    def longs(tag: int, values: list[int]) -> tuple[int, int, int, int | bytes]:
        nonlocal extra
        if len(values) == 1:
            return (tag, 4, 1, values[0])
        offset = extra_at + len(extra)
        extra += struct.pack(f"<{len(values)}I", *values)
        return (tag, 4, len(values), offset)

    entries.append((256, 4, 1, width))
    entries.append((257, 4, 1, height))
    entries.append((258, 3, 1, bits))
    entries.append((259, 3, 1, compression))
    entries.append((262, 3, 1, 1))
    entries.append(longs(273, strip_offsets))
    entries.append((277, 3, 1, 1))
    entries.append((278, 4, 1, rows_per_strip))
    entries.append(longs(279, strip_bytecounts))
    assert len(entries) == 9 and n >= 1
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3 and count == 1:
            ifd += struct.pack("<HHIHH", tag, typ, count, int(value), 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, int(value))
    ifd += struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", 8) + ifd + extra
    assert len(head) <= 1024
    path.write_bytes(head + b"\x00" * (1024 - len(head)) + payload)
