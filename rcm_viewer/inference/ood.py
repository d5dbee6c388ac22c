"""Out-of-distribution (OOD) score: does this tile look like what the model was trained on?

Method: Mahalanobis distance of the tile's pooled last-block features to class-conditional
Gaussians with one shared covariance (Lee et al., NeurIPS 2018, "A simple unified framework
for detecting out-of-distribution samples"). Why this one:

* it needs nothing but the features the classifier computes anyway (the global average of
  layer 4, the vector the fc layer reads), so it costs no extra forward pass, and it works
  the same for every backend that returns the layer-4 maps;
* it is fitted on in-distribution data only (no foreign images are needed to train it),
  which is all a clinic has; and it is among the strongest post-hoc detectors for
  "far" shifts (other modality, other scale, photographs, noise) in the OpenOOD benchmark;
* the softmax or energy of a 3-class head is a poor guard: it can be confident on
  anything (the bundled model said "basal cell carcinoma 85 %" on real naevi).

Mahalanobis++ (Mueller & Hein, ICML 2025): the pooled features are scaled to unit length
before anything else. The first version used them raw and flagged nothing foreign: the
length of a layer-4 average varies a lot with contrast and brightness, a few held-out tiles
scored ~50x the median, so the 99th percentile thresholds sat far above everything foreign.
Measured on the demo model (benchmarks/RESULTS.md, "OOD check"): unit length plus the
median raised the share flagged from 0 % to 63 % of photographs and 67 % of IHC histology,
but noise and changed acquisition stay mostly unflagged and fresh in-distribution mosaics
are flagged at ~5 % (1 of 18): the targets are not met yet. Raw features without the
residual term and with the median did better on those sets (0 % fresh, 74 % photographs,
100 % IHC, 50 % noise), but that was seen on the foreign sets themselves, so it is left as
an option (``normalise``, ``residual_weight``) for a fit on a fresh foreign-free check, not
made the default.

Shaped for a small, sealed file: features are centred and projected on their first
``k <= 64`` principal components (fitted on the training tiles); the class means and a
shared covariance, shrunk towards its diagonal (Ledoit-Wolf style, so a few hundred tiles
suffice), live in that space. The discarded dimensions are kept as one isotropic variance
(the probabilistic-PCA residual, Tipping & Bishop 1999): a tile whose features leave the
training subspace scores high too. Tile score = min over classes of the squared
Mahalanobis distance in the subspace + ``residual_weight`` x squared residual / residual
variance.

Thresholds are set on held-out in-distribution tiles and mosaics (never on the fitting
ones, never on foreign images): the 99th percentile of held-out tile scores and of
held-out mosaic scores. The mosaic score is the median tile score (the first version: the
mean, which one odd tile, a seam or a bubble, can drag over the line; the median does not
move for a few such tiles, and a foreign patch is caught by the share rule instead: a
mosaic is flagged when its median is over the mosaic threshold or more than
``tile_share_limit`` of its tiles are over the tile threshold). ``Prediction.ood_score`` is
the median divided by the mosaic threshold, so 1.0 is the edge of what the model has
seen, whatever the model. Files of the first version (raw features, mean) still load and
keep their own rules.

The statistics are one small ``ood.npz`` in the bundle, sealed by its SHA-256 in the
manifest like the weights. This module is torch-free (numpy only).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcm_viewer.errors import ModelBundleError

OOD_FILE = "ood.npz"
OOD_METHOD = "mahalanobis_pp_shared_cov"
#: The first version's files (raw features, PPCA residual, mean tile score) still load.
LEGACY_METHOD = "mahalanobis_shared_cov_ppca"
#: Percentile of held-out in-distribution scores used as the threshold.
THRESHOLD_PERCENTILE = 99.0
MAX_COMPONENTS = 64
SHRINKAGE = 0.1
#: Mosaic flagged when more than this share of its tissue tiles are over the tile threshold
#: even if the mean is below its threshold (a foreign patch in a normal mosaic).
TILE_SHARE_LIMIT = 0.25
#: Weight of the residual (out-of-subspace) term; see the module docstring for the choice.
RESIDUAL_WEIGHT = 1.0
MOSAIC_STATISTICS = ("median", "mean")
MOSAIC_STATISTIC = "median"

#: Words for the intended-use text (INTENDED_USE in ui/main_window.py) and the AI panel.
OOD_EXPLANATION = (
    "Out-of-distribution check: besides its class probabilities, the model says how much "
    "each tissue tile resembles the images it was trained on (Mahalanobis distance of its "
    "last-layer features to those of the training tiles; threshold: the 99th percentile of "
    "held-out training-like images). When the mosaic, or a large share of its tiles, lies "
    "outside that range (another device, body site or depth, a stack page, a wrong pixel "
    "size, not an RCM image at all), the panel says so and greys the probabilities: they "
    "are then not meaningful. Passing the check does not make a result correct; a model "
    "without these statistics cannot say it, and the panel says that too."
)
NO_OOD_NOTE = (
    "this model has no out-of-distribution statistics: it cannot say when an image "
    "is unlike its training data"
)


def pool_features(features: np.ndarray) -> np.ndarray:
    """(B, K, h, w) layer-4 feature maps -> (B, K) float32 global averages."""
    f = np.asarray(features, dtype=np.float32)
    return f.mean(axis=(2, 3)) if f.ndim == 4 else f


@dataclass(frozen=True)
class OodModel:
    """Fitted statistics (all float32) and thresholds; see the module docstring."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d), rows orthonormal
    class_means: np.ndarray  # (C, k)
    precision: np.ndarray  # (k, k)
    residual_var: float
    tile_threshold: float
    mosaic_threshold: float
    n_fit_tiles: int = 0
    n_heldout_tiles: int = 0
    n_heldout_mosaics: int = 0
    #: Features scaled to unit length before anything else (Mahalanobis++).
    normalise: bool = True
    #: Weight of the out-of-subspace residual term in the tile score.
    residual_weight: float = RESIDUAL_WEIGHT
    #: How tile scores become the mosaic score: "median" or "mean" (MOSAIC_STATISTICS).
    mosaic_statistic: str = MOSAIC_STATISTIC
    #: Share of tiles over the tile threshold above which a mosaic is flagged.
    tile_share_limit: float = TILE_SHARE_LIMIT

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def prepare(self, pooled: np.ndarray) -> np.ndarray:
        """(n, d) float64 features as the statistics see them (unit length when normalised)."""
        x = np.asarray(pooled, dtype=np.float64).reshape(-1, self.dim)
        return unit_length(x) if self.normalise else x

    def tile_scores(self, pooled: np.ndarray) -> np.ndarray:
        """Raw scores (n,) of pooled features (n, d); higher = more foreign."""
        x = self.prepare(pooled) - self.mean
        comps = self.components.astype(np.float64)
        z = x @ comps.T
        diff = z[:, None, :] - self.class_means.astype(np.float64)[None]
        maha = np.einsum("nck,kl,ncl->nc", diff, self.precision.astype(np.float64), diff)
        score = maha.min(axis=1)
        if self.residual_weight > 0:
            residual = np.maximum((x * x).sum(axis=1) - (z * z).sum(axis=1), 0.0)
            score = score + self.residual_weight * residual / max(self.residual_var, 1e-12)
        return score

    def assess(self, pooled: np.ndarray) -> OodAssessment:
        scores = self.tile_scores(pooled)
        return assess_scores(
            scores,
            self.tile_threshold,
            self.mosaic_threshold,
            statistic=self.mosaic_statistic,
            share_limit=self.tile_share_limit,
        )

    # -- file -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            method=np.array(OOD_METHOD),
            mean=self.mean.astype(np.float32),
            components=self.components.astype(np.float32),
            class_means=self.class_means.astype(np.float32),
            precision=self.precision.astype(np.float32),
            residual_var=np.float32(self.residual_var),
            tile_threshold=np.float32(self.tile_threshold),
            mosaic_threshold=np.float32(self.mosaic_threshold),
            counts=np.array(
                [self.n_fit_tiles, self.n_heldout_tiles, self.n_heldout_mosaics], dtype=np.int64
            ),
            normalise=np.bool_(self.normalise),
            residual_weight=np.float32(self.residual_weight),
            mosaic_statistic=np.array(self.mosaic_statistic),
            tile_share_limit=np.float32(self.tile_share_limit),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = OOD_FILE) -> OodModel:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                method = str(z["method"])
                if method == LEGACY_METHOD:  # first version: raw features, mean, residual
                    options: dict = {
                        "normalise": False,
                        "residual_weight": 1.0,
                        "mosaic_statistic": "mean",
                    }
                elif method == OOD_METHOD:
                    options = {
                        "normalise": bool(z["normalise"]),
                        "residual_weight": float(z["residual_weight"]),
                        "mosaic_statistic": str(z["mosaic_statistic"]),
                        "tile_share_limit": float(z["tile_share_limit"]),
                    }
                else:
                    raise ModelBundleError(f"{where}: unknown OOD method {method!r}")
                if options["mosaic_statistic"] not in MOSAIC_STATISTICS:
                    raise ModelBundleError(
                        f"{where}: unknown mosaic statistic {options['mosaic_statistic']!r}"
                    )
                counts = z["counts"]
                model = cls(
                    mean=z["mean"],
                    components=z["components"],
                    class_means=z["class_means"],
                    precision=z["precision"],
                    residual_var=float(z["residual_var"]),
                    tile_threshold=float(z["tile_threshold"]),
                    mosaic_threshold=float(z["mosaic_threshold"]),
                    n_fit_tiles=int(counts[0]),
                    n_heldout_tiles=int(counts[1]),
                    n_heldout_mosaics=int(counts[2]),
                    **options,
                )
        except ModelBundleError:
            raise
        except Exception as exc:
            raise ModelBundleError(f"{where} cannot be read as OOD statistics ({exc})") from None
        k, d = model.components.shape
        if (
            model.mean.shape != (d,)
            or model.class_means.shape[1:] != (k,)
            or model.precision.shape != (k, k)
        ):
            raise ModelBundleError(f"{where}: OOD statistics have inconsistent shapes")
        return model


@dataclass(frozen=True)
class OodAssessment:
    """One mosaic's OOD result. Scores are relative: 1.0 = the threshold."""

    #: Mean tile score / mosaic threshold.
    mosaic_score: float
    in_distribution: bool
    #: Share of tissue tiles whose score is over the tile threshold.
    tile_share: float
    #: (n_tiles,) float32: tile score / tile threshold.
    tile_scores: np.ndarray


def unit_length(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def mosaic_statistic(raw: np.ndarray, statistic: str) -> float:
    """One number from a mosaic's raw tile scores: their median or their mean."""
    return float(np.median(raw) if statistic == "median" else np.mean(raw))


def assess_scores(
    raw: np.ndarray,
    tile_threshold: float,
    mosaic_threshold: float,
    *,
    statistic: str = MOSAIC_STATISTIC,
    share_limit: float = TILE_SHARE_LIMIT,
) -> OodAssessment:
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size == 0:
        return OodAssessment(0.0, True, 0.0, np.zeros(0, np.float32))
    relative_tiles = raw / tile_threshold
    share = float((relative_tiles > 1.0).mean())
    mosaic = mosaic_statistic(raw, statistic) / mosaic_threshold
    inside = mosaic <= 1.0 and share <= share_limit
    return OodAssessment(mosaic, bool(inside), share, relative_tiles.astype(np.float32))


def _shrunk_precision(centred: np.ndarray, shrinkage: float) -> np.ndarray:
    cov = centred.T @ centred / max(len(centred) - 1, 1)
    target = np.diag(np.diag(cov))
    cov = (1.0 - shrinkage) * cov + shrinkage * target
    cov += np.eye(len(cov)) * (1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12))
    return np.linalg.inv(cov)


def fit_ood(
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    heldout_features: np.ndarray,
    heldout_groups: Sequence[int] | np.ndarray,
    *,
    n_classes: int,
    max_components: int = MAX_COMPONENTS,
    shrinkage: float = SHRINKAGE,
    percentile: float = THRESHOLD_PERCENTILE,
    normalise: bool = True,
    residual_weight: float = RESIDUAL_WEIGHT,
    statistic: str = MOSAIC_STATISTIC,
    tile_share_limit: float = TILE_SHARE_LIMIT,
) -> OodModel:
    """Fit on (n, d) pooled tile features with class labels; threshold on held-out tiles.

    ``heldout_groups`` names the mosaic of each held-out tile (the mosaic threshold is on
    per-mosaic scores, ``statistic`` of their tiles). Raises ``ValueError`` when there is
    too little data.
    """
    if statistic not in MOSAIC_STATISTICS:
        raise ValueError(f"unknown mosaic statistic {statistic!r}")
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or len(x) < 10 or len(x) != len(y):
        raise ValueError(f"OOD fitting needs at least 10 labelled tiles, not {len(x)}")
    held = np.asarray(heldout_features, dtype=np.float64)
    groups = np.asarray(heldout_groups)
    if len(held) < 5 or len(held) != len(groups):
        raise ValueError(f"OOD thresholds need at least 5 held-out tiles, not {len(held)}")
    if normalise:
        x = unit_length(x)
    mean = x.mean(axis=0)
    centred = x - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = int(min(max_components, len(x) - 1, x.shape[1]))
    components = vt[:k]
    variances = singular**2 / max(len(x) - 1, 1)
    rest = variances[k:]
    total_rest_dims = x.shape[1] - k
    residual_var = (
        float(rest.sum() / total_rest_dims) if total_rest_dims > 0 and rest.size else 1e-6
    )
    residual_var = max(residual_var, 1e-6 * float(variances[:k].mean()))
    z = centred @ components.T
    class_means = np.zeros((n_classes, k))
    within = []
    for c in range(n_classes):
        members = z[y == c]
        if len(members):
            class_means[c] = members.mean(axis=0)
            within.append(members - class_means[c])
    present = [c for c in range(n_classes) if (y == c).any()]
    class_means = class_means[present]
    precision = _shrunk_precision(np.concatenate(within), shrinkage)
    options = {
        "normalise": normalise,
        "residual_weight": float(residual_weight),
        "mosaic_statistic": statistic,
        "tile_share_limit": float(tile_share_limit),
    }
    draft = OodModel(
        mean.astype(np.float32),
        components.astype(np.float32),
        class_means.astype(np.float32),
        precision.astype(np.float32),
        residual_var,
        1.0,
        1.0,
        **options,
    )
    held_scores = draft.tile_scores(held)
    tile_threshold = float(np.percentile(held_scores, percentile))
    per_mosaic = np.array(
        [mosaic_statistic(held_scores[groups == g], statistic) for g in np.unique(groups)]
    )
    mosaic_threshold = float(np.percentile(per_mosaic, percentile))
    return OodModel(
        draft.mean,
        draft.components,
        draft.class_means,
        draft.precision,
        residual_var,
        tile_threshold,
        mosaic_threshold,
        len(x),
        len(held),
        len(per_mosaic),
        **options,
    )


# ----------------------------------------------------------------------------- bundle

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], OodModel] = {}


#: ood.npz is a few hundred kB; anything far larger is not ours (issue 16, finding 3).
OOD_MAX_BYTES = 16 * 1024**2


def load_ood(bundle_dir: Path, file_name: str | None, sha256: str | None) -> OodModel | None:
    """The bundle's OOD statistics, checked against the manifest; None when it has none."""
    if not file_name or not sha256:
        return None
    from rcm_viewer.inference.manifest import sha256_bytes

    path = Path(bundle_dir) / file_name
    key = (str(path), sha256)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    from rcm_viewer.inference.bundle import _read_file  # regular files only, bounded

    data = _read_file(path, Path(bundle_dir), OOD_MAX_BYTES)
    if sha256_bytes(data) != sha256:
        raise ModelBundleError(
            f"{file_name} in {bundle_dir} does not match its checksum in manifest.json: the "
            "file was changed or damaged after export"
        )
    model = OodModel.from_bytes(data, f"{file_name} in {bundle_dir}")
    with _cache_lock:
        _cache[key] = model
    return model


def ood_heatmap(
    tile_scores: np.ndarray, cells: Sequence[tuple[int, int, int, int]], shape: tuple[int, int]
) -> np.ndarray:
    """(H, W) float32 in 0-1: 0 below the threshold, rising to 1 at twice the threshold.

    ``cells`` are the heatmap-grid rectangles (row, col, height, width) of each tile.
    """
    out = np.zeros(shape, dtype=np.float32)
    for score, (r, c, h, w) in zip(tile_scores, cells, strict=True):
        value = float(np.clip(score - 1.0, 0.0, 1.0)) if score > 1.0 else 0.0
        if score > 1.0:
            value = max(value, 0.05)
        block = out[r : r + h, c : c + w]
        np.maximum(block, value, out=block)
    return out
