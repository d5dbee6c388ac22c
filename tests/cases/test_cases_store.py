"""The case store as the assessment form uses it: save on every change, lock, reveal, audit."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from rcm_viewer.cases import SCHEMA_VERSION, AIResult, CaseStore, Heatmap, default_db_path
from rcm_viewer.errors import CaseStoreError

MELANOMA = "melanoma_score"
BCC = "bcc_two_step_first"
READER = "dr.rossi"


def make_ai_result(top: str = "melanoma") -> AIResult:
    probabilities = {"melanoma": 0.1, "bcc": 0.1, "naevus": 0.1} | {top: 0.8}
    heatmap = Heatmap.from_float(
        np.linspace(0, 1, 3 * 16 * 24).reshape(3, 16, 24), tuple(probabilities), (4000, 6000)
    )
    return AIResult.from_probabilities(
        "rcm-resnet34-demo",
        "0.1",
        "cd" * 32,
        probabilities,
        heatmap=heatmap,
        flags=("synthetic_model",),
    )


def fill_form(store: CaseStore, case_id: str) -> None:
    """What a reader does in the form: one call per click, like the widget will."""
    store.set_answer(case_id, None, MELANOMA, "non_edged_papillae", "present", READER)
    store.set_answer(case_id, None, MELANOMA, "atypical_basal_cells", "not_assessable", READER)
    store.set_answer(case_id, None, MELANOMA, "cerebriform_clusters", "absent", READER)
    store.set_answer(case_id, None, BCC, "basaloid_nodules", "absent", READER)
    store.update_assessment_fields(case_id, None, READER, diagnosis="naevus", confidence=3)
    store.update_assessment_fields(case_id, None, READER, management="routine", notes="edge")


def test_default_database_lives_in_the_user_data_folder(data_dir: Path) -> None:
    assert default_db_path() == data_dir / "cases.sqlite3"
    with CaseStore() as store:
        assert store.path == data_dir / "cases.sqlite3"
        assert store.schema_version == SCHEMA_VERSION
        assert store.startup_warning is None


def test_database_is_wal_with_full_sync_and_foreign_keys(store: CaseStore) -> None:
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_form_state_round_trips_through_the_file(db_path: Path, store: CaseStore) -> None:
    case = store.create_case(
        "PT-0042",
        user=READER,
        mosaic_path="/data/lesion_07.tif",
        mosaic_sha256="ef" * 32,
        pixel_size_um=0.5,
        lesion_site="left shoulder",
    )
    assert case.initial.reader_name == READER and case.initial.lesion_site == "left shoulder"
    fill_form(store, case.case_id)
    last = store.set_answer(case.case_id, None, MELANOMA, "cerebriform_clusters", None, READER)
    store.close()

    with CaseStore(db_path) as reopened:
        again = reopened.get_case(case.case_id)
    assert again.initial == last
    assert again.initial.answers == {
        MELANOMA: {"non_edged_papillae": "present", "atypical_basal_cells": "not_assessable"},
        BCC: {"basaloid_nodules": "absent"},
    }
    assert (again.initial.diagnosis, again.initial.confidence) == ("naevus", 3)
    assert (again.initial.management, again.initial.notes) == ("routine", "edge")
    assert (again.pixel_size_um, again.mosaic_path) == (0.5, "/data/lesion_07.tif")
    assert again.editable_stage == "initial" and again.revised is None


def test_saving_an_unchanged_value_writes_no_audit_row(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER).case_id
    fill_form(store, case_id)
    before = len(store.audit_trail(case_id))
    fill_form(store, case_id)  # the form saved its whole state again
    assert len(store.audit_trail(case_id)) == before


def test_bad_form_values_are_refused_with_readable_errors(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER).case_id
    with pytest.raises(CaseStoreError, match="Unknown checklist"):
        store.set_answer(case_id, None, "abcd", "x", "present", READER)
    with pytest.raises(CaseStoreError, match="has no item"):
        store.set_answer(case_id, None, MELANOMA, "x", "present", READER)
    with pytest.raises(CaseStoreError, match="confidence"):
        store.update_assessment_fields(case_id, None, READER, confidence=0)
    with pytest.raises(CaseStoreError, match="Cannot edit"):
        store.update_assessment_fields(case_id, None, READER, committed_at="now")
    with pytest.raises(CaseStoreError, match="user"):
        store.update_assessment_fields(case_id, None, " ", notes="x")
    with pytest.raises(CaseStoreError, match="not in"):
        store.get_case("C-unknown")
    with pytest.raises(CaseStoreError, match="already exists"):
        store.create_case("P", user=READER, case_id=case_id)


def test_committing_locks_the_initial_assessment_and_opens_a_revised_copy(
    store: CaseStore,
) -> None:
    case_id = store.create_case("P", user=READER).case_id
    store.set_answer(case_id, "initial", MELANOMA, "non_edged_papillae", "present", READER)
    with pytest.raises(CaseStoreError, match="diagnosis"):
        store.commit_initial_assessment(case_id, READER)
    with pytest.raises(CaseStoreError, match="commit the initial"):
        store.update_assessment_fields(case_id, "revised", READER, notes="too early")
    store.update_assessment_fields(case_id, None, READER, diagnosis="naevus", confidence=2)

    record = store.commit_initial_assessment(case_id, READER)
    assert record.initial.committed and record.editable_stage == "revised"
    assert record.revised is not None
    assert record.revised.answers == record.initial.answers
    assert (record.revised.diagnosis, record.revised.confidence) == ("naevus", 2)
    assert record.revised.committed_at is None

    with pytest.raises(CaseStoreError, match="locked"):
        store.set_answer(case_id, "initial", MELANOMA, "atypical_basal_cells", "present", READER)
    with pytest.raises(CaseStoreError, match="locked"):
        store.update_assessment_fields(case_id, "initial", READER, diagnosis="melanoma")
    with pytest.raises(CaseStoreError, match="already committed"):
        store.commit_initial_assessment(case_id, READER)

    # stage=None follows the form to the revised assessment
    store.set_answer(case_id, None, MELANOMA, "atypical_basal_cells", "present", READER)
    store.update_assessment_fields(case_id, None, READER, diagnosis="melanoma")
    record = store.get_case(case_id)
    assert record.initial.diagnosis == "naevus"
    assert record.initial.answer(MELANOMA, "atypical_basal_cells") is None
    assert record.revised is not None and record.revised.diagnosis == "melanoma"
    assert record.revised.answer(MELANOMA, "atypical_basal_cells") == "present"


def test_reader_first_hides_the_ai_until_the_initial_assessment_is_committed(
    store: CaseStore,
) -> None:
    case_id = store.create_case("P", user=READER, mosaic_sha256="aa" * 32).case_id
    ai = make_ai_result("melanoma")
    record = store.save_ai_result(case_id, ai, "batch-worker")
    assert record.reader_mode == "reader_first"
    assert record.ai_result_stored and not record.ai_visible
    assert record.ai_result is None
    assert store.find_by_mosaic_sha256("aa" * 32)[0].ai_result is None
    exported = json.loads(store.export_case_json(case_id))
    assert exported["case"]["ai_result"] is None
    assert store.get_case(case_id, include_hidden_ai=True).ai_result == ai

    store.update_assessment_fields(case_id, None, READER, diagnosis="naevus")
    record = store.commit_initial_assessment(case_id, READER)
    assert record.ai_visible and record.ai_result == ai
    assert record.ai_result.heatmap == ai.heatmap
    assert record.changed_after_ai is False
    store.update_assessment_fields(case_id, None, READER, diagnosis="melanoma")
    assert store.get_case(case_id).changed_after_ai is True


def test_ai_visible_mode_shows_the_ai_at_once(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER, reader_mode="ai_visible").case_id
    record = store.save_ai_result(case_id, make_ai_result(), "batch-worker")
    assert record.ai_visible and record.ai_result is not None
    assert record.editable_stage == "initial"
    with pytest.raises(CaseStoreError, match="reader mode"):
        store.create_case("P", user=READER, reader_mode="ai_first")


def test_every_change_writes_an_audit_row(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER).case_id
    store.set_answer(case_id, None, MELANOMA, "non_edged_papillae", "present", READER)
    store.set_answer(case_id, None, MELANOMA, "non_edged_papillae", "absent", "dr.bianchi")
    store.update_assessment_fields(case_id, None, READER, diagnosis="naevus", confidence=4)
    store.commit_initial_assessment(case_id, READER)
    store.save_ai_result(case_id, make_ai_result(), "worker")
    store.set_histology(case_id, "naevus", "pathology", detail="compound naevus")
    roi = store.add_roi(
        case_id,
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10, 20]}},
        READER,
    )
    store.update_case_fields(case_id, READER, lesion_site="back")

    trail = store.audit_trail(case_id)
    fields = [entry.field for entry in trail]
    assert fields == [
        "case.created",
        "initial.answers.melanoma_score.non_edged_papillae",
        "initial.answers.melanoma_score.non_edged_papillae",
        "initial.diagnosis",
        "initial.confidence",
        "initial.committed_at",
        "revised.created",
        "ai_result",
        "histology.diagnosis",
        "histology.detail",
        f"roi.{roi['id']}",
        "case.lesion_site",
    ]
    change = trail[2]
    assert (change.user, change.old_value, change.new_value) == ("dr.bianchi", "present", "absent")
    assert trail[7].new_value["top_class"] == "melanoma"
    assert all(entry.at.tzinfo is not None for entry in trail)
    assert [e.entry_id for e in trail] == sorted(e.entry_id for e in trail)


def test_audit_rows_cannot_be_changed_or_deleted(db_path: Path, store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER).case_id
    store.update_assessment_fields(case_id, None, READER, notes="first")
    with sqlite3.connect(db_path) as raw:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE audit SET new_value = '\"forged\"'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit WHERE case_id = ?", (case_id,))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit")
    assert len(store.audit_trail(case_id)) == 2


def test_a_failed_edit_leaves_neither_the_change_nor_its_audit_row(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER).case_id
    store.update_assessment_fields(case_id, None, READER, diagnosis="naevus")
    store.commit_initial_assessment(case_id, READER)
    before = store.audit_trail(case_id)
    with pytest.raises(CaseStoreError):
        store.update_assessment_fields(case_id, "initial", READER, notes="late edit")
    assert store.audit_trail(case_id) == before
    assert store.get_case(case_id).initial.notes == ""


def test_search_by_text_diagnosis_and_date(store: CaseStore, clock) -> None:
    clock.set(datetime(2025, 1, 10, 12, 0, tzinfo=UTC))
    a = store.create_case("Rossi-100%", user=READER, case_id="RCM-001").case_id
    store.update_assessment_fields(a, None, READER, diagnosis="melanoma")
    clock.set(datetime(2025, 2, 10, 12, 0, tzinfo=UTC))
    b = store.create_case("Bianchi", user=READER, case_id="RCM-002").case_id
    store.update_assessment_fields(b, None, READER, diagnosis="naevus")
    store.commit_initial_assessment(b, READER)
    store.update_assessment_fields(b, None, READER, diagnosis="bcc")
    clock.set(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))
    c = store.create_case("Verdi", user=READER, case_id="OTHER-3").case_id
    store.set_histology(c, "bcc", "pathology")

    def ids(**query) -> set[str]:
        return {summary.case_id for summary in store.search(**query)}

    assert ids() == {a, b, c}
    assert ids(text="rcm-") == {a, b}
    assert ids(text="BIANCHI") == {b}
    assert ids(text="100%") == {a}
    assert ids(text="%") == {a}  # a literal percent sign, not a wildcard
    assert ids(diagnosis="bcc") == {b, c}  # revised diagnosis or histology
    assert ids(diagnosis="naevus") == {b}  # the initial diagnosis still counts
    assert ids(date_from=date(2025, 2, 1)) == {b, c}
    assert ids(date_to=date(2025, 2, 10)) == {a, b}  # a whole day, inclusive
    assert ids(date_from=date(2025, 2, 1), date_to=date(2025, 2, 28), text="rcm") == {b}
    summary = store.search(text="RCM-002")[0]
    assert (summary.initial_diagnosis, summary.revised_diagnosis) == ("naevus", "bcc")
    assert summary.initial_committed and not summary.ai_result_stored
    assert [s.case_id for s in store.search()][0] == c  # most recently edited first


def test_rois_and_view_state(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER).case_id
    polygon = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 80], [0, 0]]]},
        "properties": {"classification": {"name": "atypical cells"}},
    }
    first = store.add_roi(case_id, polygon, READER)
    second = store.add_roi(case_id, {**polygon, "id": "roi-2"}, READER)
    assert second["id"] == "roi-2"
    moved = {**polygon, "geometry": {"type": "Point", "coordinates": [5, 5]}}
    store.update_roi(case_id, first["id"], moved, READER)
    store.save_view_state(case_id, {"center": [5120.5, 2048.0], "zoom": 0.25})
    record = store.get_case(case_id)
    assert [roi["id"] for roi in record.roi_annotations] == [first["id"], "roi-2"]
    assert record.roi_annotations[0]["geometry"] == {"type": "Point", "coordinates": [5, 5]}
    assert record.view_state == {"center": [5120.5, 2048.0], "zoom": 0.25}
    store.remove_roi(case_id, "roi-2", READER)
    assert len(store.get_case(case_id).roi_annotations) == 1
    with pytest.raises(CaseStoreError, match="GeoJSON Feature"):
        store.add_roi(case_id, {"type": "Polygon"}, READER)
    with pytest.raises(CaseStoreError, match="cannot be saved"):
        store.save_view_state(case_id, {"zoom": float("nan")})
    fields = [entry.field for entry in store.audit_trail(case_id)]
    assert not any("view" in name for name in fields)  # navigation is not audited


def test_export_case_json(store: CaseStore) -> None:
    case_id = store.create_case("P", user=READER, reader_mode="ai_visible").case_id
    fill_form(store, case_id)
    ai = make_ai_result("naevus")
    store.save_ai_result(case_id, ai, "worker")
    document = json.loads(store.export_case_json(case_id))
    assert document["format"] == "rcm-viewer.case"
    assert document["case"]["case_id"] == case_id
    melanoma = document["scores"]["initial"][MELANOMA]
    assert (melanoma["total"], melanoma["n_not_assessable"]) == (2, 1)
    assert melanoma["outcome_could_change"] is True
    assert "data" not in document["case"]["ai_result"]["heatmap"]
    assert [entry["field"] for entry in document["audit"]][0] == "case.created"

    full = json.loads(store.export_case_json(case_id, include_heatmap_pixels=True))
    pixels = full["case"]["ai_result"]["heatmap"]
    assert pixels["shape"] == [3, 16, 24] and pixels["data"]


def test_threads_share_the_store(store: CaseStore) -> None:
    case_ids = [store.create_case(f"P{n}", user=READER).case_id for n in range(4)]
    errors: list[BaseException] = []

    def edit(case_id: str) -> None:
        try:
            for n in range(10):
                store.update_assessment_fields(case_id, None, READER, notes=f"edit {n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(case_id,)) for case_id in case_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for case_id in case_ids:
        assert store.get_case(case_id).initial.notes == "edit 9"
        assert len(store.audit_trail(case_id)) == 11


def test_a_closed_store_says_so(db_path: Path) -> None:
    store = CaseStore(db_path)
    store.close()
    with pytest.raises(CaseStoreError, match="closed"):
        store.search()
