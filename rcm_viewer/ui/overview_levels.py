"""The overview image of the open mosaic, the background level build, and stack pages.

A flat file has no reduced levels: they are built once in the background, a preview of
the smallest level is shown after a quarter of the work, and the real levels replace it
(keeping a contrast the reader set meanwhile). A stack page shows its own overview, read
in a worker. All of it is display state of the window, so it lives beside the window,
not in the session; the jobs run through the window's ``JobRunner`` and so are dropped
when another mosaic was opened meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from rcm_viewer.mosaic import Mosaic, display_range_of, open_mosaic
from rcm_viewer.reports.display import OVERVIEW_MAX_PX, load_overview, overview_level
from rcm_viewer.ui.contrast import ContrastPanel
from rcm_viewer.ui.jobs import JobRunner
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget
from rcm_viewer.ui.tiles import DisplaySettings, to_qimage
from rcm_viewer.ui.window_status import WindowStatus
from rcm_viewer.ui.workers import Worker

if TYPE_CHECKING:
    from rcm_viewer.session import CaseSession

#: (level, pixels, display range) of a mosaic's overview.
Overview = tuple[int, np.ndarray, tuple[float, float]]


def open_with_overview(path: str | Path) -> tuple[Mosaic, Overview | None]:
    """Open a mosaic and read its overview (worker thread); the file is closed on failure.

    The one open path of the window and of the second view beside it (``linked_views``).
    """
    mosaic = open_mosaic(Path(path))
    try:
        return mosaic, load_overview(mosaic)
    except BaseException:
        mosaic.close()
        raise


class OverviewLevels(QObject):
    """Keeps the overview, the view's coarse image and the contrast panel in step."""

    #: The overview level's pixels of page 0 changed (open, preview, levels built): the
    #: review coverage takes its tissue mask from them.
    pixelsChanged = Signal(object)

    def __init__(
        self,
        session: CaseSession,
        jobs: JobRunner,
        view: MosaicView,
        overview: OverviewWidget,
        contrast: ContrastPanel,
        status: WindowStatus,
        show_error: Callable[[str, str], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.jobs = jobs
        self.view = view
        self.overview = overview
        self.contrast = contrast
        self.status = status
        self.show_error = show_error
        self.pixels: np.ndarray | None = None  # the overview level's stored pixels
        self.showing_preview = False  # the overview is a preview until the levels exist
        self.build_job: Worker | None = None
        contrast.displayChanged.connect(self.refresh_image)

    # -- the overview of a new mosaic -------------------------------------------------

    def show_mosaic(self, mosaic: Mosaic, overview: Overview | None) -> None:
        """A mosaic was opened with its overview (or None: levels to be built)."""
        info = mosaic.info
        self.contrast.set_value_map(info.pixel_map)  # labels in the file's own values
        if overview is not None:
            self.apply(*overview)
        else:
            maximum = 65535.0 if np.dtype(info.dtype).itemsize == 2 else 255.0
            self.contrast.set_data(None, np.dtype(info.dtype), (0.0, maximum))
            self.view.set_mosaic(mosaic, None, 0, self.contrast.settings())
            self.overview.set_image(None, info.width, info.height)
            self.pixels = None
        self.view.tiles.set_page(0)
        if not mosaic.levels_ready():
            self.start_building()

    def clear(self) -> None:
        self.cancel()
        self.view.set_mosaic(None, None, 0, None)
        self.overview.set_image(None, 1, 1)
        self.pixels = None

    def apply(
        self,
        level: int,
        pixels: np.ndarray,
        display_range: tuple[float, float],
        keep_display: bool = False,
    ) -> None:
        mosaic = self.session.mosaic
        if mosaic is None:
            return
        info = mosaic.info
        if not keep_display:
            self.contrast.set_data(pixels, np.dtype(info.dtype), display_range)
        display = self.contrast.settings()
        image = to_qimage(pixels, display.lut(np.dtype(info.dtype)))
        self.overview.set_image(image, info.width, info.height)
        if self.view.mosaic is mosaic:
            self.view.set_overview(image, level)
            if not keep_display:
                self.view.set_display(display)
        else:
            self.view.set_mosaic(mosaic, image, level, display)
        self.pixels = pixels
        self.pixelsChanged.emit(pixels)

    def refresh_image(self, display: DisplaySettings) -> None:
        """The contrast changed: redraw the overview with the new table."""
        mosaic = self.session.mosaic
        if self.pixels is None or mosaic is None:
            return
        image = to_qimage(self.pixels, display.lut(np.dtype(mosaic.info.dtype)))
        self.overview.set_image(image, mosaic.info.width, mosaic.info.height)
        self.view.set_overview(image, self.view._overview_level)

    # -- building the levels of a flat file -------------------------------------------

    def start_building(self) -> None:
        mosaic = self.session.mosaic
        if mosaic is None:
            return

        def work(progress: Any, cancelled: Any, job: Worker) -> Overview | None:
            def preview(pixels: np.ndarray) -> None:  # build thread: the range is made here
                job.signals.partial.emit((pixels, display_range_of(pixels, mosaic.info.channels)))

            if not mosaic.build_levels(progress=progress, cancel=cancelled, preview=preview):
                return None
            return load_overview(mosaic)

        self.showing_preview = False
        self.status.show_progress("building levels %p%")
        self.build_job = self.jobs.start(
            work,
            name="building overview levels",
            progress=self.status.set_progress,
            partial=self._on_preview,
            finished=self._on_built,
            failed=lambda message: self.show_error("Overview levels could not be built", message),
            always=self._build_ended,
        )

    def _build_ended(self) -> None:
        self.status.hide_progress()
        self.build_job = None

    def _on_preview(self, result: tuple[np.ndarray, tuple[float, float]]) -> None:
        """A quick approximation of the smallest level: the whole mosaic on screen at once,
        sharpened when the real levels arrive."""
        mosaic = self.session.mosaic
        if mosaic is None or self.view.tiles.page != 0:  # the preview is of the first page
            return
        pixels, display_range = result
        self.apply(len(mosaic.planned_levels) - 1, pixels, display_range)
        self.showing_preview = True
        self.status.progress.setFormat("preview · levels %p%")

    def _on_built(self, overview: Overview | None) -> None:
        if overview is None:
            return
        # after a preview, keep the contrast the reader may have set meanwhile
        self.apply(*overview, keep_display=self.showing_preview)
        self.showing_preview = False
        if self.view.tiles.page != 0:  # the reader went to another page of a stack meanwhile
            self.load_page_overview(self.view.tiles.page)
        self.view.viewport().update()

    def cancel(self) -> None:
        if self.build_job is not None:
            self.build_job.cancel()
            self.build_job = None

    # -- stack pages ------------------------------------------------------------------

    def set_page(self, page: int) -> None:
        """Show page ``page`` (0-based) of a stack; overview and tiles are read for it."""
        mosaic = self.session.mosaic
        if mosaic is None or not 0 <= page < mosaic.pages or page == self.view.tiles.page:
            return
        self.view.tiles.set_page(page)
        self.view.viewport().update()
        self.status.message(f"Page {page + 1} of {mosaic.pages}", 3000)
        self.load_page_overview(page)

    def load_page_overview(self, page: int) -> None:
        mosaic = self.session.mosaic
        if mosaic is None or overview_level(mosaic) is None:
            return

        def work(progress: Any, cancelled: Any, job: Worker) -> Overview | None:
            return load_overview(mosaic, page)  # decoding stays off the GUI thread

        def finished(overview: Overview | None) -> None:
            if overview is None or page != self.view.tiles.page:
                return
            self.pixels = overview[1]
            self.refresh_image(self.contrast.settings())

        self.jobs.start(
            work,
            name=f"overview of page {page + 1}",
            finished=finished,
            failed=lambda message: self.show_error("Page not shown", message),
        )


__all__ = [
    "OVERVIEW_MAX_PX",
    "OverviewLevels",
    "load_overview",
    "open_with_overview",
    "overview_level",
]
