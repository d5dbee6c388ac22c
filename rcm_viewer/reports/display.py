"""What the window and the report both show, in plain numpy: palettes, grey mapping, scale bars.

The report must look exactly like the window, and the report must run without a screen.
So the arithmetic that decides what a pixel looks like lives here, numpy only,
headless: the heatmap palettes (``palettes.py``, byte-identical to what the window showed
before), the display settings that map stored values to grey levels, the scale-bar length
rule, and how the overview level is picked and read. ``ui/`` imports
them; ``reports/images.py`` turns the arrays into QImages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from rcm_viewer.mosaic import Mosaic
from rcm_viewer.reports.palettes import PALETTE_HEX

#: Menu label -> palette name.
COLORMAPS: dict[str, str] = {
    "Inferno": "inferno",
    "Viridis": "viridis",
    "Plasma": "plasma",
    "Turbo": "turbo",
}
#: The overview kept in memory (and drawn in a report) is at most this many pixels a side.
OVERVIEW_MAX_PX = 2048
NICE_LENGTHS_UM = [n * 10**k for k in range(-1, 6) for n in (1, 2, 5)]


# --------------------------------------------------------------------------- palettes


@cache
def palette_rgb(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB table of a palette (menu label or palette name); read-only."""
    key = COLORMAPS.get(name, name)
    try:
        text = PALETTE_HEX[key]
    except KeyError:
        raise ValueError(
            f"unknown colour palette {name!r}: use one of {', '.join(COLORMAPS)}"
        ) from None
    table = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(256, 3).copy()
    table.setflags(write=False)
    return table


def colormap_lut(name: str) -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table; transparent at 0 so tissue shows through."""
    rgba = np.empty((256, 4), dtype=np.float32)
    rgba[:, :3] = palette_rgb(name)
    rgba[:, 3] = np.clip(np.linspace(0.0, 1.0, 256) * 1.6, 0.0, 1.0) * 255
    return rgba.astype(np.uint8)


def heatmap_rgba(plane: np.ndarray, colormap: str, threshold: float = 0.0) -> np.ndarray:
    """(h, w, 4) uint8 RGBA of a 0-1 heatmap plane; values below ``threshold`` transparent."""
    values = np.clip(plane, 0.0, 1.0)
    if threshold > 0:
        values = np.where(values >= threshold, values, 0.0)
    index = np.round(values * 255).astype(np.uint8)
    return np.ascontiguousarray(colormap_lut(colormap)[index])


# --------------------------------------------------------------------------- grey levels


@dataclass(frozen=True)
class DisplaySettings:
    """How stored values map to screen grey levels."""

    black: float
    white: float
    gamma: float = 1.0
    invert: bool = False

    def lut(self, dtype: np.dtype) -> np.ndarray:
        size = 65536 if np.dtype(dtype).itemsize == 2 else 256
        values = np.arange(size, dtype=np.float32)
        span = max(self.white - self.black, 1e-6)
        norm = np.clip((values - self.black) / span, 0.0, 1.0)
        if self.gamma != 1.0:
            norm = norm ** (1.0 / self.gamma)
        if self.invert:
            norm = 1.0 - norm
        return np.round(norm * 255.0).astype(np.uint8)


def display_pixels(pixels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """8-bit display pixels, (h, w) grey or (h, w, 3) RGB, C-contiguous, from raw pixels."""
    if pixels.dtype.itemsize > 2:
        pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
    display = lut[pixels]
    if display.ndim == 3:
        display = display[:, :, :3]
    return np.ascontiguousarray(display)


# --------------------------------------------------------------------------- scale bar


def nice_scale_bar(pixel_um: float, zoom: float, target_px: float = 120.0) -> tuple[float, float]:
    """(length in µm, length in screen px) of a round-numbered scale bar near ``target_px``."""
    um_per_screen_px = pixel_um / zoom
    best = NICE_LENGTHS_UM[0]
    for length in NICE_LENGTHS_UM:
        if length / um_per_screen_px <= target_px * 1.5:
            best = length
    return best, best / um_per_screen_px


def format_length(um: float) -> str:
    if um >= 1000:
        mm = um / 1000
        return f"{mm:g} mm"
    return f"{um:g} µm"


# --------------------------------------------------------------------------- overview


def overview_level(mosaic: Mosaic, max_px: int = OVERVIEW_MAX_PX) -> int | None:
    """Smallest existing level small enough to keep in memory, or None (levels not built)."""
    for index in range(mosaic.level_count - 1, -1, -1):
        info = mosaic.info.levels[index]
        if max(info.width, info.height) <= max_px:
            return index
    return None


def load_overview(
    mosaic: Mosaic, page: int = 0
) -> tuple[int, np.ndarray, tuple[float, float]] | None:
    """(level, pixels, display range) of the overview, or None while levels are not built.

    The window (in a worker) and the report both read it here, so they show the same."""
    level = overview_level(mosaic)
    if level is None:
        return None
    info = mosaic.info.levels[level]
    pixels = mosaic.read_region(level, 0, 0, info.width, info.height, page=page)
    return level, pixels, mosaic.display_range()


def load_overview_building(
    mosaic: Mosaic,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[int, np.ndarray, tuple[float, float]] | None:
    """The overview, building the downsampled levels first when a flat file has none.

    None when cancelled. For headless callers (the report); the window builds levels in
    its own worker with a preview.
    """
    overview = load_overview(mosaic)
    if overview is not None:
        return overview
    if not mosaic.build_levels(progress=progress, cancel=cancel):
        return None
    return load_overview(mosaic)
