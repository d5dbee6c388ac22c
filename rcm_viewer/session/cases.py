"""Find or start the case of a mosaic file: the one rule the window and the batch share.

A case is keyed by the content of its mosaic (sha256), not its path, so a file that was
moved or renamed finds its case again, and the case follows the new path.
"""

from __future__ import annotations

from pathlib import Path

from rcm_viewer.cases import CaseRecord, CaseStore


def case_for_mosaic(
    store: CaseStore,
    path: str | Path,
    sha256: str,
    *,
    user: str,
    reader_mode: str,
    pixel_size_um: float | None = None,
) -> tuple[CaseRecord, bool]:
    """The most recently updated case of this mosaic content, or a new one.

    Returns ``(case, restored)``; ``restored`` is False for a new case. A restored case
    whose file moved gets its recorded path updated (audited). Raises ``CaseStoreError``.
    """
    resolved = str(Path(path).resolve())
    cases = store.find_by_mosaic_sha256(sha256)
    if cases:
        case = max(cases, key=lambda c: c.updated_at)
        if case.mosaic_path != resolved:
            case = store.update_case_fields(case.case_id, user, mosaic_path=resolved)
        return case, True
    case = store.create_case(
        "",
        user=user,
        reader_mode=reader_mode,
        mosaic_path=resolved,
        mosaic_sha256=sha256,
        pixel_size_um=pixel_size_um,
    )
    return case, False
