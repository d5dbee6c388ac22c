"""A report as pure data: assembled once from a stored case (and its mosaic, when it exists).

The PDF and the JSON sidecar are two renderings of one frozen :class:`Report`, so they
cannot disagree, and the window and ``rcm-viewer report`` share it through
``export.export_report``. Assembly reads the case store the way the reader sees it
(never ``include_hidden_ai``): a reader-first case whose unaided assessment is not
committed gets no AI result, and the report says why. Images are numpy arrays (display
pixels plus the outlines and the heatmap to draw over them); painting them is the
renderer's job (``pdf.py``), with the window's palettes and scale-bar rule
(``display.py``). A mosaic file that is missing or unreadable is not an error: the
report is made from the stored case, with a note instead of images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rcm_viewer import __version__
from rcm_viewer.cases import (
    ANSWER_LABELS,
    DIAGNOSIS_LABELS,
    MANAGEMENT_LABELS,
    Assessment,
    CaseRecord,
    CaseStore,
    Checklist,
    load_checklists,
    score_checklist,
    utc_now,
)
from rcm_viewer.errors import RcmError
from rcm_viewer.intended_use import DEMONSTRATION_BANNER, INTENDED_USE
from rcm_viewer.reports.display import (
    DisplaySettings,
    display_pixels,
    format_length,
    heatmap_rgba,
    load_overview_building,
    nice_scale_bar,
)
from rcm_viewer.session import AIView, view_from_stored

log = logging.getLogger(__name__)

SYNTHETIC_BANNER = DEMONSTRATION_BANNER
#: The AI section's line when the model was not signed by a trusted key (issue 16).
UNVERIFIED_MODEL_NOTE = (
    "Unverified model: when this result was made, the model bundle was unsigned or signed "
    "by a key this installation does not trust; its origin and contents cannot be checked."
)
#: Close-ups are read at full resolution up to this many pixels a side, else downsampled.
CLOSEUP_MAX_PX = 768
#: A point annotation's close-up is this many full-resolution pixels a side.
POINT_CLOSEUP_PX = 256
#: At most this many close-ups (the JSON lists every annotation all the same).
MAX_CLOSEUPS = 12
DEFAULT_OPACITY = 0.45
DEFAULT_COLORMAP = "Inferno"
DEFAULT_COLOR = (255, 210, 0)

Paper = Literal["a4", "letter"]
ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class ReportCancelled(Exception):
    """The caller's ``cancel()`` said stop; nothing was written."""


@dataclass(frozen=True)
class ReportOptions:
    """Choices for one report; the window passes the institution text from its settings."""

    institution: str = ""
    anonymise: bool = False
    heatmap: bool = True
    paper: Paper = "a4"
    colormap: str = DEFAULT_COLORMAP
    opacity: float = DEFAULT_OPACITY

    def __post_init__(self) -> None:
        if self.paper not in ("a4", "letter"):
            raise ValueError(f"paper {self.paper!r}: use a4 or letter")


@dataclass(frozen=True)
class Outline:
    """One annotation's shape in an image's own pixel coordinates."""

    kind: Literal["polygon", "line", "points"]
    points: tuple[tuple[float, float], ...]
    color: tuple[int, int, int]
    label: str


@dataclass(frozen=True, eq=False)
class ReportImage:
    """Display pixels plus what is drawn over them (outlines, heatmap, scale bar)."""

    key: str
    caption: str
    pixels: np.ndarray  # uint8 (h, w) grey or (h, w, 3) RGB
    level0_per_px: float  # full-resolution pixels per image pixel
    outlines: tuple[Outline, ...] = ()
    overlay: np.ndarray | None = None  # uint8 RGBA heatmap, stretched over overlay_rect
    overlay_rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x, y, w, h
    overlay_opacity: float = DEFAULT_OPACITY
    scale_bar_um: float | None = None
    scale_bar_px: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "caption": self.caption,
            "width": self.size[0],
            "height": self.size[1],
            "full_resolution_px_per_image_px": self.level0_per_px,
            "heatmap": self.overlay is not None,
            "scale_bar": (
                None
                if self.scale_bar_um is None
                else {"length_um": self.scale_bar_um, "label": format_length(self.scale_bar_um)}
            ),
            "annotations": [o.label for o in self.outlines],
        }


@dataclass(frozen=True)
class AnnotationEntry:
    """One region annotation as the report lists it."""

    roi_id: str
    label: str
    shape: str
    geometry_type: str
    criterion: str | None
    criterion_label: str | None
    name: str
    color: tuple[int, int, int]
    bbox: tuple[float, float, float, float]  # x, y, w, h in full-resolution pixels
    measure: str  # area / length in µm or mm² when the pixel size is known, else px

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.roi_id,
            "label": self.label,
            "shape": self.shape,
            "geometry_type": self.geometry_type,
            "criterion": self.criterion,
            "criterion_label": self.criterion_label,
            "name": self.name,
            "color": list(self.color),
            "bbox_px": list(self.bbox),
            "measure": self.measure,
        }


@dataclass(frozen=True)
class ChecklistRow:
    item_id: str
    label: str
    points: int
    initial: str
    revised: str | None


@dataclass(frozen=True)
class ChecklistSection:
    checklist_id: str
    title: str
    rows: tuple[ChecklistRow, ...]
    score_label: str
    initial_score: str
    revised_score: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "checklist_id": self.checklist_id,
            "title": self.title,
            "score_label": self.score_label,
            "initial_score": self.initial_score,
            "revised_score": self.revised_score,
            "items": [
                {
                    "id": r.item_id,
                    "label": r.label,
                    "points": r.points,
                    "initial": r.initial,
                    "revised": r.revised,
                }
                for r in self.rows
            ],
        }


@dataclass(frozen=True)
class AssessmentSummary:
    stage: str
    diagnosis: str
    confidence: str
    management: str
    reader: str
    committed_at: str | None
    notes: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "diagnosis": self.diagnosis,
            "confidence": self.confidence,
            "management": self.management,
            "reader": self.reader,
            "committed_at": self.committed_at,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class AISection:
    """What the model said, or why the report shows nothing of it."""

    shown: bool
    note: str
    model_name: str = ""
    model_version: str = ""
    weights_sha256: str = ""
    synthetic: bool = False
    probabilities: tuple[tuple[str, str, float], ...] = ()  # class id, name, probability
    top_class: str | None = None
    heatmap_class: str | None = None
    created_at: str | None = None
    #: "unverified: ..." when the model was unsigned or signed by an unknown key when the
    #: result was made (inference/signing.py); "" when verified or not recorded.
    model_trust: str = ""

    @property
    def unverified_note(self) -> str:
        """The report's line on an unverified model, or ""."""
        return UNVERIFIED_MODEL_NOTE if self.model_trust.startswith("unverified") else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "shown": self.shown,
            "note": self.note,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "weights_sha256": self.weights_sha256,
            "synthetic": self.synthetic,
            "banner": SYNTHETIC_BANNER if self.synthetic else None,
            "model_trust": self.model_trust,
            "unverified_model": bool(self.unverified_note),
            "probabilities": [
                {"class_id": c, "class_name": n, "probability": p} for c, n, p in self.probabilities
            ],
            "top_class": self.top_class,
            "heatmap_class": self.heatmap_class,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Report:
    """Everything one report shows, in the order it shows it."""

    institution: str
    case_id: str
    pseudonym: str | None
    lesion_site: str
    acquisition_date: str | None
    report_date: str | None
    readers: str
    mosaic_name: str | None
    mosaic_sha256: str | None
    pixel_size_um: float | None
    images: tuple[ReportImage, ...]
    closeups: tuple[ReportImage, ...]
    image_note: str  # why images are missing or partial ("" when all is there)
    annotations: tuple[AnnotationEntry, ...]
    ai: AISection
    initial: AssessmentSummary
    revised: AssessmentSummary | None
    checklists: tuple[ChecklistSection, ...]
    histology: str | None
    intended_use: str
    software_version: str
    options: ReportOptions = field(default_factory=ReportOptions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": {
                "institution": self.institution,
                "case_id": self.case_id,
                "patient_pseudonym": self.pseudonym,
                "lesion_site": self.lesion_site,
                "acquisition_date": self.acquisition_date,
                "report_date": self.report_date,
                "readers": self.readers,
                "mosaic_name": self.mosaic_name,
                "mosaic_sha256": self.mosaic_sha256,
                "pixel_size_um": self.pixel_size_um,
            },
            "options": {
                "anonymised": self.options.anonymise,
                "heatmap": self.options.heatmap,
                "paper": self.options.paper,
                "colormap": self.options.colormap,
                "opacity": self.options.opacity,
            },
            "images": [image.to_dict() for image in self.images],
            "closeups": [image.to_dict() for image in self.closeups],
            "image_note": self.image_note,
            "annotations": [a.to_dict() for a in self.annotations],
            "ai_result": self.ai.to_dict(),
            "initial_assessment": self.initial.to_dict(),
            "revised_assessment": self.revised.to_dict() if self.revised else None,
            "checklists": [c.to_dict() for c in self.checklists],
            "histology": self.histology,
            "intended_use": self.intended_use,
            "software_version": self.software_version,
        }


# --------------------------------------------------------------------------- annotations


def _color(properties: Mapping[str, Any]) -> tuple[int, int, int]:
    classification = properties.get("classification")
    color = properties.get("color")
    if isinstance(classification, Mapping) and classification.get("color") is not None:
        color = classification.get("color")
    if isinstance(color, Sequence) and len(color) >= 3:
        try:
            return tuple(max(0, min(255, int(c))) for c in color[:3])  # type: ignore[return-value]
        except (TypeError, ValueError):
            pass
    if isinstance(color, int):  # QuPath's packed RGB integer
        return ((color >> 16) & 255, (color >> 8) & 255, color & 255)
    return DEFAULT_COLOR


def _label(properties: Mapping[str, Any]) -> str:
    classification = properties.get("classification")
    if isinstance(classification, Mapping) and classification.get("name"):
        return str(classification["name"])
    return str(properties.get("name") or "unlabelled")


def _rings(geometry: Mapping[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(kind, (n, 2) float array) parts of a geometry; empty for what cannot be read."""
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    parts: list[tuple[str, Any]] = []
    if kind == "Polygon":
        parts = [("polygon", ring) for ring in coords or []]
    elif kind == "MultiPolygon":
        parts = [("polygon", ring) for polygon in coords or [] for ring in polygon]
    elif kind == "LineString":
        parts = [("line", coords)]
    elif kind == "MultiLineString":
        parts = [("line", line) for line in coords or []]
    elif kind == "Point":
        parts = [("points", [coords])]
    elif kind == "MultiPoint":
        parts = [("points", coords)]
    out = []
    for part_kind, values in parts:
        try:
            array = np.asarray(values, dtype=np.float64).reshape(-1, 2)[:, :2]
        except (TypeError, ValueError):
            continue
        if array.size and np.all(np.isfinite(array)):
            out.append((part_kind, array))
    return out


def _shoelace(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def _measure(parts: list[tuple[str, np.ndarray]], pixel_um: float | None) -> str:
    kinds = {k for k, _ in parts}
    if "polygon" in kinds:
        # the first ring of each polygon is its outline; holes are subtracted
        area_px = sum(_shoelace(r) for k, r in parts if k == "polygon")
        if pixel_um:
            area_um2 = area_px * pixel_um**2
            if area_um2 >= 10_000:
                return f"area {area_um2 / 1e6:.3f} mm²"
            return f"area {area_um2:,.0f} µm²"
        return f"area {area_px:,.0f} px²"
    if "line" in kinds:
        length_px = sum(
            float(np.sum(np.hypot(*np.diff(r, axis=0).T)))
            for k, r in parts
            if k == "line" and len(r) > 1
        )
        if pixel_um:
            return f"length {format_length(round(length_px * pixel_um, 1))}"
        return f"length {length_px:,.0f} px"
    count = sum(len(r) for _, r in parts)
    return f"{count} point{'s' if count != 1 else ''}"


def _criterion_label(criterion: str | None, checklists: Mapping[str, Checklist]) -> str | None:
    if not criterion or "." not in criterion:
        return None
    checklist_id, item_id = criterion.split(".", 1)
    checklist = checklists.get(checklist_id)
    if checklist is None:
        return None
    try:
        return f"{checklist.item(item_id).label} ({checklist.title})"
    except KeyError:
        return None


def annotation_entries(
    features: Sequence[Mapping[str, Any]],
    pixel_um: float | None,
    checklists: Mapping[str, Checklist],
) -> tuple[list[AnnotationEntry], list[list[tuple[str, np.ndarray]]]]:
    """Entries for the readable annotations, with their geometry parts (level-0 px)."""
    entries: list[AnnotationEntry] = []
    geometries: list[list[tuple[str, np.ndarray]]] = []
    for index, feature in enumerate(features):
        geometry = feature.get("geometry")
        properties = feature.get("properties") or {}
        if not isinstance(geometry, Mapping) or not isinstance(properties, Mapping):
            continue
        parts = _rings(geometry)
        if not parts:
            log.info("annotation %s has no readable geometry; left out", feature.get("id"))
            continue
        allpts = np.concatenate([p for _, p in parts])
        x0, y0 = allpts.min(axis=0)
        x1, y1 = allpts.max(axis=0)
        criterion = properties.get("criterion")
        criterion = str(criterion) if criterion else None
        entries.append(
            AnnotationEntry(
                roi_id=str(feature.get("id", index)),
                label=_label(properties),
                shape=str(properties.get("shape") or geometry.get("type", "")).lower(),
                geometry_type=str(geometry.get("type")),
                criterion=criterion,
                criterion_label=_criterion_label(criterion, checklists),
                name=str(properties.get("name") or ""),
                color=_color(properties),
                bbox=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                measure=_measure(parts, pixel_um),
            )
        )
        geometries.append(parts)
    return entries, geometries


def _outlines(
    entries: Sequence[AnnotationEntry],
    geometries: Sequence[list[tuple[str, np.ndarray]]],
    origin: tuple[float, float],
    scale: float,
) -> tuple[Outline, ...]:
    """Outlines mapped to an image whose pixel (0, 0) is level-0 ``origin``, ``scale`` px/px."""
    out = []
    ox, oy = origin
    for entry, parts in zip(entries, geometries, strict=True):
        for kind, ring in parts:
            pts = tuple((float((x - ox) / scale), float((y - oy) / scale)) for x, y in ring)
            out.append(Outline(kind, pts, entry.color, entry.label))  # type: ignore[arg-type]
    return tuple(out)


# --------------------------------------------------------------------------- assessments


def _when(moment: datetime | None, anonymise: bool) -> str | None:
    if moment is None or anonymise:
        return None
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _assessment(assessment: Assessment, anonymise: bool) -> AssessmentSummary:
    diagnosis = DIAGNOSIS_LABELS.get(assessment.diagnosis or "", "not recorded")
    management = MANAGEMENT_LABELS.get(assessment.management or "", "not recorded")
    confidence = "not recorded" if assessment.confidence is None else f"{assessment.confidence}/5"
    if assessment.stage == "initial":
        committed = (
            ("committed" if anonymise else _when(assessment.committed_at, False))
            if assessment.committed
            else "not committed"
        )
    else:
        committed = None
    return AssessmentSummary(
        stage=assessment.stage,
        diagnosis=diagnosis,
        confidence=confidence,
        management=management,
        reader=assessment.reader_name or "not recorded",
        committed_at=committed,
        notes=assessment.notes or "",
    )


def _score_text(checklist: Checklist, answers: Mapping[str, Any] | None) -> str:
    score = score_checklist(checklist, answers)
    return score.interpretation or f"{score.total} of {score.max_possible}"


def _checklists(
    record: CaseRecord, checklists: Mapping[str, Checklist]
) -> tuple[ChecklistSection, ...]:
    revised = record.revised
    used = list(record.initial.answers)
    if revised is not None:
        used += [c for c in revised.answers if c not in used]
    sections = []
    for checklist_id in [c for c in checklists if c in used] + [
        c for c in used if c not in checklists
    ]:
        checklist = checklists.get(checklist_id)
        initial_answers = record.initial.answers.get(checklist_id, {})
        revised_answers = revised.answers.get(checklist_id, {}) if revised else None
        if checklist is None:  # a checklist this installation does not know: list the raw answers
            ids = sorted(set(initial_answers) | set(revised_answers or {}))
            rows = tuple(
                ChecklistRow(
                    i,
                    i,
                    0,
                    ANSWER_LABELS.get(initial_answers.get(i) or "", "-"),
                    None
                    if revised_answers is None
                    else ANSWER_LABELS.get(revised_answers.get(i) or "", "-"),
                )
                for i in ids
            )
            sections.append(
                ChecklistSection(
                    checklist_id,
                    f"{checklist_id} (unknown checklist)",
                    rows,
                    "score",
                    "not scored",
                    None,
                )
            )
            continue
        rows = tuple(
            ChecklistRow(
                item.id,
                item.label,
                item.points,
                ANSWER_LABELS.get(initial_answers.get(item.id) or "", "unanswered"),
                None
                if revised_answers is None
                else ANSWER_LABELS.get(revised_answers.get(item.id) or "", "unanswered"),
            )
            for item in checklist.items
        )
        sections.append(
            ChecklistSection(
                checklist.id,
                checklist.title,
                rows,
                checklist.scoring.score_label,
                _score_text(checklist, initial_answers),
                None if revised_answers is None else _score_text(checklist, revised_answers),
            )
        )
    return tuple(sections)


# --------------------------------------------------------------------------- AI


def _ai_section(record: CaseRecord) -> tuple[AISection, AIView | None]:
    if not record.ai_visible:
        note = (
            "AI result withheld: the reader's initial (unaided) assessment is not committed "
            "yet (reader-first)."
            if record.ai_result_stored
            else "No AI result: the reader's initial (unaided) assessment is not committed yet "
            "(reader-first)."
        )
        return AISection(False, note), None
    if record.ai_result is None:
        return AISection(False, "No AI result is stored for this case."), None
    view = view_from_stored(record.ai_result)
    probs = tuple(
        (c, n, float(p))
        for c, n, p in zip(view.class_ids, view.class_names, view.probabilities or (), strict=False)
    )
    note = SYNTHETIC_BANNER if view.synthetic else ""
    return AISection(
        True,
        note,
        view.model_name,
        view.model_version,
        view.weights_sha256,
        view.synthetic,
        probs,
        view.top_class,
        view.top_class if view.heatmap is not None else None,
        None,
        view.model_trust,
    ), view


# --------------------------------------------------------------------------- images


def _scale_bar(
    pixel_um: float | None, shape: tuple[int, ...], level0_per_px: float
) -> tuple[float | None, float | None]:
    """A bar near a fifth of the long side (as the window's ~120 px), at most 60 % of the width."""
    if not pixel_um:
        return None, None
    h, w = shape[:2]
    target = min(0.6 * w, max(40.0, 0.18 * max(w, h))) / 1.5
    return nice_scale_bar(pixel_um, 1.0 / level0_per_px, target_px=target)


def _images(
    mosaic: Any,
    record: CaseRecord,
    view: AIView | None,
    options: ReportOptions,
    entries: Sequence[AnnotationEntry],
    geometries: Sequence[list[tuple[str, np.ndarray]]],
    pixel_um: float | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> tuple[list[ReportImage], list[ReportImage], str]:
    notes: list[str] = []
    overview = load_overview_building(mosaic, progress=progress, cancel=cancel)
    if overview is None:
        raise ReportCancelled()
    level, raw, (black, white) = overview
    dtype = np.dtype(mosaic.info.dtype)
    settings = DisplaySettings(black, white)
    lut = settings.lut(dtype)
    pixels = display_pixels(raw, lut)
    ds = float(mosaic.info.levels[level].downsample)
    outlines = _outlines(entries, geometries, (0.0, 0.0), ds)
    bar_um, bar_px = _scale_bar(pixel_um, pixels.shape, ds)
    if not pixel_um:
        notes.append("Pixel size unknown: no scale bar, sizes in pixels.")
    images = [
        ReportImage(
            "overview",
            "Mosaic overview with the region annotations",
            pixels,
            ds,
            outlines,
            scale_bar_um=bar_um,
            scale_bar_px=bar_px,
        )
    ]
    if options.heatmap and view is not None and view.heatmap is not None and view.top_class:
        plane = view.heatmap[view.class_ids.index(view.top_class)]
        span_w, span_h = view.heatmap_span
        if span_w <= 0 or span_h <= 0:
            span_w, span_h = float(mosaic.info.width), float(mosaic.info.height)
        name = view.class_names[view.class_ids.index(view.top_class)]
        images.append(
            ReportImage(
                "heatmap",
                f"Heatmap of the most likely class ({name}) over the overview",
                pixels,
                ds,
                outlines,
                overlay=heatmap_rgba(plane, options.colormap),
                overlay_rect=(0.0, 0.0, span_w / ds, span_h / ds),
                overlay_opacity=options.opacity,
                scale_bar_um=bar_um,
                scale_bar_px=bar_px,
            )
        )
    closeups: list[ReportImage] = []
    for index, (entry, parts) in enumerate(zip(entries, geometries, strict=True)):
        if cancel is not None and cancel():
            raise ReportCancelled()
        if index >= MAX_CLOSEUPS:
            notes.append(
                f"Close-ups of the first {MAX_CLOSEUPS} annotations only "
                f"({len(entries)} in all; every one is listed)."
            )
            break
        x, y, w, h = entry.bbox
        side_min = POINT_CLOSEUP_PX if entry.geometry_type in ("Point", "MultiPoint") else 32
        w2, h2 = max(w * 1.2, side_min), max(h * 1.2, side_min)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = max(0, int(cx - w2 / 2)), max(0, int(cy - h2 / 2))
        x1 = min(mosaic.info.width, int(math.ceil(cx + w2 / 2)))
        y1 = min(mosaic.info.height, int(math.ceil(cy + h2 / 2)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        wanted = max(1.0, max(x1 - x0, y1 - y0) / CLOSEUP_MAX_PX)
        lv = mosaic.best_level(wanted)
        lds = float(mosaic.info.levels[lv].downsample)
        # best_level gives a level at least as sharp: read it, then decimate if still too big
        lx0, ly0 = int(x0 / lds), int(y0 / lds)
        lw = max(1, int(math.ceil((x1 - x0) / lds)))
        lh = max(1, int(math.ceil((y1 - y0) / lds)))
        region = mosaic.read_region(lv, lx0, ly0, lw, lh)
        step = max(1, int(math.ceil(max(lw, lh) / CLOSEUP_MAX_PX)))
        if step > 1:
            region = region[::step, ::step]
        scale = lds * step
        crop = display_pixels(region, lut)
        crop_outlines = _outlines([entry], [parts], (lx0 * lds, ly0 * lds), scale)
        bar_um_c, bar_px_c = _scale_bar(pixel_um, crop.shape, scale)
        resolution = "full resolution" if scale <= 1.0 else f"1:{scale:g} of full resolution"
        closeups.append(
            ReportImage(
                f"closeup_{index + 1}",
                f"{index + 1}. {entry.label} ({resolution})",
                crop,
                scale,
                crop_outlines,
                scale_bar_um=bar_um_c,
                scale_bar_px=bar_px_c,
            )
        )
    return images, closeups, " ".join(notes)


# --------------------------------------------------------------------------- assembly


def _acquisition_date(mosaic: Any, record: CaseRecord) -> str:
    metadata = getattr(getattr(mosaic, "info", None), "metadata", None) or {}
    for key in ("acquisition_date", "AcquisitionDate", "DateTime", "datetime"):
        value = metadata.get(key) if isinstance(metadata, Mapping) else None
        if value:
            return str(value)
    return f"{record.created_at.astimezone():%Y-%m-%d} (case opened)"


def build_report(
    store: CaseStore,
    case_id: str,
    options: ReportOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    open_mosaic: Callable[[str], Any] | None = None,
    mosaic_path: str | Path | None = None,
) -> Report:
    """Assemble the report of one stored case (``CaseStoreError`` if there is no such case).

    Opens the case's mosaic (``mosaic.open_mosaic`` unless ``open_mosaic`` is given) when
    the file still exists (``mosaic_path`` overrides the recorded path, e.g. the file the
    window has open or the one given on the command line); otherwise the images are
    replaced by a note. Raises
    :class:`ReportCancelled` when ``cancel()`` turns true.
    """
    options = options or ReportOptions()
    record = store.get_case(case_id)  # the reader's view: hidden AI stays hidden
    checklists = getattr(store, "checklists", None) or load_checklists()
    mosaic = None
    image_note = ""
    path = str(mosaic_path) if mosaic_path is not None else record.mosaic_path
    if open_mosaic is None:
        from rcm_viewer.mosaic import open_mosaic as open_mosaic_fn

        open_mosaic = open_mosaic_fn
    if not path:
        image_note = "No mosaic file is recorded for this case: images left out."
    elif not Path(path).is_file():
        image_note = (
            f"Mosaic file {Path(path).name} was not found (moved or deleted): "
            "report made from the stored case, without images."
        )
    else:
        try:
            mosaic = open_mosaic(path)
        except RcmError as exc:
            image_note = f"Mosaic not readable ({exc}): report made from the stored case."
    try:
        pixel_um = record.pixel_size_um or (mosaic.info.pixel_size_um if mosaic else None)
        entries, geometries = annotation_entries(record.roi_annotations, pixel_um, checklists)
        ai, view = _ai_section(record)
        images: list[ReportImage] = []
        closeups: list[ReportImage] = []
        if mosaic is not None:
            try:
                images, closeups, note = _images(
                    mosaic, record, view, options, entries, geometries, pixel_um, progress, cancel
                )
                image_note = note
            except RcmError as exc:
                image_note = f"Mosaic not readable ({exc}): report made from the stored case."
        acquisition = None if options.anonymise else _acquisition_date(mosaic, record)
    finally:
        if mosaic is not None:
            mosaic.close()
    readers = sorted(
        {a.reader_name for a in (record.initial, record.revised) if a is not None and a.reader_name}
    )
    lesion_site = record.lesion_site or record.current_assessment.lesion_site or "not recorded"
    histology = None
    if record.histology_diagnosis:
        histology = DIAGNOSIS_LABELS.get(record.histology_diagnosis, record.histology_diagnosis)
        if record.histology_detail:
            histology += f": {record.histology_detail}"
    if ai.shown and not options.anonymise and record.ai_result is not None:
        ai = AISection(**{**ai.__dict__, "created_at": _when(record.ai_result.created_at, False)})
    return Report(
        institution=options.institution.strip(),
        case_id=record.case_id,
        pseudonym=None if options.anonymise else (record.patient_pseudonym or "not recorded"),
        lesion_site=lesion_site,
        acquisition_date=acquisition,
        report_date=None if options.anonymise else _when(utc_now(), False),
        readers=", ".join(readers) or "not recorded",
        mosaic_name=None if options.anonymise or not path else Path(path).name,
        mosaic_sha256=record.mosaic_sha256,
        pixel_size_um=pixel_um,
        images=tuple(images),
        closeups=tuple(closeups),
        image_note=image_note,
        annotations=tuple(entries),
        ai=ai,
        initial=_assessment(record.initial, options.anonymise),
        revised=_assessment(record.revised, options.anonymise) if record.revised else None,
        checklists=_checklists(record, checklists),
        histology=histology,
        intended_use=INTENDED_USE,
        software_version=__version__,
        options=options,
    )
