"""Tamper evidence, full integrity checks and rotating backups for the case database.

Why it is shaped so:

* **Protective triggers** (append-only audit and hash chain, frozen committed initial
  assessments and their answers) are declared here once, as ``(name, sql)``. The
  ``integrity`` migration creates them and every open compares ``sqlite_master`` with
  this list: a trigger that was dropped or rewritten is restored and reported in
  ``CaseStore.startup_warning``. SQL cannot run Python, so the migration only creates
  tables; the store calls :func:`ensure_protection` after migrating.
* **Hash chain** in its own table (``audit_chain``): each row's SHA-256 covers the audit
  row's content and the previous row's hash, so editing, deleting or inserting history
  with a SQLite shell is detected by :func:`verify_audit_chain`. A separate table (rather
  than a column of ``audit``) lets rows written before this release be chained once
  without lifting the append-only triggers. Limits, said plainly: someone who has the
  file and this source can recompute the whole chain; the chain makes silent edits
  detectable, not impossible (a key outside the file would be needed for that).
* **Full check** (``PRAGMA integrity_check`` + triggers + chain) is slower than the
  ``quick_check`` at open (it reads every index), so :func:`full_check` is meant to run
  in a worker after the window shows.
* **Backups** through SQLite's online backup API (consistent while the store is in use,
  WAL included), written 0600 in ``backups/`` next to the database, newest K kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

GENESIS_HASH = "0" * 64
BACKUP_FOLDER = "backups"

#: The triggers that protect clinical history, in the exact SQL the store (re)creates.
PROTECTIVE_TRIGGERS: tuple[tuple[str, str], ...] = (
    (
        "audit_is_append_only_update",
        "CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: rows cannot be changed'); END",
    ),
    (
        "audit_is_append_only_delete",
        "CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: rows cannot be deleted'); END",
    ),
    (
        "audit_chain_is_append_only_update",
        "CREATE TRIGGER audit_chain_is_append_only_update BEFORE UPDATE ON audit_chain "
        "BEGIN SELECT RAISE(ABORT, 'audit hash chain is append-only'); END",
    ),
    (
        "audit_chain_is_append_only_delete",
        "CREATE TRIGGER audit_chain_is_append_only_delete BEFORE DELETE ON audit_chain "
        "BEGIN SELECT RAISE(ABORT, 'audit hash chain is append-only'); END",
    ),
    (
        "committed_initial_is_frozen_update",
        "CREATE TRIGGER committed_initial_is_frozen_update BEFORE UPDATE ON assessments "
        "WHEN OLD.stage = 'initial' AND OLD.committed_at IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'a committed initial assessment cannot be changed'); END",
    ),
    (
        "committed_initial_is_frozen_delete",
        "CREATE TRIGGER committed_initial_is_frozen_delete BEFORE DELETE ON assessments "
        "WHEN OLD.stage = 'initial' AND OLD.committed_at IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'a committed initial assessment cannot be deleted'); END",
    ),
    (
        "committed_case_is_kept",
        "CREATE TRIGGER committed_case_is_kept BEFORE DELETE ON cases "
        "WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.case_id = OLD.case_id "
        "AND a.stage = 'initial' AND a.committed_at IS NOT NULL) "
        "BEGIN SELECT RAISE(ABORT, 'a case with a committed assessment cannot be deleted'); END",
    ),
    (
        "committed_initial_answers_frozen_insert",
        "CREATE TRIGGER committed_initial_answers_frozen_insert BEFORE INSERT ON answers "
        "WHEN NEW.stage = 'initial' AND EXISTS (SELECT 1 FROM assessments a WHERE "
        "a.case_id = NEW.case_id AND a.stage = 'initial' AND a.committed_at IS NOT NULL) "
        "BEGIN SELECT RAISE(ABORT, 'answers of a committed initial assessment are frozen'); END",
    ),
    (
        "committed_initial_answers_frozen_update",
        "CREATE TRIGGER committed_initial_answers_frozen_update BEFORE UPDATE ON answers "
        "WHEN OLD.stage = 'initial' AND EXISTS (SELECT 1 FROM assessments a WHERE "
        "a.case_id = OLD.case_id AND a.stage = 'initial' AND a.committed_at IS NOT NULL) "
        "BEGIN SELECT RAISE(ABORT, 'answers of a committed initial assessment are frozen'); END",
    ),
    (
        "committed_initial_answers_frozen_delete",
        "CREATE TRIGGER committed_initial_answers_frozen_delete BEFORE DELETE ON answers "
        "WHEN OLD.stage = 'initial' AND EXISTS (SELECT 1 FROM assessments a WHERE "
        "a.case_id = OLD.case_id AND a.stage = 'initial' AND a.committed_at IS NOT NULL) "
        "BEGIN SELECT RAISE(ABORT, 'answers of a committed initial assessment are frozen'); END",
    ),
)


def _normalise_sql(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").lower()


def ensure_protection(conn: sqlite3.Connection) -> list[str]:
    """Recreate every protective trigger that is missing or altered; say which ones.

    Runs in its own transaction. Also chains audit rows written before the chain existed
    (once: afterwards an unchained row is reported by :func:`verify_audit_chain`).
    """
    restored: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        present = {
            row[0]: row[1]
            for row in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        }
        for name, sql in PROTECTIVE_TRIGGERS:
            current = present.get(name)
            if current is not None and _normalise_sql(current) == _normalise_sql(sql):
                continue
            if current is not None:
                conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(sql)
            restored.append(name)
        sealed = conn.execute(
            "SELECT value FROM integrity_meta WHERE key = 'legacy_audit_chained'"
        ).fetchone()
        if sealed is None:
            _chain_rows(
                conn,
                conn.execute(
                    "SELECT entry_id, at, user_name, case_id, field, old_value, new_value "
                    "FROM audit WHERE entry_id NOT IN (SELECT entry_id FROM audit_chain) "
                    "ORDER BY entry_id"
                ).fetchall(),
            )
            conn.execute(
                "INSERT INTO integrity_meta (key, value) VALUES ('legacy_audit_chained', '1')"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return restored


def row_hash(previous: str, row: Iterable[object]) -> str:
    """SHA-256 over the previous hash and the audit row's fields (NULL kept apart from '')."""
    digest = hashlib.sha256(previous.encode("ascii"))
    for value in row:
        text = "\x00NULL" if value is None else str(value)
        digest.update(b"\x1f" + text.encode("utf-8"))
    return digest.hexdigest()


def _last_hash(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT row_hash FROM audit_chain ORDER BY entry_id DESC LIMIT 1").fetchone()
    return str(row[0]) if row else GENESIS_HASH


def _chain_rows(conn: sqlite3.Connection, rows: list[sqlite3.Row | tuple]) -> None:
    previous = _last_hash(conn)
    for row in rows:
        values = tuple(row)
        previous = row_hash(previous, values)
        conn.execute(
            "INSERT INTO audit_chain (entry_id, row_hash) VALUES (?, ?)", (values[0], previous)
        )


def chain_new_audit_row(conn: sqlite3.Connection, entry_id: int) -> None:
    """Extend the chain by one freshly inserted audit row (inside the writing transaction)."""
    row = conn.execute(
        "SELECT entry_id, at, user_name, case_id, field, old_value, new_value "
        "FROM audit WHERE entry_id = ?",
        (entry_id,),
    ).fetchone()
    _chain_rows(conn, [row])


def verify_audit_chain(conn: sqlite3.Connection, *, max_problems: int = 5) -> list[str]:
    """One line per break of the chain: an edited, deleted or inserted audit row."""
    problems: list[str] = []
    previous = GENESIS_HASH
    query = (
        "SELECT a.entry_id, a.at, a.user_name, a.case_id, a.field, a.old_value, a.new_value, "
        "c.row_hash, c.entry_id FROM audit a LEFT JOIN audit_chain c USING (entry_id) "
        "UNION ALL SELECT c.entry_id, NULL, NULL, NULL, NULL, NULL, NULL, c.row_hash, -1 "
        "FROM audit_chain c WHERE c.entry_id NOT IN (SELECT entry_id FROM audit) "
        "ORDER BY 1"
    )
    for row in conn.execute(query):
        entry_id, stored, chained = row[0], row[7], row[8]
        if chained == -1:
            problems.append(f"audit entry {entry_id} was deleted from the history")
            previous = stored
        elif chained is None:
            problems.append(f"audit entry {entry_id} was added outside rcm-viewer (not chained)")
        else:
            expected = row_hash(previous, row[:7])
            if expected != stored:
                problems.append(
                    f"audit entry {entry_id} (case {row[3]}) was changed after it was written"
                )
            previous = stored
        if len(problems) >= max_problems:
            break
    if not problems:
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
        top = conn.execute("SELECT max(entry_id) FROM audit_chain").fetchone()[0] or 0
        if seq is not None and int(seq[0]) > top:
            problems.append(f"the newest audit entries (after entry {top}) were deleted")
    return problems


def integrity_problems(conn: sqlite3.Connection, *, max_rows: int = 5) -> list[str]:
    """``PRAGMA integrity_check`` (reads every page and index): one line per problem."""
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA integrity_check({int(max_rows)})")]
    if rows == ["ok"]:
        return []
    return [" ".join(r.replace("*** in database main ***", "").split())[:200] for r in rows]


def missing_triggers(conn: sqlite3.Connection) -> list[str]:
    present = {
        row[0]: row[1]
        for row in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    }
    return [
        name
        for name, sql in PROTECTIVE_TRIGGERS
        if name not in present or _normalise_sql(present[name]) != _normalise_sql(sql)
    ]


# ---------------------------------------------------------------------- backups

_BACKUP_NAME = re.compile(r"^(?P<stem>.+)-backup-(?P<stamp>\d{8}T\d{6}\d{6})\.sqlite3$")


def backup_folder(db_path: Path) -> Path:
    return db_path.parent / BACKUP_FOLDER


def list_backups(db_path: Path) -> list[Path]:
    """Backups of this database, newest first."""
    folder = backup_folder(db_path)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _BACKUP_NAME.match(entry.name)
        if match and match["stem"] == db_path.stem and entry.is_file():
            found.append((match["stamp"], entry))
    return [path for _, path in sorted(found, reverse=True)]


def write_backup(conn: sqlite3.Connection, db_path: Path, *, keep: int) -> Path:
    """Copy the live database with the online backup API; keep the newest ``keep``."""
    folder = backup_folder(db_path)
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = folder / f"{db_path.stem}-backup-{stamp}.sqlite3"
    part = target.with_suffix(".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        dest = sqlite3.connect(part)
        try:
            conn.backup(dest)
            dest.execute("PRAGMA journal_mode = DELETE")
        finally:
            dest.close()
        os.chmod(part, 0o600)
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    for old in list_backups(db_path)[max(1, keep) :]:
        old.unlink(missing_ok=True)
    return target


def backup_is_good(path: Path) -> bool:
    """A backup opens read-only, passes ``integrity_check`` and its audit chain holds."""
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        if integrity_problems(conn, max_rows=1):
            return False
        has_chain = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'audit_chain'"
        ).fetchone()
        return not (has_chain and verify_audit_chain(conn, max_problems=1))
    except sqlite3.Error:
        return False
    finally:
        conn.close()
