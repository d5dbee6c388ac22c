"""PNG, JPEG and BMP through Pillow: decoded whole, once, on the first read.

These formats cannot be read by region, so the first ``read_region`` decodes the image
(the UI calls it in a worker). Before that, the header's size claim is checked: against
the memory budget, and against what a file of this size can possibly hold, so a patched
or damaged header claiming 100,000 x 100,000 px is refused instead of allocating 10 GB.

Pillow's own decompression-bomb guard is bypassed on purpose by constructing the format
plugin directly: it would refuse a real 16,000 x 16,000 px mosaic (256 Mpx), and our
budget check replaces it.

Memory is bounded by ``FLAT_DECODE_LIMIT_BYTES`` of decoded pixels, not by the process
budget (Pillow holds its own copy while numpy gets another, and levels are built on top):
a PNG/BMP above it is refused; a JPEG above it is decoded with libjpeg's DCT scaling
(1/2, 1/4, 1/8) into a buffer of the reduced size, and says so in its warnings (the pixel
size is scaled with it). A baseline JPEG whose header claims more 8 x 8 blocks than its
bytes can code (each block needs at least two Huffman bits) is refused as damaged.

JPEG is decoded by ``simplejpeg`` (libjpeg-turbo) with warnings as errors: Pillow and
libjpeg accept a scan cut short or a corrupt Huffman stream and fill the rest with grey,
which must never be shown or classified as tissue.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin

from rcm_viewer.errors import MosaicError
from rcm_viewer.mosaic.model import describe_bytes, mosaic_error, one_line
from rcm_viewer.mosaic.pixel_size import PixelSizeCandidate
from rcm_viewer.mosaic.source import ImageSource, SourceHeader

_PLUGINS: dict[str, Any] = {
    "png": PngImagePlugin.PngImageFile,
    "jpeg": JpegImagePlugin.JpegImageFile,
    "bmp": BmpImagePlugin.BmpImageFile,
}
_FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}

#: Deflate cannot compress better than about 1032:1, so a PNG smaller than its pixel data
#: divided by this is damaged (or its header lies).
_PNG_MAX_RATIO = 1100

#: Decoded pixels of one flat image held in memory at most (the tiled TIFF has no such limit).
FLAT_DECODE_LIMIT_BYTES = 512 * 1024**2

#: Pillow mode -> (target mode for conversion or None, dtype, channels, is_rgb, note).
_MODES: dict[str, tuple[str | None, str, int, bool, str | None]] = {
    "L": (None, "uint8", 1, False, None),
    "LA": ("L", "uint8", 1, False, "the alpha channel is not shown"),
    "I;16": (None, "uint16", 1, False, None),
    "I;16L": (None, "uint16", 1, False, None),
    "I;16B": (None, "uint16", 1, False, None),
    "I;16N": (None, "uint16", 1, False, None),
    "I": (None, "uint16", 1, False, None),  # 16-bit PNG in some Pillow versions; checked on load
    "RGB": (None, "uint8", 3, True, None),
    "RGBA": (None, "uint8", 4, True, None),
    "RGBX": ("RGB", "uint8", 3, True, None),
    "CMYK": ("RGB", "uint8", 3, True, "CMYK colour converted to RGB"),
    "YCbCr": ("RGB", "uint8", 3, True, None),
    "PA": ("RGBA", "uint8", 4, True, None),
}


class FlatSource(ImageSource):
    """A PNG/JPEG/BMP image: one level, one page, decoded on first use."""

    def __init__(self, path: Path, kind: str, file_size: int, memory_budget_bytes: int) -> None:
        self.path = path
        self._kind = kind
        self._file_size = file_size
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._decodes = 0
        self._scale = 1
        fmt = _FORMAT_NAMES[kind]
        try:
            with _PLUGINS[kind](str(path)) as im:
                width, height = im.size
                mode = im.mode
                info = dict(im.info)
                palette_gray = mode == "P" and _palette_is_gray(im)
                tile = list(im.tile)
                progressive = bool(im.info.get("progressive") or im.info.get("progression"))
        except MosaicError:
            raise
        except MemoryError:
            raise mosaic_error(path, f"has a {fmt} header too large to read") from None
        except Exception as exc:  # Pillow raises SyntaxError/OSError/ValueError for bad headers
            raise mosaic_error(
                path, f"is not a readable {fmt} file ({one_line(exc, 120)})"
            ) from None

        if mode == "P":
            self._convert: str | None = (
                "L" if palette_gray else "RGBA" if "transparency" in info else "RGB"
            )
            dtype, channels, is_rgb = (
                "uint8",
                1 if palette_gray else len(self._convert),
                not palette_gray,
            )
            note = None
        elif mode in _MODES:
            self._convert, dtype, channels, is_rgb, note = _MODES[mode]
        elif mode == "1":
            raise mosaic_error(
                path,
                "has an unsupported pixel type: 1-bit (black and white); "
                "only unsigned 8- and 16-bit images can be opened",
            )
        elif mode == "F":
            raise mosaic_error(
                path,
                "has an unsupported pixel type: 32-bit floating point; "
                "only unsigned 8- and 16-bit images can be opened",
            )
        else:
            raise mosaic_error(path, f"has an unsupported {fmt} pixel mode ({mode})")
        self._mode = mode

        itemsize = np.dtype(dtype).itemsize
        decoded_bytes = width * height * channels * itemsize
        self._check_size_claim(width, height, tile, decoded_bytes)
        if kind == "jpeg" and not progressive:
            self._check_jpeg_blocks(width, height)
        full_size = (width, height)
        limit = min(memory_budget_bytes, FLAT_DECODE_LIMIT_BYTES)
        self._strict = kind == "jpeg" and mode in ("L", "RGB") and self._convert is None
        if self._strict and decoded_bytes > limit:
            scale = next((f for f in (2, 4, 8) if decoded_bytes / (f * f) <= limit), 0)
            if scale:
                self._scale = scale
                width, height = -(-width // scale), -(-height // scale)
                decoded_bytes = width * height * channels * itemsize
                note = "; ".join(
                    filter(
                        None,
                        [
                            note,
                            (
                                f"shown at 1/{scale} resolution: its {full_size[0]} x "
                                f"{full_size[1]} px exceed the {describe_bytes(limit)} that a "
                                "JPEG may take in memory "
                                "(save it as a tiled TIFF to view full resolution)"
                            ),
                        ],
                    )
                )
        if kind != "bmp" and decoded_bytes > limit:
            raise mosaic_error(
                path,
                f"is too large to open: {width} x {height} px need {describe_bytes(decoded_bytes)} "
                f"of memory, above the {describe_bytes(limit)} memory budget for a {fmt} image "
                f"(save it as a tiled TIFF to view it)",
            )
        if decoded_bytes > memory_budget_bytes:
            raise mosaic_error(
                path,
                f"is too large to open: {width} x {height} px need {describe_bytes(decoded_bytes)} "
                f"of memory, above the {describe_bytes(memory_budget_bytes)} budget "
                f"(save it as a tiled TIFF to view it)",
            )
        self._check_not_truncated(fmt)

        warnings = [note] if note else []
        candidates = []
        dpi = info.get("dpi")
        if isinstance(dpi, tuple) and dpi and isinstance(dpi[0], int | float) and dpi[0] > 0:
            candidates.append(
                PixelSizeCandidate(
                    25400.0 / float(dpi[0]) * self._scale,
                    "image-resolution",
                    f"{fmt} {dpi[0]:g} dpi"
                    + (f", x{self._scale} (reduced)" if self._scale > 1 else ""),
                )
            )
        bits = 16 if dtype == "uint16" else 8
        colour = {1: "grayscale", 3: "RGB", 4: "RGBA"}[channels]
        self.header = SourceHeader(
            format=kind,
            format_description=f"{fmt}, {bits}-bit {colour}, no stored pyramid",
            width=width,
            height=height,
            dtype=np.dtype(dtype),
            channels=channels,
            is_rgb=is_rgb,
            pages=1,
            stored_levels=[(width, height)],
            metadata={
                "pillow_mode": mode,
                **({"dpi": list(map(float, dpi))} if dpi else {}),
                **(
                    {"decode_scale": self._scale, "full_size": list(full_size)}
                    if self._scale > 1
                    else {}
                ),
            },
            warnings=warnings,
            pixel_size_candidates=candidates,
        )

    def _check_size_claim(self, width: int, height: int, tile: list[Any], decoded: int) -> None:
        """Refuse headers that promise more pixels than the file can possibly contain."""
        if self._kind == "png":
            bits = _png_bits_per_pixel(self.path)
            raw = height * (1 + (width * bits + 7) // 8)
            if raw > self._file_size * _PNG_MAX_RATIO:
                raise mosaic_error(
                    self.path,
                    f"is damaged: its header claims {width} x {height} px, more than a PNG "
                    f"of {describe_bytes(self._file_size)} can hold",
                )
        elif self._kind == "bmp" and tile and tile[0][0] == "raw":
            offset = int(tile[0][2])
            stride = int(tile[0][3][1]) if len(tile[0][3]) > 1 and tile[0][3][1] else 0
            if stride <= 0:
                stride = (decoded // max(height, 1) + 3) // 4 * 4
            needed = offset + stride * height
            if needed > self._file_size:
                raise mosaic_error(
                    self.path,
                    f"is truncated: its header claims {width} x {height} px "
                    f"({describe_bytes(needed)}) but the file holds "
                    f"{describe_bytes(self._file_size)}",
                )

    def _check_jpeg_blocks(self, width: int, height: int) -> None:
        """A baseline scan codes each 8 x 8 block in two bits at the very least."""
        blocks = -(-width // 8) * -(-height // 8)
        if blocks // 8 > self._file_size:
            raise mosaic_error(
                self.path,
                f"is damaged: its header claims {width} x {height} px, more than a JPEG "
                f"of {describe_bytes(self._file_size)} can hold",
            )

    def _decode_strict_jpeg(self) -> np.ndarray:
        """simplejpeg: warnings are errors, DCT scaling, decoded straight into one buffer."""
        data = self.path.read_bytes()
        header = self.header
        out = np.empty((header.height, header.width, header.channels), np.uint8)
        colorspace = "GRAY" if header.channels == 1 else "RGB"
        try:
            result = simplejpeg.decode_jpeg(
                data,
                colorspace=colorspace,
                # libjpeg picks the largest DCT scaling that keeps at least this size
                min_width=header.width if self._scale > 1 else 0,
                min_height=header.height if self._scale > 1 else 0,
                buffer=out,
                strict=True,
            )
        except ValueError as exc:
            raise mosaic_error(
                self.path, f"is damaged: its JPEG data is corrupt ({one_line(exc, 120)})"
            ) from None
        if result.shape != out.shape:
            raise mosaic_error(
                self.path,
                f"is damaged: it decodes to {result.shape[1]} x {result.shape[0]} px, not the "
                f"{header.width} x {header.height} px its header claims",
            )
        return out

    def _check_not_truncated(self, fmt: str) -> None:
        """PNG and JPEG end with a marker; a cut-off copy (a common accident) lacks it."""
        if self._kind not in ("png", "jpeg"):
            return
        marker, window = (b"IEND", 64) if self._kind == "png" else (b"\xff\xd9", 4096)
        try:
            with open(self.path, "rb") as fh:
                fh.seek(max(0, self._file_size - window))
                tail = fh.read(window)
        except OSError as exc:
            raise mosaic_error(self.path, f"cannot be read ({exc.strerror})") from None
        if marker not in tail:
            raise mosaic_error(self.path, f"is truncated: the {fmt} end marker is missing")

    # ------------------------------------------------------------------ pixels

    def _load(self) -> np.ndarray:
        with self._lock:
            if self._closed:
                raise mosaic_error(self.path, "is closed")
            if self._pixels is not None:
                return self._pixels
            fmt = _FORMAT_NAMES[self._kind]
            if self._strict:
                array = self._decode_strict_jpeg()
                array.flags.writeable = False
                self._pixels = array
                self._decodes += 1
                return array
            if self._kind == "jpeg":  # CMYK/YCCK...: Pillow decodes, the strict decoder checks
                try:
                    simplejpeg.decode_jpeg(self.path.read_bytes(), colorspace="GRAY")
                except ValueError as exc:
                    raise mosaic_error(
                        self.path, f"is damaged: its JPEG data is corrupt ({one_line(exc, 120)})"
                    ) from None
            try:
                with _PLUGINS[self._kind](str(self.path)) as im:
                    im.load()
                    if self._convert:
                        im = im.convert(self._convert)
                    array = np.asarray(im)
            except MemoryError:
                raise mosaic_error(self.path, "cannot be opened: not enough memory") from None
            except OSError as exc:
                text = str(exc)
                if "truncated" in text:
                    raise mosaic_error(self.path, f"is truncated ({one_line(text, 120)})") from None
                raise mosaic_error(self.path, f"is damaged ({one_line(text, 120)})") from None
            except Exception as exc:
                raise mosaic_error(
                    self.path,
                    f"is damaged: the {fmt} data cannot be decoded ({one_line(exc, 120)})",
                ) from None
            array = self._normalise(array)
            array.flags.writeable = False
            self._pixels = array
            self._decodes += 1
            return array

    def _normalise(self, array: np.ndarray) -> np.ndarray:
        if array.ndim == 2:
            array = array[:, :, None]
        target = self.header.dtype
        if array.dtype != target:
            out_of_range = array.size and (array.min() < 0 or array.max() > 65535)
            if array.dtype.kind in "iu" and target == np.uint16 and out_of_range:
                raise mosaic_error(self.path, "has pixel values outside the 16-bit range")
            array = array.astype(target)
        elif not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        if array.shape[2] != self.header.channels:
            array = array[:, :, : self.header.channels]
        return np.ascontiguousarray(array)

    def read(self, level: int, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self._load()[y0:y1, x0:x1].copy()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pixels = None

    def stats(self) -> dict[str, int]:
        return {"full_decodes": self._decodes}


def _png_bits_per_pixel(path: Path) -> int:
    """Bits per pixel from the PNG IHDR chunk (bit depth x samples of the colour type)."""
    try:
        with open(path, "rb") as fh:
            ihdr = fh.read(26)
    except OSError:
        return 1
    if len(ihdr) < 26:
        return 1
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ihdr[25], 1)
    return max(1, ihdr[24] * samples)


def _palette_is_gray(im: Image.Image) -> bool:
    palette = im.getpalette() or []
    triples = zip(palette[0::3], palette[1::3], palette[2::3], strict=False)
    return bool(palette) and all(r == g == b for r, g, b in triples)
