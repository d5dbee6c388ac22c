"""Classify many mosaics: the one engine function behind ``rcm-viewer classify`` and the
GUI's batch dialog, plus the row formats both write (torch loads on the first mosaic).

A bad file never stops a batch: it gets a row whose status is its one-line error, and
the next file goes on. Only cancelling stops it (``ClassificationCancelled``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcm_viewer.errors import InferenceError, ModelBundleError, RcmError
from rcm_viewer.fileio import atomic_write
from rcm_viewer.inference.bundle import ModelBundle
from rcm_viewer.inference.prediction import STATUS_OK, ClassificationCancelled, Prediction

log = logging.getLogger(__name__)

#: progress(file_index, n_files, tiles_done, tiles_total); file_index counts from 0.
BatchProgress = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class ClassificationRow:
    """One input of a batch: its result, or the one-line reason it has none."""

    path: Path
    status: str
    class_ids: tuple[str, ...]
    probabilities: tuple[float, ...] | None
    top_class: str | None
    model_name: str
    model_version: str
    weights_sha256: str
    seconds: float
    prediction: Prediction | None = field(default=None, compare=False, repr=False)
    #: The inference backend that ran (backends.py).
    backend: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def record(self) -> dict[str, Any]:
        """The flat form written to JSON/CSV: one ``p_<class id>`` column per class."""
        data: dict[str, Any] = {"path": str(self.path), "status": self.status,
                                "top_class": self.top_class}
        for index, class_id in enumerate(self.class_ids):
            data[f"p_{class_id}"] = (
                None if self.probabilities is None else round(self.probabilities[index], 6)
            )
        ood = self.prediction.ood_score if self.prediction is not None else None
        data["ood_score"] = None if ood is None else round(ood, 4)
        data["in_distribution"] = (self.prediction.in_distribution
                                   if self.prediction is not None else None)
        data.update(model=self.model_name, model_version=self.model_version,
                    weights_sha256=self.weights_sha256, seconds=round(self.seconds, 3),
                    backend=self.backend)
        return data


def row_columns(class_ids: Sequence[str]) -> list[str]:
    return ["path", "status", "top_class", *(f"p_{c}" for c in class_ids), "ood_score",
            "in_distribution", "model", "model_version", "weights_sha256", "seconds", "backend"]


def classify_paths(
    paths: Iterable[str | os.PathLike[str]],
    bundle: ModelBundle,
    *,
    pixel_size_um: float | None = None,
    device: str = "auto",
    batch_size: int = 16,
    progress: BatchProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    backend: str = "auto",
) -> Iterator[ClassificationRow]:
    """Yield one row per path, in order, as each mosaic finishes.

    ``pixel_size_um`` applies to every file (the user confirmed it for the batch). The
    rows carry the full ``Prediction`` (heatmap included) for callers that want it; the
    generator itself keeps none, so a folder of any size runs in bounded memory.
    """
    from rcm_viewer.inference.backends import load_backend
    from rcm_viewer.inference.engine import classify_mosaic
    from rcm_viewer.mosaic import open_mosaic

    path_list = [Path(p) for p in paths]
    manifest = bundle.manifest
    # A missing GPU or a damaged model is the same for every file: fail once, up front.
    runner = load_backend(bundle, backend, device, batch_size=batch_size)
    for index, path in enumerate(path_list):
        started = time.perf_counter()

        def tile_progress(done: int, total: int, index: int = index) -> None:
            if progress is not None:
                progress(index, len(path_list), done, total)

        prediction: Prediction | None = None
        try:
            with open_mosaic(path) as mosaic:
                prediction = classify_mosaic(
                    mosaic, bundle, pixel_size_um=pixel_size_um, progress=tile_progress,
                    cancel=cancel, device=runner.device, batch_size=batch_size,
                    backend=runner.name,
                )
            status = prediction.status
        except (ClassificationCancelled, ModelBundleError):
            raise
        except RcmError as exc:
            status = str(exc)
        except MemoryError:
            status = f"{path.name}: not enough memory to classify it"
        except Exception as exc:  # one bad file must not end the batch; details in the log
            log.exception("classifying %s failed", path)
            status = f"{path.name}: internal error ({type(exc).__name__}: {exc})"
        ok = prediction is not None and prediction.ok
        yield ClassificationRow(
            path=path,
            status=" ".join(status.split()),
            class_ids=manifest.class_ids,
            probabilities=prediction.probabilities if ok and prediction else None,
            top_class=prediction.top_class if ok and prediction else None,
            model_name=manifest.name,
            model_version=manifest.version,
            weights_sha256=manifest.weights_sha256,
            seconds=time.perf_counter() - started,
            prediction=prediction,
            backend=runner.name,
        )


def write_rows(rows: Sequence[ClassificationRow], out: str | os.PathLike[str],
               class_ids: Sequence[str]) -> None:
    """Write rows as JSON (a list of objects) or CSV (with header), by ``out``'s suffix.

    Atomic (temporary file + rename), so calling it after every row keeps a crash from
    losing finished work or leaving half a file.
    """
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix == ".json":
        text = json.dumps([r.record() for r in rows], indent=2, ensure_ascii=False) + "\n"
    elif suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=row_columns(class_ids), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.record().items()})
        text = buffer.getvalue()
    else:
        raise InferenceError(f"{target.name}: the output must end in .json or .csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text, fsync=False)


def format_table(rows: Sequence[ClassificationRow], class_ids: Sequence[str]) -> str:
    """A plain-text table for the terminal (file name, top class, probabilities, status)."""
    header = ["file", "top_class", *(f"p_{c}" for c in class_ids), "seconds", "status"]
    body = []
    for row in rows:
        probs = (["-"] * len(class_ids) if row.probabilities is None
                 else [f"{p:.3f}" for p in row.probabilities])
        body.append([row.path.name, row.top_class or "-", *probs, f"{row.seconds:.1f}",
                     row.status])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, line[-1]]))
    return "\n".join(lines)
