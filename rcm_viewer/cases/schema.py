"""The case database schema as an ordered list of migrations (``PRAGMA user_version``).

Migration N takes a database from version N-1 to N and runs in one
transaction together with the ``user_version`` bump, so a crash mid-migration
leaves the old version intact. Never edit a migration that has shipped: add a
new one. A v1 database written by an older release must open in this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcm_viewer.cases.integrity import PROTECTIVE_TRIGGERS


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


_V1 = Migration(
    version=1,
    summary="cases, assessments, checklist answers, AI results, append-only audit trail",
    statements=(
        """
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
        )
        """,
        """
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
        )
        """,
        """
        CREATE TABLE answers (
            case_id TEXT NOT NULL,
            stage TEXT NOT NULL,
            checklist_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            value TEXT NOT NULL CHECK (value IN ('present', 'absent', 'not_assessable')),
            answered_at TEXT NOT NULL,
            PRIMARY KEY (case_id, stage, checklist_id, item_id),
            FOREIGN KEY (case_id, stage)
                REFERENCES assessments (case_id, stage) ON DELETE CASCADE
        )
        """,
        """
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
        )
        """,
        # No foreign key to cases: audit rows must outlive anything they describe.
        """
        CREATE TABLE audit (
            entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            user_name TEXT NOT NULL,
            case_id TEXT NOT NULL,
            field TEXT NOT NULL,
            old_value TEXT,
            new_value TEXT
        )
        """,
        "CREATE INDEX audit_by_case ON audit (case_id, entry_id)",
        """
        CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: rows cannot be changed'); END
        """,
        """
        CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: rows cannot be deleted'); END
        """,
        "CREATE INDEX cases_by_created ON cases (created_at)",
    ),
)

_V2 = Migration(
    version=2,
    summary="ROI annotations (GeoJSON), saved view state, lookup of a case by mosaic hash",
    statements=(
        "ALTER TABLE cases ADD COLUMN view_state TEXT NOT NULL DEFAULT '{}'",
        """
        CREATE TABLE rois (
            roi_id TEXT PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            feature TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        )
        """,
        "CREATE INDEX rois_by_case ON rois (case_id, position)",
        "CREATE INDEX cases_by_mosaic_sha256 ON cases (mosaic_sha256)",
    ),
)

# histology: the follow-up form records the pathology report's date and number, so a
# reader can match a case to the report it was checked against (issue 17).
_V3_HISTOLOGY = Migration(
    version=3,
    summary="histology: date of the pathology report and its report number",
    statements=(
        "ALTER TABLE cases ADD COLUMN histology_date TEXT",
        "ALTER TABLE cases ADD COLUMN histology_report_number TEXT",
    ),
)


# --- integrity (issue 16): hash chain of the audit trail, frozen committed initial
# assessments. The lead may renumber this migration; its content must stay as is.
_V_INTEGRITY = Migration(
    version=4,
    summary="integrity: audit hash chain, committed initial assessments and answers frozen",
    statements=(
        """
        CREATE TABLE audit_chain (
            entry_id INTEGER PRIMARY KEY,
            row_hash TEXT NOT NULL
        )
        """,
        "CREATE TABLE integrity_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        *(sql for name, sql in PROTECTIVE_TRIGGERS if not name.startswith("audit_is_")),
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3_HISTOLOGY, _V_INTEGRITY)
SCHEMA_VERSION: int = MIGRATIONS[-1].version

assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
