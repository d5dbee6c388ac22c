"""Small frozen data objects that describe a mosaic, and the limits shared by the readers.

They cross room boundaries (ui, inference, reports), so they hold plain values only:
no file handles, no numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcm_viewer.errors import MosaicError

#: Decoding a flat image (PNG/JPEG/BMP), one TIFF strip or tile, or one ``read_region`` call
#: may not need more than this many bytes. A fixed number (not a fraction of the RAM) keeps
#: the behaviour the same on every machine; 2 GiB holds a 16,000 x 16,000 px RGB JPEG.
DEFAULT_MEMORY_BUDGET_BYTES = 2 * 1024**3

#: Byte budget of the per-mosaic cache of decoded TIFF tiles/strips.
DEFAULT_CACHE_BYTES = 64 * 1024**2

#: A flat image with a side longer than this gets downsampled levels built by ``build_levels``.
BUILD_LEVELS_ABOVE_PX = 2048
#: ... down to a level whose longer side is at most this.
SMALLEST_LEVEL_PX = 1024

#: Plausible microscope pixel sizes. Anything outside (e.g. the TIFF default of 72 dpi, i.e.
#: 352.8 µm/px) is a screen or scanner resolution, not a confocal pixel size, and is ignored.
MIN_PIXEL_SIZE_UM = 0.05
MAX_PIXEL_SIZE_UM = 50.0

#: Where ``MosaicInfo.pixel_size_um`` came from, strongest first:
#: ``user`` (the reader typed it, remembered per file), ``sidecar`` (``<file>.json``),
#: ``ome`` (OME-XML PhysicalSizeX), ``tiff-metadata`` (JSON ImageDescription written by
#: tifffile, e.g. by our synthetic generator), ``tiff-resolution`` (XResolution +
#: ResolutionUnit, including ImageJ's ``unit``), ``image-resolution`` (PNG/JPEG/BMP dpi),
#: ``unknown``.
PIXEL_SIZE_SOURCES = (
    "user",
    "sidecar",
    "ome",
    "tiff-metadata",
    "tiff-resolution",
    "image-resolution",
    "unknown",
)

SUPPORTED_DTYPES = ("uint8", "uint16")
#: Pixel types opened through a ``PixelMap`` (see ``pixel_map.py``): float, signed, 32/64-bit.
MAPPED_DTYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)


@dataclass(frozen=True)
class PixelMap:
    """How stored pixels of another type became the 8/16-bit pixels ``read_region`` returns.

    ``kind`` is ``linear`` (float, signed, 32/64-bit: ``stored = round((value - low) /
    (high - low) * 65535)``, clipped; NaN -> 0, +inf -> 65535, -inf -> 0) or ``palette``
    (indexed colour expanded through the file's palette: gray palettes to gray, colour
    palettes to RGB). ``low``/``high`` come from ``sampled_from``, never from decoding a
    whole large image; values outside them are clipped.
    """

    kind: str
    source_dtype: str
    stored_dtype: str
    low: float = 0.0
    high: float = 0.0
    sampled_from: str = ""
    #: Palette maps: how many entries, and whether it was all gray.
    palette_entries: int = 0
    palette_gray: bool = False

    @property
    def integer_source(self) -> bool:
        return self.source_dtype.startswith(("int", "uint"))

    def real_value(self, stored: Any) -> Any:
        """The file's value for a stored value (a number or a per-channel list).

        Linear maps invert the formula (rounded for integer sources: exact whenever the
        data span at most 65,535 values); palette maps have no inverse, the stored
        (displayed) value is returned.
        """
        if isinstance(stored, list | tuple):
            return [self.real_value(v) for v in stored]
        if self.kind != "linear":
            return stored
        value = self.low + float(stored) * (self.high - self.low) / 65535.0
        # one stored step is 1/65535 of the range: more digits than 6 would be noise
        return int(round(value)) if self.integer_source else float(f"{value:.6g}")

    def describe(self) -> str:
        """One line for ``rcm-viewer info`` and tooltips."""
        if self.kind == "palette":
            colour = "gray" if self.palette_gray else "RGB colour"
            bits = 8 * (2 if self.source_dtype == "uint16" else 1)
            return f"{bits}-bit palette of {self.palette_entries} entries, shown as {colour}"
        return (
            f"{describe_dtype(self.source_dtype)} values {self.low:g} to {self.high:g} "
            f"mapped linearly to 16-bit 0-65535 (range from {self.sampled_from})"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "source_dtype": self.source_dtype,
            "stored_dtype": self.stored_dtype,
            "description": self.describe(),
        }
        if self.kind == "linear":
            out.update(
                low=self.low,
                high=self.high,
                sampled_from=self.sampled_from,
                formula="stored = round((value - low) / (high - low) * 65535), clipped; NaN -> 0",
            )
        else:
            out.update(palette_entries=self.palette_entries, palette_gray=self.palette_gray)
        return out


@dataclass(frozen=True)
class LevelInfo:
    """One resolution level; ``downsample`` maps level pixels to base pixels (base = 1.0)."""

    width: int
    height: int
    downsample: float
    #: True when the file stores the level; False when ``Mosaic.build_levels`` computed it.
    stored: bool = True


@dataclass(frozen=True)
class MosaicInfo:
    """What is known about a mosaic after reading its headers."""

    path: Path
    format_description: str
    width: int
    height: int
    dtype: str
    channels: int
    is_rgb: bool
    levels: tuple[LevelInfo, ...]
    pages: int
    pixel_size_um: float | None
    pixel_size_source: str
    lesion_class: str | None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: ``tiff``, ``png``, ``jpeg`` or ``bmp``: what the content is, whatever the extension says.
    format: str = ""
    file_size: int = 0
    #: Things a reader should know (ignored pixel size, extension mismatch, dropped alpha...).
    warnings: tuple[str, ...] = ()
    #: Set when the file's pixel type is not unsigned 8/16-bit: how ``dtype`` was made.
    pixel_map: PixelMap | None = None

    @property
    def level_count(self) -> int:
        return len(self.levels)

    @property
    def field_of_view_mm(self) -> tuple[float, float] | None:
        """Width and height in millimetres, when the pixel size is known."""
        if self.pixel_size_um is None:
            return None
        return (self.width * self.pixel_size_um / 1000.0, self.height * self.pixel_size_um / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``rcm-viewer info --json`` and reports)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "format_description": self.format_description,
            "file_size": self.file_size,
            "width": self.width,
            "height": self.height,
            "dtype": self.dtype,
            "channels": self.channels,
            "is_rgb": self.is_rgb,
            "levels": [
                {
                    "width": lv.width,
                    "height": lv.height,
                    "downsample": lv.downsample,
                    "stored": lv.stored,
                }
                for lv in self.levels
            ],
            "pages": self.pages,
            "pixel_size_um": self.pixel_size_um,
            "pixel_size_source": self.pixel_size_source,
            "field_of_view_mm": list(self.field_of_view_mm) if self.field_of_view_mm else None,
            "lesion_class": self.lesion_class,
            "warnings": list(self.warnings),
            "pixel_map": self.pixel_map.to_dict() if self.pixel_map else None,
            "metadata": self.metadata,
        }


def mosaic_error(path: Path | str, reason: str) -> MosaicError:
    """Build the one-line ``MosaicError`` every reader raises: "<file name> <reason>"."""
    p = Path(path)
    name = p.name or str(p)
    return MosaicError(one_line(f"{name} {reason}"), path=p)


def one_line(text: str | BaseException, limit: int = 300) -> str:
    """Squash a (library) message onto one short line: dialogs and the CLI show one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_bytes(n: float) -> str:
    """Human size, e.g. ``9.3 GiB``; for messages a clinician reads."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def describe_dtype(dtype_name: str) -> str:
    """Pixel types named the way a user knows them (in unsupported-type messages)."""
    names = {
        "bool": "1-bit (black and white)",
        "int8": "signed 8-bit",
        "int16": "signed 16-bit",
        "uint32": "32-bit integer",
        "int32": "signed 32-bit integer",
        "uint64": "64-bit integer",
        "int64": "signed 64-bit integer",
        "float16": "16-bit floating point",
        "float32": "32-bit floating point",
        "float64": "64-bit floating point",
        "complex64": "complex",
        "complex128": "complex",
    }
    if dtype_name == "bool":
        return names["bool"]
    return f"{names.get(dtype_name, dtype_name)} ({dtype_name})"
