"""The window checks the case database in full after it shows, backs it up, and offers
to restore the newest good backup when the check finds damage (issue 16, finding 6)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox
from test_cases_integrity import _flip_index_byte

from rcm_viewer.cases import CaseStore


def test_a_healthy_database_is_backed_up_after_the_window_shows(qtbot, make_window, tmp_path):
    store = CaseStore(tmp_path / "cases.sqlite3")
    store.create_case(user="dr.a", reader_mode="ai_visible", case_id="C-0001")
    window = make_window(store)
    qtbot.waitUntil(lambda: window.store_care.problems is not None, timeout=30000)
    assert window.store_care.problems == []
    qtbot.waitUntil(lambda: bool(store.backups()), timeout=30000)
    store.close()


def test_damage_found_after_start_offers_the_newest_good_backup(qtbot, make_window, tmp_path: Path):
    db = tmp_path / "cases.sqlite3"
    with CaseStore(db) as store:
        for i in range(20):
            store.create_case(user="dr.a", reader_mode="ai_visible", case_id=f"C-{i:04d}")
        good = store.backup_now(keep=3)
    _flip_index_byte(db)  # passes quick_check at open, fails the full check
    store = CaseStore(db)
    window = make_window(store)
    care = window.store_care
    qtbot.waitUntil(lambda: care.problems is not None, timeout=30000)
    assert care.problems and "damaged" in care.problems[0]
    box: QMessageBox = care.damage_box
    assert "Restore the newest good backup" in box.text()
    restore = next(b for b in box.buttons() if b.text() == "Restore newest good backup")
    restore.click()
    assert store.moved_aside_path is not None and store.moved_aside_path.exists()
    assert store.full_check() == [] and len(store.search()) == 20
    assert good.exists()
    store.close()
