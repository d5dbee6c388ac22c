"""Fit a bundle's out-of-distribution statistics (``rcm-viewer fit-ood``, and ``train``).

The maths is in ``inference/ood.py``; this module only gathers the pooled layer-4 features
of real tiles through the app's own classify path (``classify_mosaic(keep_features=True)``:
the same resampling, tissue mask and intensity scaling as at reading time, so the
statistics describe exactly what the model sees), labels them with their mosaic's class
and keeps the held-out mosaics apart for the thresholds. Lives in ``training`` because it
reads class-per-folder data sets (inference never imports training).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rcm_viewer.errors import MosaicError, TrainingError
from rcm_viewer.inference.bundle import ModelBundle, attach_ood, load_bundle
from rcm_viewer.inference.ood import OodModel, fit_ood

Progress = Callable[[str], None]


def mosaic_features(
    bundle: ModelBundle,
    paths: Sequence[Path],
    *,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[np.ndarray | None]:
    """(n_tiles, K) pooled features of each mosaic (None: unreadable or no tissue)."""
    from rcm_viewer.inference.engine import classify_mosaic
    from rcm_viewer.mosaic import open_mosaic

    out: list[np.ndarray | None] = []
    for i, path in enumerate(paths, start=1):
        try:
            with open_mosaic(path, cache_bytes=8 << 20) as mosaic:
                prediction = classify_mosaic(
                    mosaic, bundle, device=device, batch_size=64, keep_features=True
                )
        except MosaicError as exc:
            if progress is not None:
                progress(f"skipped {path.name}: {exc}")
            out.append(None)
            continue
        out.append(prediction.tile_features if prediction.ok else None)
        if progress is not None and (i % 10 == 0 or i == len(paths)):
            progress(f"[{i}/{len(paths)}] features")
    return out


def fit_from_items(
    bundle: ModelBundle,
    fit: Sequence[tuple[Path, str]],
    heldout: Sequence[tuple[Path, str]],
    *,
    device: str = "auto",
    progress: Progress | None = None,
) -> OodModel:
    """Fit on ``fit`` (path, class id) mosaics, threshold on ``heldout`` ones."""
    class_ids = bundle.manifest.class_ids
    fit_features = mosaic_features(bundle, [p for p, _ in fit], device=device, progress=progress)
    held_features = mosaic_features(
        bundle, [p for p, _ in heldout], device=device, progress=progress
    )
    xs, ys = [], []
    for (_, class_id), f in zip(fit, fit_features, strict=True):
        if f is not None and class_id in class_ids:
            xs.append(f)
            ys.append(np.full(len(f), class_ids.index(class_id)))
    hs, gs = [], []
    for index, f in enumerate(held_features):
        if f is not None:
            hs.append(f)
            gs.append(np.full(len(f), index))
    if not xs or not hs:
        raise TrainingError("OOD fitting: no mosaic with tissue in the fitting or held-out set")
    try:
        return fit_ood(
            np.concatenate(xs),
            np.concatenate(ys),
            np.concatenate(hs),
            np.concatenate(gs),
            n_classes=len(class_ids),
        )
    except ValueError as exc:
        raise TrainingError(f"OOD fitting: {exc}") from None


def _class_files(data_dir: Path, class_ids: Sequence[str]) -> list[tuple[Path, str]]:
    from rcm_viewer.mosaic.sniff import is_openable_name

    items = []
    for class_id in class_ids:
        folder = data_dir / class_id
        if folder.is_dir():
            items += [
                (p, class_id)
                for p in sorted(folder.rglob("*"))
                if p.is_file() and is_openable_name(p)
            ]
    return items


def fit_bundle_from_folder(
    bundle_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    heldout_fraction: float = 0.5,
    seed: int = 0,
    device: str = "auto",
    progress: Progress | None = None,
) -> ModelBundle:
    """``rcm-viewer fit-ood``: DATA_DIR/<class>/ mosaics, split per class into fitting and
    held-out parts; writes ``ood.npz`` into the bundle and re-seals its manifest."""
    bundle = load_bundle(bundle_dir)
    data = Path(data_dir).expanduser()
    items = _class_files(data, bundle.manifest.class_ids)
    if not items:
        raise TrainingError(
            f"{data} holds no mosaic in a folder named after a class "
            f"({', '.join(bundle.manifest.class_ids)})"
        )
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for class_id in bundle.manifest.class_ids:
        mine = [it for it in items if it[1] == class_id]
        order = rng.permutation(len(mine))
        n_held = max(1, round(len(mine) * heldout_fraction)) if len(mine) > 1 else 0
        held += [mine[i] for i in order[:n_held]]
        fit += [mine[i] for i in order[n_held:]]
    if progress is not None:
        progress(f"fitting OOD statistics on {len(fit)} mosaics, thresholds on {len(held)}")
    model = fit_from_items(bundle, fit, held, device=device, progress=progress)
    out = attach_ood(bundle.path, model)
    if progress is not None:
        progress(
            f"wrote {out.path / (out.manifest.ood_file or '')} ({model.n_fit_tiles} "
            f"fitting tiles, thresholds on {model.n_heldout_tiles} held-out tiles of "
            f"{model.n_heldout_mosaics} mosaics)"
        )
    return out


def ood_rate(
    bundle: ModelBundle, paths: Sequence[Path], *, device: str = "auto"
) -> dict[str, object]:
    """Share of mosaics flagged out of distribution (``rcm-viewer evaluate --foreign``)."""
    from rcm_viewer.inference.engine import classify_mosaic
    from rcm_viewer.mosaic import open_mosaic

    flagged = checked = 0
    for path in paths:
        try:
            with open_mosaic(path, cache_bytes=8 << 20) as mosaic:
                pixel = None if mosaic.info.pixel_size_um else bundle.manifest.pixel_size_um
                prediction = classify_mosaic(
                    mosaic, bundle, device=device, batch_size=64, pixel_size_um=pixel
                )
        except (MosaicError, TrainingError):
            continue
        except Exception as exc:  # an image the engine cannot use at all counts as foreign
            from rcm_viewer.errors import RcmError

            if not isinstance(exc, RcmError):
                raise
            checked += 1
            flagged += 1
            continue
        if prediction.in_distribution is None:
            continue
        checked += 1
        flagged += int(not prediction.in_distribution)
    return {
        "mosaics": checked,
        "flagged": flagged,
        "ood_rate": None if not checked else round(flagged / checked, 4),
    }
