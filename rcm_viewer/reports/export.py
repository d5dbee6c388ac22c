"""Write a case's report: the PDF and, if asked, its JSON sidecar, each all or nothing.

The one entry point for the window (File > Export report..., run in a worker) and for
``rcm-viewer report``: both call :func:`export_report`, so their reports cannot differ.
The report is assembled and rendered in memory first, then each file is written with
``fileio.atomic_write``: a full disk or an unwritable folder leaves no half file, and
the error is one ``ReportError`` line that names the file and the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rcm_viewer.cases import CaseStore
from rcm_viewer.errors import CaseStoreError, ReportError
from rcm_viewer.fileio import atomic_write
from rcm_viewer.reports.model import (
    CancelFn,
    ProgressFn,
    Report,
    ReportCancelled,
    ReportOptions,
    build_report,
)

#: Version of the JSON sidecar's layout; raise it when a field changes meaning or goes away.
SCHEMA_VERSION = 1


def report_dict(report: Report) -> dict[str, Any]:
    """The JSON sidecar's content: the report's data plus ``schema_version``."""
    return {"schema_version": SCHEMA_VERSION, "kind": "rcm-viewer report", **report.to_dict()}


def _check_target(path: Path, what: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ReportError(f"Cannot write the {what} {path}: it is a folder")
    if not folder.is_dir():
        raise ReportError(f"Cannot write the {what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ReportError(f"Cannot write the {what} {path}: folder {folder} is not writable")


def _write(path: Path, data: bytes | str, what: str) -> None:
    try:
        atomic_write(path, data)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ReportError(f"Cannot write the {what} {path}: {reason}") from exc


def export_report(
    store: CaseStore,
    case_id: str,
    pdf_path: str | os.PathLike[str],
    json_path: str | os.PathLike[str] | None = None,
    options: ReportOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    mosaic_path: str | os.PathLike[str] | None = None,
) -> Report | None:
    """Write the report of ``case_id`` to ``pdf_path`` (and ``json_path``); None if cancelled.

    ``progress(done, total)`` is called while the overview of a flat mosaic is built (the
    only long step); ``mosaic_path`` overrides the case's recorded file; ``cancel()``
    returning true stops before anything is written. Raises ``ReportError`` (unwritable
    path, unknown case) with a one-line message.
    """
    from rcm_viewer.reports.pdf import render_pdf

    pdf_path = Path(pdf_path)
    json_path = Path(json_path) if json_path is not None else None
    _check_target(pdf_path, "report")
    if json_path is not None:
        _check_target(json_path, "report data")
    try:
        report = build_report(
            store, case_id, options, progress=progress, cancel=cancel, mosaic_path=mosaic_path
        )
    except ReportCancelled:
        return None
    except CaseStoreError as exc:
        raise ReportError(f"No report for case {case_id}: {exc}") from exc
    pdf = render_pdf(report)
    if cancel is not None and cancel():
        return None
    text = None
    if json_path is not None:
        text = json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"
    _write(pdf_path, pdf, "report")
    if json_path is not None and text is not None:
        _write(json_path, text, "report data")
    return report
