"""One open case, headless: the mosaic, its case, the reader, the AI result, the gate.

The window, the batch worklist and the report all need the same answers (which case
belongs to this file, who is reading, what the model said in one canonical form, may
the reader see it yet). They live here, free of Qt and torch, so they run and are
tested without a display; ``rcm_viewer/ui`` is a view of them.
"""

from __future__ import annotations

from rcm_viewer.session.ai_view import (
    AIView,
    prediction_span,
    stored_from_prediction,
    view_from_prediction,
    view_from_stored,
)
from rcm_viewer.session.case_session import CaseOpened, CaseSession
from rcm_viewer.session.cases import case_for_mosaic
from rcm_viewer.session.reader import FALLBACK_READER, resolve_reader

__all__ = [
    "FALLBACK_READER",
    "AIView",
    "CaseOpened",
    "CaseSession",
    "case_for_mosaic",
    "prediction_span",
    "resolve_reader",
    "stored_from_prediction",
    "view_from_prediction",
    "view_from_stored",
]
