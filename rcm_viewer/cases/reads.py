""" "My reads": a reader's diagnoses and the model's, checked against histology.

Why this exists: the pathology report arrives days after the read. Putting the
reader's unaided call, their call after the AI was revealed and the model's top
class side by side with histology is how a clinic learns whether the tool helps
(issue 17). Pure Python (no Qt, no numpy, no inference): the dialog, a report
or a script all build on :func:`collect_reads` and :func:`summarize`.

Rules, stated once so the table, the statistics and the CSV agree:

* **Which cases**: every case in the store with a histology diagnosis.
* **Unaided** read: the initial diagnosis of a ``reader_first`` case whose
  initial assessment is committed. An ``ai_visible`` case has no unaided read
  (the AI was on screen), an uncommitted one is still being read.
* **After the reveal**: the revised diagnosis of a committed ``reader_first``
  case; for an ``ai_visible`` case the (only) diagnosis, read with the AI shown.
* **Model**: the stored AI result's top class, only where the reader-first
  rule lets the reader see it (``CaseStore.get_case`` without hidden results):
  this view is the reader's own and must not reveal a result early.
* **Positive call**: for *melanoma*, a read of ``melanoma``; for *malignancy*
  (melanoma or BCC vs benign/other), a read of ``melanoma`` or ``bcc``. A read
  of ``uncertain`` counts as positive in both: an uncertain lesion is not
  cleared (it is biopsied or followed up), so calling it negative would flatter
  specificity and hide missed cancers. No read = the case is left out of that
  reader's counts (n says how many were counted).
* **Reveal effect**: over cases with both an unaided and an after-reveal read
  and an AI result stored; a read is *correct* when its diagnosis equals the
  histology (``uncertain`` is never correct). *Better*: wrong -> correct;
  *worse*: correct -> wrong; *changed, both wrong*: a different wrong call.
* Intervals: 95 % Wilson score intervals (``rcm_viewer.stats``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from rcm_viewer.cases.records import DIAGNOSIS_LABELS, CaseRecord
from rcm_viewer.cases.store import CaseStore
from rcm_viewer.fileio import atomic_write
from rcm_viewer.stats import wilson_interval

#: Targets of the sensitivity/specificity table: name -> (positive histology, positive calls).
TARGETS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "melanoma": (frozenset({"melanoma"}), frozenset({"melanoma", "uncertain"})),
    "malignancy": (frozenset({"melanoma", "bcc"}), frozenset({"melanoma", "bcc", "uncertain"})),
}
TARGET_LABELS: dict[str, str] = {
    "melanoma": "Melanoma",
    "malignancy": "Malignancy (melanoma or BCC)",
}
#: Who made the call, in table order.
READERS: tuple[str, ...] = ("unaided", "after_reveal", "model")
READER_LABELS: dict[str, str] = {
    "unaided": "Reader, unaided",
    "after_reveal": "Reader, after the AI reveal",
    "model": "Model",
}

CSV_COLUMNS: tuple[str, ...] = (
    "case_id",
    "patient_pseudonym",
    "reader_mode",
    "histology",
    "histology_date",
    "report_number",
    "unaided",
    "after_reveal",
    "model",
    "reveal_effect",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "target",
    "reader",
    "tp",
    "fn",
    "tn",
    "fp",
    "sensitivity",
    "sensitivity_ci95_low",
    "sensitivity_ci95_high",
    "specificity",
    "specificity_ci95_low",
    "specificity_ci95_high",
)


@dataclass(frozen=True)
class ReadRow:
    """One case with histology: what each reader said (None = no such read)."""

    case_id: str
    patient_pseudonym: str
    reader_mode: str
    histology: str
    histology_date: date | None
    report_number: str | None
    unaided: str | None
    after_reveal: str | None
    model: str | None
    ai_result_stored: bool

    def call(self, reader: str) -> str | None:
        return {"unaided": self.unaided, "after_reveal": self.after_reveal, "model": self.model}[
            reader
        ]

    @property
    def reveal_effect(self) -> str | None:
        """``unchanged``, ``better``, ``worse``, ``changed_both_wrong``; None: not comparable."""
        if self.unaided is None or self.after_reveal is None or not self.ai_result_stored:
            return None
        if self.unaided == self.after_reveal:
            return "unchanged"
        before, after = self.unaided == self.histology, self.after_reveal == self.histology
        if after and not before:
            return "better"
        if before and not after:
            return "worse"
        return "changed_both_wrong"


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)

    def text(self) -> str:
        """``83 % (5/6; 44-97 %)``, or ``-`` when nothing was counted."""
        if not self.n:
            return "-"
        low, high = self.ci95
        return (
            f"{self.value * 100:.0f} % ({self.successes}/{self.n}; "
            f"{low * 100:.0f}-{high * 100:.0f} %)"
        )


@dataclass(frozen=True)
class Accuracy:
    """Sensitivity and specificity of one reader for one target."""

    target: str
    reader: str
    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def sensitivity(self) -> Proportion:
        return Proportion(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> Proportion:
        return Proportion(self.tn, self.tn + self.fp)


@dataclass(frozen=True)
class RevealEffect:
    compared: int
    unchanged: int
    better: int
    worse: int
    changed_both_wrong: int

    @property
    def changed(self) -> int:
        return self.better + self.worse + self.changed_both_wrong


@dataclass(frozen=True)
class ReadsSummary:
    cases: int
    accuracies: tuple[Accuracy, ...]
    reveal: RevealEffect

    def accuracy(self, target: str, reader: str) -> Accuracy:
        for item in self.accuracies:
            if item.target == target and item.reader == reader:
                return item
        raise KeyError((target, reader))


def read_row(case: CaseRecord) -> ReadRow | None:
    """The row of one case, or None when it has no histology yet."""
    if case.histology_diagnosis is None:
        return None
    unaided = after = None
    if case.reader_mode == "reader_first":
        if case.initial.committed:
            unaided = case.initial.diagnosis
            after = case.revised.diagnosis if case.revised is not None else None
    else:
        after = case.current_assessment.diagnosis
    return ReadRow(
        case_id=case.case_id,
        patient_pseudonym=case.patient_pseudonym,
        reader_mode=case.reader_mode,
        histology=case.histology_diagnosis,
        histology_date=case.histology_date,
        report_number=case.histology_report_number,
        unaided=unaided,
        after_reveal=after,
        model=case.ai_result.top_class if case.ai_result is not None else None,
        ai_result_stored=case.ai_result_stored,
    )


def collect_reads(store: CaseStore) -> list[ReadRow]:
    """Every case of the store with histology, oldest first (reader-first rule kept)."""
    summaries = [s for s in store.search(limit=10_000_000) if s.histology_diagnosis is not None]
    summaries.sort(key=lambda s: (s.created_at, s.case_id))
    rows = [read_row(store.get_case(s.case_id)) for s in summaries]
    return [row for row in rows if row is not None]


def accuracy(rows: Iterable[ReadRow], target: str, reader: str) -> Accuracy:
    positive_truth, positive_calls = TARGETS[target]
    tp = fn = tn = fp = 0
    for row in rows:
        call = row.call(reader)
        if call is None:
            continue
        truth, said = row.histology in positive_truth, call in positive_calls
        if truth and said:
            tp += 1
        elif truth:
            fn += 1
        elif said:
            fp += 1
        else:
            tn += 1
    return Accuracy(target, reader, tp, fn, tn, fp)


def reveal_effect(rows: Iterable[ReadRow]) -> RevealEffect:
    counts = {"unchanged": 0, "better": 0, "worse": 0, "changed_both_wrong": 0}
    compared = 0
    for row in rows:
        effect = row.reveal_effect
        if effect is not None:
            compared += 1
            counts[effect] += 1
    return RevealEffect(compared=compared, **counts)


def summarize(rows: Sequence[ReadRow]) -> ReadsSummary:
    return ReadsSummary(
        cases=len(rows),
        accuracies=tuple(
            accuracy(rows, target, reader) for target in TARGETS for reader in READERS
        ),
        reveal=reveal_effect(rows),
    )


def diagnosis_text(value: str | None) -> str:
    return DIAGNOSIS_LABELS.get(value, value) if value else "-"


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def rows_csv(rows: Sequence[ReadRow]) -> str:
    """One line per case (codes, not labels, so a spreadsheet can count them)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.case_id,
                row.patient_pseudonym,
                row.reader_mode,
                row.histology,
                row.histology_date.isoformat() if row.histology_date else "",
                row.report_number or "",
                row.unaided or "",
                row.after_reveal or "",
                row.model or "",
                row.reveal_effect or "",
            ]
        )
    return out.getvalue()


def summary_csv(summary: ReadsSummary) -> str:
    """Sensitivity/specificity per target and reader, then the reveal counts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for item in summary.accuracies:
        sens, spec = item.sensitivity, item.specificity
        writer.writerow(
            [
                item.target,
                item.reader,
                item.tp,
                item.fn,
                item.tn,
                item.fp,
                _number(sens.value),
                *(_number(v) for v in sens.ci95),
                _number(spec.value),
                *(_number(v) for v in spec.ci95),
            ]
        )
    reveal = summary.reveal
    writer.writerow([])
    writer.writerow(["reveal", "compared", "unchanged", "better", "worse", "changed_both_wrong"])
    writer.writerow(
        [
            "reveal",
            reveal.compared,
            reveal.unchanged,
            reveal.better,
            reveal.worse,
            reveal.changed_both_wrong,
        ]
    )
    return out.getvalue()


def summary_path(path: Path) -> Path:
    """Where ``export_csv`` puts the statistics next to the per-case table."""
    return path.with_name(f"{path.stem}-summary{path.suffix or '.csv'}")


def export_csv(path: str | Path, rows: Sequence[ReadRow]) -> tuple[Path, Path]:
    """Write the per-case table to ``path`` and the statistics beside it; both atomic.

    Two files rather than one: each stays a plain rectangular table that a
    spreadsheet or ``pandas.read_csv`` reads without hand editing.
    """
    target = Path(path)
    other = summary_path(target)
    atomic_write(target, rows_csv(rows).encode("utf-8"))
    atomic_write(other, summary_csv(summarize(rows)).encode("utf-8"))
    return target, other
