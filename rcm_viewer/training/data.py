"""The training data: mosaics found in class folders, patients, and the saved split.

Torch-free: listing the data and splitting it must be quick and must fail (with a line a
clinician can read) before any model is built, so a nearly empty class folder is found in
seconds, not after an hour of training.

Layout: ``DATA_DIR/<class id>/...`` (any depth, any format ``open_mosaic`` reads). An
optional patients CSV (``path,patient_id``; paths relative to ``DATA_DIR``) keeps all
mosaics of one patient in one split: mosaics of the same lesion look alike, and a model
that has seen a patient's other mosaics would look better on the test split than it is.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from rcm_viewer.errors import MosaicError, TrainingError
from rcm_viewer.mosaic import open_mosaic

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_JSON = "split.json"
SPLIT_CSV = "split.csv"
#: Files next to images that are certainly not mosaics (skipped without a warning).
_NOT_IMAGES = {".csv", ".txt", ".json", ".md", ".xml", ".ini", ".db", ".log", ".pdf"}


@dataclass(frozen=True)
class MosaicRecord:
    """One training mosaic: where it is, its class, its patient and its split."""

    #: Path relative to the data folder, with forward slashes (portable between machines).
    path: str
    class_id: str
    patient_id: str
    width: int
    height: int
    pixel_size_um: float
    split: str = ""

    def absolute(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.path


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class DataSet:
    """The readable mosaics of a data folder and the files that were skipped (and why)."""

    data_dir: Path
    class_ids: tuple[str, ...]
    records: tuple[MosaicRecord, ...]
    skipped: tuple[SkippedFile, ...]

    def counts(self, split: str | None = None) -> dict[str, int]:
        """Mosaics per class (in one split, or all), every class listed."""
        counter = Counter(r.class_id for r in self.records if split in (None, r.split))
        return {c: counter.get(c, 0) for c in self.class_ids}

    def in_split(self, split: str) -> list[MosaicRecord]:
        return [r for r in self.records if r.split == split]


def parse_split_fractions(text: str) -> tuple[float, float, float]:
    """``"70/15/15"`` -> (0.70, 0.15, 0.15): train / validation / test percentages."""
    try:
        parts = [float(p) for p in str(text).replace(",", "/").split("/")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0 or parts[1] <= 0 or sum(parts) <= 0:
        raise TrainingError(
            f"split {text!r} is not valid: give train/validation/test percentages such as "
            "70/15/15 (train and validation must not be 0)"
        )
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def read_patients(csv_path: Path, data_dir: Path) -> dict[str, str]:
    """Relative mosaic path -> patient id, from a ``path,patient_id`` CSV."""
    csv_path = Path(csv_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TrainingError(f"{csv_path.name} cannot be read ({exc.strerror or exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "patient_id"]:
        rows = rows[1:]
    patients: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise TrainingError(f"{csv_path.name} line {number}: expected 'path,patient_id'")
        raw = Path(row[0].strip())
        rel = (
            raw.relative_to(data_dir) if raw.is_absolute() and raw.is_relative_to(data_dir) else raw
        )
        patients[rel.as_posix()] = row[1].strip()
    return patients


def scan_data_dir(
    data_dir: Path,
    *,
    patients_csv: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DataSet:
    """Open every file under ``DATA_DIR/<class>/`` (headers only) and keep the readable ones.

    Unreadable files and mosaics without a pixel size are listed in ``skipped`` rather than
    stopping the run: one damaged export should not cost a clinic its training run. A
    mosaic without a patient id in the CSV is its own patient (and is reported).
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise TrainingError(f"data folder {data_dir} does not exist or is not a folder")
    class_dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise TrainingError(
            f"{data_dir} has no class folders: put the mosaics of each class in their own "
            "sub-folder (e.g. melanoma/, bcc/, naevus/)"
        )
    patients = read_patients(patients_csv, data_dir) if patients_csv else None
    files: list[tuple[str, Path]] = []
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if (
                path.is_file()
                and not path.name.startswith(".")
                and (path.suffix.lower() not in _NOT_IMAGES)
            ):
                files.append((class_dir.name, path))
    records: list[MosaicRecord] = []
    skipped: list[SkippedFile] = []
    missing_patient = 0
    for n, (class_id, path) in enumerate(files, start=1):
        rel = path.relative_to(data_dir).as_posix()
        try:
            with open_mosaic(path, cache_bytes=1 << 20) as mosaic:
                info = mosaic.info
        except MosaicError as exc:
            skipped.append(SkippedFile(rel, str(exc)))
            continue
        if info.pixel_size_um is None:
            skipped.append(SkippedFile(rel, f"{path.name}: the pixel size is unknown"))
            continue
        if patients is not None and rel not in patients:
            missing_patient += 1
        patient = patients.get(rel, rel) if patients is not None else rel
        records.append(
            MosaicRecord(rel, class_id, patient, info.width, info.height, float(info.pixel_size_um))
        )
        if progress is not None:
            progress(n, len(files))
    if missing_patient:
        log.warning(
            "%d mosaic(s) are not in the patients CSV: each is taken as its own patient",
            missing_patient,
        )
    class_ids = tuple(sorted({r.class_id for r in records}))
    return DataSet(data_dir, class_ids, tuple(records), tuple(skipped))


def check_trainable(data: DataSet, fractions: Sequence[float]) -> None:
    """Stop with one clear line when the data cannot give a stratified split."""
    if not data.records:
        raise TrainingError(f"{data.data_dir} holds no readable mosaic in its class folders")
    if len(data.class_ids) < 2:
        raise TrainingError(
            f"{data.data_dir} has only one class ({data.class_ids[0]}): a classifier needs "
            "at least two class folders with mosaics"
        )
    needed = sum(1 for f in fractions if f > 0)
    per_class_patients: dict[str, set[str]] = defaultdict(set)
    for r in data.records:
        per_class_patients[r.class_id].add(r.patient_id)
    for class_id in data.class_ids:
        n = len(per_class_patients[class_id])
        if n < needed:
            shown = "/".join(f"{round(f * 100):g}" for f in fractions)
            raise TrainingError(
                f"class {class_id} has only {n} patient(s)/mosaic(s): a stratified {shown} "
                f"split needs at least {needed} per class"
            )


def _split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` patients go to train/validation/test (each used split gets one)."""
    _, f_val, f_test = fractions
    n_val = max(1, round(n * f_val))
    n_test = max(1, round(n * f_test)) if f_test > 0 else 0
    while n - n_val - n_test < 1:  # train keeps at least one
        if n_test > 1 and n_test >= n_val:
            n_test -= 1
        elif n_val > 1:
            n_val -= 1
        else:
            break
    return n - n_val - n_test, n_val, n_test


def split_dataset(data: DataSet, fractions: Sequence[float], seed: int) -> DataSet:
    """Stratified, seeded, patient-disjoint split.

    Patients are grouped by their most frequent class and shuffled with ``seed``; each
    class group is cut by the fractions (counted in patients), so every class is in every
    split and no patient is in two splits.
    """
    check_trainable(data, fractions)
    by_patient: dict[str, list[MosaicRecord]] = defaultdict(list)
    for r in data.records:
        by_patient[r.patient_id].append(r)
    groups: dict[str, list[str]] = defaultdict(list)
    for patient, items in sorted(by_patient.items()):
        main = Counter(r.class_id for r in items).most_common()
        main.sort(key=lambda kv: (-kv[1], kv[0]))
        groups[main[0][0]].append(patient)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for class_id in data.class_ids:
        patients = groups.get(class_id, [])
        order = [patients[i] for i in rng.permutation(len(patients))]
        n_train, n_val, _ = _split_counts(len(order), fractions)
        for i, patient in enumerate(order):
            assignment[patient] = (
                "train" if i < n_train else "validation" if i < n_train + n_val else "test"
            )
    records = tuple(replace(r, split=assignment[r.patient_id]) for r in data.records)
    result = replace(data, records=records)
    for split in ("train", "validation"):
        empty = [c for c, n in result.counts(split).items() if n == 0]
        if empty:
            raise TrainingError(
                f"class {empty[0]} has no mosaic in the {split} split: add mosaics (or "
                "patients) of that class"
            )
    return result


def save_split(
    data: DataSet, directory: Path, *, seed: int, fractions: Sequence[float]
) -> tuple[Path, Path]:
    """``split.json`` (everything needed to repeat the evaluation) and ``split.csv``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "seed": seed,
        "fractions": {s: round(f, 6) for s, f in zip(SPLITS, fractions, strict=True)},
        "class_ids": list(data.class_ids),
        "counts": {s: data.counts(s) for s in SPLITS},
        "skipped": [asdict(s) for s in data.skipped],
        "mosaics": [asdict(r) for r in data.records],
    }
    json_path = directory / SPLIT_JSON
    json_path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    csv_path = directory / SPLIT_CSV
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "class_id", "patient_id", "split", "pixel_size_um"])
        for r in data.records:
            writer.writerow([r.path, r.class_id, r.patient_id, r.split, r.pixel_size_um])
    return json_path, csv_path


def load_split(path: Path, data_dir: Path) -> DataSet:
    """The data set as a saved ``split.json`` describes it (paths resolved in ``data_dir``)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPLIT_JSON
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        records = tuple(MosaicRecord(**item) for item in payload["mosaics"])
        class_ids = tuple(payload["class_ids"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path.name} cannot be read as a saved split ({exc})") from None
    return DataSet(Path(data_dir), class_ids, records, ())


def class_weights(counts: dict[str, int], class_ids: Sequence[str]) -> list[float]:
    """Inverse-frequency weights, scaled so an average training sample weighs 1.

    Why: the published cohort was unbalanced (167/116/146) and clinics' will be more so;
    without weights the rare class is the one the model learns to ignore.
    """
    total = sum(counts[c] for c in class_ids)
    k = len(class_ids)
    return [total / (k * counts[c]) if counts[c] else 0.0 for c in class_ids]
