"""Reports of a case (PDF + JSON sidecar) and the display arithmetic the window shares.

``display`` is plain numpy and ``model`` is pure data; only ``pdf`` and ``images`` touch
QtGui (never a widget class). Names load lazily so that importing ``rcm_viewer.reports.display``
from a widget does not pull in the renderer.
"""

from __future__ import annotations

from rcm_viewer.lazy import lazy_getattr

_LAZY = {
    "Report": "rcm_viewer.reports.model",
    "ReportOptions": "rcm_viewer.reports.model",
    "build_report": "rcm_viewer.reports.model",
    "INTENDED_USE": "rcm_viewer.reports.model",
    "SYNTHETIC_BANNER": "rcm_viewer.reports.model",
    "export_report": "rcm_viewer.reports.export",
    "report_dict": "rcm_viewer.reports.export",
    "SCHEMA_VERSION": "rcm_viewer.reports.export",
    "render_pdf": "rcm_viewer.reports.pdf",
}
__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = sorted(_LAZY)
