"""Histology follow-up and "My reads" on a real SQLite store with hand-counted answers."""

from __future__ import annotations

import csv
import sqlite3
from datetime import date
from pathlib import Path

import pytest

from rcm_viewer.cases import AIResult, CaseStore
from rcm_viewer.cases.reads import collect_reads, export_csv, summarize, summary_path
from rcm_viewer.errors import CaseStoreError

READER = "dr.reader"

# (histology, unaided, after reveal, model top class, reader mode); see the counts below.
CASES = [
    ("melanoma", "melanoma", "melanoma", "melanoma", "reader_first"),  # 1
    ("melanoma", "naevus", "melanoma", "melanoma", "reader_first"),  # 2 better
    ("melanoma", "uncertain", "uncertain", "bcc", "reader_first"),  # 3
    ("bcc", "bcc", "bcc", "bcc", "reader_first"),  # 4
    ("bcc", "naevus", "naevus", "melanoma", "reader_first"),  # 5
    ("naevus", "naevus", "naevus", "naevus", "reader_first"),  # 6
    ("naevus", "naevus", "melanoma", "melanoma", "reader_first"),  # 7 worse
    ("naevus", "melanoma", "melanoma", "naevus", "reader_first"),  # 8
    ("other", "other", "bcc", "naevus", "reader_first"),  # 9 worse
    ("naevus", "bcc", "melanoma", "melanoma", "reader_first"),  # 10 changed, both wrong
    ("melanoma", None, "melanoma", "melanoma", "ai_visible"),  # 11 no unaided read
]


def _ai(top: str) -> AIResult:
    probabilities = {"melanoma": 0.1, "bcc": 0.1, "naevus": 0.1}
    probabilities[top] = 0.8
    return AIResult.from_probabilities("demo-resnet", "1", "0" * 64, probabilities)


def _make_cases(store: CaseStore) -> None:
    for index, (histology, unaided, after, model, mode) in enumerate(CASES, start=1):
        cid = f"c{index:02d}"
        store.create_case(f"P{index}", user=READER, reader_mode=mode, case_id=cid)
        store.save_ai_result(cid, _ai(model), READER)
        if mode == "reader_first":
            store.update_assessment_fields(cid, None, READER, diagnosis=unaided)
            store.commit_initial_assessment(cid, READER)
        store.update_assessment_fields(cid, None, READER, diagnosis=after)
        store.update_histology(cid, "pathology", diagnosis=histology)
    # 12: still being read (AI hidden): histology known, no read counted, model not shown
    store.create_case("P12", user=READER, case_id="c12")
    store.update_assessment_fields("c12", None, READER, diagnosis="naevus")
    store.save_ai_result("c12", _ai("melanoma"), READER)
    store.update_histology("c12", "pathology", diagnosis="naevus")
    # 13: no histology: not in My reads
    store.create_case("P13", user=READER, case_id="c13")
    # 14: committed without any AI result: counted, but not in the reveal effect
    store.create_case("P14", user=READER, case_id="c14")
    store.update_assessment_fields("c14", None, READER, diagnosis="naevus")
    store.commit_initial_assessment("c14", READER)
    store.update_histology("c14", "pathology", diagnosis="naevus")


def _counts(summary, target: str, reader: str) -> tuple[int, int, int, int]:
    a = summary.accuracy(target, reader)
    return a.tp, a.fn, a.tn, a.fp


def test_my_reads_match_hand_counted_answers(store: CaseStore) -> None:
    _make_cases(store)
    rows = collect_reads(store)
    assert [r.case_id for r in rows] == [f"c{i:02d}" for i in (*range(1, 13), 14)]
    by_id = {r.case_id: r for r in rows}
    assert (by_id["c12"].unaided, by_id["c12"].after_reveal, by_id["c12"].model) == (
        None,
        None,
        None,
    )
    assert by_id["c11"].unaided is None and by_id["c11"].after_reveal == "melanoma"
    assert by_id["c03"].model == "bcc"

    summary = summarize(rows)
    assert summary.cases == 13
    # (tp, fn, tn, fp), counted by hand from CASES
    assert _counts(summary, "melanoma", "unaided") == (2, 1, 7, 1)
    assert _counts(summary, "melanoma", "after_reveal") == (4, 0, 5, 3)
    assert _counts(summary, "melanoma", "model") == (3, 1, 4, 3)
    assert _counts(summary, "malignancy", "unaided") == (3, 2, 4, 2)
    assert _counts(summary, "malignancy", "after_reveal") == (5, 1, 2, 4)
    assert _counts(summary, "malignancy", "model") == (6, 0, 3, 2)

    sens = summary.accuracy("melanoma", "unaided").sensitivity
    assert sens.value == pytest.approx(2 / 3)
    low, high = sens.ci95  # Wilson 2/3 by hand: 0.2077-0.9385
    assert low == pytest.approx(0.2077, abs=1e-3) and high == pytest.approx(0.9385, abs=1e-3)
    assert summary.accuracy("malignancy", "model").sensitivity.ci95[1] == 1.0

    reveal = summary.reveal
    assert (
        reveal.compared,
        reveal.unchanged,
        reveal.better,
        reveal.worse,
        reveal.changed_both_wrong,
    ) == (10, 6, 1, 2, 1)
    assert reveal.changed == 4


def test_export_writes_the_table_and_the_statistics(store: CaseStore, tmp_path: Path) -> None:
    _make_cases(store)
    store.update_histology("c01", "pathology", date=date(2025, 3, 20), report_number="H-25/001")
    rows = collect_reads(store)
    table, stats = export_csv(tmp_path / "my-reads.csv", rows)
    assert stats == summary_path(tmp_path / "my-reads.csv") == tmp_path / "my-reads-summary.csv"
    with table.open(newline="", encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 13
    assert lines[0]["histology_date"] == "2025-03-20" and lines[0]["report_number"] == "H-25/001"
    assert lines[1]["reveal_effect"] == "better"
    assert [line["reveal_effect"] for line in lines if line["case_id"] == "c14"] == [""]
    with stats.open(newline="", encoding="utf-8") as fh:
        table_rows = list(csv.reader(fh))
    assert table_rows[0][:6] == ["target", "reader", "tp", "fn", "tn", "fp"]
    unaided = next(r for r in table_rows if r[:2] == ["melanoma", "unaided"])
    assert unaided[2:6] == ["2", "1", "7", "1"] and unaided[6] == "0.6667"
    assert table_rows[-1] == ["reveal", "10", "6", "1", "2", "1"]


def test_histology_fields_are_saved_any_time_and_audited_per_field(
    store: CaseStore, db_path: Path
) -> None:
    store.create_case("P1", user=READER, case_id="h1")
    store.update_assessment_fields("h1", None, READER, diagnosis="naevus")
    store.commit_initial_assessment("h1", READER)  # the histology comes after the commit
    case = store.update_histology(
        "h1", "pathology", diagnosis="melanoma", date=date(2025, 4, 2), report_number=" R-17 "
    )
    assert case.histology_diagnosis == "melanoma"
    assert case.histology_date == date(2025, 4, 2)
    assert case.histology_report_number == "R-17"
    assert case.histology_recorded_at is not None
    store.update_histology("h1", "pathology", report_number="R-18")
    store.update_histology("h1", "pathology", report_number="R-18")  # no change, no audit row
    fields = [
        (e.field, e.old_value, e.new_value)
        for e in store.audit_trail("h1")
        if e.field.startswith("histology.")
    ]
    assert fields == [
        ("histology.diagnosis", None, "melanoma"),
        ("histology.date", None, "2025-04-02"),
        ("histology.report_number", None, "R-17"),
        ("histology.report_number", "R-17", "R-18"),
    ]
    exported = store.get_case("h1").to_dict()["histology"]
    assert exported["date"] == "2025-04-02" and exported["report_number"] == "R-18"
    with pytest.raises(CaseStoreError, match="calendar date"):
        store.update_histology("h1", "pathology", date="2025-04-02")
    with pytest.raises(CaseStoreError, match="Unknown histology field"):
        store.update_histology("h1", "pathology", stage="x")
    with pytest.raises(CaseStoreError):
        store.update_histology("h1", "pathology", diagnosis="uncertain")
    assert store.get_case("h1").histology_report_number == "R-18"  # refused edits change nothing
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT histology_date FROM cases").fetchone() == ("2025-04-02",)
