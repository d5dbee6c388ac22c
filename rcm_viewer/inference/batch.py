"""Classify many mosaics: the one engine function behind ``rcm-viewer classify`` and the
GUI's batch dialog, the lazy folder scan that feeds it, and the row files both write.

Why it is shaped so:

* **Lazy everywhere.** ``FileScan`` is a generator over folders (sorted per folder, so the
  order is the sorted order of the paths and ``--shard i/n`` is deterministic on every
  machine); the first row of a 10,000-file folder comes before the scan has finished.
  The total is counted by a second, cheap pass in a background thread, for the ETA only.
* **Constant cost per row, valid after a crash.** ``RowWriter`` appends one row per
  finished file, flushes and fsyncs it: CSV and JSON Lines are append-only; a ``.json``
  array is kept closed after every row by writing each row over the closing ``]`` (one
  row per line, so ``read_rows`` also recovers a file cut mid-row). A SIGKILL loses at
  most the row in flight; ``--resume`` then skips files whose content (sha256) already
  has an ``ok`` row from the same weights.
* **A bad file never stops a batch**: it gets a row whose status is its one-line error.
  Only cancelling (``ClassificationCancelled``) or a model problem (the same for every
  file, raised before the first row) stops it.
* **Rows are safe to open anywhere**: CSV cells that a spreadsheet would run as a formula
  are neutralised, control characters in file names (a newline) are escaped in CSV cells
  and messages, and every message is one line.

``classify_paths`` takes keyword options only after ``paths, bundle``, so an option (a
backend, say) is one more keyword.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import logging
import math
import os
import stat
import threading
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcm_viewer.errors import InferenceError, ModelBundleError, RcmError
from rcm_viewer.fileio import atomic_write
from rcm_viewer.inference.bundle import ModelBundle
from rcm_viewer.inference.prediction import STATUS_OK, ClassificationCancelled, Prediction
from rcm_viewer.mosaic.sniff import is_openable_name

log = logging.getLogger(__name__)

#: progress(file_index, n_files, tiles_done, tiles_total); file_index counts from 0 and
#: n_files is 0 while a lazy scan has not counted its files yet.
BatchProgress = Callable[[int, int, int, int], None]

#: Output formats by suffix.
OUTPUT_SUFFIXES = (".csv", ".json", ".jsonl")

#: ``pixel_size_source`` when the batch was given one pixel size for every file.
PIXEL_SIZE_GIVEN = "given"

STATUS_SKIPPED = "skipped: already classified with these weights (resume)"

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


# --------------------------------------------------------------------------- text safety


def printable(text: str) -> str:
    """``text`` with control characters (newline, tab, escape...) written as ``\\n``-style
    escapes and undecodable bytes as ``\\udcxx``: a file name stays on one line."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            out.append(repr(char)[1:-1] if char != "'" else char)
        else:
            out.append(char)
    return "".join(out)


def neutralise_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (OWASP rule)."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def one_line_reason(text: str, limit: int = 300) -> str:
    """A (library) message reduced to its first line, squashed, at most ``limit`` chars.

    torch refuses a pickle with 7-9 lines of advice meant for programmers; the first line
    says what happened, and the rest must not reach a clinician.
    """
    text = str(text)
    if "Weights only load failed" in text:
        head = text.split("Weights only load failed")[0].rstrip(" (")
        return (
            f"{head}: it holds Python objects, not only tensors, and was refused "
            "unread (never load weights from an untrusted source)"
        )[:limit]
    first = text.strip().splitlines()[0] if text.strip() else text
    first = " ".join(first.split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


# --------------------------------------------------------------------------- scanning


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4); raises ``InferenceError`` for anything else."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise InferenceError(f"--shard {text!r}: give it as i/n, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise InferenceError(f"--shard {text}: i must be between 1 and n (n >= 1)")
    return index, count


class FileScan:
    """The mosaic files under some paths, found lazily, in sorted order.

    A file named on the command line is always taken (its row says if it cannot be
    read); in folders only names the app opens (``is_openable_name``) that pass
    ``include``/``exclude`` (globs on the file name or the path below the folder).
    ``shard=(i, n)`` keeps every n-th file, starting with the i-th (1-based).
    ``total`` is None until a background pass has counted the files; ``ignored`` counts
    folder entries that are not mosaic names.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        recursive: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.roots = [Path(p) for p in paths]
        self.recursive = recursive
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.shard = shard
        self.total: int | None = None
        self.ignored = 0
        self._counter: threading.Thread | None = None

    def _wanted(self, relative: str, name: str) -> bool:
        def hit(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(relative, p) for p in patterns)

        if self.include and not hit(self.include):
            return False
        return not (self.exclude and hit(self.exclude))

    def _walk_folder(self, root: Path, folder: Path, count_ignored: bool) -> Iterator[Path]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            path = Path(entry.path)
            if is_dir:
                if self.recursive:
                    yield from self._walk_folder(root, path, count_ignored)
                continue
            if not is_openable_name(entry.name):
                if count_ignored:
                    self.ignored += 1
                continue
            if self._wanted(path.relative_to(root).as_posix(), entry.name):
                yield path

    def _all(self, count_ignored: bool) -> Iterator[Path]:
        seen: set[str] = set()
        for root in self.roots:
            found = self._walk_folder(root, root, count_ignored) if root.is_dir() else iter([root])
            for path in found:
                key = os.path.abspath(path)
                if key in seen:  # a file named twice (or inside a named folder) runs once
                    continue
                seen.add(key)
                yield path

    def _sharded(self, count_ignored: bool) -> Iterator[Path]:
        for index, path in enumerate(self._all(count_ignored)):
            if self.shard is None or index % self.shard[1] == self.shard[0] - 1:
                yield path

    def count(self) -> int:
        """Walk everything once without yielding (what the background pass runs)."""
        return sum(1 for _ in self._sharded(False))

    def _count_in_background(self) -> None:
        def run() -> None:
            try:
                self.total = self.count()
            except Exception:  # the ETA is a nicety; never let it break a batch
                log.exception("counting the batch's files failed")

        self._counter = threading.Thread(target=run, name="batch-count", daemon=True)
        self._counter.start()

    def __iter__(self) -> Iterator[Path]:
        self.ignored = 0
        if self._counter is None:
            self._count_in_background()
        return self._sharded(True)


# --------------------------------------------------------------------------- rows


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
    sha256: str = ""
    width: int | None = None
    height: int | None = None
    pixel_size_um: float | None = None
    pixel_size_source: str | None = None
    #: True for a file ``--resume`` skipped: it has an ok row already, writers drop it.
    skipped: bool = False
    prediction: Prediction | None = field(default=None, compare=False, repr=False)
    #: The inference backend that ran (backends.py).
    backend: str = ""
    #: The out-of-distribution check (inference/ood.py): None without OOD statistics.
    ood_score: float | None = None
    in_distribution: bool | None = None
    #: Who vouches for the model (signing.py): "signed by NAME" or "unverified: ...".
    model_trust: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def record(self) -> dict[str, Any]:
        """The flat form written to JSON/CSV: one ``p_<class id>`` column per class."""
        data: dict[str, Any] = {
            "path": str(self.path),
            "sha256": self.sha256,
            "status": self.status,
            "width": self.width,
            "height": self.height,
            "pixel_size_um": None if self.pixel_size_um is None else round(self.pixel_size_um, 6),
            "pixel_size_source": self.pixel_size_source,
            "model": self.model_name,
            "model_version": self.model_version,
            "weights_sha256": self.weights_sha256,
            "model_trust": self.model_trust,
        }
        for index, class_id in enumerate(self.class_ids):
            data[f"p_{class_id}"] = (
                None if self.probabilities is None else round(self.probabilities[index], 6)
            )
        data.update(
            top_class=self.top_class,
            ood_score=None if self.ood_score is None else round(self.ood_score, 4),
            in_distribution=self.in_distribution,
            seconds=round(self.seconds, 3),
            backend=self.backend,
        )
        return {column: data[column] for column in row_columns(self.class_ids)}  # CSV order


def row_columns(class_ids: Sequence[str]) -> list[str]:
    return [
        "path",
        "sha256",
        "status",
        "width",
        "height",
        "pixel_size_um",
        "pixel_size_source",
        "model",
        "model_version",
        "weights_sha256",
        "model_trust",
        *(f"p_{c}" for c in class_ids),
        "top_class",
        "ood_score",
        "in_distribution",
        "seconds",
        "backend",
    ]


def content_sha256(path: Path, chunk_bytes: int = 4 << 20) -> str:
    """SHA-256 of a file's bytes (the key of its case and of ``--resume``); "" if unreadable."""
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device: never read it
            return ""
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def _message(status: str, path: Path) -> str:
    """One line; the file's name (which may hold a newline) escaped where it appears."""
    name = path.name
    if name and not name.isprintable():
        safe = printable(name)
        squashed = " ".join(name.split())  # what other rooms' one-line messages made of it
        for raw in (str(path), name, squashed):
            status = status.replace(raw, safe if raw != str(path) else printable(raw))
    return one_line_reason(status, 500)


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
    on_file: Callable[[int, Path], None] | None = None,
    skip_sha256: Callable[[str], bool] | None = None,
    heatmaps_dir: str | os.PathLike[str] | None = None,
) -> Iterator[ClassificationRow]:
    """Yield one row per path, in order, as each mosaic finishes.

    ``paths`` may be a list or a lazy ``FileScan`` (then ``n_files`` in ``progress`` is 0
    until it has counted). ``pixel_size_um`` applies to every file (the user confirmed it
    for the batch). ``on_file(index, path)`` is called as each file starts;
    ``skip_sha256(sha)`` True gives a ``skipped`` row instead of classifying (resume);
    ``heatmaps_dir`` gets a PNG overlay and a float32 TIFF per classified mosaic. The rows
    carry the full ``Prediction`` (heatmap included) for callers that want it; the
    generator itself keeps none, so a folder of any size runs in bounded memory.
    """
    from rcm_viewer.inference.backends import load_backend
    from rcm_viewer.inference.engine import classify_mosaic
    from rcm_viewer.mosaic import open_mosaic

    manifest = bundle.manifest
    # A missing GPU or a damaged model is the same for every file: fail once, up front.
    try:
        # torch warns about a refused pickle on stderr in several lines: log, do not print
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runner = load_backend(bundle, backend, device, batch_size=batch_size)
    except ModelBundleError as exc:
        raise ModelBundleError(one_line_reason(str(exc))) from None
    finally:
        for warning in locals().get("caught") or ():
            log.warning("loading %s: %s", bundle.path, warning.message)
    heat_dir = None if heatmaps_dir is None else Path(heatmaps_dir)
    if heat_dir is not None:
        _check_folder(heat_dir, "--heatmaps")

    def n_files() -> int:
        if isinstance(paths, Sized):
            return len(paths)
        return getattr(paths, "total", None) or 0

    common = {
        "class_ids": manifest.class_ids,
        "model_name": manifest.name,
        "model_version": manifest.version,
        "weights_sha256": manifest.weights_sha256,
        "model_trust": bundle.trust,
    }
    for index, raw in enumerate(paths):
        path = Path(raw)
        started = time.perf_counter()
        if on_file is not None:
            on_file(index, path)
        sha256 = content_sha256(path)
        if sha256 and skip_sha256 is not None and skip_sha256(sha256):
            yield ClassificationRow(
                path=path,
                status=STATUS_SKIPPED,
                probabilities=None,
                top_class=None,
                seconds=0.0,
                sha256=sha256,
                skipped=True,
                **common,
            )
            continue

        def tile_progress(done: int, total: int, index: int = index) -> None:
            if progress is not None:
                progress(index, n_files(), done, total)

        prediction: Prediction | None = None
        size: tuple[int | None, int | None] = (None, None)
        used_um: float | None = None
        source: str | None = None
        try:
            with open_mosaic(path) as mosaic:
                info = mosaic.info
                size = (info.width, info.height)
                used_um, source = info.pixel_size_um, info.pixel_size_source
                if pixel_size_um is not None:
                    used_um, source = float(pixel_size_um), PIXEL_SIZE_GIVEN
                prediction = classify_mosaic(
                    mosaic,
                    bundle,
                    pixel_size_um=pixel_size_um,
                    progress=tile_progress,
                    cancel=cancel,
                    device=runner.device,
                    batch_size=batch_size,
                    backend=runner.name,
                )
                used_um = prediction.pixel_size_um or used_um
                status = prediction.status
                if heat_dir is not None and prediction.ok:
                    try:
                        write_heatmap_files(mosaic, prediction, heat_dir, path, sha256)
                    except (OSError, ValueError, RcmError) as exc:
                        status = one_line_reason(
                            f"{path.name}: classified, but its heatmap could not be written ({exc})"
                        )
                        prediction = None
        except (ClassificationCancelled, ModelBundleError):
            raise
        except RcmError as exc:
            status = str(exc)
        except MemoryError:
            status = f"{path.name}: not enough memory to classify it"
        except Exception as exc:  # one bad file must not end the batch; details in the log
            log.exception("classifying %s failed", path)
            status = f"{path.name}: internal error ({type(exc).__name__}: {exc})"
        if source == "unknown":
            source = None
        ok = prediction is not None and prediction.ok and status == STATUS_OK
        yield ClassificationRow(
            path=path,
            status=_message(status, path),
            probabilities=prediction.probabilities if ok and prediction else None,
            top_class=prediction.top_class if ok and prediction else None,
            seconds=time.perf_counter() - started,
            sha256=sha256,
            width=size[0],
            height=size[1],
            pixel_size_um=used_um,
            pixel_size_source=source if used_um is not None else None,
            prediction=prediction,
            backend=runner.name,
            ood_score=prediction.ood_score if ok and prediction else None,
            in_distribution=prediction.in_distribution if ok and prediction else None,
            **common,
        )


# --------------------------------------------------------------------------- heatmaps


def heatmap_file_stem(path: Path, sha256: str) -> str:
    """``<name>-<first 8 hex of sha256>``: two ``lesion.tif`` in two folders never clash."""
    stem = printable(path.name).replace("/", "_").replace("\\", "_")
    return f"{stem}-{sha256[:8]}" if sha256 else stem


def write_heatmap_files(
    mosaic: Any,
    prediction: Prediction,
    directory: Path,
    path: Path,
    sha256: str,
    overview_px: int = 1024,
) -> tuple[Path, Path]:
    """Write ``<stem>.heatmap.png`` (top class over the overview) and ``<stem>.heatmap.tif``.

    The TIFF holds every class's map as float32 planes ``(classes, rows, columns)`` in
    0-1, in mosaic coordinates: its origin is the mosaic's top-left corner and one TIFF
    pixel covers ``heatmap_cell_px`` x ``heatmap_cell_px`` level-0 pixels (the resolution
    tags give the same in µm, the description repeats it with the class order).
    """
    import numpy as np
    import tifffile
    from matplotlib import colormaps
    from PIL import Image

    from rcm_viewer.inference.tissue import low_resolution

    heatmap = prediction.heatmap
    if heatmap is None or prediction.top_class is None:
        raise InferenceError("no heatmap to write")
    stem = heatmap_file_stem(path, sha256)
    tif_path = directory / f"{stem}.heatmap.tif"
    png_path = directory / f"{stem}.heatmap.png"
    cell = float(prediction.heatmap_cell_px)
    description = json.dumps(
        {
            "class_ids": list(prediction.class_ids),
            "heatmap_cell_px": cell,
            "mosaic_size": list(prediction.mosaic_size),
            "origin": "mosaic top-left",
            "model": prediction.model_name,
            "model_version": prediction.model_version,
            "mosaic_sha256": sha256,
        }
    )
    extra: dict[str, Any] = {}
    if prediction.pixel_size_um:
        per_cm = 1e4 / (prediction.pixel_size_um * cell)
        extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(heatmap, dtype=np.float32),
        photometric="minisblack",
        planarconfig="separate",
        description=description,
        metadata=None,
        **extra,
    )
    atomic_write(tif_path, buffer.getvalue(), fsync=False)

    width, height = mosaic.info.width, mosaic.info.height
    gray, downsample, _ = low_resolution(mosaic, max(width, height) / overview_px)
    low, high = np.percentile(gray, (1, 99.5)) if gray.size else (0.0, 1.0)
    base = np.clip((gray - low) / max(high - low, 1e-6), 0, 1)
    plane = prediction.class_heatmap(prediction.top_class)
    # heatmap cell (i, j) -> overview pixel: nearest cell for every overview pixel
    ys = np.minimum((np.arange(base.shape[0]) * downsample / cell).astype(int), plane.shape[0] - 1)
    xs = np.minimum((np.arange(base.shape[1]) * downsample / cell).astype(int), plane.shape[1] - 1)
    values = np.clip(plane[ys[:, None], xs[None, :]], 0, 1)
    colours = colormaps["inferno"](values)[..., :3]
    alpha = np.clip(values * 1.6, 0, 1)[..., None] * 0.6
    rgb = base[..., None] * (1 - alpha) + colours * alpha
    image = Image.fromarray((rgb * 255).round().astype(np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    atomic_write(png_path, out.getvalue(), fsync=False)
    return png_path, tif_path


# --------------------------------------------------------------------------- row files


def _check_folder(folder: Path, option: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise InferenceError(f"{option} {printable(str(folder))} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InferenceError(
            f"{option} {printable(str(folder))} cannot be created ({exc.strerror})"
        ) from None


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Refuse before any work an ``--out`` that cannot take rows (a folder, a bad suffix)."""
    target = Path(out)
    shown = printable(str(target))
    if target.is_dir() or str(out).endswith(os.sep):
        raise InferenceError(
            f"--out {shown} is a folder: give a file name ending in .csv, .json or .jsonl"
        )
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InferenceError(f"{target.name}: --out must end in .csv, .json or .jsonl")
    if target.parent.exists() and not target.parent.is_dir():
        raise InferenceError(f"--out {shown}: {target.parent.name} is not a folder")
    return target


def _parse_number(text: str) -> Any:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def read_rows(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of an output file, tolerating a row cut off by a crash (it is dropped).

    CSV values come back as text except numbers, empty cells as None (cells are as
    written: neutralised).
    """
    target = Path(out)
    if not target.exists():
        return []
    data = target.read_bytes().decode("utf-8", "replace")
    suffix = target.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix == ".csv":
        if not data.endswith("\n"):  # the last row was cut mid-write
            data = data[: data.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(data))
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                continue  # short or long row: damaged
            rows.append(
                {
                    k: None if v == "" else _parse_number(v) if _is_numeric(k) else v
                    for k, v in row.items()
                }
            )
        return rows
    for line in data.splitlines():
        line = line.strip().rstrip(",")
        if not line.startswith("{"):
            continue  # "[", "]" or a cut-off row
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            rows.append(value)
    return rows


_NUMERIC = {"width", "height", "pixel_size_um", "seconds"}


def _is_numeric(column: str) -> bool:
    return column in _NUMERIC or column.startswith("p_")


class RowWriter:
    """Append rows to a .csv, .jsonl or .json file, one flushed and fsynced write each.

    Without ``resume`` the file starts empty. With ``resume`` the rows already there are
    kept (a row cut off by a crash and earlier failures are dropped, once, atomically:
    those files are tried again) and ``done`` holds the sha256 of files with an ``ok``
    row for ``weights_sha256``.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        class_ids: Sequence[str],
        *,
        weights_sha256: str = "",
        resume: bool = False,
    ) -> None:
        self.path = check_output_path(out)
        self.format = self.path.suffix.lower().lstrip(".")
        self.columns = row_columns(class_ids)
        self.done: set[str] = set()
        self.rows_written = 0
        kept: list[dict[str, Any]] = []
        if resume and self.path.exists():
            for row in read_rows(self.path):
                if row.get("status") != STATUS_OK:
                    continue
                if self.format == "csv" and list(row) != self.columns:
                    raise InferenceError(
                        f"{self.path.name} has other columns (another model's classes?): "
                        "resume into a new --out file"
                    )
                if row.get("weights_sha256") == weights_sha256 and row.get("sha256"):
                    self.done.add(str(row["sha256"]))
                kept.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.path, self._file_text(kept).encode("utf-8", "backslashreplace"), fsync=True
        )
        self.rows_written = len(kept)
        self._fd = os.open(self.path, os.O_RDWR)
        self._end = os.lseek(self._fd, 0, os.SEEK_END)

    # one format's bytes
    def _csv_line(self, record: dict[str, Any], header: bool = False) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(self.columns)
        else:
            writer.writerow(
                [
                    ""
                    if record.get(c) is None
                    else neutralise_cell(record.get(c))
                    if not _is_numeric(c)
                    else record.get(c)
                    for c in self.columns
                ]
            )
        return buffer.getvalue()

    @staticmethod
    def _json_line(record: dict[str, Any]) -> str:
        return json.dumps(record, ensure_ascii=False, allow_nan=False)

    def _file_text(self, rows: list[dict[str, Any]]) -> str:
        if self.format == "csv":
            return self._csv_line({}, header=True) + "".join(_csv_keep(self, r) for r in rows)
        lines = [self._json_line(r) for r in rows]
        if self.format == "jsonl":
            return "".join(line + "\n" for line in lines)
        return "[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n"

    def write(self, row: ClassificationRow) -> None:
        """Append one row (skipped rows are not written); durable when it returns."""
        if row.skipped:
            return
        record = row.record()
        if self.format == "csv":
            chunk, at = self._csv_line(record), self._end
        elif self.format == "jsonl":
            chunk, at = self._json_line(record) + "\n", self._end
        elif self.rows_written:  # over "\n]\n": ",\n" + row, then close the array again
            chunk, at = ",\n" + self._json_line(record) + "\n]\n", self._end - 3
        else:  # over "]\n" after "[\n"
            chunk, at = self._json_line(record) + "\n]\n", self._end - 2
        payload = chunk.encode("utf-8", "backslashreplace")
        os.pwrite(self._fd, payload, at)
        os.fsync(self._fd)
        self._end = at + len(payload)
        self.rows_written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _csv_keep(writer: RowWriter, row: dict[str, Any]) -> str:
    """A row read back from a CSV, written again as it was (already neutralised)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        ["" if row.get(c) is None else row.get(c) for c in writer.columns]
    )
    return buffer.getvalue()


def write_rows(
    rows: Sequence[ClassificationRow], out: str | os.PathLike[str], class_ids: Sequence[str]
) -> None:
    """Write all ``rows`` to ``out`` at once (exports: the dialog's table, tests)."""
    with RowWriter(out, class_ids) as writer:
        for row in rows:
            writer.write(row)


def format_table(rows: Sequence[ClassificationRow], class_ids: Sequence[str]) -> str:
    """A plain-text table for the terminal (file name, top class, probabilities, status)."""
    header = ["file", "top_class", *(f"p_{c}" for c in class_ids), "seconds", "status"]
    body = []
    for row in rows:
        if row.skipped:
            continue
        probs = (
            ["-"] * len(class_ids)
            if row.probabilities is None
            else [f"{p:.3f}" for p in row.probabilities]
        )
        body.append(
            [
                printable(row.path.name),
                row.top_class or "-",
                *probs,
                f"{row.seconds:.1f}",
                row.status,
            ]
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, line[-1]]))
    return "\n".join(lines)


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
