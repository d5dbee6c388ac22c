"""Issue 16, findings 5-7: tamper evidence, full check, backups and file modes of the store.

Every attack is made the way a person with the file would make it: a second, raw
``sqlite3`` connection to the real database file.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from rcm_viewer.cases import CaseStore
from rcm_viewer.errors import CaseStoreError


def _committed_case(store: CaseStore, case_id: str = "C-1") -> None:
    store.create_case(user="dr.a", reader_mode="reader_first", case_id=case_id)
    store.update_assessment_fields(case_id, None, "dr.a", diagnosis="naevus")
    store.set_answer(case_id, None, "melanoma_score", "non_edged_papillae", "present", "dr.a")
    store.commit_initial_assessment(case_id, "dr.a")


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_committed_initial_assessment_cannot_be_rewritten_with_raw_sql(tmp_path: Path) -> None:
    db = tmp_path / "cases.sqlite3"
    with CaseStore(db) as store:
        _committed_case(store)
    raw = _raw(db)
    for sql in (
        "UPDATE assessments SET diagnosis='melanoma' WHERE stage='initial'",
        "DELETE FROM assessments WHERE stage='initial'",
        "UPDATE answers SET value='absent' WHERE stage='initial'",
        "DELETE FROM answers WHERE stage='initial'",
        "DELETE FROM cases",  # cascades into the frozen initial assessment
        "INSERT INTO answers VALUES ('C-1','initial','melanoma_score','x','present','t')",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="committed"):
            raw.execute(sql)
    raw.close()
    with CaseStore(db) as store:
        case = store.get_case("C-1")
        assert case.initial.diagnosis == "naevus"
        assert case.initial.answer("melanoma_score", "non_edged_papillae") == "present"
        # the revised assessment stays editable
        store.update_assessment_fields("C-1", None, "dr.a", diagnosis="melanoma")
        assert store.get_case("C-1").revised.diagnosis == "melanoma"


def test_dropped_triggers_are_restored_at_open_with_a_warning(tmp_path: Path) -> None:
    db = tmp_path / "cases.sqlite3"
    with CaseStore(db) as store:
        _committed_case(store)
        assert store.startup_warning is None
    raw = _raw(db)
    raw.execute("DROP TRIGGER committed_initial_is_frozen_update")
    raw.execute("DROP TRIGGER audit_is_append_only_delete")
    raw.execute("DROP TRIGGER audit_chain_is_append_only_update")
    raw.execute(  # a look-alike that does nothing
        "CREATE TRIGGER audit_chain_is_append_only_update BEFORE UPDATE ON audit_chain "
        "BEGIN SELECT 1; END"
    )
    raw.close()
    with CaseStore(db) as store:
        warning = store.startup_warning or ""
        assert "committed_initial_is_frozen_update" in warning
        assert "audit_is_append_only_delete" in warning
        assert "audit_chain_is_append_only_update" in warning
        assert store.full_check() == []
    raw = _raw(db)
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE assessments SET diagnosis='melanoma' WHERE stage='initial'")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE audit_chain SET row_hash = 'x'")
    raw.close()


@pytest.mark.parametrize("attack", ["edit", "delete_middle", "delete_last", "insert"])
def test_the_audit_hash_chain_reports_edited_and_deleted_history(
    tmp_path: Path, attack: str
) -> None:
    db = tmp_path / "cases.sqlite3"
    with CaseStore(db) as store:
        _committed_case(store)
        _committed_case(store, "C-2")
        assert store.full_check() == []
        n = len(store.audit_trail())
    raw = _raw(db)
    raw.execute("DROP TRIGGER audit_is_append_only_update")
    raw.execute("DROP TRIGGER audit_is_append_only_delete")
    if attack == "edit":
        raw.execute("UPDATE audit SET new_value='\"melanoma\"' WHERE entry_id = 3")
    elif attack == "delete_middle":
        raw.execute("DELETE FROM audit WHERE entry_id = 3")
    elif attack == "delete_last":
        raw.execute(f"DELETE FROM audit WHERE entry_id = {n}")
    else:
        raw.execute(
            "INSERT INTO audit (at, user_name, case_id, field, old_value, new_value) "
            "VALUES ('2025-01-01', 'x', 'C-1', 'initial.diagnosis', NULL, '\"bcc\"')"
        )
    raw.close()
    with CaseStore(db) as store:
        assert store.startup_warning and "audit_is_append_only_update" in store.startup_warning
        problems = store.full_check()
    assert problems, attack
    assert all(p.startswith("cases.sqlite3: ") for p in problems)
    expected = {
        "edit": "changed",
        "delete_middle": "deleted",
        "delete_last": "deleted",
        "insert": "added outside",
    }[attack]
    assert expected in " ".join(problems)


def _flip_index_byte(db: Path) -> None:
    """Change one byte of an index key (the probe that ``quick_check`` lets through)."""
    raw = _raw(db)
    page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    root = raw.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_cases_1'"
    ).fetchone()[0]
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    page = data[start : start + page_size]
    offset = page.find(b"C-0007")
    assert offset > 0
    data[start + offset + 5] ^= 0x01
    db.write_bytes(bytes(data))


def test_full_check_finds_a_damaged_index_and_a_backup_restores_it(tmp_path: Path) -> None:
    db = tmp_path / "cases.sqlite3"
    with CaseStore(db) as store:
        for i in range(20):
            store.create_case(user="dr.a", reader_mode="ai_visible", case_id=f"C-{i:04d}")
        backup = store.backup_now(keep=3)
        assert store.backup_if_changed(keep=3) is None  # nothing changed since
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    _flip_index_byte(db)
    with CaseStore(db) as store:
        problems = store.full_check()
        assert problems and "damaged" in problems[0]
        used = store.restore_newest_good_backup()
        assert used == backup
        assert store.moved_aside_path is not None and store.moved_aside_path.exists()
        assert store.full_check() == []
        assert len(store.search()) == 20


def test_backups_rotate_and_a_damaged_one_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "cases.sqlite3"
    with CaseStore(db) as store:
        store.create_case(user="dr.a", reader_mode="ai_visible", case_id="C-1")
        first = store.backup_now(keep=2)
        store.create_case(user="dr.a", reader_mode="ai_visible", case_id="C-2")
        second = store.backup_if_changed(keep=2)
        store.create_case(user="dr.a", reader_mode="ai_visible", case_id="C-3")
        third = store.backup_if_changed(keep=2)
        assert second is not None and third is not None
        assert store.backups() == [third, second] and not first.exists()
        third.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # damaged newest backup
        store.create_case(user="dr.a", reader_mode="ai_visible", case_id="C-4")
        assert store.restore_newest_good_backup() == second
        assert {c.case_id for c in store.search()} == {"C-1", "C-2"}


def test_no_good_backup_is_one_clear_error(tmp_path: Path) -> None:
    with (
        CaseStore(tmp_path / "cases.sqlite3") as store,
        pytest.raises(CaseStoreError, match="No good backup"),
    ):
        store.restore_newest_good_backup()


def test_database_and_its_journal_are_private(tmp_path: Path) -> None:
    db = tmp_path / "data" / "cases.sqlite3"
    with CaseStore(db) as store:
        store.create_case(user="dr.a", reader_mode="ai_visible", case_id="C-1")
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    db.chmod(0o644)  # a database from an older release
    with CaseStore(db):
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
