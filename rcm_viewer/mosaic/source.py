"""What every file reader (TIFF, PNG/JPEG/BMP) hands to ``Mosaic``.

A reader knows its file format; ``Mosaic`` knows levels, zero filling outside the image,
built levels and pixel size. The line between them is ``ImageSource.read``: an in-bounds
rectangle of one stored level and page, as an (h, w, channels) array.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rcm_viewer.errors import MosaicError
from rcm_viewer.mosaic.pixel_size import PixelSizeCandidate


@dataclass
class SourceHeader:
    """Everything a reader learns from the headers, before any pixel is decoded."""

    format: str
    format_description: str
    width: int
    height: int
    dtype: np.dtype
    channels: int
    is_rgb: bool
    pages: int
    #: (width, height) of each level the file stores, base first.
    stored_levels: list[tuple[int, int]]
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Pixel sizes found inside the file, strongest first (the sidecar/user ones are added
    #: by ``open_mosaic``).
    pixel_size_candidates: list[PixelSizeCandidate] = field(default_factory=list)
    lesion_class: str | None = None
    #: Rows per tile/strip of the base level: building levels in bands of a multiple of it
    #: decodes each tile once.
    row_hint: int = 0
    #: Palette (indexed colour) files: the colour table, shape (3, entries), as stored.
    palette: np.ndarray | None = None


class ImageSource(ABC):
    """A file opened for reading regions; subclasses must be safe to call from many threads."""

    path: Path
    header: SourceHeader

    @abstractmethod
    def read(self, level: int, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Pixels of [y0:y1, x0:x1] of a stored level (bounds already clipped), (h, w, C)."""

    @abstractmethod
    def close(self) -> None:
        """Release the file; later reads raise ``MosaicError``."""

    def check_segments(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> None:
        """Decode every stored pixel once; damage is recorded, not raised (flat: one read)."""
        if cancel is not None and cancel():
            return
        with suppress(MosaicError):
            self.read(0, 0, 0, 0, min(self.header.width, 1), min(self.header.height, 1))
        if progress is not None:
            progress(1, 1)

    def damage_report(self) -> list[str]:
        """One line per damaged tile/strip found so far ("file: tile 6 of 16: reason")."""
        return []

    def damaged_segments(self) -> list[tuple[int, int, int, int, int, int]]:
        """(level, page, x0, y0, x1, y1) of each damaged tile/strip found so far."""
        return []

    def stats(self) -> dict[str, int]:
        """Counters for tests and benchmarks (segments decoded, bytes read...)."""
        return {}
