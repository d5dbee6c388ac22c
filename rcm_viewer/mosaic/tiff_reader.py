"""TIFF reader: headers through tifffile, pixels tile by tile (or strip by strip) ourselves.

tifffile's ``aszarr`` would give region reads, but it needs zarr; instead the offsets and
byte counts of each tile/strip come from tifffile, the bytes are read with our own file
handle (one lock around seek+read, decoding outside it so threads decode in parallel), and
tifffile's per-page ``decode`` turns them into pixels. Only the tiles/strips that intersect
a region are touched. Uncompressed strips are read row by row, so a single-strip 16,000 px
image does not load half a gigabyte for a 256 px view.

Damage found at open (a tile/strip beyond the end of the file, too few bytes for an
uncompressed strip) refuses the file. Damage only found while decoding (garbage inside a
compressed tile) raises ``MosaicError`` from ``read_region`` naming the tile: a blank tile
would look like an unscanned margin, and a reader must not mistake damage for anatomy.

libjpeg only *warns* about most damage inside JPEG data (a scan cut short, a bad Huffman
code) and fills the rest with grey or noise, which tifffile/imagecodecs hand back as
pixels. So each JPEG tile is also run through a strict decoder (``simplejpeg``, libjpeg-
turbo with warnings as errors): an 8-bit grayscale tile (RCM) is decoded by it alone,
other JPEG tiles are decoded as before and checked by it. Every damaged segment is
remembered for :meth:`TiffSource.damage_report`.

One segment is decoded whole, so a single tile larger than ``SEGMENT_LIMIT_BYTES``
(e.g. one 32,768 x 32,768 16-bit tile, 2 GiB) is refused at open: the memory budget is a
bound on the process, not on one decode.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import tifffile

from rcm_viewer.errors import MosaicError
from rcm_viewer.mosaic.cache import SegmentCache
from rcm_viewer.mosaic.model import (
    MAPPED_DTYPES,
    SUPPORTED_DTYPES,
    describe_bytes,
    describe_dtype,
    mosaic_error,
    one_line,
)
from rcm_viewer.mosaic.pixel_size import (
    PixelSizeCandidate,
    length_to_um,
    ome_image_description,
    ome_pixel_size,
    resolution_to_um,
    unit_to_um,
)
from rcm_viewer.mosaic.source import ImageSource, SourceHeader

log = logging.getLogger(__name__)

#: Largest tile/strip decoded in one piece (several may be decoded at once by the tile
#: threads, and tifffile may hold a second copy while unpacking).
SEGMENT_LIMIT_BYTES = 256 * 1024**2
_JPEG = 7


class _TifffileToOurLog(logging.Handler):
    """Send tifffile's complaints about odd files to our log at INFO level.

    Unhandled, they would reach Python's last-resort handler and print extra lines on
    stderr next to our one-line error; what matters reaches the user as ``MosaicError``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        log.info("tifffile: %s", record.getMessage())


_tifffile_log = logging.getLogger("tifffile")
if not any(isinstance(h, _TifffileToOurLog) for h in _tifffile_log.handlers):
    _tifffile_log.addHandler(_TifffileToOurLog())

#: Uncompressed strips larger than this are read row by row instead of whole.
_DIRECT_STRIP_BYTES = 1024 * 1024

_COMPRESSION_NAMES = {
    "NONE": "uncompressed",
    "LZW": "LZW",
    "ADOBE_DEFLATE": "deflate",
    "DEFLATE": "deflate",
    "JPEG": "JPEG",
    "OJPEG": "old-style JPEG",
    "ZSTD": "Zstandard",
    "PACKBITS": "PackBits",
    "LZMA": "LZMA",
    "WEBP": "WebP",
    "JPEG2000": "JPEG 2000",
    "JPEGXL": "JPEG XL",
    "PNG": "PNG",
}

# TIFF Photometric values (TIFF 6.0).
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _YCBCR = 0, 1, 2, 3, 6
_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}


@dataclass
class _Plane:
    """One stored image: a (level, page) pair, with what is needed to read its segments."""

    level: int
    page: int
    width: int
    height: int
    tiled: bool
    seg_w: int
    seg_h: int
    across: int
    down: int
    sample_planes: int  # samples stored in separate planes (planar config 2), else 1
    contig_samples: int  # samples interleaved inside one segment
    offsets: np.ndarray
    bytecounts: np.ndarray
    decode: Callable[..., Any]
    decode_kwargs: dict[str, Any]
    direct_dtype: np.dtype | None  # set when uncompressed strips may be read row by row
    invert_max: int | None  # MinIsWhite: value to subtract from
    compression: int = 1
    jpegtables: bytes | None = None
    strict_gray: bool = False  # 8-bit, 1 sample: the strict JPEG decoder decodes it alone

    @property
    def label(self) -> str:
        return "tile" if self.tiled else "strip"

    @property
    def segment_count(self) -> int:
        return self.across * self.down * self.sample_planes


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Keep metadata JSON-friendly (``info --json``, reports); drop what cannot be shown."""
    if depth > 4:
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        if isinstance(value, str) and len(value) > 2000:
            return value[:2000] + "..."
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return None
    if isinstance(value, dict):
        out = {}
        for key, item in list(value.items())[:100]:
            converted = _jsonable(item, depth + 1)
            if converted is not None:
                out[str(key)] = converted
        return out
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)[:100]
        return [_jsonable(item, depth + 1) for item in items]
    return str(value)[:200]


class TiffSource(ImageSource):
    """A TIFF (classic or BigTIFF; plain, OME, ImageJ, pyramidal, stacks) opened lazily."""

    def __init__(
        self,
        path: Path,
        file_size: int,
        memory_budget_bytes: int,
        cache_bytes: int,
    ) -> None:
        self.path = path
        self._file_size = file_size
        self._budget = memory_budget_bytes
        self._cache = SegmentCache(cache_bytes)
        self._io_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._segments_decoded = 0
        self._bytes_read = 0
        self._damage: dict[tuple[int, int, int], str] = {}
        self._planes: list[list[_Plane]] = []
        self._channel_select: list[int] = [0]
        try:
            with tifffile.TiffFile(path) as tif:
                self.header = self._inspect(tif)
        except MosaicError:
            raise
        except (MemoryError, RecursionError):
            raise mosaic_error(path, "has a TIFF header too large or too deep to read") from None
        except Exception as exc:  # tifffile raises many types for broken files
            raise mosaic_error(path, f"is not a readable TIFF file ({one_line(exc)})") from exc
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 (kept open for the Mosaic's lifetime)
        except OSError as exc:
            raise mosaic_error(path, f"cannot be read ({exc.strerror})") from None

    # ------------------------------------------------------------------ headers

    def _inspect(self, tif: tifffile.TiffFile) -> SourceHeader:
        series_list = tif.series
        if not series_list:
            raise mosaic_error(
                self.path,
                "is not a readable TIFF file: no image found in it (damaged or truncated?)",
            )
        s0 = series_list[0]
        level_series = list(s0.levels)
        level_pages: list[list[Any]] = []
        for lv in level_series:
            pages = list(lv.pages)
            if not pages or any(p is None for p in pages):
                break
            if level_pages and len(pages) != len(level_pages[0]):
                break
            level_pages.append(pages)
        if not level_pages:
            raise mosaic_error(self.path, "is a damaged TIFF file: its first image has no pages")

        # VivaStack-like files written as one series per page: same shape -> more pages.
        if len(level_pages[0]) == 1 and len(series_list) > 1:
            for extra in series_list[1:]:
                if (
                    extra.shape != s0.shape
                    or extra.dtype != s0.dtype
                    or len(extra.levels) < len(level_pages)
                    or any(len(extra.levels[i].pages) != 1 for i in range(len(level_pages)))
                ):
                    break
                for i in range(len(level_pages)):
                    level_pages[i].append(extra.levels[i].pages[0])

        base_kf = level_pages[0][0].keyframe
        self._check_pixel_type(base_kf)
        channels, is_rgb, warnings = self._channels(base_kf)
        dtype = np.dtype(base_kf.dtype)

        # Keep only levels that really are smaller versions of the same image.
        kept: list[list[Any]] = [level_pages[0]]
        for pages in level_pages[1:]:
            kf = pages[0].keyframe
            prev = kept[-1][0].keyframe
            if (
                kf.imagewidth >= prev.imagewidth
                or kf.imagelength >= prev.imagelength
                or kf.samplesperpixel != base_kf.samplesperpixel
                or kf.dtype != base_kf.dtype
            ):
                warnings.append(f"ignored a TIFF level of {kf.imagewidth} x {kf.imagelength} px")
                break
            kept.append(pages)

        for level, pages in enumerate(kept):
            row: list[_Plane] = []
            for page_index, page in enumerate(pages):
                row.append(self._make_plane(level, page_index, page, len(kept), len(pages)))
            self._planes.append(row)

        base = self._planes[0][0]
        header = SourceHeader(
            format="tiff",
            format_description=self._describe(tif, base_kf, len(kept), len(kept[0])),
            width=base.width,
            height=base.height,
            dtype=dtype,
            channels=channels,
            is_rgb=is_rgb,
            pages=len(kept[0]),
            stored_levels=[(row[0].width, row[0].height) for row in self._planes],
            warnings=warnings,
            row_hint=base.seg_h if base.direct_dtype is None else 0,
        )
        self._read_metadata(tif, s0, base_kf, header)
        if int(base_kf.photometric) == _PALETTE:
            header.palette = self._palette(level_pages[0][0])
        return header

    def _palette(self, page: Any) -> np.ndarray:
        """The colour table of a palette TIFF, shape (3, entries); ``pixel_map`` expands it."""
        colormap = getattr(page, "colormap", None)
        if colormap is None:
            raise mosaic_error(self.path, "is a palette TIFF without its colour table")
        table = np.asarray(colormap)
        if table.ndim != 2 or table.shape[0] != 3:
            raise mosaic_error(self.path, "has a damaged colour table")
        return table

    def _check_pixel_type(self, kf: Any) -> None:
        if kf.imagedepth > 1:
            raise mosaic_error(
                self.path, "is a volumetric (3-D tiled) TIFF, which is not supported"
            )
        if kf.dtype is None:
            raise mosaic_error(
                self.path,
                f"has an unsupported pixel type ({kf.bitspersample}-bit, sample format "
                f"{int(kf.sampleformat)}); 1-bit, complex and packed pixel types cannot be "
                "opened",
            )
        name = np.dtype(kf.dtype).name
        if name not in SUPPORTED_DTYPES and name not in MAPPED_DTYPES:
            raise mosaic_error(
                self.path,
                f"has an unsupported pixel type: {describe_dtype(name)}; "
                "1-bit and complex images cannot be opened",
            )
        photometric = int(kf.photometric)
        if photometric == _PALETTE and (name not in SUPPORTED_DTYPES or kf.samplesperpixel != 1):
            raise mosaic_error(
                self.path,
                f"uses a colour palette with {describe_dtype(name)} indices, "
                "which is not supported",
            )
        if photometric == _YCBCR and int(kf.compression) not in _JPEG_COMPRESSIONS:
            raise mosaic_error(
                self.path, "stores YCbCr colour without JPEG, which is not supported"
            )
        if photometric not in (_MINISWHITE, _MINISBLACK, _RGB, _YCBCR, _PALETTE):
            name = getattr(kf.photometric, "name", str(photometric))
            raise mosaic_error(self.path, f"uses the {name} colour model, which is not supported")
        compression = int(kf.compression)
        if compression != 1:
            try:
                tifffile.TIFF.DECOMPRESSORS[compression]
            except (KeyError, ImportError, AttributeError):
                name = getattr(kf.compression, "name", str(compression))
                raise mosaic_error(
                    self.path, f"uses {name} compression, which cannot be decoded here"
                ) from None

    def _channels(self, kf: Any) -> tuple[int, bool, list[str]]:
        spp = int(kf.samplesperpixel)
        photometric = int(kf.photometric)
        warnings: list[str] = []
        if photometric in (_RGB, _YCBCR):
            if spp < 3:
                raise mosaic_error(self.path, f"claims RGB colour with {spp} sample(s) per pixel")
            channels = 4 if spp == 4 else 3
            if spp > 4:
                warnings.append(f"only the first 3 of {spp} colour samples are shown")
            self._channel_select = list(range(channels))
            return channels, True, warnings
        if spp > 1:
            warnings.append(f"only the first of {spp} samples per pixel is shown")
        self._channel_select = [0]
        return 1, False, warnings

    def _make_plane(
        self, level: int, page_index: int, page: Any, nlevels: int, npages: int
    ) -> _Plane:
        kf = page.keyframe
        width, height = int(kf.imagewidth), int(kf.imagelength)
        spp = int(kf.samplesperpixel)
        separate = int(kf.planarconfig) == 2 and spp > 1
        tiled = bool(kf.is_tiled)
        if tiled:
            seg_w, seg_h = int(kf.tilewidth), int(kf.tilelength)
        else:
            seg_w, seg_h = width, max(1, min(int(kf.rowsperstrip or height), height))
        across = math.ceil(width / seg_w)
        down = math.ceil(height / seg_h)
        sample_planes = spp if separate else 1
        contig = 1 if separate else spp
        itemsize = np.dtype(kf.dtype).itemsize
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        bytecounts = np.asarray(page.databytecounts, dtype=np.int64)

        where = ""
        if nlevels > 1 or npages > 1:
            where = f" (level {level}, page {page_index})" if npages > 1 else f" (level {level})"
        label = "tile" if tiled else "strip"
        expected = across * down * sample_planes
        if len(offsets) < expected or len(bytecounts) < expected:
            raise mosaic_error(
                self.path,
                f"is damaged: it lists {min(len(offsets), len(bytecounts))} {label}s "
                f"where {expected} are needed{where}",
            )
        offsets, bytecounts = offsets[:expected], bytecounts[:expected]
        present = bytecounts > 0
        beyond = np.flatnonzero(present & (offsets + bytecounts > self._file_size))
        if beyond.size:
            raise mosaic_error(
                self.path,
                f"is truncated: {label} {int(beyond[0]) + 1} of {expected} lies beyond the end "
                f"of the file{where}",
            )
        if np.any(present & (offsets < 8)):
            raise mosaic_error(
                self.path, f"is damaged: a {label} points into the file header{where}"
            )

        compression = int(kf.compression)
        bits = int(kf.bitspersample) if not isinstance(kf.bitspersample, tuple) else 0
        byte_aligned = bits == itemsize * 8
        direct = (
            compression == 1
            and not tiled
            and int(kf.predictor) == 1
            and int(kf.fillorder) == 1
            and byte_aligned
            and not separate
        )
        if compression == 1 and byte_aligned:
            # Uncompressed: each segment must hold all of its pixels.
            rows = np.full(expected, seg_h, dtype=np.int64)
            if not tiled:
                strip_row = (np.arange(expected) % down) * seg_h
                rows = np.minimum(seg_h, height - strip_row)
            needed = rows * seg_w * contig * itemsize
            short = np.flatnonzero(present & (bytecounts < needed))
            if short.size:
                i = int(short[0])
                raise mosaic_error(
                    self.path,
                    f"is truncated: {label} {i + 1} of {expected} holds {int(bytecounts[i])} "
                    f"bytes but its pixels need {int(needed[i])}{where}",
                )
        segment_bytes = seg_w * seg_h * contig * itemsize
        limit = min(self._budget, SEGMENT_LIMIT_BYTES)
        if not direct and segment_bytes > limit and np.any(present):
            raise mosaic_error(
                self.path,
                f"cannot be opened: one {label} of {seg_w} x {seg_h} px needs "
                f"{describe_bytes(segment_bytes)} of memory to decode, above the "
                f"{describe_bytes(limit)} memory budget for one {label}{where} "
                "(save it with smaller tiles)",
            )
        try:
            decode = kf.decode
        except Exception as exc:
            raise mosaic_error(self.path, f"cannot be decoded ({one_line(exc)})") from None
        decode_kwargs: dict[str, Any] = {}
        if compression in _JPEG_COMPRESSIONS:
            decode_kwargs["jpegtables"] = getattr(page, "jpegtables", None) or kf.jpegtables
            decode_kwargs["jpegheader"] = kf.jpegheader
        invert_max = (
            (1 << bits) - 1
            if int(kf.photometric) == _MINISWHITE and bits and np.dtype(kf.dtype).kind == "u"
            else None
        )
        direct_dtype = None
        if direct and seg_h * seg_w * contig * itemsize > _DIRECT_STRIP_BYTES:
            direct_dtype = np.dtype(kf.parent.byteorder + np.dtype(kf.dtype).char)
        return _Plane(
            level=level,
            page=page_index,
            width=width,
            height=height,
            tiled=tiled,
            seg_w=seg_w,
            seg_h=seg_h,
            across=across,
            down=down,
            sample_planes=sample_planes,
            contig_samples=contig,
            offsets=offsets,
            bytecounts=bytecounts,
            decode=decode,
            decode_kwargs=decode_kwargs,
            direct_dtype=direct_dtype,
            invert_max=invert_max,
            compression=compression,
            jpegtables=bytes(decode_kwargs.get("jpegtables") or b"") or None,
            strict_gray=(
                compression == _JPEG
                and spp == 1
                and itemsize == 1
                and bits == 8
                and int(kf.photometric) in (0, 1)
            ),
        )

    def _describe(self, tif: tifffile.TiffFile, kf: Any, nlevels: int, npages: int) -> str:
        kind = "OME-TIFF" if tif.is_ome else "ImageJ TIFF" if tif.is_imagej else "TIFF"
        parts = [kind]
        if tif.is_bigtiff:
            parts.append("BigTIFF")
        if kf.is_tiled:
            parts.append(f"tiled {kf.tilewidth}x{kf.tilelength}")
        elif int(kf.rowsperstrip or kf.imagelength) >= kf.imagelength:
            parts.append("single strip")
        else:
            parts.append(f"striped ({kf.rowsperstrip} rows per strip)")
        compression = getattr(kf.compression, "name", str(kf.compression))
        parts.append(_COMPRESSION_NAMES.get(compression, compression.lower()))
        parts.append(f"{nlevels} stored levels" if nlevels > 1 else "no stored pyramid")
        if npages > 1:
            parts.append(f"{npages} pages")
        return ", ".join(parts)

    def _read_metadata(
        self, tif: tifffile.TiffFile, s0: Any, kf: Any, header: SourceHeader
    ) -> None:
        """Metadata for display, pixel-size candidates (strongest first), lesion class."""
        md: dict[str, Any] = {
            "series_kind": s0.kind,
            "axes": s0.axes,
            "shape": list(s0.shape),
            "compression": getattr(kf.compression, "name", str(kf.compression)),
            "photometric": getattr(kf.photometric, "name", str(kf.photometric)),
            "bits_per_sample": _jsonable(kf.bitspersample),
            "tiled": bool(kf.is_tiled),
            "bigtiff": bool(tif.is_bigtiff),
            "byteorder": "little" if tif.byteorder == "<" else "big",
        }
        if kf.is_tiled:
            md["tile_size"] = [int(kf.tilewidth), int(kf.tilelength)]
        else:
            md["rows_per_strip"] = int(kf.rowsperstrip or kf.imagelength)
        for tag_name, key in (("Software", "software"), ("DateTime", "datetime")):
            tag = kf.tags.get(tag_name)
            if tag is not None and isinstance(tag.value, str):
                md[key] = tag.value.strip()[:200]
        description = kf.description or ""
        if description and not description.lstrip().startswith(("{", "<", "ImageJ=")):
            md["description"] = description.strip()[:500]

        candidates: list[PixelSizeCandidate] = []
        if tif.is_ome and tif.ome_metadata:
            x_um, y_um, detail = ome_pixel_size(tif.ome_metadata)
            md["ome"] = True
            ome_description = ome_image_description(tif.ome_metadata)
            if ome_description:
                md["ome_description"] = _jsonable(ome_description)
                lesion = ome_description.get("lesion_class")
                if isinstance(lesion, str) and lesion.strip():
                    header.lesion_class = lesion.strip()
            if x_um is not None:
                candidates.append(PixelSizeCandidate(x_um, "ome", detail))
                if y_um is not None and abs(y_um - x_um) > 0.01 * x_um:
                    header.warnings.append(
                        f"pixels are not square ({x_um:.4g} x {y_um:.4g} µm); using the width"
                    )

        shaped = None
        try:
            shaped = tif.shaped_metadata
        except Exception as exc:  # a broken JSON description must not stop the image
            log.info("unreadable shaped metadata in %s: %s", self.path, exc)
        if shaped:
            user = {k: v for k, v in dict(shaped[0]).items() if k != "shape"}
            if user:
                md["tiff_metadata"] = _jsonable(user)
            value = user.get("pixel_size_um")
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                candidates.append(
                    PixelSizeCandidate(
                        float(value), "tiff-metadata", "pixel_size_um in the TIFF description"
                    )
                )
            lesion = user.get("lesion_class")
            if isinstance(lesion, str) and lesion.strip():
                header.lesion_class = lesion.strip()

        imagej = None
        try:
            imagej = tif.imagej_metadata
        except Exception as exc:
            log.info("unreadable ImageJ metadata in %s: %s", self.path, exc)
        if imagej:
            md["imagej"] = _jsonable(
                {k: v for k, v in imagej.items() if k not in ("Info", "Labels", "Ranges", "LUTs")}
            )

        resolution_candidate = self._resolution_candidate(kf, imagej, md)
        if resolution_candidate is not None:
            candidates.append(resolution_candidate)
        header.pixel_size_candidates = candidates
        header.metadata = md

    def _resolution_candidate(
        self, kf: Any, imagej: dict[str, Any] | None, md: dict[str, Any]
    ) -> PixelSizeCandidate | None:
        if "XResolution" not in kf.tags:
            return None
        try:
            x_res, _ = kf.resolution
            unit = kf.resolutionunit
        except Exception:
            return None
        unit_name = getattr(unit, "name", str(unit))
        md["resolution"] = {"x": float(x_res), "unit": unit_name}
        if not x_res or x_res <= 0:
            return None
        if unit_name == "NONE":
            ij_unit = imagej.get("unit") if imagej else None
            factor = unit_to_um(ij_unit) if isinstance(ij_unit, str) else None
            if factor is None:
                return None
            spacing = imagej.get("spacing") if imagej else None
            z_um = length_to_um(spacing, ij_unit)
            if z_um is not None:
                md["z_step_um"] = z_um
            return PixelSizeCandidate(
                factor / x_res,
                "tiff-resolution",
                f"XResolution {x_res:g} px per {ij_unit} (ImageJ)",
            )
        um = resolution_to_um(x_res, unit_name)
        if um is None:
            return None
        return PixelSizeCandidate(
            um, "tiff-resolution", f"XResolution {x_res:g} px per {unit_name.lower()}"
        )

    # ------------------------------------------------------------------ pixels

    def _plane(self, level: int, page: int) -> _Plane:
        return self._planes[level][page]

    def read(self, level: int, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        plane = self._plane(level, page)
        channels = self._channel_select
        out = np.zeros((y1 - y0, x1 - x0, len(channels)), dtype=self.header.dtype)
        if plane.direct_dtype is not None:
            self._read_rows_direct(plane, out, x0, y0, x1, y1)
            return out
        per_plane = plane.across * plane.down
        if plane.sample_planes > 1:
            groups = [(c * per_plane, [0], [i]) for i, c in enumerate(channels)]
        else:
            groups = [(0, channels, list(range(len(channels))))]
        ty0, ty1 = y0 // plane.seg_h, (y1 - 1) // plane.seg_h
        tx0, tx1 = x0 // plane.seg_w, (x1 - 1) // plane.seg_w
        for base_index, src_channels, dst_channels in groups:
            for ty in range(ty0, ty1 + 1):
                for tx in range(tx0, tx1 + 1):
                    index = base_index + ty * plane.across + tx
                    segment = self._segment(plane, index)
                    if segment is None:
                        continue  # sparse (never written) tile: zeros, as tifffile does
                    sy, sx = ty * plane.seg_h, tx * plane.seg_w
                    ay0, ay1 = max(y0, sy), min(y1, sy + segment.shape[0])
                    ax0, ax1 = max(x0, sx), min(x1, sx + segment.shape[1])
                    if ay0 >= ay1 or ax0 >= ax1:
                        continue
                    src = segment[ay0 - sy : ay1 - sy, ax0 - sx : ax1 - sx]
                    dst = out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
                    if len(src_channels) == src.shape[2] == dst.shape[2]:
                        dst[...] = src
                    else:
                        dst[..., dst_channels] = src[..., src_channels]
        return out

    def _read_bytes(self, offset: int, count: int) -> bytes:
        with self._io_lock:
            if self._fh is None:
                raise mosaic_error(self.path, "is closed")
            self._fh.seek(offset)
            data = self._fh.read(count)
        with self._stats_lock:
            self._bytes_read += len(data)
        return data

    def _segment(self, plane: _Plane, index: int) -> np.ndarray | None:
        key = (plane.level, plane.page, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        offset, count = int(plane.offsets[index]), int(plane.bytecounts[index])
        if count == 0:
            return None
        where = f"{plane.label} {index + 1} of {plane.segment_count}"
        if plane.level or plane.page:
            where += f" (level {plane.level}, page {plane.page})"
        data = self._read_bytes(offset, count)
        if len(data) < count:
            raise mosaic_error(
                self.path, f"is truncated: {where} lies beyond the end of the file (file changed?)"
            )
        strict: np.ndarray | None = None
        try:
            if plane.compression == _JPEG:
                strict = self._strict_jpeg(plane, data)
            if strict is not None and plane.strict_gray:
                decoded = strict[None]
            else:
                decoded, _, _ = plane.decode(data, index, **plane.decode_kwargs)
        except MemoryError:
            raise mosaic_error(
                self.path, f"cannot be read: not enough memory for {where}"
            ) from None
        except Exception as exc:
            reason = one_line(exc, 120)
            self._damage[key] = f"{where}: {reason}"
            raise mosaic_error(
                self.path, f"is damaged: {where} cannot be decoded ({reason})"
            ) from exc
        if decoded is None:
            return None
        segment = decoded[0]  # drop the depth axis: (rows, columns, samples)
        if plane.invert_max is not None:
            segment = (plane.invert_max - segment).astype(segment.dtype)
        with self._stats_lock:
            self._segments_decoded += 1
        self._cache.put(key, segment)
        return segment

    @staticmethod
    def _strict_jpeg(plane: _Plane, data: bytes) -> np.ndarray | None:
        """Decode a JPEG tile with warnings as errors (raises ValueError on damage).

        Returns the pixels for 8-bit grayscale planes, None (checked only) for others.
        """
        stream = data
        if plane.jpegtables and data[:2] == b"\xff\xd8" and plane.jpegtables[-2:] == b"\xff\xd9":
            stream = plane.jpegtables[:-2] + data[2:]
        if not plane.strict_gray:
            simplejpeg.decode_jpeg(stream, colorspace="GRAY")  # a check only
            return None
        pixels = simplejpeg.decode_jpeg(stream, colorspace="GRAY")
        rows_ok = pixels.shape[0] == plane.seg_h or (
            not plane.tiled and pixels.shape[0] < plane.seg_h
        )
        if not rows_ok or pixels.shape[1] != plane.seg_w:
            raise ValueError(
                f"JPEG tile is {pixels.shape[1]} x {pixels.shape[0]} px, "
                f"not {plane.seg_w} x {plane.seg_h}"
            )
        return pixels

    def check_segments(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> None:
        planes = [plane for level in self._planes for plane in level]
        total = sum(plane.segment_count for plane in planes)
        done = 0
        for plane in planes:
            if plane.direct_dtype is not None:  # uncompressed rows: nothing to decode
                done += plane.segment_count
                continue
            for index in range(plane.segment_count):
                if cancel is not None and cancel():
                    return
                # damage is recorded in self._damage (a truncation is reported on read)
                with contextlib.suppress(MosaicError):
                    self._segment(plane, index)
                done += 1
                if progress is not None and (done % 64 == 0 or done == total):
                    progress(done, total)

    def damage_report(self) -> list[str]:
        """One line per tile/strip found damaged so far (decoded and refused)."""
        return [f"{self.path.name}: {line}" for _, line in sorted(self._damage.items())]

    def damaged_segments(self) -> list[tuple[int, int, int, int, int, int]]:
        """(level, page, x0, y0, x1, y1) of each damaged segment, in its level's pixels."""
        out = []
        for level, page, index in sorted(self._damage):
            plane = self._plane(level, page)
            within = index % (plane.across * plane.down)
            ty, tx = divmod(within, plane.across)
            x0, y0 = tx * plane.seg_w, ty * plane.seg_h
            out.append(
                (
                    level,
                    page,
                    x0,
                    y0,
                    min(x0 + plane.seg_w, plane.width),
                    min(y0 + plane.seg_h, plane.height),
                )
            )
        return out

    def _read_rows_direct(
        self, plane: _Plane, out: np.ndarray, x0: int, y0: int, x1: int, y1: int
    ) -> None:
        """Uncompressed strips: read just the rows (or row spans) the region needs."""
        assert plane.direct_dtype is not None
        samples = plane.contig_samples
        itemsize = plane.direct_dtype.itemsize
        row_bytes = plane.width * samples * itemsize
        narrow = (x1 - x0) * 8 < plane.width
        span_bytes = (x1 - x0) * samples * itemsize
        channels = self._channel_select
        for strip in range(y0 // plane.seg_h, (y1 - 1) // plane.seg_h + 1):
            strip_y = strip * plane.seg_h
            ra, rb = max(y0, strip_y), min(y1, strip_y + plane.seg_h)
            start = int(plane.offsets[strip]) + (ra - strip_y) * row_bytes
            if plane.bytecounts[strip] == 0:
                continue
            if narrow:
                chunks = [
                    self._read_bytes(start + r * row_bytes + x0 * samples * itemsize, span_bytes)
                    for r in range(rb - ra)
                ]
                data = b"".join(chunks)
                expect = span_bytes * (rb - ra)
                columns = slice(None)
                shape = (rb - ra, x1 - x0, samples)
            else:
                data = self._read_bytes(start, (rb - ra) * row_bytes)
                expect = (rb - ra) * row_bytes
                columns = slice(x0, x1)
                shape = (rb - ra, plane.width, samples)
            if len(data) < expect:
                raise mosaic_error(
                    self.path,
                    f"is truncated: strip {strip + 1} of {plane.segment_count} lies beyond the "
                    "end of the file (file changed?)",
                )
            rows = np.frombuffer(data, dtype=plane.direct_dtype).reshape(shape)[:, columns]
            rows = rows[..., channels].astype(self.header.dtype, copy=False)
            if plane.invert_max is not None:
                rows = (plane.invert_max - rows).astype(self.header.dtype)
            out[ra - y0 : rb - y0] = rows

    # ------------------------------------------------------------------ housekeeping

    def close(self) -> None:
        with self._io_lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        self._cache.clear()

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            return {
                "segments_decoded": self._segments_decoded,
                "segments_from_cache": self._cache.hits,
                "bytes_read": self._bytes_read,
                "cache_bytes": self._cache.nbytes,
            }
