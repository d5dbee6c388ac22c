"""Pixel size in µm: from the file's own metadata, a sidecar JSON, or what the user told us.

No public documentation says where VivaScope stores the pixel size, so every plausible
place is read, implausible values (72 dpi = 352.8 µm/px) are ignored with a note, and when
nothing is known the reader types the value once: it is remembered per file (absolute path
+ size + modification time, so an edited or replaced file is not mistaken for the old one).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rcm_viewer.fileio import atomic_write
from rcm_viewer.mosaic.model import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM, mosaic_error

log = logging.getLogger(__name__)

USER_STORE_NAME = "pixel_sizes.json"
_SIDECAR_MAX_BYTES = 1_000_000
_store_lock = threading.Lock()

#: µm per one of each length unit spelling seen in OME, ImageJ and TIFF writers.
_UNIT_UM = {
    "µm": 1.0,
    "μm": 1.0,  # Greek mu, as some writers spell it
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,  # ImageJ escapes µ in its description
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "in": 25400.0,
    "inch": 25400.0,
    "å": 1e-4,
    "angstrom": 1e-4,
}


@dataclass(frozen=True)
class PixelSizeCandidate:
    """One pixel size found in or next to a file, before the strongest one is chosen."""

    pixel_size_um: float
    source: str
    detail: str


def is_plausible(um: float | None) -> bool:
    """True for values a confocal microscope can have (see ``MIN/MAX_PIXEL_SIZE_UM``)."""
    return um is not None and MIN_PIXEL_SIZE_UM <= um <= MAX_PIXEL_SIZE_UM


def unit_to_um(unit: str | None) -> float | None:
    """µm in one ``unit`` (``"µm"``, ``"micron"``, ``"mm"``...), None when unknown."""
    if unit is None:
        return None
    return _UNIT_UM.get(str(unit).strip().lower())


def length_to_um(value: Any, unit: str | None) -> float | None:
    """Convert a length with a unit to µm; None for missing, non-numeric or unknown unit."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    factor = unit_to_um(unit)
    if factor is None or not number > 0 or number != number:
        return None
    return number * factor


def ome_pixel_size(ome_xml: str) -> tuple[float | None, float | None, str]:
    """(x µm, y µm, detail) from the first image's ``Pixels`` element of an OME-XML string."""
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError as exc:
        return None, None, f"OME-XML unreadable ({exc})"
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        x = length_to_um(element.get("PhysicalSizeX"), element.get("PhysicalSizeXUnit", "µm"))
        y = length_to_um(element.get("PhysicalSizeY"), element.get("PhysicalSizeYUnit", "µm"))
        detail = (
            f"OME PhysicalSizeX {element.get('PhysicalSizeX')} "
            f"{element.get('PhysicalSizeXUnit', 'µm')}"
        )
        return x, y, detail
    return None, None, "OME-XML has no Pixels element"


def ome_image_description(ome_xml: str) -> dict[str, Any]:
    """The first image's OME ``Description`` when it is a JSON object, else {}.

    Our synthetic generator stores ``lesion_class``, ``synthetic`` and the seed
    there (OME has no field for a lesion class).
    """
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError:
        return {}
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Description" and element.text:
            try:
                value = json.loads(element.text)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def resolution_to_um(pixels_per_unit: float, unit_name: str) -> float | None:
    """µm per pixel from a TIFF resolution (pixels per ``unit_name``: INCH, CENTIMETER...)."""
    per_unit_um = {
        "INCH": 25400.0,
        "CENTIMETER": 10000.0,
        "MILLIMETER": 1000.0,
        "MICROMETER": 1.0,
    }.get(unit_name.upper())
    if per_unit_um is None or not pixels_per_unit > 0:
        return None
    return per_unit_um / pixels_per_unit


def read_sidecar(path: Path) -> tuple[dict[str, Any], str | None]:
    """Contents of ``<file>.json`` (or ``<stem>.json``) next to the image, and its path.

    A broken sidecar must not stop the image from opening: it is logged and ignored.
    """
    candidates = [path.with_name(path.name + ".json")]
    if path.suffix and path.suffix.lower() != ".json":
        candidates.append(path.with_suffix(".json"))
    for candidate in candidates:
        try:
            if not candidate.is_file() or candidate.stat().st_size > _SIDECAR_MAX_BYTES:
                continue
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable sidecar %s: %s", candidate, exc)
            continue
        if isinstance(data, dict):
            return data, str(candidate)
    return {}, None


def choose_pixel_size(
    candidates: list[PixelSizeCandidate],
) -> tuple[float | None, str, list[str], list[str]]:
    """Pick the strongest plausible candidate.

    ``candidates`` come strongest first (user, sidecar, ome, tiff-metadata, resolution).
    Returns (µm, source, ignored, conflicts): ``ignored`` explains implausible values (the
    72 dpi default of many writers: routine, kept in the metadata), ``conflicts`` lists
    plausible values that disagree with the chosen one (worth a warning to the reader).
    """
    ignored: list[str] = []
    conflicts: list[str] = []
    chosen: PixelSizeCandidate | None = None
    for candidate in candidates:
        if not is_plausible(candidate.pixel_size_um):
            ignored.append(
                f"ignored {candidate.detail}: {candidate.pixel_size_um:.4g} µm/px is not a "
                f"microscope pixel size ({MIN_PIXEL_SIZE_UM}-{MAX_PIXEL_SIZE_UM} µm/px)"
            )
            continue
        if chosen is None:
            chosen = candidate
        elif abs(candidate.pixel_size_um - chosen.pixel_size_um) > 0.01 * chosen.pixel_size_um:
            conflicts.append(
                f"{candidate.detail} says {candidate.pixel_size_um:.4g} µm/px; "
                f"using {chosen.pixel_size_um:.4g} µm/px from {chosen.source}"
            )
    if chosen is None:
        return None, "unknown", ignored, conflicts
    return chosen.pixel_size_um, chosen.source, ignored, conflicts


# ----------------------------------------------------------------- remembered by the user


def _store_path() -> Path:
    from rcm_viewer.paths import user_data_dir

    return user_data_dir() / USER_STORE_NAME


def _file_key(path: Path) -> tuple[str, dict[str, Any]]:
    """Key of a file in the store; whole seconds of mtime survive copies between filesystems."""
    resolved = path.expanduser().resolve()
    st = resolved.stat()
    ident = {"path": str(resolved), "size": st.st_size, "mtime": int(st.st_mtime)}
    return f"{ident['path']}|{ident['size']}|{ident['mtime']}", ident


def _load_store(store: Path) -> dict[str, Any]:
    try:
        data = json.loads(store.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable pixel-size store %s: %s", store, exc)
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def _save_store(store: Path, entries: dict[str, Any]) -> None:
    """Write atomically so a crash never leaves half a JSON file behind."""
    text = json.dumps({"version": 1, "entries": entries}, indent=1, ensure_ascii=False)
    atomic_write(store, text, fsync=False)


def remember_pixel_size(path: str | os.PathLike[str], pixel_size_um: float) -> None:
    """Remember the pixel size the user gave for this file; ``open_mosaic`` will use it.

    Raises ``MosaicError`` for an implausible value or a file that cannot be found.
    """
    p = Path(path)
    try:
        um = float(pixel_size_um)
    except (TypeError, ValueError):
        raise mosaic_error(p, f"cannot use pixel size {pixel_size_um!r}: not a number") from None
    if not is_plausible(um):
        raise mosaic_error(
            p,
            f"cannot use pixel size {um:g} µm/px: expected "
            f"{MIN_PIXEL_SIZE_UM}-{MAX_PIXEL_SIZE_UM} µm/px",
        )
    try:
        key, ident = _file_key(p)
    except OSError as exc:
        raise mosaic_error(
            p, f"cannot be found to remember its pixel size ({exc.strerror})"
        ) from None
    with _store_lock:
        store = _store_path()
        entries = _load_store(store)
        entries[key] = {
            **ident,
            "pixel_size_um": um,
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            _save_store(store, entries)
        except OSError as exc:
            raise mosaic_error(
                p, f"pixel size could not be remembered: {store} is not writable ({exc.strerror})"
            ) from None


def remembered_pixel_size(path: str | os.PathLike[str]) -> float | None:
    """The pixel size the user gave for this very file (same path, size and mtime), or None."""
    try:
        key, _ = _file_key(Path(path))
        store = _store_path()
    except OSError:
        return None
    with _store_lock:
        entry = _load_store(store).get(key)
    if not isinstance(entry, dict):
        return None
    value = entry.get("pixel_size_um")
    if isinstance(value, int | float) and is_plausible(float(value)):
        return float(value)
    return None


def forget_pixel_size(path: str | os.PathLike[str]) -> bool:
    """Drop a remembered pixel size; True when there was one."""
    try:
        key, _ = _file_key(Path(path))
        store = _store_path()
    except OSError:
        return False
    with _store_lock:
        entries = _load_store(store)
        if entries.pop(key, None) is None:
            return False
        try:
            _save_store(store, entries)
        except OSError:
            return False
    return True
