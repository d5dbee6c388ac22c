"""What a classification produces: ``Prediction`` and ``RegionExplanation`` (torch-free).

These cross into ``ui`` and ``reports``, so they hold numpy arrays and plain values only,
never tensors: a viewer that opens a saved result needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rcm_viewer.errors import InferenceError

STATUS_OK = "ok"
#: Status of a mosaic in which no tile has enough tissue (black, blank or saturated).
STATUS_NO_TISSUE = "no assessable tissue"

FLAG_RGB_CONVERTED = "rgb converted to grayscale"
FLAG_PIXEL_SIZE_GIVEN = "pixel size given by the user"
FLAG_PIXEL_SIZE_CONFIRMED = "pixel size confirmed by user"
FLAG_UPSAMPLED = "mosaic pixels are coarser than the model's: tissue was upsampled"
FLAG_PARTIAL = "partial: not all tissue tiles are classified yet"
FLAG_CANCELLED = "cancelled before all tissue tiles were classified"
FLAG_SYNTHETIC_MODEL = "demonstration model trained on synthetic images"


def _empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


@dataclass(frozen=True)
class Prediction:
    """The classifier's opinion on one mosaic, with where it looked.

    Coordinates are level-0 pixels of the mosaic. ``heatmap[c, i, j]`` covers the square
    ``x in [j, j+1) * heatmap_cell_px``, ``y in [i, i+1) * heatmap_cell_px`` and is the class
    activation map of class ``c`` (ReLU of layer-4 features x fc weights, i.e. Grad-CAM of
    the last block), averaged where tiles overlap, divided by ``heatmap_scale`` (the
    largest value over all classes and cells, in logit units) so one colour scale serves
    every class and tile; 0 where no tile was classified.

    ``status`` is ``STATUS_OK`` or ``STATUS_NO_TISSUE``; inputs that cannot be classified
    at all raise (``InferenceError``, ``MosaicError``), and batch rows carry their message.
    """

    status: str
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    #: Calibrated mosaic-level probabilities in ``class_ids`` order (None unless status ok).
    probabilities: tuple[float, ...] | None = None
    top_class: str | None = None
    #: Uncalibrated aggregated logits (what the temperature divides).
    logits: tuple[float, ...] | None = None
    #: (n_tiles, 4) int: x, y, width, height of each classified tile, level-0 pixels.
    tile_boxes: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 4), np.int64), compare=False, repr=False
    )
    #: (n_tiles, n_classes) float32, with the mosaic's temperature (fitted on mosaic-level
    #: logits, so for single tiles it is an approximation).
    tile_probabilities: np.ndarray = field(
        default_factory=lambda: _empty((0, 0)), compare=False, repr=False
    )
    #: (n_classes, H, W) float32 in 0-1, or None when nothing was classified.
    heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)
    heatmap_cell_px: float = 0.0
    heatmap_scale: float = 0.0
    model_name: str = ""
    model_version: str = ""
    weights_sha256: str = ""
    model_synthetic: bool = False
    #: Who vouches for the model (signing.py): "signed by NAME", "unverified: unsigned",
    #: "unverified: unknown key ID"; "" when not recorded.
    model_trust: str = ""
    #: Mosaic µm/px used, and the model's µm/px the tissue was resampled to.
    pixel_size_um: float | None = None
    model_pixel_size_um: float | None = None
    n_tiles: int = 0
    #: Tiles in the grid over the whole mosaic, tissue or not.
    n_tiles_grid: int = 0
    seconds: float = 0.0
    flags: tuple[str, ...] = ()
    device: str = ""
    #: The inference backend that ran the network (backends.py: torch-fp32, torch, openvino).
    backend: str = ""
    mosaic_path: str | None = None
    mosaic_size: tuple[int, int] = (0, 0)
    #: True for a streamed snapshot (on_partial) or the result carried by a cancellation.
    partial: bool = False
    #: Out-of-distribution check (inference/ood.py), None when the model has no statistics:
    #: mean tile score / mosaic threshold (1.0 = the edge of what the model has seen).
    ood_score: float | None = None
    #: False when the mosaic (or more than a quarter of its tissue tiles) is outside.
    in_distribution: bool | None = None
    #: Share of tissue tiles over the tile threshold.
    ood_tile_share: float | None = None
    #: (n_tiles,) float32 tile score / tile threshold, in ``tile_boxes`` order.
    tile_ood_scores: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: (H, W) float32 in 0-1 on the heatmap grid: 0 in distribution, >0 over the threshold.
    ood_heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: (n_tiles, K) pooled layer-4 features, only with ``classify_mosaic(keep_features=True)``.
    tile_features: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: Why there is no OOD check (e.g. the model has no statistics), or "".
    ood_note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def probability(self, class_id: str) -> float | None:
        if self.probabilities is None:
            return None
        return self.probabilities[self.class_ids.index(class_id)]

    @property
    def top_class_name(self) -> str | None:
        if self.top_class is None:
            return None
        return self.class_names[self.class_ids.index(self.top_class)]

    def class_heatmap(self, class_id: str) -> np.ndarray:
        """The (H, W) heatmap of one class; raises ``InferenceError`` when there is none."""
        if self.heatmap is None:
            raise InferenceError(f"no heatmap: {self.status}")
        return self.heatmap[self.class_ids.index(class_id)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description without the arrays (reports, logs, batch rows)."""
        return {
            "status": self.status,
            "mosaic_path": self.mosaic_path,
            "top_class": self.top_class,
            "probabilities": (
                None
                if self.probabilities is None
                else dict(zip(self.class_ids, self.probabilities, strict=True))
            ),
            "class_names": dict(zip(self.class_ids, self.class_names, strict=True)),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "weights_sha256": self.weights_sha256,
            "model_synthetic": self.model_synthetic,
            "model_trust": self.model_trust,
            "pixel_size_um": self.pixel_size_um,
            "model_pixel_size_um": self.model_pixel_size_um,
            "n_tiles": self.n_tiles,
            "n_tiles_grid": self.n_tiles_grid,
            "heatmap_cell_px": self.heatmap_cell_px,
            "seconds": round(self.seconds, 3),
            "flags": list(self.flags),
            "device": self.device,
            "backend": self.backend,
            "partial": self.partial,
            "ood_score": None if self.ood_score is None else round(self.ood_score, 4),
            "in_distribution": self.in_distribution,
            "ood_tile_share": (
                None if self.ood_tile_share is None else round(self.ood_tile_share, 4)
            ),
            "ood_note": self.ood_note,
        }


@dataclass(frozen=True)
class RegionExplanation:
    """An on-demand saliency map (pytorch-grad-cam) for one rectangle of a mosaic.

    ``heatmap`` (H, W) float32 in 0-1 covers ``rect`` (level-0 x, y, w, h); one heatmap
    pixel is ``pixel_px`` level-0 pixels wide. Normalised by the method itself (min-max
    over the region), so values compare within one explanation, not between two.
    """

    rect: tuple[int, int, int, int]
    method: str
    layer: str
    target_class: str
    heatmap: np.ndarray = field(compare=False, repr=False)
    pixel_px: float
    class_ids: tuple[str, ...]
    #: Calibrated probabilities of the region seen as one input.
    probabilities: tuple[float, ...]
    seconds: float
    flags: tuple[str, ...] = ()


class ClassificationCancelled(InferenceError):  # noqa: N818 - it is an outcome, not a fault
    """Raised by ``classify_mosaic``/``classify_paths`` when ``cancel()`` returned True.

    ``partial`` holds what was classified so far (``partial=True`` and the cancelled flag
    set), or None when nothing was: the GUI may show it, a batch must not report it as a
    result.
    """

    def __init__(self, partial: Prediction | None = None) -> None:
        super().__init__("classification cancelled")
        self.partial = partial
