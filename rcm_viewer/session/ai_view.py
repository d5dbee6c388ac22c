"""The AI result in one canonical form, whichever way it arrived.

A result reaches the window live from the engine (``Prediction``), from the case store
(``AIResult``, saved earlier or by a batch run) or from a batch row; the panel, the
overlay, the batch worklist and the report all need the same few facts. They used to
be converted by three private functions with two span conventions; now there is one:

* ``heatmap`` is ``(classes, rows, columns)`` in 0-1, in the order of ``class_ids``;
* ``heatmap_span`` is the **(width, height)** in full-resolution (level-0) pixels that
  the heatmap covers, starting at the mosaic's top-left corner. ``Heatmap.mosaic_shape``
  in the store is (height, width), as numpy shapes are; only this module converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rcm_viewer.cases import AIResult, Heatmap

if TYPE_CHECKING:
    from rcm_viewer.inference.prediction import Prediction

SYNTHETIC_FLAG = "synthetic_model"
#: Stored with a result whose model was unsigned or signed by an unknown key (signing.py).
UNVERIFIED_FLAG = "unverified_model"


def _is_unverified(trust: str) -> bool:
    return trust.startswith("unverified")  # signing.is_unverified, without the import


@dataclass(frozen=True)
class AIView:
    """What every view of an AI result shows (panel, overlay, worklist, report)."""

    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    probabilities: tuple[float, ...] | None
    status: str
    model_name: str
    model_version: str
    weights_sha256: str
    synthetic: bool
    heatmap: np.ndarray | None  # (classes, rows, columns) in 0-1
    heatmap_span: tuple[float, float] = (0.0, 0.0)  # level-0 (width, height) it covers
    detail: str = ""
    partial: bool = False
    #: Out-of-distribution check (inference/ood.py); None = the model has none.
    ood_score: float | None = None
    in_distribution: bool | None = None
    ood_tile_share: float | None = None
    ood_heatmap: np.ndarray | None = None  # (rows, columns) in 0-1, same grid as heatmap
    #: Optional scale check (engine.check_scale): "" or one sentence.
    scale_note: str = ""
    #: Who vouches for the model (inference/signing.py): "signed by NAME",
    #: "unverified: ..." (shown as "unverified model"), or "" when not recorded.
    model_trust: str = ""

    @property
    def model_unverified(self) -> bool:
        return _is_unverified(self.model_trust)

    @property
    def top_class(self) -> str | None:
        if not self.probabilities:
            return None
        return self.class_ids[int(np.argmax(self.probabilities))]


def prediction_span(prediction: Prediction) -> tuple[float, float]:
    """Level-0 (width, height) covered by a prediction's heatmap ((0, 0) without one)."""
    heatmap = prediction.heatmap
    if heatmap is None:
        return (0.0, 0.0)
    cell = float(prediction.heatmap_cell_px)
    return (heatmap.shape[2] * cell, heatmap.shape[1] * cell)


def view_from_prediction(prediction: Prediction) -> AIView:
    """The view of a live (or partial) engine result."""
    detail = ""
    if prediction.model_pixel_size_um:
        detail = (
            f"{prediction.n_tiles} tissue tiles at {prediction.model_pixel_size_um:g} µm/px, "
            f"{prediction.seconds:.1f} s on {prediction.device or 'cpu'}."
        )
    if prediction.flags:
        detail += " Notes: " + "; ".join(prediction.flags) + "."
    return AIView(
        tuple(prediction.class_ids),
        tuple(prediction.class_names),
        None if prediction.probabilities is None else tuple(prediction.probabilities),
        prediction.status,
        prediction.model_name,
        prediction.model_version,
        prediction.weights_sha256,
        bool(prediction.model_synthetic),
        prediction.heatmap,
        prediction_span(prediction),
        detail.strip(),
        bool(prediction.partial),
        prediction.ood_score,
        prediction.in_distribution,
        prediction.ood_tile_share,
        prediction.ood_heatmap,
        model_trust=prediction.model_trust,
    )


def view_from_stored(result: AIResult) -> AIView:
    """The view of a result read back from the case store."""
    from rcm_viewer.synthetic import CLASS_DISPLAY_NAMES

    heatmap = None
    span = (0.0, 0.0)
    if result.heatmap is not None:
        heatmap = result.heatmap.to_float()
        if result.heatmap.mosaic_shape is not None:
            height, width = result.heatmap.mosaic_shape
            span = (float(width), float(height))
    names = tuple(CLASS_DISPLAY_NAMES.get(c, c) for c in result.class_ids)
    synthetic = any("synthetic" in flag for flag in result.flags)
    return AIView(
        tuple(result.class_ids),
        names,
        tuple(result.probabilities),
        "ok",
        result.model_name,
        result.model_version,
        result.weights_sha256,
        synthetic,
        heatmap,
        span,
        f"Saved result from {result.created_at:%Y-%m-%d %H:%M}.",
        ood_score=result.ood_score,
        in_distribution=result.in_distribution,
        model_trust="unverified: when this result was saved"
        if UNVERIFIED_FLAG in result.flags
        else "",
    )


def stored_from_prediction(prediction: Prediction) -> AIResult:
    """The form the case store keeps (quantised heatmap, flags incl. the synthetic flag)."""
    heatmap = None
    if prediction.heatmap is not None:
        width, height = prediction_span(prediction)
        heatmap = Heatmap.from_float(
            prediction.heatmap,
            prediction.class_ids,
            (round(height), round(width)),
            (0.0, 1.0),
        )
    flags = list(prediction.flags)
    if prediction.model_synthetic and SYNTHETIC_FLAG not in flags:
        flags.append(SYNTHETIC_FLAG)
    if _is_unverified(prediction.model_trust) and UNVERIFIED_FLAG not in flags:
        flags.append(UNVERIFIED_FLAG)
    if prediction.probabilities is None:
        raise ValueError("a prediction without probabilities cannot be stored")
    return AIResult.from_probabilities(
        prediction.model_name,
        prediction.model_version,
        prediction.weights_sha256,
        dict(zip(prediction.class_ids, prediction.probabilities, strict=True)),
        heatmap=heatmap,
        flags=flags,
        ood_score=prediction.ood_score,
        in_distribution=prediction.in_distribution,
    )
