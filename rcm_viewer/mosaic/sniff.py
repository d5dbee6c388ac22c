"""Recognise a file by its first bytes, never by its extension.

Files get renamed in the wild (a PNG saved as ``.tif``, a TIFF exported as ``.jpg``); the
magic bytes decide which reader opens it, and the extension only produces a warning.
"""

from __future__ import annotations

from pathlib import Path

#: (magic bytes at offset 0, format) for the formats we open.
_SUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
)

#: Formats we recognise only to say what the file is instead of "unknown".
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{", "a JSON or text file"),
    (b"<", "an XML/HTML file"),
)

_EXTENSIONS = {
    "tiff": {".tif", ".tiff", ".btf", ".tf8", ".tf2", ".ome.tif", ".ome.tiff", ".svs", ".ndpi"},
    "png": {".png"},
    "jpeg": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "bmp": {".bmp", ".dib"},
}

#: Every extension the app opens, longest first: the open dialog's filter and folder scans
#: (batch, training data) use this one list, so what one place opens the other finds.
OPENABLE_EXTENSIONS: tuple[str, ...] = tuple(
    sorted({ext for group in _EXTENSIONS.values() for ext in group}, key=lambda e: (-len(e), e))
)

HEADER_BYTES = 132


def is_openable_name(path: Path | str) -> bool:
    """True when the file name ends in an extension the app opens (case-insensitive)."""
    name = Path(path).name.lower()
    return any(name.endswith(ext) for ext in OPENABLE_EXTENSIONS)


def open_dialog_filter() -> str:
    """The Qt file-dialog filter built from :data:`OPENABLE_EXTENSIONS`."""
    patterns = " ".join(f"*{ext}" for ext in sorted(OPENABLE_EXTENSIONS))
    return f"RCM mosaics ({patterns});;All files (*)"


def sniff_format(head: bytes) -> str | None:
    """Return ``tiff``, ``png``, ``jpeg`` or ``bmp`` from the first bytes, else None."""
    for magic, kind in _SUPPORTED_MAGIC:
        if head.startswith(magic):
            return kind
    return None


def describe_unsupported(head: bytes) -> str:
    """Best guess of what an unsupported file is, for the error message."""
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "a DICOM file"
    return ""


def extension_matches(path: Path, kind: str) -> bool:
    """True when the file name's extension is one usually used for ``kind``."""
    name = path.name.lower()
    return any(name.endswith(ext) for ext in _EXTENSIONS.get(kind, ()))
