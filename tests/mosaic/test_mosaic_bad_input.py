"""Bad input: every case raises ``MosaicError`` with one line naming the file and the reason."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import (
    gradient,
    patch_bmp_size,
    write_fake_huge_png,
    write_minimal_tiff,
)
from PIL import Image

from rcm_viewer.errors import RcmError
from rcm_viewer.mosaic import MosaicError, open_mosaic


def _open_error(path: Path, **kwargs) -> str:
    """Open, expect a MosaicError; check the message shape; return it lower-cased."""
    start = time.monotonic()
    with pytest.raises(MosaicError) as caught:
        open_mosaic(path, **kwargs)
    assert time.monotonic() - start < 5, "refusing a file must be quick"
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(path.name), message
    assert isinstance(caught.value, RcmError)
    return message.lower()


def test_nonexistent_path(tmp_path: Path) -> None:
    assert "does not exist" in _open_error(tmp_path / "lesion_07.tif")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "VivaBlock #1"
    folder.mkdir()
    assert "is a folder" in _open_error(folder)


def test_zero_size_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    assert "is empty" in _open_error(path)


def test_tiny_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.tif"
    path.write_bytes(b"abc")
    assert "too small" in _open_error(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"%PDF-1.7\n" + b"x" * 100, "pdf document"),
        (b"GIF89a" + b"\x00" * 100, "gif image"),
        (b"hello, this is a text file" * 4, "not a supported image"),
    ],
)
def test_unsupported_content(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "scan.tif"
    path.write_bytes(content)
    message = _open_error(path)
    assert expected in message and "tiff, png, jpeg and bmp" in message


def _open_error_unprivileged(path: Path) -> str:
    """``_open_error`` in a forked child that runs as ``nobody`` when we are root (root
    reads any file whatever its mode, so chmod alone proves nothing there)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            message = _open_error(path)
        except BaseException as exc:
            message, code = f"child failed: {exc!r}", 1
        os.write(write_fd, message.encode())
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, message
    return message


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and setuid (POSIX)")
def test_no_permission(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rcm-perm-"))  # reachable for nobody (0755)
    folder.chmod(0o755)
    path = folder / "locked.tif"
    try:
        tifffile.imwrite(path, gradient(10, 10))
        path.chmod(0)
        assert "permission denied" in _open_error_unprivileged(path)
    finally:
        path.chmod(0o644)
        shutil.rmtree(folder)


# ---------------------------------------------------------------------- truncated files


def test_truncated_tiled_tiff(tmp_path: Path) -> None:
    path = tmp_path / "lesion_07.tif"
    tifffile.imwrite(path, gradient(512, 512), tile=(64, 64), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _open_error(path)
    assert "is truncated: tile" in message and "of 64 lies beyond the end of the file" in message


def test_truncated_striped_tiff(tmp_path: Path) -> None:
    path = tmp_path / "striped.tif"
    tifffile.imwrite(path, gradient(400, 300), rowsperstrip=20, compression="lzw")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert "is truncated: strip" in _open_error(path)


def test_truncated_uncompressed_single_strip(tmp_path: Path) -> None:
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, gradient(400, 300))
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    assert "is truncated" in _open_error(path)


def test_truncated_tiff_header(tmp_path: Path) -> None:
    path = tmp_path / "header_only.tif"
    tifffile.imwrite(path, gradient(64, 64))
    path.write_bytes(path.read_bytes()[:20])
    assert "tiff" in _open_error(path)


def test_garbage_after_tiff_magic(tmp_path: Path) -> None:
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    assert "not a readable tiff" in _open_error(path)


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(gradient(200, 200, "uint8")).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "is truncated" in _open_error(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(gradient(200, 200, "uint8")).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "is truncated" in _open_error(path)


def test_truncated_bmp(tmp_path: Path) -> None:
    path = tmp_path / "cut.bmp"
    Image.fromarray(gradient(200, 200, "uint8")).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "is truncated" in _open_error(path)


# ---------------------------------------------------------------------- headers that lie


def test_png_header_claiming_100000_px(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    write_fake_huge_png(path)
    message = _open_error(path)
    assert "100000 x 100000" in message


def test_bmp_header_claiming_100000_px(tmp_path: Path) -> None:
    source = tmp_path / "small.bmp"
    Image.fromarray(gradient(16, 16, "uint8")).save(source)
    path = tmp_path / "huge.bmp"
    patch_bmp_size(source, path, 100_000, 100_000)
    message = _open_error(path)
    assert "100000 x 100000" in message and "truncated" in message


def test_tiff_header_claiming_100000_px_with_strips_beyond_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lesion_07.tif"
    rows = 10_000
    write_minimal_tiff(
        path,
        width=100_000,
        height=100_000,
        strip_offsets=[4096 + i * 400_000_000 for i in range(10)],
        strip_bytecounts=[1_000_000_000] * 10,
        rows_per_strip=rows,
    )
    assert path.stat().st_size <= 1024
    message = _open_error(path)
    assert "is truncated: strip 1 of 10 lies beyond the end of the file" in message


def test_tiff_claiming_100000_px_in_one_compressed_strip(tmp_path: Path) -> None:
    """Offsets inside the file but one strip would decode to 10 GB: refused, not allocated."""
    path = tmp_path / "bomb.tif"
    payload = b"\x78\x9c" + b"\x00" * 64
    write_minimal_tiff(
        path,
        width=100_000,
        height=100_000,
        strip_offsets=[1024],
        strip_bytecounts=[len(payload)],
        rows_per_strip=100_000,
        payload=payload,
        compression=8,
    )
    message = _open_error(path)
    assert "budget" in message


def test_uncompressed_tiff_with_short_strip(tmp_path: Path) -> None:
    path = tmp_path / "short.tif"
    write_minimal_tiff(
        path,
        width=100,
        height=100,
        strip_offsets=[1024],
        strip_bytecounts=[500],
        rows_per_strip=100,
        payload=b"\x00" * 600,
    )
    assert "is truncated: strip 1 of 1 holds 500 bytes" in _open_error(path)


def test_flat_image_above_memory_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((600, 600), np.uint8)).save(path)
    message = _open_error(path, memory_budget_bytes=100_000)
    assert "too large to open" in message and "budget" in message


def test_tiff_tile_above_memory_budget(tmp_path: Path) -> None:
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, gradient(512, 512), tile=(256, 256), compression="zlib")
    assert "budget" in _open_error(path, memory_budget_bytes=64 * 1024)


# ---------------------------------------------------------------------- unsupported pixel types


@pytest.mark.parametrize(
    ("dtype", "words"),
    [
        ("complex64", "complex"),
        ("bool", "1-bit"),
    ],
)
def test_unsupported_tiff_dtypes(tmp_path: Path, dtype: str, words: str) -> None:
    # float, signed and 32-bit types open through a pixel map: test_mosaic_pixel_types.py
    path = tmp_path / f"{dtype}.tif"
    tifffile.imwrite(path, (gradient(32, 32) % 2).astype(dtype))
    message = _open_error(path)
    assert "unsupported" in message and words in message


def test_one_bit_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bw.png"
    Image.fromarray(gradient(32, 32, "uint8")).convert("1").save(path)
    assert "1-bit" in _open_error(path)


def test_float_tiff_renamed_png_opens_by_content(tmp_path: Path) -> None:
    path = tmp_path / "float.png"
    tifffile.imwrite(path, np.zeros((8, 8), np.float64))
    with open_mosaic(path) as mosaic:
        assert mosaic.info.format == "tiff" and mosaic.info.pixel_map is not None
        assert any("content is TIFF" in w for w in mosaic.info.warnings)


# ---------------------------------------------------------------------- damage found while reading


def _damage_tile(path: Path, tile_index: int) -> None:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        offset = page.dataoffsets[tile_index]
        count = page.databytecounts[tile_index]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = bytes((i * 37 + 11) % 256 for i in range(count))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", ["zlib", "jpeg", "zstd"])
def test_damaged_tile_raises_on_read_and_names_the_tile(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "damaged.tif"
    image = gradient(256, 256, "uint8")
    tifffile.imwrite(path, image, tile=(64, 64), compression=compression)
    _damage_tile(path, 5)  # tile row 1, column 1
    with open_mosaic(path) as mosaic:  # headers are fine: opens
        ok = mosaic.read_region(0, 0, 0, 64, 64)  # tile 0 still readable
        assert ok.shape == (64, 64)
        with pytest.raises(MosaicError) as caught:
            mosaic.read_region(0, 70, 70, 10, 10)
        message = str(caught.value)
        assert message.startswith("damaged.tif is damaged: tile 6 of 16")
        assert "\n" not in message


def test_file_truncated_after_opening(tmp_path: Path) -> None:
    path = tmp_path / "shrinking.tif"
    tifffile.imwrite(path, gradient(256, 256), tile=(64, 64), compression="zlib")
    with open_mosaic(path) as mosaic:
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
        with pytest.raises(MosaicError, match="shrinking.tif is truncated"):
            mosaic.read_region(0, 192, 192, 64, 64)


def test_damaged_png_data_raises_on_first_read(tmp_path: Path) -> None:
    path = tmp_path / "bad_data.png"
    Image.fromarray(gradient(64, 64, "uint8")).save(path, compress_level=9)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    try:
        mosaic = open_mosaic(path)
    except MosaicError as exc:  # a damaged chunk CRC is also fine to refuse at open
        assert str(exc).startswith("bad_data.png")
        return
    with mosaic, pytest.raises(MosaicError, match=r"^bad_data\.png "):
        mosaic.read_region(0, 0, 0, 10, 10)


def test_closed_mosaic_refuses_reads(tmp_path: Path) -> None:
    path = tmp_path / "closed.tif"
    tifffile.imwrite(path, gradient(64, 64), tile=(32, 32))
    mosaic = open_mosaic(path)
    mosaic.close()
    mosaic.close()  # twice is harmless
    with pytest.raises(MosaicError, match="closed"):
        mosaic.read_region(0, 0, 0, 8, 8)


def test_bad_read_arguments(tmp_path: Path) -> None:
    path = tmp_path / "args.tif"
    tifffile.imwrite(path, gradient(64, 64), tile=(32, 32))
    with open_mosaic(path, memory_budget_bytes=1_000_000) as mosaic:
        with pytest.raises(IndexError):
            mosaic.read_region(1, 0, 0, 8, 8)
        with pytest.raises(ValueError):
            mosaic.read_region(0, 0, 0, 0, 8)
        with pytest.raises(ValueError, match="budget"):
            mosaic.read_region(0, 0, 0, 10_000, 10_000)
