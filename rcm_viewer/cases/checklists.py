"""RCM criteria checklists as data, and the rule that turns answers into a score.

The checklists are plain dictionaries (the same shape a clinic writes in a JSON
file) so that a clinic can add a checklist, or correct an item marked
"(verify)", without touching widget code: drop ``<anything>.json`` into
``user_data_dir()/checklists/`` and :func:`load_checklists` picks it up. A
clinic file whose ``id`` matches a built-in checklist replaces it.

One scoring rule covers every checklist: each item answered *present* adds its
``points`` (negative points subtract); *absent*, *not assessable* and
unanswered items add nothing. A threshold, when the checklist has one, is met
at ``total >= threshold``. Because a *not assessable* item silently counts 0,
the score also says whether the unresolved items could flip the outcome, so a
reader never takes "below threshold" at face value when half the criteria were
not seen.

JSON shape of one checklist (all keys shown; ``group_titles`` and
``performance`` are optional)::

    {
      "id": "melanoma_score",
      "title": "Melanoma score",
      "description": "...",
      "reference": "Pellacani G et al. ... 2005",
      "group_titles": {"major": "Major criteria (2 points each)"},
      "items": [
        {"id": "non_edged_papillae", "label": "Non-edged papillae at the DEJ",
         "definition": "tooltip text", "points": 2, "group": "major"}
      ],
      "scoring": {"score_label": "Melanoma score", "threshold": 3,
                  "met": "suggests melanoma", "not_met": "does not suggest melanoma",
                  "performance": "sensitivity 97.3%, specificity 72.3%"}
    }
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rcm_viewer.errors import CaseStoreError

AnswerValue = Literal["present", "absent", "not_assessable"]
ANSWER_VALUES: tuple[str, ...] = ("present", "absent", "not_assessable")
ANSWER_LABELS: Mapping[str, str] = {
    "present": "Present",
    "absent": "Absent",
    "not_assessable": "Not assessable",
}

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class ChecklistItem:
    """One criterion the reader answers present / absent / not assessable."""

    id: str
    label: str
    definition: str
    points: int
    group: str


@dataclass(frozen=True)
class ScoringRule:
    """How answers become a score and a one-line interpretation.

    ``threshold`` None means the checklist is descriptive: the score is a count
    and no diagnostic meaning is claimed (``no_threshold`` says so).
    """

    score_label: str
    threshold: int | None = None
    met: str = ""
    not_met: str = ""
    no_threshold: str = "descriptive only: no validated diagnostic threshold"
    performance: str = ""


@dataclass(frozen=True)
class Checklist:
    """A named set of criteria with its scoring rule (built from data, never hard-coded)."""

    id: str
    title: str
    description: str
    reference: str
    items: tuple[ChecklistItem, ...]
    scoring: ScoringRule
    group_titles: Mapping[str, str] = field(default_factory=dict)
    source: str = "built-in"

    def item(self, item_id: str) -> ChecklistItem:
        for candidate in self.items:
            if candidate.id == item_id:
                return candidate
        raise KeyError(item_id)

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    @property
    def groups(self) -> tuple[str, ...]:
        """Groups in first-seen order, so a form lays them out as the data lists them."""
        return tuple(dict.fromkeys(item.group for item in self.items))

    @property
    def max_possible(self) -> int:
        return sum(item.points for item in self.items if item.points > 0)

    @property
    def min_possible(self) -> int:
        return sum(item.points for item in self.items if item.points < 0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape a clinic file uses (handy as a template for a new checklist)."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "reference": self.reference,
            "group_titles": dict(self.group_titles),
            "items": [
                {
                    "id": item.id,
                    "label": item.label,
                    "definition": item.definition,
                    "points": item.points,
                    "group": item.group,
                }
                for item in self.items
            ],
            "scoring": {
                "score_label": self.scoring.score_label,
                "threshold": self.scoring.threshold,
                "met": self.scoring.met,
                "not_met": self.scoring.not_met,
                "no_threshold": self.scoring.no_threshold,
                "performance": self.scoring.performance,
            },
        }


@dataclass(frozen=True)
class ChecklistScore:
    """The result of scoring one checklist, with everything a report must state honestly."""

    checklist_id: str
    total: int
    max_possible: int
    min_possible: int
    threshold: int | None
    threshold_met: bool | None
    n_present: int
    n_absent: int
    n_not_assessable: int
    n_unanswered: int
    not_assessable_items: tuple[str, ...]
    unanswered_items: tuple[str, ...]
    outcome_could_change: bool
    interpretation: str

    @property
    def complete(self) -> bool:
        return self.n_unanswered == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checklist_id": self.checklist_id,
            "total": self.total,
            "max_possible": self.max_possible,
            "min_possible": self.min_possible,
            "threshold": self.threshold,
            "threshold_met": self.threshold_met,
            "n_present": self.n_present,
            "n_absent": self.n_absent,
            "n_not_assessable": self.n_not_assessable,
            "n_unanswered": self.n_unanswered,
            "not_assessable_items": list(self.not_assessable_items),
            "unanswered_items": list(self.unanswered_items),
            "outcome_could_change": self.outcome_could_change,
            "interpretation": self.interpretation,
        }


# --------------------------------------------------------------------------- built-in data

MELANOMA_SCORE: dict[str, Any] = {
    "id": "melanoma_score",
    "title": "Melanoma score (Pellacani 2005)",
    "description": (
        "Two major criteria (2 points each) and four minor criteria (1 point each). "
        "A total of 3 or more suggests melanoma (sensitivity 97.3%, specificity 72.3%; "
        "validated in 2007 on 351 lesions)."
    ),
    "reference": (
        "Pellacani G, Cesinaro AM, Seidenari S. Reflectance-mode confocal microscopy of "
        "pigmented skin lesions: improvement in melanoma diagnostic specificity. "
        "J Am Acad Dermatol 2005;53:979-985 (verify citation details)."
    ),
    "group_titles": {
        "major": "Major criteria (2 points each)",
        "minor": "Minor criteria (1 point each)",
    },
    "items": [
        {
            "id": "non_edged_papillae",
            "label": "Non-edged papillae at the dermal-epidermal junction",
            "definition": (
                "Dermal papillae at the junction that are not rimmed by a bright ring of "
                "basal cells: the papillary contours are blurred or poorly defined."
            ),
            "points": 2,
            "group": "major",
        },
        {
            "id": "atypical_basal_cells",
            "label": "Cytological atypia at the basal layer",
            "definition": (
                "Atypical nucleated cells at the basal layer: roundish or dendritic bright "
                "cells, larger than the surrounding basal cells and varying in size and shape."
            ),
            "points": 2,
            "group": "major",
        },
        {
            "id": "roundish_pagetoid_cells",
            "label": "Roundish pagetoid cells",
            "definition": (
                "Large round bright cells with a dark nucleus, about twice the size of a "
                "keratinocyte or more, in the superficial (spinous-granular) layers."
            ),
            "points": 1,
            "group": "minor",
        },
        {
            "id": "widespread_pagetoid_infiltration",
            "label": "Widespread pagetoid infiltration",
            "definition": (
                "Pagetoid cells spread throughout the superficial layers of the lesion, "
                "not confined to a small area."
            ),
            "points": 1,
            "group": "minor",
        },
        {
            "id": "cerebriform_clusters",
            "label": "Cerebriform clusters in the papillary dermis",
            "definition": (
                "Dense clusters of poorly reflective cells with a brain-like (cerebriform) "
                "look, in the papillary dermis."
            ),
            "points": 1,
            "group": "minor",
        },
        {
            "id": "nucleated_cells_in_papillae",
            "label": "Nucleated cells within dermal papillae",
            "definition": "Bright, nucleated (atypical) cells inside the dermal papillae.",
            "points": 1,
            "group": "minor",
        },
    ],
    "scoring": {
        "score_label": "Melanoma score",
        "threshold": 3,
        "met": "suggests melanoma",
        "not_met": "does not suggest melanoma",
        "performance": "sensitivity 97.3%, specificity 72.3%",
    },
}

BCC_FIRST_STEP: dict[str, Any] = {
    "id": "bcc_two_step_first",
    "title": "Basal cell carcinoma, first step of the two-step method (Guitera 2012)",
    "description": (
        "Four positive features (+1 each) and three negative features (-1 each). "
        "A score of 1 or more suggests basal cell carcinoma (reported on 710 lesions: "
        "sensitivity 100%, specificity 88.5%). Scoring rule (verify against the original "
        "paper): it comes from the standard literature and was not checked against the "
        "publication; a clinic can correct it in a checklist file."
    ),
    "reference": (
        "Guitera P, Menzies SW, Longo C, Cesinaro AM, Scolyer RA, Pellacani G. In vivo "
        "confocal microscopy for diagnosis of melanoma and basal cell carcinoma using a "
        "two-step method: analysis of 710 consecutive clinically equivocal cases. "
        "J Invest Dermatol 2012;132:2386-2394 (verify citation details)."
    ),
    "group_titles": {
        "positive": "Positive features (+1 each)",
        "negative": "Negative features (-1 each)",
    },
    "items": [
        {
            "id": "polarised_elongated_features",
            "label": "Polarised elongated features",
            "definition": (
                "Elongated monomorphic nuclei polarised along one axis (streaming), in the "
                "epidermis or in tumour islands."
            ),
            "points": 1,
            "group": "positive",
        },
        {
            "id": "telangiectasia_convoluted_vessels",
            "label": "Telangiectasia / convoluted vessels",
            "definition": (
                "Dilated, tortuous horizontal vessels, often with visible blood flow "
                "(rolling leucocytes)."
            ),
            "points": 1,
            "group": "positive",
        },
        {
            "id": "basaloid_nodules",
            "label": "Basaloid nodules",
            "definition": (
                "Tumour islands of densely packed cells, often with peripheral palisading "
                "and a surrounding dark cleft; they may also appear as dark silhouettes."
            ),
            "points": 1,
            "group": "positive",
        },
        {
            "id": "epidermal_shadowing",
            "label": "Epidermal shadowing",
            "definition": (
                "Dark (poorly reflective) areas in the epidermis overlying tumour islands (verify)."
            ),
            "points": 1,
            "group": "positive",
        },
        {
            "id": "non_visible_papillae",
            "label": "Non-visible papillae",
            "definition": (
                "Dermal papillae cannot be seen at the dermal-epidermal junction (verify)."
            ),
            "points": -1,
            "group": "negative",
        },
        {
            "id": "epidermal_disarrangement",
            "label": "Disarrangement of the epidermal layer",
            "definition": (
                "Loss of the regular honeycomb or cobblestone pattern of the epidermis."
            ),
            "points": -1,
            "group": "negative",
        },
        {
            "id": "cerebriform_nests",
            "label": "Cerebriform nests",
            "definition": (
                "Nests of poorly reflective cells with a brain-like (cerebriform) look in "
                "the dermis, a melanoma feature."
            ),
            "points": -1,
            "group": "negative",
        },
    ],
    "scoring": {
        "score_label": "BCC score",
        "threshold": 1,
        "met": "suggests basal cell carcinoma",
        "not_met": "does not suggest basal cell carcinoma",
        "performance": "sensitivity 100%, specificity 88.5% (verify)",
    },
}

NAEVUS_FEATURES: dict[str, Any] = {
    "id": "benign_naevus_features",
    "title": "Benign naevus features",
    "description": (
        "Features typical of a benign naevus, counted for description only. There is no "
        "validated diagnostic threshold: the count does not rule melanoma in or out. "
        "(verify: list from the standard literature, not checked against one paper)"
    ),
    "reference": "Standard RCM literature on benign melanocytic naevi (verify).",
    "group_titles": {"feature": "Benign features"},
    "items": [
        {
            "id": "regular_epidermis",
            "label": "Regular honeycomb or cobblestone epidermis",
            "definition": "The epidermis shows a regular honeycomb or cobblestone pattern.",
            "points": 1,
            "group": "feature",
        },
        {
            "id": "edged_papillae",
            "label": "Edged papillae",
            "definition": "Dermal papillae rimmed by a bright ring of monomorphic basal cells.",
            "points": 1,
            "group": "feature",
        },
        {
            "id": "typical_basal_cells",
            "label": "Typical basal cells",
            "definition": "Small, monomorphic, bright basal cells without atypia.",
            "points": 1,
            "group": "feature",
        },
        {
            "id": "junctional_pattern",
            "label": "Junctional pattern ringed, meshwork or clod",
            "definition": (
                "The junction shows a ringed, meshwork or clod pattern (or a mix of them)."
            ),
            "points": 1,
            "group": "feature",
        },
        {
            "id": "regular_junctional_nests",
            "label": "Regular, dense junctional nests",
            "definition": "Regular, dense, compact nests of uniform cells at the junction.",
            "points": 1,
            "group": "feature",
        },
        {
            "id": "no_or_rare_pagetoid_cells",
            "label": "No or rare small pagetoid cells",
            "definition": "No pagetoid cells in the superficial layers, or only rare small ones.",
            "points": 1,
            "group": "feature",
        },
        {
            "id": "no_atypical_nucleated_cells",
            "label": "No atypical nucleated cells",
            "definition": "No atypical nucleated cells at the junction or in the papillae.",
            "points": 1,
            "group": "feature",
        },
    ],
    "scoring": {
        "score_label": "Benign naevus features",
        "threshold": None,
        "no_threshold": "descriptive only: no validated diagnostic threshold",
    },
}

BUILTIN_CHECKLIST_DATA: tuple[dict[str, Any], ...] = (
    MELANOMA_SCORE,
    BCC_FIRST_STEP,
    NAEVUS_FEATURES,
)


# --------------------------------------------------------------------------- parsing


def checklist_from_dict(data: Mapping[str, Any], *, source: str = "built-in") -> Checklist:
    """Build a :class:`Checklist` from its JSON shape, naming the source in every error.

    Validation is strict because a typo in a clinic file (a missing ``points``, a
    duplicated item id) would otherwise produce a silently wrong score.
    """

    def fail(reason: str) -> CaseStoreError:
        return CaseStoreError(f"Checklist {source}: {reason}")

    if not isinstance(data, Mapping):
        raise fail("expected a JSON object")
    checklist_id = data.get("id")
    if not isinstance(checklist_id, str) or not _ID_PATTERN.match(checklist_id):
        raise fail(f"id {checklist_id!r} must be lower-case letters, digits and '_'")
    for key in ("title", "description", "reference"):
        if not isinstance(data.get(key, ""), str):
            raise fail(f"'{key}' must be text")
    if not data.get("title"):
        raise fail("'title' is missing")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise fail("'items' must be a non-empty list")
    items: list[ChecklistItem] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_items, start=1):
        if not isinstance(raw, Mapping):
            raise fail(f"item {index} must be a JSON object")
        item_id = raw.get("id")
        if not isinstance(item_id, str) or not _ID_PATTERN.match(item_id):
            raise fail(f"item {index} id {item_id!r} must be lower-case letters, digits and '_'")
        if item_id in seen:
            raise fail(f"item id '{item_id}' appears twice")
        seen.add(item_id)
        points = raw.get("points")
        if not isinstance(points, int) or isinstance(points, bool):
            raise fail(f"item '{item_id}' needs whole-number 'points'")
        label = raw.get("label")
        if not isinstance(label, str) or not label:
            raise fail(f"item '{item_id}' needs a 'label'")
        definition = raw.get("definition", "")
        group = raw.get("group", "")
        if not isinstance(definition, str) or not isinstance(group, str):
            raise fail(f"item '{item_id}': 'definition' and 'group' must be text")
        items.append(ChecklistItem(item_id, label, definition, points, group))
    raw_scoring = data.get("scoring")
    if not isinstance(raw_scoring, Mapping):
        raise fail("'scoring' must be a JSON object")
    threshold = raw_scoring.get("threshold")
    if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool)):
        raise fail("'scoring.threshold' must be a whole number or null")
    text_keys = ("score_label", "met", "not_met", "no_threshold", "performance")
    for key in text_keys:
        if not isinstance(raw_scoring.get(key, ""), str):
            raise fail(f"'scoring.{key}' must be text")
    defaults = ScoringRule(score_label="")
    scoring = ScoringRule(
        score_label=raw_scoring.get("score_label") or data["title"],
        threshold=threshold,
        met=raw_scoring.get("met", "threshold met"),
        not_met=raw_scoring.get("not_met", "threshold not met"),
        no_threshold=raw_scoring.get("no_threshold", defaults.no_threshold),
        performance=raw_scoring.get("performance", ""),
    )
    group_titles = data.get("group_titles", {})
    if not isinstance(group_titles, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in group_titles.items()
    ):
        raise fail("'group_titles' must map group names to text")
    return Checklist(
        id=checklist_id,
        title=data["title"],
        description=data.get("description", ""),
        reference=data.get("reference", ""),
        items=tuple(items),
        scoring=scoring,
        group_titles=dict(group_titles),
        source=source,
    )


def builtin_checklists() -> dict[str, Checklist]:
    """The checklists shipped with the application, keyed by id, in display order."""
    return {data["id"]: checklist_from_dict(data) for data in BUILTIN_CHECKLIST_DATA}


def user_checklist_dir() -> Path:
    """Folder where a clinic drops extra or corrected checklist JSON files."""
    from rcm_viewer.paths import user_data_dir

    return user_data_dir() / "checklists"


def load_checklists(extra_dirs: Iterable[Path] | None = None) -> dict[str, Checklist]:
    """Built-in checklists plus every ``*.json`` in ``extra_dirs`` (default: the clinic folder).

    A file may hold one checklist object or a list of them. Files load in name
    order; a later id replaces an earlier one, so a clinic can correct a
    built-in checklist. A broken file raises :class:`CaseStoreError` naming it:
    a silently skipped checklist would look like a missing feature.
    """
    checklists = builtin_checklists()
    folders = [user_checklist_dir()] if extra_dirs is None else list(extra_dirs)
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CaseStoreError(f"Checklist file {path} cannot be read: {exc}") from exc
            entries = content if isinstance(content, list) else [content]
            for entry in entries:
                checklist = checklist_from_dict(entry, source=str(path))
                checklists[checklist.id] = checklist
    return checklists


# --------------------------------------------------------------------------- scoring


def score_checklist(
    checklist: Checklist, answers: Mapping[str, str | None] | None
) -> ChecklistScore:
    """Score one checklist's answers (``{item_id: 'present'|'absent'|'not_assessable'|None}``).

    Not-assessable and unanswered items count 0 and are listed, and
    ``outcome_could_change`` says whether answering them could move the total
    across the threshold: the reader must not read "below threshold" as
    reassurance when the deciding criteria were never seen.
    """
    answers = answers or {}
    total = 0
    counts = {"present": 0, "absent": 0, "not_assessable": 0}
    not_assessable: list[str] = []
    unanswered: list[str] = []
    unresolved_up = 0
    unresolved_down = 0
    for item in checklist.items:
        value = answers.get(item.id)
        if value is None:
            unanswered.append(item.id)
        elif value in counts:
            counts[value] += 1
            if value == "present":
                total += item.points
            if value == "not_assessable":
                not_assessable.append(item.id)
        else:
            raise CaseStoreError(
                f"Answer {value!r} for '{item.id}' in {checklist.title} is not one of "
                f"{', '.join(ANSWER_VALUES)}"
            )
        if value is None or value == "not_assessable":
            if item.points > 0:
                unresolved_up += item.points
            else:
                unresolved_down += item.points
    rule = checklist.scoring
    threshold = rule.threshold
    if threshold is None:
        threshold_met = None
        could_change = False
    else:
        threshold_met = total >= threshold
        best, worst = total + unresolved_up, total + unresolved_down
        could_change = (best >= threshold) != (worst >= threshold)
    interpretation = _interpretation(
        checklist, total, threshold_met, len(not_assessable), len(unanswered), could_change
    )
    return ChecklistScore(
        checklist_id=checklist.id,
        total=total,
        max_possible=checklist.max_possible,
        min_possible=checklist.min_possible,
        threshold=threshold,
        threshold_met=threshold_met,
        n_present=counts["present"],
        n_absent=counts["absent"],
        n_not_assessable=counts["not_assessable"],
        n_unanswered=len(unanswered),
        not_assessable_items=tuple(not_assessable),
        unanswered_items=tuple(unanswered),
        outcome_could_change=could_change,
        interpretation=interpretation,
    )


def _interpretation(
    checklist: Checklist,
    total: int,
    threshold_met: bool | None,
    n_not_assessable: int,
    n_unanswered: int,
    could_change: bool,
) -> str:
    rule = checklist.scoring
    if rule.threshold is None:
        positive = sum(1 for item in checklist.items if item.points > 0)
        head = f"{rule.score_label}: {total} of {positive} present ({rule.no_threshold})"
    else:
        verdict = rule.met if threshold_met else rule.not_met
        head = (
            f"{rule.score_label} {total} of {checklist.max_possible} "
            f"(threshold {rule.threshold}): {verdict}"
        )
    notes = []
    if n_not_assessable:
        notes.append(f"{n_not_assessable} not assessable")
    if n_unanswered:
        notes.append(f"{n_unanswered} unanswered")
    if notes:
        tail = " and ".join(notes)
        if could_change:
            tail += ", which could change the outcome"
        head += f"; {tail}"
    return head + "."


def score_answers(
    answers: Mapping[str, Mapping[str, str | None]], checklists: Mapping[str, Checklist]
) -> dict[str, ChecklistScore]:
    """Score every checklist in ``checklists`` against an assessment's answers."""
    return {cid: score_checklist(cl, answers.get(cid, {})) for cid, cl in checklists.items()}


def melanoma_score(answers: Mapping[str, str | None]) -> ChecklistScore:
    """Pellacani 2005 melanoma score from ``{item_id: answer}`` (built-in definition)."""
    return score_checklist(checklist_from_dict(MELANOMA_SCORE), answers)


def bcc_score(answers: Mapping[str, str | None]) -> ChecklistScore:
    """Guitera 2012 first-step BCC score from ``{item_id: answer}`` (built-in definition)."""
    return score_checklist(checklist_from_dict(BCC_FIRST_STEP), answers)


def naevus_feature_count(answers: Mapping[str, str | None]) -> ChecklistScore:
    """Count of benign naevus features present (descriptive; no threshold)."""
    return score_checklist(checklist_from_dict(NAEVUS_FEATURES), answers)
