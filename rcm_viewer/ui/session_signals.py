"""The Qt face of a headless ``CaseSession``: its plain events as Qt signals.

Widgets connect to signals as usual; the session itself stays free of Qt, so the batch
worklist, the report and the tests drive it without a display.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from rcm_viewer.session import CaseSession
from rcm_viewer.session.case_session import AI_CHANGED, CASE_CHANGED, GATE_CHANGED, MOSAIC_CHANGED


class SessionSignals(QObject):
    mosaicChanged = Signal(object)  # Mosaic | None
    caseChanged = Signal(object)  # CaseRecord | None
    aiChanged = Signal(object)  # AIView | None
    gateChanged = Signal(bool)

    def __init__(self, session: CaseSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        session.subscribe(MOSAIC_CHANGED, self.mosaicChanged.emit)
        session.subscribe(CASE_CHANGED, self.caseChanged.emit)
        session.subscribe(AI_CHANGED, self.aiChanged.emit)
        session.subscribe(GATE_CHANGED, self.gateChanged.emit)
