"""The case store: one SQLite file holding cases, assessments, AI results and the audit trail.

Design choices, and why:

* **Every edit is its own transaction** (``BEGIN IMMEDIATE`` ... ``COMMIT``),
  with its audit rows in the same transaction. The assessment form saves on
  every change, so a crash or power cut loses at most the change being made,
  and a change is never saved without its audit row (or the reverse).
* **WAL journal with ``synchronous=FULL``.** WAL lets a reader (a second
  window, the report CLI) read while the form writes. NORMAL would already
  survive an application crash, but after a power cut it may drop the last
  commits, i.e. answers the reader saw as saved. Edits are human-paced (one a
  second at most), so the extra fsync per commit (a few ms) costs nothing a
  person can notice, and FULL makes every committed answer durable.
* **One connection, shared by threads, behind a lock** (``check_same_thread=
  False`` + ``threading.RLock``). The GUI thread makes small writes; a worker
  may save an AI result. Serialising them in-process is simpler than a
  connection per thread and can never deadlock two of our own connections on
  SQLite's write lock. Other processes are handled by SQLite's locking and a
  busy timeout.
* **Reader-first rule in the engine**: in ``reader_first`` mode an AI result
  may be stored at once, but ``get_case`` hands it out only after the initial
  (unaided) assessment is committed, so no widget can show it early by
  mistake.
* **Bad files at open.** A damaged database (not SQLite, failing
  ``PRAGMA quick_check``) is moved aside as
  ``cases.corrupt-YYYYmmddTHHMMSS.sqlite3`` (UTC time; with its -wal/-shm
  files, never overwriting anything), a new database is started and
  ``startup_warning`` says so for the UI. A database from a *newer* release is
  not damaged: it is left untouched and opening raises ``CaseStoreError`` (moving
  it aside would split the clinic's records across two files). A read-only
  database or folder raises ``CaseStoreError`` at open, in one line: a form
  that saves on every change must not find out at the first click that nothing
  can be saved.
* **Append-only audit**: triggers abort any UPDATE or DELETE of audit rows, and
  of committed initial assessments and their answers. Every open checks that
  each protective trigger is present and unaltered (restores it and says so in
  ``startup_warning``); the audit rows are hash-chained, so ``full_check()``
  reports history edited or deleted with a SQLite shell (see ``integrity.py``
  for what this can and cannot prove). ``backup_now``/``backup_if_changed``
  keep rotating online backups; ``restore_newest_good_backup`` recovers.
  Navigation (``save_view_state``) is not audited: it changes on every pan and
  is not clinical data.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from rcm_viewer.cases import integrity
from rcm_viewer.cases.checklists import (
    ANSWER_VALUES,
    Checklist,
    builtin_checklists,
    load_checklists,
    score_answers,
)
from rcm_viewer.cases.records import (
    ASSESSMENT_FIELDS,
    DIAGNOSES,
    HISTOLOGY_DIAGNOSES,
    MANAGEMENTS,
    READER_MODES,
    STAGES,
    AIResult,
    Assessment,
    AuditEntry,
    CaseRecord,
    CaseSummary,
    Heatmap,
    Stage,
    check_choice,
    check_confidence,
    check_sha256,
    from_iso,
    to_iso,
    utc_now,
)
from rcm_viewer.cases.schema import MIGRATIONS, SCHEMA_VERSION
from rcm_viewer.errors import CaseStoreError

DB_FILENAME = "cases.sqlite3"
_SQLITE_HEADER = b"SQLite format 3\x00"
_CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
)
#: Case header fields that ``update_case_fields`` may change (reader mode is fixed at creation).
CASE_FIELDS: tuple[str, ...] = (
    "patient_pseudonym",
    "mosaic_path",
    "mosaic_sha256",
    "pixel_size_um",
    "lesion_site",
)
#: Histology fields that ``update_histology`` may change.
HISTOLOGY_FIELDS: tuple[str, ...] = ("diagnosis", "date", "report_number", "detail")
EXPORT_FORMAT = "rcm-viewer.case"
EXPORT_FORMAT_VERSION = 1


def default_db_path() -> Path:
    """``user_data_dir()/cases.sqlite3`` (``RCM_VIEWER_DATA_DIR`` overrides the folder)."""
    from rcm_viewer.paths import user_data_dir

    return user_data_dir() / DB_FILENAME


def _make_private(path: Path) -> None:
    """Create the database file 0600 (SQLite gives -wal/-shm the same mode); tighten it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for side in ("-wal", "-shm"):
        with suppress(OSError):
            companion = Path(f"{path}{side}")
            if companion.exists() and companion.stat().st_uid == os.getuid():
                os.chmod(companion, 0o600)


class _DamagedDatabase(Exception):
    """Internal: the file at the database path is not a usable SQLite database."""


def _error_name(exc: sqlite3.Error) -> str:
    return getattr(exc, "sqlite_errorname", "") or ""


def _is_damage(exc: sqlite3.Error) -> bool:
    name = _error_name(exc)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _reason(exc: sqlite3.Error) -> str:
    """Turn a SQLite error into words a clinician (or their IT support) can act on."""
    name = _error_name(exc)
    if name.startswith("SQLITE_FULL"):
        return "the disk is full"
    if name.startswith("SQLITE_READONLY"):
        return "the case database is read-only"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "the case database is busy (another rcm-viewer is saving); try again"
    if name.startswith("SQLITE_IOERR"):
        return "the disk reported an error while writing"
    if _is_damage(exc):
        return "the case database is damaged; restart rcm-viewer to recover"
    return str(exc)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=False, sort_keys=True)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _pack_ai_flags(result: AIResult) -> list[Any]:
    """The flags column: the caveat strings, plus one {"ood_score", "in_distribution"}
    object when the model had an OOD check (kept in this JSON column: no schema change)."""
    packed: list[Any] = list(result.flags)
    if result.ood_score is not None or result.in_distribution is not None:
        packed.append({"ood_score": result.ood_score, "in_distribution": result.in_distribution})
    return packed


def _unpack_ai_flags(items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"flags": tuple(i for i in items if isinstance(i, str))}
    for item in items:
        if isinstance(item, dict):
            out["ood_score"] = item.get("ood_score")
            out["in_distribution"] = item.get("in_distribution")
    return out


def _check_text(name: str, value: Any, *, allow_none: bool = True, max_chars: int = 10_000) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise CaseStoreError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > max_chars:
        raise CaseStoreError(f"{name} is longer than {max_chars} characters")


def _day(text: str | None) -> date | None:
    """A stored ISO calendar day (``YYYY-MM-DD``), or None."""
    return date.fromisoformat(text) if text else None


def _check_user(user: Any) -> str:
    if not isinstance(user, str) or not user.strip():
        raise CaseStoreError("every change needs the name of the user who made it")
    return user.strip()


def _local_day_start(day: date) -> datetime:
    """Midnight of a calendar day in the machine's time zone: readers think in local dates."""
    return datetime.combine(day, time.min).astimezone()


def _moment(value: date | datetime, *, end: bool) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.astimezone()
    else:
        moment = _local_day_start(value + timedelta(days=1) if end else value)
    return to_iso(moment.astimezone(UTC)) or ""


class CaseStore:
    """Cases, assessments and their audit trail in one SQLite file, saved on every change.

    Use as a context manager or call :meth:`close`. Every method that changes
    something takes ``user`` (who made the change, for the audit trail) and
    returns the fresh state, so a form can redraw from what was saved.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        checklists: Mapping[str, Checklist] | None = None,
        clock: Callable[[], datetime] = utc_now,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if path is None:
            from rcm_viewer.paths import DataFolderError

            try:
                path = default_db_path()
            except DataFolderError as exc:
                raise CaseStoreError(str(exc)) from None
        self.path = Path(path).absolute()
        self.startup_warning: str | None = None
        self.moved_aside_path: Path | None = None
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._backup_changes = -1
        warnings: list[str] = []
        if checklists is None:
            try:
                checklists = load_checklists()
            except CaseStoreError as exc:
                checklists = builtin_checklists()
                warnings.append(f"{exc}. The built-in checklists are used instead.")
        self.checklists: dict[str, Checklist] = dict(checklists)

        self._check_writable()
        try:
            conn = self._open_checked()
        except _DamagedDatabase as damage:
            aside = self._move_aside()
            self.moved_aside_path = aside
            warnings.insert(
                0,
                f"The case database {self.path.name} was damaged ({damage}). It was kept as "
                f"{aside.name} in {aside.parent} and a new, empty case database was started; "
                "ask your IT support to recover cases from the kept file.",
            )
            try:
                conn = self._open_checked()
            except _DamagedDatabase as again:  # pragma: no cover - a fresh file is never damaged
                raise CaseStoreError(f"Cannot start a new case database: {again}") from again
        self._conn = conn
        try:
            self._configure()
            self._migrate()
            warnings.extend(self._check_protection())
        except BaseException:
            self.close()
            raise
        self.startup_warning = " ".join(warnings) or None

    # ------------------------------------------------------------------ opening

    def _check_writable(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CaseStoreError(
                f"Cannot create the case folder {folder} ({exc.strerror}): create it yourself "
                "or set RCM_VIEWER_DATA_DIR to a folder you can write"
            ) from exc
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise CaseStoreError(
                f"Cannot save cases: {self.path} is read-only; make it writable or set "
                "RCM_VIEWER_DATA_DIR to a writable folder"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise CaseStoreError(
                f"Cannot save cases: the folder {folder} is read-only; make it writable or set "
                "RCM_VIEWER_DATA_DIR to a writable folder"
            )

    def _open_checked(self) -> sqlite3.Connection:
        """Open the file and prove it is a healthy case database this code understands."""
        try:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size:
                with self.path.open("rb") as handle:
                    if handle.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                        raise _DamagedDatabase("it is not a SQLite database")
            _make_private(self.path)
        except OSError as exc:
            raise CaseStoreError(f"Cannot read {self.path}: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise CaseStoreError(f"Cannot open {self.path}: {_reason(exc)}") from exc
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                detail = " ".join(str(problems[0]).replace("*** in database main ***", "").split())
                raise _DamagedDatabase(f"integrity check failed: {detail[:160]}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CaseStoreError(
                    f"{self.path} was written by a newer rcm-viewer (case database version "
                    f"{version}; this one knows up to {SCHEMA_VERSION}): update rcm-viewer"
                )
            if version == 0:
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                ).fetchone()[0]
                if tables:
                    raise CaseStoreError(
                        f"{self.path} is a SQLite database of another program, not an "
                        "rcm-viewer case database"
                    )
        except sqlite3.Error as exc:
            conn.close()
            if _is_damage(exc):
                raise _DamagedDatabase(str(exc)) from exc
            raise CaseStoreError(f"Cannot open {self.path}: {_reason(exc)}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        """Rename the damaged file (and its -wal/-shm) out of the way, never overwriting.

        The -wal must travel with it: SQLite would otherwise replay the damaged
        database's log into the new, empty one.
        """
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        stem, suffix = self.path.stem, self.path.suffix
        for attempt in range(1, 1000):
            extra = "" if attempt == 1 else f"-{attempt}"
            target = self.path.with_name(f"{stem}.corrupt-{stamp}{extra}{suffix}")
            companions = [Path(f"{target}{side}") for side in ("-wal", "-shm", "-journal")]
            if not target.exists() and not any(p.exists() for p in companions):
                break
        else:  # pragma: no cover - a thousand damaged files in one second
            raise CaseStoreError(f"Cannot move the damaged {self.path.name} aside")
        try:
            os.rename(self.path, target)
            for side in ("-wal", "-shm", "-journal"):
                companion = Path(f"{self.path}{side}")
                if companion.exists():
                    os.rename(companion, Path(f"{target}{side}"))
        except OSError as exc:
            raise CaseStoreError(
                f"The case database {self.path} is damaged and cannot be moved aside: "
                f"{exc.strerror}"
            ) from exc
        return target

    def _configure(self) -> None:
        conn = self._connection()
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise CaseStoreError(f"Cannot open {self.path}: {_reason(exc)}") from exc
        if str(mode).lower() != "wal":
            raise CaseStoreError(
                f"Cannot use {self.path}: its folder does not support SQLite's WAL journal "
                "(a network drive?); choose a local folder with RCM_VIEWER_DATA_DIR"
            )

    def _migrate(self) -> None:
        """Bring the schema up to date, one migration per transaction."""
        conn = self._connection()
        for migration in MIGRATIONS:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    current = conn.execute("PRAGMA user_version").fetchone()[0]
                    if current < migration.version:
                        for statement in migration.statements:
                            conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise CaseStoreError(
                    f"Cannot update {self.path} to case database version {migration.version}: "
                    f"{_reason(exc)}"
                ) from exc

    # ------------------------------------------------------------------ plumbing

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CaseStoreError(f"The case database {self.path.name} is closed")
        return self._conn

    def _now(self) -> str:
        moment = self._clock()
        if moment.tzinfo is None:
            raise CaseStoreError("the store's clock must return timezone-aware times")
        return to_iso(moment) or ""

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One edit = one immediate transaction; SQLite errors become readable CaseStoreErrors."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise CaseStoreError(f"Could not save {action}: {_reason(exc)}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise CaseStoreError(f"Could not save {action}: {_reason(exc)}") from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so a record is never assembled from two different commits."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CaseStoreError(f"Could not read {self.path.name}: {_reason(exc)}") from exc

    @staticmethod
    def _audit(
        conn: sqlite3.Connection,
        at: str,
        user: str,
        case_id: str,
        field: str,
        old_value: Any,
        new_value: Any,
    ) -> None:
        cursor = conn.execute(
            "INSERT INTO audit (at, user_name, case_id, field, old_value, new_value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, user, case_id, field, _json(old_value), _json(new_value)),
        )
        integrity.chain_new_audit_row(conn, int(cursor.lastrowid or 0))

    def _case_row(self, conn: sqlite3.Connection, case_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise CaseStoreError(f"Case {case_id!r} is not in {self.path.name}")
        return row

    def _writable_stage(self, conn: sqlite3.Connection, case_id: str, stage: Stage | None) -> str:
        """Resolve ``stage`` (None = the one a form edits now) and refuse locked stages."""
        self._case_row(conn, case_id)
        committed_at = conn.execute(
            "SELECT committed_at FROM assessments WHERE case_id = ? AND stage = 'initial'",
            (case_id,),
        ).fetchone()[0]
        if stage is None:
            return "revised" if committed_at else "initial"
        check_choice("stage", stage, STAGES)
        if stage == "initial" and committed_at:
            raise CaseStoreError(
                f"The initial assessment of case {case_id} was committed at {committed_at} "
                "and is locked; record changes in the revised assessment"
            )
        if stage == "revised" and not committed_at:
            raise CaseStoreError(
                f"Case {case_id} has no revised assessment yet: commit the initial assessment first"
            )
        return stage

    def _touch(self, conn: sqlite3.Connection, case_id: str, now: str, stage: str | None) -> None:
        conn.execute("UPDATE cases SET updated_at = ? WHERE case_id = ?", (now, case_id))
        if stage is not None:
            conn.execute(
                "UPDATE assessments SET updated_at = ? WHERE case_id = ? AND stage = ?",
                (now, case_id, stage),
            )

    # ------------------------------------------------------------------ loading

    def _load_assessment(
        self, conn: sqlite3.Connection, case_id: str, stage: str
    ) -> Assessment | None:
        row = conn.execute(
            "SELECT * FROM assessments WHERE case_id = ? AND stage = ?", (case_id, stage)
        ).fetchone()
        if row is None:
            return None
        answers: dict[str, dict[str, str]] = {}
        for checklist_id, item_id, value in conn.execute(
            "SELECT checklist_id, item_id, value FROM answers WHERE case_id = ? AND stage = ? "
            "ORDER BY checklist_id, item_id",
            (case_id, stage),
        ):
            answers.setdefault(checklist_id, {})[item_id] = value
        return Assessment(
            stage=row["stage"],
            answers=answers,
            diagnosis=row["diagnosis"],
            confidence=row["confidence"],
            management=row["management"],
            notes=row["notes"],
            lesion_site=row["lesion_site"],
            reader_name=row["reader_name"],
            created_at=from_iso(row["created_at"]),
            updated_at=from_iso(row["updated_at"]),
            committed_at=from_iso(row["committed_at"]),
        )

    @staticmethod
    def _load_ai_result(conn: sqlite3.Connection, case_id: str) -> AIResult | None:
        row = conn.execute("SELECT * FROM ai_results WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            return None
        heatmap = None
        if row["heatmap"] is not None:
            heatmap = Heatmap.from_blob(json.loads(row["heatmap_meta"]), row["heatmap"])
        return AIResult(
            model_name=row["model_name"],
            model_version=row["model_version"],
            weights_sha256=row["weights_sha256"],
            class_ids=tuple(json.loads(row["class_ids"])),
            probabilities=tuple(json.loads(row["probabilities"])),
            top_class=row["top_class"],
            created_at=from_iso(row["created_at"]) or utc_now(),
            heatmap=heatmap,
            **_unpack_ai_flags(json.loads(row["flags"])),
        )

    def _load_case(
        self, conn: sqlite3.Connection, case_id: str, include_hidden_ai: bool
    ) -> CaseRecord:
        row = self._case_row(conn, case_id)
        initial = self._load_assessment(conn, case_id, "initial")
        if initial is None:  # pragma: no cover - create_case always writes it
            raise CaseStoreError(f"Case {case_id} has no initial assessment")
        revised = self._load_assessment(conn, case_id, "revised")
        stored = (
            conn.execute("SELECT 1 FROM ai_results WHERE case_id = ?", (case_id,)).fetchone()
            is not None
        )
        visible = row["reader_mode"] == "ai_visible" or initial.committed
        reveal = stored and (visible or include_hidden_ai)
        ai_result = self._load_ai_result(conn, case_id) if reveal else None
        rois = tuple(
            json.loads(feature)
            for (feature,) in conn.execute(
                "SELECT feature FROM rois WHERE case_id = ? ORDER BY position, roi_id", (case_id,)
            )
        )
        return CaseRecord(
            case_id=row["case_id"],
            patient_pseudonym=row["patient_pseudonym"],
            reader_mode=row["reader_mode"],
            initial=initial,
            created_at=from_iso(row["created_at"]) or utc_now(),
            updated_at=from_iso(row["updated_at"]) or utc_now(),
            mosaic_path=row["mosaic_path"],
            mosaic_sha256=row["mosaic_sha256"],
            pixel_size_um=row["pixel_size_um"],
            lesion_site=row["lesion_site"],
            revised=revised,
            ai_result=ai_result,
            ai_result_stored=stored,
            histology_diagnosis=row["histology_diagnosis"],
            histology_detail=row["histology_detail"],
            histology_recorded_at=from_iso(row["histology_recorded_at"]),
            histology_date=_day(row["histology_date"]),
            histology_report_number=row["histology_report_number"],
            roi_annotations=rois,
            view_state=json.loads(row["view_state"]),
        )

    # ------------------------------------------------------------------ cases

    def create_case(
        self,
        patient_pseudonym: str = "",
        *,
        user: str,
        reader_mode: str = "reader_first",
        mosaic_path: str | Path | None = None,
        mosaic_sha256: str | None = None,
        pixel_size_um: float | None = None,
        lesion_site: str | None = None,
        case_id: str | None = None,
    ) -> CaseRecord:
        """Start a case with an empty initial assessment; the reader mode is fixed from now on.

        ``case_id`` may be the clinic's own number; otherwise one is made from the
        date and a random suffix (``C20250314-8F3A2C``).
        """
        user = _check_user(user)
        check_choice("reader mode", reader_mode, READER_MODES)
        _check_text("patient pseudonym", patient_pseudonym, allow_none=False, max_chars=200)
        _check_text("lesion site", lesion_site, max_chars=200)
        check_sha256("mosaic sha256", mosaic_sha256)
        self._check_pixel_size(pixel_size_um)
        if case_id is not None and (
            not isinstance(case_id, str) or not _CASE_ID_PATTERN.match(case_id)
        ):
            raise CaseStoreError(
                f"Case id {case_id!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        path_text = None if mosaic_path is None else str(mosaic_path)
        now = self._now()
        with self._write("the new case") as conn:
            if case_id is None:
                stamp = from_iso(now) or utc_now()
                while True:
                    case_id = f"C{stamp:%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"
                    if not conn.execute(
                        "SELECT 1 FROM cases WHERE case_id = ?", (case_id,)
                    ).fetchone():
                        break
            elif conn.execute("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone():
                raise CaseStoreError(f"Case {case_id} already exists")
            conn.execute(
                "INSERT INTO cases (case_id, patient_pseudonym, mosaic_path, mosaic_sha256, "
                "pixel_size_um, lesion_site, reader_mode, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case_id,
                    patient_pseudonym,
                    path_text,
                    mosaic_sha256,
                    pixel_size_um,
                    lesion_site,
                    reader_mode,
                    now,
                    now,
                ),
            )
            conn.execute(
                "INSERT INTO assessments (case_id, stage, lesion_site, reader_name, "
                "created_at, updated_at) VALUES (?, 'initial', ?, ?, ?, ?)",
                (case_id, lesion_site, user, now, now),
            )
            header = {
                "patient_pseudonym": patient_pseudonym,
                "reader_mode": reader_mode,
                "mosaic_path": path_text,
                "mosaic_sha256": mosaic_sha256,
                "pixel_size_um": pixel_size_um,
                "lesion_site": lesion_site,
            }
            self._audit(conn, now, user, case_id, "case.created", None, header)
        return self.get_case(case_id)

    @staticmethod
    def _check_pixel_size(pixel_size_um: Any) -> None:
        if pixel_size_um is None:
            return
        if (
            isinstance(pixel_size_um, bool)
            or not isinstance(pixel_size_um, int | float)
            or not math.isfinite(pixel_size_um)
            or pixel_size_um <= 0
        ):
            raise CaseStoreError(f"pixel size {pixel_size_um!r} µm must be a positive number")

    def update_case_fields(self, case_id: str, user: str, **fields: Any) -> CaseRecord:
        """Edit the case header (pseudonym, mosaic path/hash, pixel size, lesion site)."""
        user = _check_user(user)
        unknown = sorted(set(fields) - set(CASE_FIELDS))
        if unknown:
            raise CaseStoreError(
                f"Cannot edit {', '.join(unknown)} of a case; editable: {', '.join(CASE_FIELDS)}"
            )
        if "mosaic_path" in fields and fields["mosaic_path"] is not None:
            fields["mosaic_path"] = str(fields["mosaic_path"])
        for name in ("patient_pseudonym", "lesion_site", "mosaic_path"):
            if name in fields:
                limit = 4096 if name == "mosaic_path" else 200
                allow_none = name != "patient_pseudonym"
                _check_text(
                    name.replace("_", " "), fields[name], allow_none=allow_none, max_chars=limit
                )
        if "mosaic_sha256" in fields:
            check_sha256("mosaic sha256", fields["mosaic_sha256"])
        if "pixel_size_um" in fields:
            self._check_pixel_size(fields["pixel_size_um"])
        now = self._now()
        with self._write(f"case {case_id}") as conn:
            row = self._case_row(conn, case_id)
            changed = False
            for name, value in fields.items():
                if row[name] == value:
                    continue
                conn.execute(f"UPDATE cases SET {name} = ? WHERE case_id = ?", (value, case_id))
                self._audit(conn, now, user, case_id, f"case.{name}", row[name], value)
                changed = True
            if changed:
                self._touch(conn, case_id, now, None)
        return self.get_case(case_id)

    def get_case(self, case_id: str, *, include_hidden_ai: bool = False) -> CaseRecord:
        """The saved state of a case.

        In ``reader_first`` mode the AI result is left out until the initial
        assessment is committed; ``include_hidden_ai=True`` is for reports and
        exports made by someone other than the reader.
        """
        with self._read() as conn:
            return self._load_case(conn, case_id, include_hidden_ai)

    def find_by_mosaic_sha256(self, mosaic_sha256: str) -> list[CaseRecord]:
        """Cases made from this exact mosaic file, oldest first (a moved file still matches)."""
        with self._read() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT case_id FROM cases WHERE mosaic_sha256 = ? ORDER BY created_at",
                    (mosaic_sha256,),
                )
            ]
            return [self._load_case(conn, case_id, False) for case_id in ids]

    def search(
        self,
        text: str | None = None,
        diagnosis: str | None = None,
        date_from: date | datetime | None = None,
        date_to: date | datetime | None = None,
        *,
        limit: int = 1000,
        include_untouched: bool = True,
    ) -> list[CaseSummary]:
        """Find cases, most recently edited first.

        A case is *touched* once the reader recorded anything in it (an answer, a
        diagnosis, notes, a pseudonym or lesion site, an annotation, a histology) or an AI
        result was stored; ``include_untouched=False`` leaves out mosaics that were only
        looked at (opening a file starts its case, so demos would fill the list).

        ``text`` matches part of the case id or patient pseudonym (any case);
        ``diagnosis`` matches the initial, revised or histology diagnosis;
        ``date_from``/``date_to`` bound the creation time, both inclusive. A
        plain date means that whole local calendar day.
        """
        check_choice("diagnosis", diagnosis, DIAGNOSES)
        clauses: list[str] = []
        params: list[Any] = []
        if text:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text.strip()) + "%"
            clauses.append(
                "(c.case_id LIKE ? ESCAPE '\\' OR c.patient_pseudonym LIKE ? ESCAPE '\\')"
            )
            params += [pattern, pattern]
        if diagnosis:
            clauses.append("? IN (i.diagnosis, r.diagnosis, c.histology_diagnosis)")
            params.append(diagnosis)
        if date_from is not None:
            clauses.append("c.created_at >= ?")
            params.append(_moment(date_from, end=False))
        if date_to is not None:
            if isinstance(date_to, datetime):
                clauses.append("c.created_at <= ?")
            else:
                clauses.append("c.created_at < ?")
            params.append(_moment(date_to, end=True))
        touched = (
            "(i.diagnosis IS NOT NULL OR i.notes != '' OR i.committed_at IS NOT NULL "
            "OR r.case_id IS NOT NULL OR c.patient_pseudonym != '' "
            "OR COALESCE(c.lesion_site, '') != '' "
            "OR c.histology_diagnosis IS NOT NULL OR a.case_id IS NOT NULL "
            "OR EXISTS (SELECT 1 FROM answers x WHERE x.case_id = c.case_id) "
            "OR EXISTS (SELECT 1 FROM rois o WHERE o.case_id = c.case_id))"
        )
        if not include_untouched:
            clauses.append(touched)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            "SELECT c.case_id, c.patient_pseudonym, c.lesion_site, c.reader_mode, "
            "c.created_at, c.updated_at, c.histology_diagnosis, c.mosaic_path, "
            "i.diagnosis AS initial_diagnosis, i.committed_at, "
            f"r.diagnosis AS revised_diagnosis, a.case_id IS NOT NULL AS ai_stored, "
            f"{touched} AS touched "
            "FROM cases c "
            "JOIN assessments i ON i.case_id = c.case_id AND i.stage = 'initial' "
            "LEFT JOIN assessments r ON r.case_id = c.case_id AND r.stage = 'revised' "
            "LEFT JOIN ai_results a ON a.case_id = c.case_id "
            f"{where} ORDER BY c.updated_at DESC, c.case_id LIMIT ?"
        )
        params.append(int(limit))
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [
            CaseSummary(
                case_id=row["case_id"],
                patient_pseudonym=row["patient_pseudonym"],
                lesion_site=row["lesion_site"],
                reader_mode=row["reader_mode"],
                created_at=from_iso(row["created_at"]) or utc_now(),
                updated_at=from_iso(row["updated_at"]) or utc_now(),
                initial_diagnosis=row["initial_diagnosis"],
                revised_diagnosis=row["revised_diagnosis"],
                histology_diagnosis=row["histology_diagnosis"],
                initial_committed=row["committed_at"] is not None,
                ai_result_stored=bool(row["ai_stored"]),
                mosaic_path=row["mosaic_path"],
                touched=bool(row["touched"]),
            )
            for row in rows
        ]

    # ------------------------------------------------------------------ the assessment form

    def set_answer(
        self,
        case_id: str,
        stage: Stage | None,
        checklist_id: str,
        item_id: str,
        value: str | None,
        user: str,
    ) -> Assessment:
        """Save one checklist answer (None clears it) and return the assessment as saved.

        ``stage`` None means "the stage the form edits now" (initial until it is
        committed, then revised). Unknown checklist or item ids are refused: they
        would be silently ignored by scoring.
        """
        user = _check_user(user)
        check_choice("answer", value, ANSWER_VALUES)
        checklist = self.checklists.get(checklist_id)
        if checklist is None:
            raise CaseStoreError(f"Unknown checklist {checklist_id!r}")
        if item_id not in checklist.item_ids:
            raise CaseStoreError(f"Checklist {checklist.title!r} has no item {item_id!r}")
        now = self._now()
        with self._write(f"the answer for case {case_id}") as conn:
            stage = self._writable_stage(conn, case_id, stage)
            old_row = conn.execute(
                "SELECT value FROM answers WHERE case_id = ? AND stage = ? AND checklist_id = ? "
                "AND item_id = ?",
                (case_id, stage, checklist_id, item_id),
            ).fetchone()
            old = old_row[0] if old_row else None
            if old != value:
                if value is None:
                    conn.execute(
                        "DELETE FROM answers WHERE case_id = ? AND stage = ? "
                        "AND checklist_id = ? AND item_id = ?",
                        (case_id, stage, checklist_id, item_id),
                    )
                else:
                    conn.execute(
                        "INSERT INTO answers (case_id, stage, checklist_id, item_id, value, "
                        "answered_at) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (case_id, stage, checklist_id, item_id) "
                        "DO UPDATE SET value = excluded.value, answered_at = excluded.answered_at",
                        (case_id, stage, checklist_id, item_id, value, now),
                    )
                field = f"{stage}.answers.{checklist_id}.{item_id}"
                self._audit(conn, now, user, case_id, field, old, value)
                self._touch(conn, case_id, now, stage)
            assessment = self._load_assessment(conn, case_id, stage)
        assert assessment is not None
        return assessment

    def update_assessment_fields(
        self, case_id: str, stage: Stage | None, user: str, **fields: Any
    ) -> Assessment:
        """Save diagnosis / confidence / management / notes / lesion site / reader name.

        Several fields in one call are one edit (one transaction); a field set to
        its current value writes nothing and adds no audit row, so a form may save
        its whole state on every change without flooding the audit trail.
        """
        user = _check_user(user)
        unknown = sorted(set(fields) - set(ASSESSMENT_FIELDS))
        if unknown:
            raise CaseStoreError(
                f"Cannot edit {', '.join(unknown)} of an assessment; editable: "
                f"{', '.join(ASSESSMENT_FIELDS)}"
            )
        if "diagnosis" in fields:
            check_choice("diagnosis", fields["diagnosis"], DIAGNOSES)
        if "management" in fields:
            check_choice("management", fields["management"], MANAGEMENTS)
        if "confidence" in fields:
            check_confidence(fields["confidence"])
        if "notes" in fields:
            if fields["notes"] is None:
                fields["notes"] = ""
            _check_text("notes", fields["notes"], allow_none=False, max_chars=100_000)
        for name in ("lesion_site", "reader_name"):
            if name in fields:
                _check_text(name.replace("_", " "), fields[name], max_chars=200)
        now = self._now()
        with self._write(f"the assessment of case {case_id}") as conn:
            stage = self._writable_stage(conn, case_id, stage)
            row = conn.execute(
                "SELECT * FROM assessments WHERE case_id = ? AND stage = ?", (case_id, stage)
            ).fetchone()
            changed = False
            for name, value in fields.items():
                if row[name] == value:
                    continue
                conn.execute(
                    f"UPDATE assessments SET {name} = ? WHERE case_id = ? AND stage = ?",
                    (value, case_id, stage),
                )
                self._audit(conn, now, user, case_id, f"{stage}.{name}", row[name], value)
                changed = True
            if changed:
                self._touch(conn, case_id, now, stage)
            assessment = self._load_assessment(conn, case_id, stage)
        assert assessment is not None
        return assessment

    def commit_initial_assessment(self, case_id: str, user: str) -> CaseRecord:
        """Lock the unaided assessment and open a revised one that starts as its copy.

        A diagnosis (possibly "uncertain") is required: the point of the
        reader-first workflow is to record what the reader thought before the AI.
        In ``reader_first`` mode this is the moment the AI result becomes visible.
        """
        user = _check_user(user)
        now = self._now()
        with self._write(f"the initial assessment of case {case_id}") as conn:
            self._case_row(conn, case_id)
            initial = conn.execute(
                "SELECT * FROM assessments WHERE case_id = ? AND stage = 'initial'", (case_id,)
            ).fetchone()
            if initial["committed_at"] is not None:
                raise CaseStoreError(
                    f"The initial assessment of case {case_id} was already committed at "
                    f"{initial['committed_at']}"
                )
            if initial["diagnosis"] is None:
                raise CaseStoreError(
                    f"Choose a diagnosis (or 'uncertain') for case {case_id} before committing "
                    "the initial assessment"
                )
            conn.execute(
                "UPDATE assessments SET committed_at = ? WHERE case_id = ? AND stage = 'initial'",
                (now, case_id),
            )
            conn.execute(
                "INSERT INTO assessments (case_id, stage, diagnosis, confidence, management, "
                "notes, lesion_site, reader_name, created_at, updated_at) "
                "SELECT case_id, 'revised', diagnosis, confidence, management, notes, "
                "lesion_site, reader_name, ?, ? FROM assessments "
                "WHERE case_id = ? AND stage = 'initial'",
                (now, now, case_id),
            )
            conn.execute(
                "INSERT INTO answers (case_id, stage, checklist_id, item_id, value, answered_at) "
                "SELECT case_id, 'revised', checklist_id, item_id, value, answered_at "
                "FROM answers WHERE case_id = ? AND stage = 'initial'",
                (case_id,),
            )
            self._audit(conn, now, user, case_id, "initial.committed_at", None, now)
            self._audit(conn, now, user, case_id, "revised.created", None, "copy of initial")
            self._touch(conn, case_id, now, None)
        return self.get_case(case_id)

    # ------------------------------------------------------------------ AI, histology, ROIs

    def save_ai_result(self, case_id: str, ai_result: AIResult, user: str) -> CaseRecord:
        """Store (or replace) the classifier's result for a case.

        Allowed at any time; in ``reader_first`` mode the returned record keeps
        it hidden until the initial assessment is committed.
        """
        user = _check_user(user)
        if not isinstance(ai_result, AIResult):
            raise CaseStoreError("save_ai_result needs an AIResult")
        heatmap = ai_result.heatmap
        now = self._now()
        with self._write(f"the AI result for case {case_id}") as conn:
            self._case_row(conn, case_id)
            old = self._load_ai_result(conn, case_id)
            conn.execute(
                "INSERT OR REPLACE INTO ai_results (case_id, model_name, model_version, "
                "weights_sha256, class_ids, probabilities, top_class, flags, heatmap_meta, "
                "heatmap, created_at, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case_id,
                    ai_result.model_name,
                    ai_result.model_version,
                    ai_result.weights_sha256,
                    json.dumps(list(ai_result.class_ids)),
                    json.dumps(list(ai_result.probabilities)),
                    ai_result.top_class,
                    json.dumps(_pack_ai_flags(ai_result)),
                    _json(heatmap.meta()) if heatmap else None,
                    heatmap.to_blob() if heatmap else None,
                    to_iso(ai_result.created_at),
                    now,
                ),
            )
            self._audit(
                conn,
                now,
                user,
                case_id,
                "ai_result",
                old.summary() if old else None,
                ai_result.summary(),
            )
            self._touch(conn, case_id, now, None)
        return self.get_case(case_id)

    def set_histology(
        self, case_id: str, diagnosis: str | None, user: str, detail: str | None = None
    ) -> CaseRecord:
        """Record the histology result (the reference standard), usually weeks later."""
        user = _check_user(user)
        check_choice("histology diagnosis", diagnosis, HISTOLOGY_DIAGNOSES)
        _check_text("histology detail", detail, max_chars=10_000)
        now = self._now()
        with self._write(f"the histology of case {case_id}") as conn:
            row = self._case_row(conn, case_id)
            changed = False
            for name, value in (("histology_diagnosis", diagnosis), ("histology_detail", detail)):
                if row[name] != value:
                    conn.execute(f"UPDATE cases SET {name} = ? WHERE case_id = ?", (value, case_id))
                    field = name.replace("histology_", "histology.")
                    self._audit(conn, now, user, case_id, field, row[name], value)
                    changed = True
            if changed:
                conn.execute(
                    "UPDATE cases SET histology_recorded_at = ? WHERE case_id = ?",
                    (now if diagnosis is not None else None, case_id),
                )
                self._touch(conn, case_id, now, None)
        return self.get_case(case_id)

    def update_histology(self, case_id: str, user: str, **fields: Any) -> CaseRecord:
        """Change only the histology fields given, each change audited on its own.

        Fields: ``diagnosis`` (a histology diagnosis or None), ``date`` (the
        report's calendar day or None), ``report_number`` and ``detail`` (free
        text or None; blank text is stored as None). Allowed at any time, also
        after the assessment is committed: the report arrives weeks later.
        """
        user = _check_user(user)
        unknown = set(fields) - set(HISTOLOGY_FIELDS)
        if unknown:
            raise CaseStoreError(f"Unknown histology field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "diagnosis":
                check_choice("histology diagnosis", value, HISTOLOGY_DIAGNOSES)
            elif name == "date":
                if isinstance(value, datetime) or not (value is None or isinstance(value, date)):
                    raise CaseStoreError("The histology date must be a calendar date")
                value = value.isoformat() if value is not None else None
            else:
                _check_text(f"histology {name.replace('_', ' ')}", value, max_chars=10_000)
                value = (value.strip() or None) if isinstance(value, str) else value
            values[f"histology_{name}"] = value
        now = self._now()
        with self._write(f"the histology of case {case_id}") as conn:
            row = self._case_row(conn, case_id)
            changed = False
            for column, value in values.items():
                if row[column] == value:
                    continue
                conn.execute(f"UPDATE cases SET {column} = ? WHERE case_id = ?", (value, case_id))
                field = column.replace("histology_", "histology.")
                self._audit(conn, now, user, case_id, field, row[column], value)
                changed = True
            if changed:
                diagnosis = values.get("histology_diagnosis", row["histology_diagnosis"])
                conn.execute(
                    "UPDATE cases SET histology_recorded_at = ? WHERE case_id = ?",
                    (now if diagnosis is not None else None, case_id),
                )
                self._touch(conn, case_id, now, None)
        return self.get_case(case_id)

    def save_view_state(self, case_id: str, view_state: Mapping[str, Any]) -> None:
        """Remember where the reader was looking (centre, zoom...). Not audited: see module doc."""
        try:
            text = json.dumps(dict(view_state), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise CaseStoreError(f"View state of case {case_id} cannot be saved: {exc}") from exc
        with self._write(f"the view of case {case_id}") as conn:
            self._case_row(conn, case_id)
            conn.execute("UPDATE cases SET view_state = ? WHERE case_id = ?", (text, case_id))

    @staticmethod
    def _check_feature(feature: Mapping[str, Any]) -> dict[str, Any]:
        """Accept a GeoJSON Feature with a plain geometry in full-resolution pixel coordinates."""
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            raise CaseStoreError("A region of interest must be a GeoJSON Feature")
        geometry = feature.get("geometry")
        if (
            not isinstance(geometry, Mapping)
            or geometry.get("type") not in _GEOMETRY_TYPES
            or not isinstance(geometry.get("coordinates"), list | tuple)
        ):
            raise CaseStoreError(
                "A region of interest needs a geometry of type " + ", ".join(_GEOMETRY_TYPES)
            )
        properties = feature.get("properties")
        if properties is not None and not isinstance(properties, Mapping):
            raise CaseStoreError("A region of interest's properties must be a JSON object")
        try:
            return json.loads(json.dumps(dict(feature), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise CaseStoreError(f"A region of interest cannot be saved: {exc}") from exc

    def add_roi(self, case_id: str, feature: Mapping[str, Any], user: str) -> dict[str, Any]:
        """Add a region of interest; returns the stored Feature with its ``id`` filled in."""
        user = _check_user(user)
        stored = self._check_feature(feature)
        stored.setdefault("id", str(uuid.uuid4()))
        roi_id = str(stored["id"])
        stored["id"] = roi_id
        now = self._now()
        with self._write(f"the region of interest for case {case_id}") as conn:
            self._case_row(conn, case_id)
            if conn.execute("SELECT 1 FROM rois WHERE roi_id = ?", (roi_id,)).fetchone():
                raise CaseStoreError(f"A region of interest with id {roi_id} already exists")
            position = conn.execute(
                "SELECT coalesce(max(position), -1) + 1 FROM rois WHERE case_id = ?", (case_id,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO rois (roi_id, case_id, position, feature, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (roi_id, case_id, position, _json(stored), now, user),
            )
            self._audit(conn, now, user, case_id, f"roi.{roi_id}", None, stored)
            self._touch(conn, case_id, now, None)
        return stored

    def update_roi(
        self, case_id: str, roi_id: str, feature: Mapping[str, Any], user: str
    ) -> dict[str, Any]:
        """Replace a region of interest's geometry or properties (same id)."""
        user = _check_user(user)
        stored = self._check_feature(feature)
        stored["id"] = roi_id
        now = self._now()
        with self._write(f"the region of interest for case {case_id}") as conn:
            old = self._roi_feature(conn, case_id, roi_id)
            if old != stored:
                conn.execute(
                    "UPDATE rois SET feature = ? WHERE roi_id = ?", (_json(stored), roi_id)
                )
                self._audit(conn, now, user, case_id, f"roi.{roi_id}", old, stored)
                self._touch(conn, case_id, now, None)
        return stored

    def remove_roi(self, case_id: str, roi_id: str, user: str) -> None:
        user = _check_user(user)
        now = self._now()
        with self._write(f"the region of interest for case {case_id}") as conn:
            old = self._roi_feature(conn, case_id, roi_id)
            conn.execute("DELETE FROM rois WHERE roi_id = ?", (roi_id,))
            self._audit(conn, now, user, case_id, f"roi.{roi_id}", old, None)
            self._touch(conn, case_id, now, None)

    def add_rois(
        self, case_id: str, features: list[Mapping[str, Any]], user: str
    ) -> list[dict[str, Any]]:
        """Add many regions of interest in one transaction (an imported annotation file).

        Each keeps its own audit row; all are saved or none is. One fsync instead of one
        per feature: an import of 1,000 QuPath objects takes a fraction of a second.
        """
        user = _check_user(user)
        stored_all = []
        for feature in features:
            stored = self._check_feature(feature)
            stored["id"] = str(stored.get("id") or uuid.uuid4())
            stored_all.append(stored)
        ids = [f["id"] for f in stored_all]
        if len(set(ids)) != len(ids):
            raise CaseStoreError("Two regions of interest to add have the same id")
        now = self._now()
        with self._write(f"the regions of interest for case {case_id}") as conn:
            self._case_row(conn, case_id)
            position = conn.execute(
                "SELECT coalesce(max(position), -1) + 1 FROM rois WHERE case_id = ?", (case_id,)
            ).fetchone()[0]
            for offset, stored in enumerate(stored_all):
                roi_id = stored["id"]
                if conn.execute("SELECT 1 FROM rois WHERE roi_id = ?", (roi_id,)).fetchone():
                    raise CaseStoreError(f"A region of interest with id {roi_id} already exists")
                conn.execute(
                    "INSERT INTO rois (roi_id, case_id, position, feature, created_at, "
                    "created_by) VALUES (?, ?, ?, ?, ?, ?)",
                    (roi_id, case_id, position + offset, _json(stored), now, user),
                )
                self._audit(conn, now, user, case_id, f"roi.{roi_id}", None, stored)
            if stored_all:
                self._touch(conn, case_id, now, None)
        return stored_all

    def remove_rois(self, case_id: str, roi_ids: list[str], user: str) -> None:
        """Remove many regions of interest in one transaction (all or none), each audited."""
        user = _check_user(user)
        now = self._now()
        with self._write(f"the regions of interest for case {case_id}") as conn:
            for roi_id in roi_ids:
                old = self._roi_feature(conn, case_id, roi_id)
                conn.execute("DELETE FROM rois WHERE roi_id = ?", (roi_id,))
                self._audit(conn, now, user, case_id, f"roi.{roi_id}", old, None)
            if roi_ids:
                self._touch(conn, case_id, now, None)

    def _roi_feature(self, conn: sqlite3.Connection, case_id: str, roi_id: str) -> Any:
        self._case_row(conn, case_id)
        row = conn.execute(
            "SELECT feature FROM rois WHERE roi_id = ? AND case_id = ?", (roi_id, case_id)
        ).fetchone()
        if row is None:
            raise CaseStoreError(f"Case {case_id} has no region of interest {roi_id}")
        return json.loads(row[0])

    # ------------------------------------------------------------------ audit and export

    # ------------------------------------------------------------------ integrity (issue 16)

    def _check_protection(self) -> list[str]:
        """Restore protective triggers that were dropped or altered; one warning if any."""
        try:
            restored = integrity.ensure_protection(self._connection())
        except sqlite3.Error as exc:
            raise CaseStoreError(f"Cannot check {self.path.name}: {_reason(exc)}") from exc
        if not restored:
            return []
        return [
            f"The case database {self.path.name} had been altered outside rcm-viewer: its "
            f"protection ({', '.join(restored)}) was removed and has been restored; run a "
            "full check and tell your IT support."
        ]

    def full_check(self) -> list[str]:
        """Every page and index (``integrity_check``), the triggers and the audit hash chain.

        Returns one readable line per problem (empty: healthy). Slow on big databases
        (seconds): run it in a worker after the window shows.
        """
        with self._lock:
            conn = self._connection()
            try:
                problems = [f"damaged: {line}" for line in integrity.integrity_problems(conn)]
                problems += [
                    f"protection missing: trigger {name}"
                    for name in integrity.missing_triggers(conn)
                ]
                problems += integrity.verify_audit_chain(conn)
            except sqlite3.Error as exc:
                problems = [f"damaged: {_reason(exc)}"]
        return [f"{self.path.name}: {line}" for line in problems]

    def backup_now(self, *, keep: int = 10) -> Path:
        """Online backup to ``backups/`` beside the database (0600); the newest ``keep`` kept."""
        with self._lock:
            try:
                target = integrity.write_backup(self._connection(), self.path, keep=keep)
            except (OSError, sqlite3.Error) as exc:
                raise CaseStoreError(f"Could not back up {self.path.name}: {exc}") from exc
            self._backup_changes = self._connection().total_changes
            return target

    def backup_if_changed(self, *, keep: int = 10) -> Path | None:
        """A backup when something was saved since the last one (call every N minutes)."""
        with self._lock:
            if self._connection().total_changes == self._backup_changes:
                return None
            return self.backup_now(keep=keep)

    def backups(self) -> list[Path]:
        """This database's backups, newest first."""
        return integrity.list_backups(self.path)

    def restore_newest_good_backup(self) -> Path:
        """Replace a damaged database by its newest backup that passes the full check.

        The damaged file (with -wal/-shm) is kept aside as ``cases.corrupt-*.sqlite3``
        (``moved_aside_path``); the store is reopened on the restored copy. Returns the
        backup used; raises ``CaseStoreError`` when no backup is good.
        """
        import shutil

        with self._lock:
            good = next((b for b in self.backups() if integrity.backup_is_good(b)), None)
            if good is None:
                raise CaseStoreError(
                    f"No good backup of {self.path.name} in {integrity.backup_folder(self.path)}"
                )
            self.close()
            self.moved_aside_path = self._move_aside()
            part = self.path.with_name(f".{self.path.name}.restore")
            shutil.copyfile(good, part)
            os.chmod(part, 0o600)
            os.replace(part, self.path)
            self._conn = self._open_checked()
            self._configure()
            self._migrate()
            self._check_protection()
            return good

    def audit_trail(self, case_id: str | None = None) -> list[AuditEntry]:
        """Audit rows in the order they were written (all cases when ``case_id`` is None)."""
        with self._read() as conn:
            return self._load_audit(conn, case_id)

    @staticmethod
    def _load_audit(conn: sqlite3.Connection, case_id: str | None) -> list[AuditEntry]:
        query = "SELECT * FROM audit"
        params: tuple[Any, ...] = ()
        if case_id is not None:
            query += " WHERE case_id = ?"
            params = (case_id,)
        rows = conn.execute(query + " ORDER BY entry_id", params).fetchall()
        return [
            AuditEntry(
                entry_id=row["entry_id"],
                at=from_iso(row["at"]) or utc_now(),
                user=row["user_name"],
                case_id=row["case_id"],
                field=row["field"],
                old_value=_unjson(row["old_value"]),
                new_value=_unjson(row["new_value"]),
            )
            for row in rows
        ]

    def export_case_json(
        self,
        case_id: str,
        *,
        include_hidden_ai: bool = False,
        include_heatmap_pixels: bool = False,
        include_audit: bool = True,
    ) -> str:
        """The whole case as JSON text: record, checklist scores per stage, audit trail.

        Follows the reader-first rule like ``get_case`` unless told otherwise.
        Heatmap pixels are left out by default (they dwarf everything else).
        """
        from rcm_viewer import __version__

        with self._read() as conn:
            record = self._load_case(conn, case_id, include_hidden_ai)
            audit = self._load_audit(conn, case_id) if include_audit else []
        scores = {
            stage.stage: {
                checklist_id: score.to_dict()
                for checklist_id, score in score_answers(stage.answers, self.checklists).items()
            }
            for stage in (record.initial, record.revised)
            if stage is not None
        }
        document: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "exported_at": self._now(),
            "exported_by": f"rcm-viewer {__version__}",
            "case": record.to_dict(include_heatmap_pixels=include_heatmap_pixels),
            "checklists": {
                cid: {"title": cl.title, "reference": cl.reference, "source": cl.source}
                for cid, cl in self.checklists.items()
            },
            "scores": scores,
        }
        if include_audit:
            document["audit"] = [entry.to_dict() for entry in audit]
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
