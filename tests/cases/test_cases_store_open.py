"""Opening the case database: migrations, damaged files, read-only places, and a hard crash."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rcm_viewer.cases import SCHEMA_VERSION, CaseStore
from rcm_viewer.errors import CaseStoreError

READER = "dr.rossi"
CORRUPT_NAME = re.compile(r"^cases\.corrupt-\d{8}T\d{6}(-\d+)?\.sqlite3$")

# The version-1 schema exactly as release 1 wrote it: frozen here on purpose, so a change to
# the migration code cannot silently change what "an old database" means in this test.
SCHEMA_V1_AS_SHIPPED = """
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    patient_pseudonym TEXT NOT NULL DEFAULT '',
    mosaic_path TEXT,
    mosaic_sha256 TEXT,
    pixel_size_um REAL CHECK (pixel_size_um IS NULL OR pixel_size_um > 0),
    lesion_site TEXT,
    reader_mode TEXT NOT NULL CHECK (reader_mode IN ('reader_first', 'ai_visible')),
    histology_diagnosis TEXT CHECK (
        histology_diagnosis IS NULL
        OR histology_diagnosis IN ('melanoma', 'bcc', 'naevus', 'other')),
    histology_detail TEXT,
    histology_recorded_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE assessments (
    case_id TEXT NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
    stage TEXT NOT NULL CHECK (stage IN ('initial', 'revised')),
    diagnosis TEXT CHECK (
        diagnosis IS NULL
        OR diagnosis IN ('melanoma', 'bcc', 'naevus', 'other', 'uncertain')),
    confidence INTEGER CHECK (confidence IS NULL OR confidence BETWEEN 1 AND 5),
    management TEXT CHECK (
        management IS NULL
        OR management IN ('excision_biopsy', 'short_term_followup', 'routine', 'none')),
    notes TEXT NOT NULL DEFAULT '',
    lesion_site TEXT,
    reader_name TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    committed_at TEXT,
    PRIMARY KEY (case_id, stage)
);
CREATE TABLE answers (
    case_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    checklist_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    value TEXT NOT NULL CHECK (value IN ('present', 'absent', 'not_assessable')),
    answered_at TEXT NOT NULL,
    PRIMARY KEY (case_id, stage, checklist_id, item_id),
    FOREIGN KEY (case_id, stage) REFERENCES assessments (case_id, stage) ON DELETE CASCADE
);
CREATE TABLE ai_results (
    case_id TEXT PRIMARY KEY REFERENCES cases (case_id) ON DELETE CASCADE,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    class_ids TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    top_class TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '[]',
    heatmap_meta TEXT,
    heatmap BLOB,
    created_at TEXT NOT NULL,
    saved_at TEXT NOT NULL
);
CREATE TABLE audit (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user_name TEXT NOT NULL,
    case_id TEXT NOT NULL,
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX audit_by_case ON audit (case_id, entry_id);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: rows cannot be changed'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: rows cannot be deleted'); END;
CREATE INDEX cases_by_created ON cases (created_at);
PRAGMA user_version = 1;
"""

V1_CASE = """
INSERT INTO cases (case_id, patient_pseudonym, mosaic_sha256, reader_mode, created_at, updated_at)
VALUES ('OLD-1', 'PT-7', '{sha}', 'reader_first',
        '2024-05-01T09:00:00.000000+00:00', '2024-05-01T09:05:00.000000+00:00');
INSERT INTO assessments (case_id, stage, diagnosis, confidence, notes, created_at, updated_at)
VALUES ('OLD-1', 'initial', 'melanoma', 4, 'from release 1',
        '2024-05-01T09:00:00.000000+00:00', '2024-05-01T09:05:00.000000+00:00');
INSERT INTO answers VALUES ('OLD-1', 'initial', 'melanoma_score', 'non_edged_papillae',
                            'present', '2024-05-01T09:01:00.000000+00:00');
INSERT INTO audit (at, user_name, case_id, field, old_value, new_value)
VALUES ('2024-05-01T09:00:00.000000+00:00', 'dr.old', 'OLD-1', 'case.created', NULL, '{{}}');
""".format(sha="12" * 32)


def test_a_version_1_database_is_migrated_and_keeps_its_cases(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.executescript(SCHEMA_V1_AS_SHIPPED + V1_CASE)
    raw.close()

    with CaseStore(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.full_check() == []  # the v1 audit rows were chained on migration
        assert store.startup_warning is None
        case = store.get_case("OLD-1")
        assert case.initial.diagnosis == "melanoma" and case.initial.notes == "from release 1"
        assert case.initial.answer("melanoma_score", "non_edged_papillae") == "present"
        assert case.view_state == {} and case.roi_annotations == ()
        assert [c.case_id for c in store.find_by_mosaic_sha256("12" * 32)] == ["OLD-1"]
        feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}
        store.add_roi("OLD-1", feature, READER)
        store.save_view_state("OLD-1", {"zoom": 1.0})
        assert [e.user for e in store.audit_trail("OLD-1")] == ["dr.old", READER]

    with sqlite3.connect(db_path) as raw:
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        assert {"rois", "cases_by_mosaic_sha256", "audit_is_append_only_update"} <= names
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit")
    raw.close()
    with CaseStore(db_path) as again:  # opening a current database migrates nothing
        assert again.get_case("OLD-1").view_state == {"zoom": 1.0}


def fill(db_path: Path, cases: int = 30) -> None:
    with CaseStore(db_path) as store:
        for n in range(cases):
            case_id = store.create_case(f"P{n}", user=READER).case_id
            store.update_assessment_fields(case_id, None, READER, notes="n" * 3000)


def assert_moved_aside(store: CaseStore, original: bytes) -> Path:
    assert store.startup_warning is not None
    assert "damaged" in store.startup_warning and "\n" not in store.startup_warning
    aside = store.moved_aside_path
    assert aside is not None and CORRUPT_NAME.match(aside.name), aside
    assert aside.name in store.startup_warning
    assert aside.read_bytes() == original
    # the new database works and is empty
    assert store.search() == []
    store.create_case("fresh", user=READER)
    return aside


def test_a_file_of_garbage_is_kept_aside_with_its_wal(db_path: Path) -> None:
    garbage = os.urandom(8192)
    db_path.write_bytes(garbage)
    wal = Path(f"{db_path}-wal")
    wal.write_bytes(b"stale log of the damaged file")
    with CaseStore(db_path) as store:
        aside = assert_moved_aside(store, garbage)
        assert "not a SQLite database" in store.startup_warning
    assert Path(f"{aside}-wal").read_bytes() == b"stale log of the damaged file"


@pytest.mark.parametrize("keep_fraction", [0.5, 0.1])
def test_a_truncated_database_is_kept_aside(db_path: Path, keep_fraction: float) -> None:
    fill(db_path)
    data = db_path.read_bytes()
    truncated = data[: int(len(data) * keep_fraction)]
    db_path.write_bytes(truncated)
    with CaseStore(db_path) as store:
        assert_moved_aside(store, truncated)


def test_a_database_with_scrambled_pages_is_kept_aside(db_path: Path) -> None:
    fill(db_path)
    data = bytearray(db_path.read_bytes())
    data[8192:16384] = os.urandom(8192)  # damage inside the b-tree, header intact
    db_path.write_bytes(bytes(data))
    with CaseStore(db_path) as store:
        assert_moved_aside(store, bytes(data))


def test_a_second_damaged_file_never_overwrites_the_first(db_path: Path) -> None:
    kept = []
    for content in (b"first garbage" * 10, b"second garbage" * 10):
        db_path.unlink(missing_ok=True)
        db_path.write_bytes(content)
        with CaseStore(db_path) as store:
            kept.append(store.moved_aside_path)
    assert kept[0] != kept[1]
    assert kept[0].read_bytes() == b"first garbage" * 10
    assert kept[1].read_bytes() == b"second garbage" * 10


def test_a_database_from_a_newer_release_is_refused_and_left_alone(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE future (x)")
        raw.execute("PRAGMA user_version = 99")
    raw.close()
    before = db_path.read_bytes()
    with pytest.raises(CaseStoreError, match="newer rcm-viewer") as caught:
        CaseStore(db_path)
    assert "\n" not in str(caught.value)
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir() if "corrupt" in p.name) == []


def test_another_programs_sqlite_file_is_refused_and_left_alone(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE photos (x)")
    raw.close()
    with pytest.raises(CaseStoreError, match="another program"):
        CaseStore(db_path)
    assert not any("corrupt" in p.name for p in db_path.parent.iterdir())


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or folder read-only for this process, even when the tests run as root.

    Permission bits do not bind root, but the immutable attribute does.
    """
    if getattr(os, "geteuid", lambda: 1)() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    done = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True)
    if not done or done.returncode != 0:
        pytest.skip("cannot make a path read-only for root here (chattr +i unavailable)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_a_read_only_database_file_is_refused_in_one_line(db_path: Path) -> None:
    fill(db_path, cases=1)
    with read_only(db_path), pytest.raises(CaseStoreError, match="read-only") as caught:
        CaseStore(db_path)
    message = str(caught.value)
    assert str(db_path) in message and "\n" not in message


@pytest.mark.skipif(sys.platform == "win32", reason="folders cannot be made read-only this way")
def test_a_read_only_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder), pytest.raises(CaseStoreError, match="read-only") as caught:
        CaseStore(folder / "cases.sqlite3")
    assert "\n" not in str(caught.value)
    assert not (folder / "cases.sqlite3").exists()


CRASH_WRITER = """
import sys
from rcm_viewer.cases import CaseStore

store = CaseStore(sys.argv[1])
case_id = sys.argv[2]
items = ["non_edged_papillae", "atypical_basal_cells", "cerebriform_clusters"]
edit = 0
while True:
    edit += 1
    store.update_assessment_fields(case_id, None, "crash-test", notes=f"edit {edit}")
    value = "present" if edit % 2 else "absent"
    store.set_answer(case_id, None, "melanoma_score", items[edit % 3], value, "crash-test")
    print(edit, flush=True)
"""


def test_every_edit_reported_saved_survives_a_hard_kill(db_path: Path) -> None:
    with CaseStore(db_path) as store:
        case_id = store.create_case("P-crash", user=READER).case_id

    writer = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(db_path), case_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[int] = []
    try:
        assert writer.stdout is not None
        while len(printed) < 100:
            line = writer.stdout.readline()
            if not line:
                pytest.fail(f"writer stopped early: {writer.stderr.read()}")  # type: ignore[union-attr]
            printed.append(int(line))
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # mid-edit: the writer never pauses
        rest, _ = writer.communicate(timeout=30)
    printed += [int(token) for token in rest.split()]
    assert writer.returncode == -signal.SIGKILL
    last_reported = printed[-1]

    with CaseStore(db_path) as store:
        assert store.startup_warning is None
        saved_notes = {
            int(entry.new_value.split()[1])
            for entry in store.audit_trail(case_id)
            if entry.field == "initial.notes"
        }
        assert set(range(1, last_reported + 1)) <= saved_notes
        final_edit = int(store.get_case(case_id).initial.notes.split()[1])
        assert final_edit >= last_reported
        assert final_edit in (last_reported, last_reported + 1)
        check = store._connection().execute("PRAGMA integrity_check").fetchone()[0]
        assert check == "ok"
