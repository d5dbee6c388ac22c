"""Frozen data objects that cross room boundaries: assessments, AI results, case records.

They hold plain values (text, numbers, tuples, timezone-aware UTC datetimes)
so the UI, the report renderer and the batch CLI can pass them around without
touching the store. The store is the only writer; these objects are snapshots.
Mapping fields are copied on construction and must be treated as read-only.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rcm_viewer.cases.checklists import ANSWER_VALUES, AnswerValue
from rcm_viewer.errors import CaseStoreError

Diagnosis = Literal["melanoma", "bcc", "naevus", "other", "uncertain"]
DIAGNOSES: tuple[str, ...] = ("melanoma", "bcc", "naevus", "other", "uncertain")
DIAGNOSIS_LABELS: Mapping[str, str] = {
    "melanoma": "Melanoma",
    "bcc": "Basal cell carcinoma",
    "naevus": "Benign naevus",
    "other": "Other",
    "uncertain": "Uncertain",
}
HistologyDiagnosis = Literal["melanoma", "bcc", "naevus", "other"]
HISTOLOGY_DIAGNOSES: tuple[str, ...] = ("melanoma", "bcc", "naevus", "other")
Management = Literal["excision_biopsy", "short_term_followup", "routine", "none"]
MANAGEMENTS: tuple[str, ...] = ("excision_biopsy", "short_term_followup", "routine", "none")
MANAGEMENT_LABELS: Mapping[str, str] = {
    "excision_biopsy": "Excision / biopsy",
    "short_term_followup": "Short-term follow-up",
    "routine": "Routine follow-up",
    "none": "No follow-up",
}
Stage = Literal["initial", "revised"]
STAGES: tuple[str, ...] = ("initial", "revised")
ReaderMode = Literal["reader_first", "ai_visible"]
READER_MODES: tuple[str, ...] = ("reader_first", "ai_visible")
CONFIDENCE_RANGE = (1, 5)

#: Fields of an assessment a form may edit through ``CaseStore.update_assessment_fields``.
ASSESSMENT_FIELDS: tuple[str, ...] = (
    "diagnosis",
    "confidence",
    "management",
    "notes",
    "lesion_site",
    "reader_name",
)
#: Fields whose change after the AI was shown counts as "the reader changed the answer".
DECISION_FIELDS: tuple[str, ...] = ("diagnosis", "management")

_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- time


def utc_now() -> datetime:
    """Current time in UTC; every stored timestamp is UTC so sites in other zones agree."""
    return datetime.now(UTC)


def to_iso(moment: datetime | None) -> str | None:
    """ISO 8601 text, always microseconds and ``+00:00``, so text order is time order."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- validation


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise a readable error for a value outside a closed vocabulary (None is allowed)."""
    if value is not None and value not in choices:
        raise CaseStoreError(f"{name} {value!r} is not one of: {', '.join(choices)}")


def check_confidence(value: Any) -> None:
    low, high = CONFIDENCE_RANGE
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CaseStoreError(f"confidence {value!r} must be a whole number from {low} to {high}")


def check_sha256(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not _SHA256_PATTERN.match(value)):
        raise CaseStoreError(f"{name} must be 64 lower-case hexadecimal digits, got {value!r}")


def _copy_answers(
    answers: Mapping[str, Mapping[str, str | None]],
) -> dict[str, dict[str, AnswerValue]]:
    """Deep-copy answers, dropping unanswered (None) items so equal forms compare equal."""
    copied: dict[str, dict[str, AnswerValue]] = {}
    for checklist_id, items in answers.items():
        kept = {}
        for item_id, value in items.items():
            check_choice(f"answer to {checklist_id}.{item_id}", value, ANSWER_VALUES)
            if value is not None:
                kept[item_id] = value
        if kept:
            copied[checklist_id] = kept
    return copied


# --------------------------------------------------------------------------- assessment


@dataclass(frozen=True)
class Assessment:
    """One stage of a reader's assessment: checklist answers, diagnosis, confidence, management.

    ``committed_at`` is set when the reader commits the initial (unaided)
    assessment; from then on it is locked and edits go to the revised stage.
    """

    stage: Stage = "initial"
    answers: Mapping[str, Mapping[str, AnswerValue]] = field(default_factory=dict)
    diagnosis: Diagnosis | None = None
    confidence: int | None = None
    management: Management | None = None
    notes: str = ""
    lesion_site: str | None = None
    reader_name: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    committed_at: datetime | None = None

    def __post_init__(self) -> None:
        check_choice("stage", self.stage, STAGES)
        check_choice("diagnosis", self.diagnosis, DIAGNOSES)
        check_choice("management", self.management, MANAGEMENTS)
        check_confidence(self.confidence)
        object.__setattr__(self, "answers", _copy_answers(self.answers))

    @property
    def committed(self) -> bool:
        return self.committed_at is not None

    def answer(self, checklist_id: str, item_id: str) -> AnswerValue | None:
        return self.answers.get(checklist_id, {}).get(item_id)

    def decision(self) -> dict[str, Any]:
        """The fields compared to tell whether the reader changed the answer."""
        return {name: getattr(self, name) for name in DECISION_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "answers": {cid: dict(items) for cid, items in self.answers.items()},
            "diagnosis": self.diagnosis,
            "confidence": self.confidence,
            "management": self.management,
            "notes": self.notes,
            "lesion_site": self.lesion_site,
            "reader_name": self.reader_name,
            "created_at": to_iso(self.created_at),
            "updated_at": to_iso(self.updated_at),
            "committed_at": to_iso(self.committed_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Assessment:
        return cls(
            stage=data.get("stage", "initial"),
            answers=data.get("answers", {}),
            diagnosis=data.get("diagnosis"),
            confidence=data.get("confidence"),
            management=data.get("management"),
            notes=data.get("notes", ""),
            lesion_site=data.get("lesion_site"),
            reader_name=data.get("reader_name"),
            created_at=from_iso(data.get("created_at")),
            updated_at=from_iso(data.get("updated_at")),
            committed_at=from_iso(data.get("committed_at")),
        )


# --------------------------------------------------------------------------- AI result


@dataclass(frozen=True, eq=False)
class Heatmap:
    """A class-activation heatmap quantised to uint8, about 4x smaller than float32.

    ``data`` has shape (classes, height, width), one plane per entry of
    ``class_ids``; value ``v`` stands for ``low + v / 255 * (high - low)``.
    ``mosaic_shape`` is the full-resolution (height, width) the heatmap spans,
    so the viewer can scale it onto the mosaic without asking the model.
    Quantisation error (at most (high - low) / 510) is far below what a colour
    map shows.
    """

    data: np.ndarray
    class_ids: tuple[str, ...]
    value_range: tuple[float, float]
    mosaic_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data)
        if data.dtype != np.uint8 or data.ndim != 3:
            raise ValueError("heatmap data must be a uint8 array shaped (classes, height, width)")
        if data.shape[0] != len(self.class_ids):
            raise ValueError(
                f"heatmap has {data.shape[0]} planes but {len(self.class_ids)} class ids"
            )
        low, high = (float(v) for v in self.value_range)
        if not (math.isfinite(low) and math.isfinite(high)) or high < low:
            raise ValueError(f"heatmap value range {self.value_range!r} is not a finite low<=high")
        data = data.copy()
        data.setflags(write=False)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "class_ids", tuple(self.class_ids))
        object.__setattr__(self, "value_range", (low, high))
        if self.mosaic_shape is not None:
            object.__setattr__(self, "mosaic_shape", tuple(int(v) for v in self.mosaic_shape))

    @classmethod
    def from_float(
        cls,
        values: np.ndarray,
        class_ids: Sequence[str],
        mosaic_shape: tuple[int, int] | None = None,
        value_range: tuple[float, float] | None = None,
    ) -> Heatmap:
        """Quantise a float heatmap (classes, height, width); the range defaults to min..max."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 2:
            values = values[np.newaxis]
        if not np.all(np.isfinite(values)):
            raise ValueError("heatmap contains NaN or infinite values; fill background with 0")
        if value_range is None:
            value_range = (float(values.min()), float(values.max())) if values.size else (0, 0)
        low, high = value_range
        span = high - low
        if span > 0:
            scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
            quantised = np.rint(scaled).astype(np.uint8)
        else:
            quantised = np.zeros(values.shape, dtype=np.uint8)
        return cls(quantised, tuple(class_ids), (low, high), mosaic_shape)

    def to_float(self) -> np.ndarray:
        """Float32 values back in the original units (for colour maps and thresholds)."""
        low, high = self.value_range
        return (self.data.astype(np.float32) * np.float32((high - low) / 255.0)) + np.float32(low)

    def plane(self, class_id: str) -> np.ndarray:
        return self.to_float()[self.class_ids.index(class_id)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Heatmap):
            return NotImplemented
        return (
            self.class_ids == other.class_ids
            and self.value_range == other.value_range
            and self.mosaic_shape == other.mosaic_shape
            and np.array_equal(self.data, other.data)
        )

    __hash__ = None  # type: ignore[assignment]

    def meta(self) -> dict[str, Any]:
        """Everything but the pixels, as stored next to the compressed blob."""
        return {
            "shape": list(self.data.shape),
            "class_ids": list(self.class_ids),
            "value_range": list(self.value_range),
            "mosaic_shape": list(self.mosaic_shape) if self.mosaic_shape else None,
        }

    def to_blob(self) -> bytes:
        """zlib-compressed pixels: heatmaps are smooth, so they compress several-fold."""
        return zlib.compress(self.data.tobytes(), level=6)

    @classmethod
    def from_blob(cls, meta: Mapping[str, Any], blob: bytes) -> Heatmap:
        shape = tuple(int(v) for v in meta["shape"])
        data = np.frombuffer(zlib.decompress(blob), dtype=np.uint8).reshape(shape)
        mosaic_shape = meta.get("mosaic_shape")
        return cls(
            data,
            tuple(meta["class_ids"]),
            tuple(meta["value_range"]),
            tuple(mosaic_shape) if mosaic_shape else None,
        )

    def to_dict(self, include_pixels: bool = False) -> dict[str, Any]:
        result = self.meta()
        if include_pixels:
            result["encoding"] = "zlib+base64, uint8, C order"
            result["data"] = base64.b64encode(self.to_blob()).decode("ascii")
        return result


@dataclass(frozen=True)
class AIResult:
    """What the classifier said about a mosaic, with what is needed to trust or doubt it.

    ``flags`` carries caveats the UI must show as banners, e.g.
    ``"synthetic_model"`` (a demonstration model trained on generated mosaics)
    or ``"uncalibrated"``.
    """

    model_name: str
    model_version: str
    weights_sha256: str
    class_ids: tuple[str, ...]
    probabilities: tuple[float, ...]
    top_class: str
    created_at: datetime
    heatmap: Heatmap | None = None
    flags: tuple[str, ...] = ()
    #: Out-of-distribution check (inference/ood.py): relative score (1.0 = threshold) and
    #: whether the mosaic looked like the training data; None when the model had none.
    ood_score: float | None = None
    in_distribution: bool | None = None

    def __post_init__(self) -> None:
        if self.ood_score is not None and not (
            math.isfinite(self.ood_score) and self.ood_score >= 0
        ):
            raise CaseStoreError(f"AI OOD score {self.ood_score} must be a finite number >= 0")
        object.__setattr__(self, "class_ids", tuple(self.class_ids))
        object.__setattr__(self, "probabilities", tuple(float(p) for p in self.probabilities))
        object.__setattr__(self, "flags", tuple(self.flags))
        if not self.model_name:
            raise CaseStoreError("AI result needs a model name")
        check_sha256("weights sha256", self.weights_sha256)
        if len(self.class_ids) != len(self.probabilities) or not self.class_ids:
            raise CaseStoreError(
                f"AI result has {len(self.class_ids)} classes but "
                f"{len(self.probabilities)} probabilities"
            )
        if any(not (math.isfinite(p) and 0.0 <= p <= 1.0) for p in self.probabilities):
            raise CaseStoreError(f"AI probabilities {self.probabilities} must lie in 0..1")
        if abs(sum(self.probabilities) - 1.0) > 0.01:
            raise CaseStoreError(
                f"AI probabilities sum to {sum(self.probabilities):.3f}, expected 1 (softmax)"
            )
        if self.top_class not in self.class_ids:
            raise CaseStoreError(f"AI top class {self.top_class!r} is not among {self.class_ids}")
        if self.created_at.tzinfo is None:
            raise CaseStoreError("AI result created_at must be timezone-aware (UTC)")

    @classmethod
    def from_probabilities(
        cls,
        model_name: str,
        model_version: str,
        weights_sha256: str,
        probabilities: Mapping[str, float],
        heatmap: Heatmap | None = None,
        flags: Sequence[str] = (),
        created_at: datetime | None = None,
        ood_score: float | None = None,
        in_distribution: bool | None = None,
    ) -> AIResult:
        """Build a result from ``{class_id: probability}``, deriving the top class."""
        class_ids = tuple(probabilities)
        values = tuple(float(probabilities[c]) for c in class_ids)
        top = class_ids[int(np.argmax(values))] if values else ""
        return cls(
            model_name=model_name,
            model_version=model_version,
            weights_sha256=weights_sha256,
            class_ids=class_ids,
            probabilities=values,
            top_class=top,
            created_at=created_at or utc_now(),
            heatmap=heatmap,
            flags=tuple(flags),
            ood_score=None if ood_score is None else float(ood_score),
            in_distribution=None if in_distribution is None else bool(in_distribution),
        )

    @property
    def probability_by_class(self) -> dict[str, float]:
        return dict(zip(self.class_ids, self.probabilities, strict=True))

    def summary(self) -> dict[str, Any]:
        """Small description written to the audit trail (no pixels)."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "weights_sha256": self.weights_sha256,
            "probabilities": self.probability_by_class,
            "top_class": self.top_class,
            "flags": list(self.flags),
            "created_at": to_iso(self.created_at),
            "ood_score": self.ood_score,
            "in_distribution": self.in_distribution,
        }

    def to_dict(self, include_heatmap_pixels: bool = False) -> dict[str, Any]:
        result = self.summary()
        result["class_ids"] = list(self.class_ids)
        result["heatmap"] = (
            self.heatmap.to_dict(include_pixels=include_heatmap_pixels) if self.heatmap else None
        )
        return result


# --------------------------------------------------------------------------- case record


@dataclass(frozen=True)
class CaseRecord:
    """Everything recorded about one lesion: header, both assessment stages, AI, histology.

    ``ai_result`` is None while the reader-first rule hides it (``ai_visible``
    False) unless the store was asked for hidden results explicitly;
    ``ai_result_stored`` still tells the UI that a result is waiting.
    ``roi_annotations`` are GeoJSON Features in full-resolution pixel
    coordinates (as QuPath writes them).
    """

    case_id: str
    patient_pseudonym: str
    reader_mode: ReaderMode
    initial: Assessment
    created_at: datetime
    updated_at: datetime
    mosaic_path: str | None = None
    mosaic_sha256: str | None = None
    pixel_size_um: float | None = None
    lesion_site: str | None = None
    revised: Assessment | None = None
    ai_result: AIResult | None = None
    ai_result_stored: bool = False
    histology_diagnosis: HistologyDiagnosis | None = None
    histology_detail: str | None = None
    histology_recorded_at: datetime | None = None
    #: Date of the pathology report (a calendar day, as the report gives it).
    histology_date: date | None = None
    #: The laboratory's report number, free text.
    histology_report_number: str | None = None
    roi_annotations: tuple[Mapping[str, Any], ...] = ()
    view_state: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("reader mode", self.reader_mode, READER_MODES)
        check_choice("histology diagnosis", self.histology_diagnosis, HISTOLOGY_DIAGNOSES)
        object.__setattr__(self, "roi_annotations", tuple(self.roi_annotations))
        object.__setattr__(self, "view_state", dict(self.view_state))

    @property
    def initial_committed(self) -> bool:
        return self.initial.committed

    @property
    def ai_visible(self) -> bool:
        """Reader-first rule: the AI is shown only after the unaided assessment is committed."""
        return self.reader_mode == "ai_visible" or self.initial.committed

    @property
    def editable_stage(self) -> Stage:
        """The stage a form should write to now."""
        return "revised" if self.initial.committed else "initial"

    @property
    def current_assessment(self) -> Assessment:
        return self.revised if self.revised is not None else self.initial

    @property
    def changed_fields_after_ai(self) -> tuple[str, ...]:
        """Every field that differs between the initial and the revised assessment."""
        if self.revised is None:
            return ()
        changed = [
            name
            for name in ASSESSMENT_FIELDS
            if getattr(self.initial, name) != getattr(self.revised, name)
        ]
        checklist_ids = sorted(set(self.initial.answers) | set(self.revised.answers))
        for checklist_id in checklist_ids:
            if self.initial.answers.get(checklist_id, {}) != self.revised.answers.get(
                checklist_id, {}
            ):
                changed.append(f"answers.{checklist_id}")
        return tuple(changed)

    @property
    def changed_after_ai(self) -> bool | None:
        """Did the reader change diagnosis or management after seeing the AI?

        None until there is something to compare: no revised assessment yet, or
        no AI result was ever stored (a revision without AI is not "after AI").
        Checklist answers, confidence and notes are evidence rather than the
        answer; ``changed_fields_after_ai`` lists them when they changed.
        """
        if self.revised is None or not self.ai_result_stored:
            return None
        return self.initial.decision() != self.revised.decision()

    def to_dict(self, include_heatmap_pixels: bool = False) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "patient_pseudonym": self.patient_pseudonym,
            "mosaic_path": self.mosaic_path,
            "mosaic_sha256": self.mosaic_sha256,
            "pixel_size_um": self.pixel_size_um,
            "lesion_site": self.lesion_site,
            "reader_mode": self.reader_mode,
            "created_at": to_iso(self.created_at),
            "updated_at": to_iso(self.updated_at),
            "initial": self.initial.to_dict(),
            "revised": self.revised.to_dict() if self.revised else None,
            "ai_visible": self.ai_visible,
            "ai_result_stored": self.ai_result_stored,
            "ai_result": (
                self.ai_result.to_dict(include_heatmap_pixels) if self.ai_result else None
            ),
            "changed_after_ai": self.changed_after_ai,
            "changed_fields_after_ai": list(self.changed_fields_after_ai),
            "histology": {
                "diagnosis": self.histology_diagnosis,
                "detail": self.histology_detail,
                "recorded_at": to_iso(self.histology_recorded_at),
                "date": self.histology_date.isoformat() if self.histology_date else None,
                "report_number": self.histology_report_number,
            },
            "roi_annotations": {
                "type": "FeatureCollection",
                "features": [dict(f) for f in self.roi_annotations],
            },
            "view_state": dict(self.view_state),
        }


@dataclass(frozen=True)
class CaseSummary:
    """One row of the case list (no heatmaps, no answers): cheap to load by the hundred."""

    case_id: str
    patient_pseudonym: str
    lesion_site: str | None
    reader_mode: ReaderMode
    created_at: datetime
    updated_at: datetime
    initial_diagnosis: Diagnosis | None
    revised_diagnosis: Diagnosis | None
    histology_diagnosis: HistologyDiagnosis | None
    initial_committed: bool
    ai_result_stored: bool
    mosaic_path: str | None
    #: anything recorded in the case (see ``CaseStore.search``); False: only looked at
    touched: bool = True


@dataclass(frozen=True)
class AuditEntry:
    """One append-only audit row: who changed which field of which case, from what to what."""

    entry_id: int
    at: datetime
    user: str
    case_id: str
    field: str
    old_value: Any
    new_value: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "at": to_iso(self.at),
            "user": self.user,
            "case_id": self.case_id,
            "field": self.field,
            "old_value": self.old_value,
            "new_value": self.new_value,
        }


# --------------------------------------------------------------------------- file hashing


def file_sha256(
    path: str | Path,
    chunk_bytes: int = 4 * 1024 * 1024,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """SHA-256 of a file read in chunks, so a multi-gigabyte mosaic never sits in memory.

    The hash identifies a mosaic even after it is moved or renamed, which is how
    a reopened file finds its case. ``progress(done_bytes, total_bytes)`` lets a
    worker thread report progress on big files.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        total = path.stat().st_size
        done = 0
        with path.open("rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except OSError as exc:
        raise CaseStoreError(f"Cannot read {path.name} to fingerprint it: {exc.strerror}") from exc
    return digest.hexdigest()
