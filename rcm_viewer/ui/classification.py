"""Classifying the open mosaic from the window, explaining a region, drawing the overlay.

The engine work runs in a worker through the window's ``JobRunner`` (so a result that
arrives after another mosaic was opened is dropped), and every result goes through the
session (``show_prediction`` / ``finish_prediction``), which keeps it in one canonical
form and stores it with the case behind the reader-first gate. This module only turns
that into panel states, the status bar and the heatmap overlay.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QRectF

from rcm_viewer.errors import CaseStoreError, InferenceError
from rcm_viewer.session import AIView, CaseSession
from rcm_viewer.ui import settings as app_settings_module
from rcm_viewer.ui.ai_panel import AIPanel, heatmap_image
from rcm_viewer.ui.jobs import JobRunner
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.window_status import WindowStatus
from rcm_viewer.ui.workers import Worker

if TYPE_CHECKING:
    from rcm_viewer.inference.prediction import Prediction, RegionExplanation


def chosen_model_dir() -> Path | None:
    """The model bundle the reader picked in Analysis > Model (None: the default one)."""
    chosen = app_settings_module.app_settings().value("model/dir", "")
    return Path(str(chosen)) if chosen else None


BACKEND_KEY = "inference/backend"


def chosen_backend() -> str:
    """The inference runtime the reader chose (Analysis > Inference runtime); ``auto``."""
    from rcm_viewer.inference.backends import BACKEND_CHOICES

    value = str(app_settings_module.app_settings().value(BACKEND_KEY, "auto") or "auto")
    return value if value in BACKEND_CHOICES else "auto"


def set_chosen_backend(name: str) -> None:
    settings = app_settings_module.app_settings()
    settings.setValue(BACKEND_KEY, name)
    settings.sync()


def load_chosen_bundle() -> Any:
    """Load (and verify) the chosen bundle; worker thread. Raises ``ModelBundleError``."""
    from rcm_viewer.inference import default_bundle_dir, load_bundle

    model_dir = chosen_model_dir()
    return load_bundle(model_dir if model_dir is not None else default_bundle_dir())


class Classification(QObject):
    """The window's classify / cancel / explain actions and the heatmap overlay."""

    def __init__(
        self,
        session: CaseSession,
        jobs: JobRunner,
        view: MosaicView,
        panel: AIPanel,
        status: WindowStatus,
        show_error: Callable[[str, str], None],
        ask_pixel_size: Callable[[], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.jobs = jobs
        self.view = view
        self.panel = panel
        self.status = status
        self.show_error = show_error
        self.ask_pixel_size = ask_pixel_size
        self.job: Worker | None = None
        self.explain_job: Worker | None = None
        self.region_explanation: RegionExplanation | None = None
        panel.classifyRequested.connect(self.classify)
        panel.cancelRequested.connect(self.cancel)
        panel.heatmapChanged.connect(self.refresh_overlay)
        panel.explainRequested.connect(self.explain_visible_region)
        panel.clearExplanationRequested.connect(self.clear_region_explanation)
        self._offer_explanations_only_with_torch()

    def _offer_explanations_only_with_torch(self) -> None:
        """The pytorch-grad-cam methods need torch; without it (the small app) the button
        says why instead of failing later. The class activation map needs no torch."""
        from rcm_viewer.inference.backends import available_backends
        from rcm_viewer.inference.engine import EXPLAIN_NEEDS_TORCH

        if "torch" not in available_backends():
            self.panel.set_explain_available(False, EXPLAIN_NEEDS_TORCH)

    # -- classify ---------------------------------------------------------------------

    def running(self) -> bool:
        return self.job is not None and not self.job.done.is_set()

    def classify(self) -> None:
        """Classify the open mosaic in the background; the window stays fully usable."""
        mosaic = self.session.mosaic
        if mosaic is None:
            self.status.message("Open a mosaic first", 4000)
            return
        if self.running():
            return
        if not mosaic.info.pixel_size_um:
            self.ask_pixel_size()
            if not mosaic.info.pixel_size_um:
                self.show_error(
                    "Pixel size needed",
                    f"{mosaic.path.name}: the pixel size is unknown; the classifier's scale "
                    "depends on it. Set it first (Image > Set pixel size).",
                )
                return

        def work(progress: Any, cancelled: Any, job: Worker) -> Prediction:
            from rcm_viewer.inference import classify_mosaic

            bundle = load_chosen_bundle()
            manifest = bundle.manifest
            job.signals.partial.emit(
                ("model", manifest.name, manifest.version, manifest.synthetic, bundle.trust)
            )
            try:
                return classify_mosaic(
                    mosaic,
                    bundle,
                    progress=progress,
                    cancel=cancelled,
                    on_partial=job.signals.partial.emit,
                    backend=backend,
                )
            except InferenceError:
                if backend == "auto":
                    raise
                # the chosen runtime is gone (uninstalled, no export): the fastest one
                return classify_mosaic(
                    mosaic,
                    bundle,
                    progress=progress,
                    cancel=cancelled,
                    on_partial=job.signals.partial.emit,
                    backend="auto",
                )

        backend = chosen_backend()
        self.session.clear_result()
        self.panel.set_running(True)
        self.status.show_progress("classifying %v/%m tiles")
        self.status.message(f"Classifying {mosaic.path.name} in the background…")
        self.job = self.jobs.start(
            work,
            name=f"classifying {mosaic.path.name}",
            progress=self._on_progress,
            partial=self._on_partial,
            finished=self._on_classified,
            failed=lambda message: self.show_error("Classification failed", message),
            cancelled=lambda: self.status.message("Classification cancelled", 5000),
            always=self._job_ended,
        )

    def _job_ended(self) -> None:
        self.job = None
        self.panel.set_running(False)
        self.status.hide_progress()

    def cancel(self) -> None:
        job = self.job
        if job is not None and not job.done.is_set():
            job.cancel()
        self._job_ended()

    def _on_progress(self, done: int, total: int) -> None:
        self.panel.set_progress(done, total)
        self.status.set_progress(done, total)

    def _on_partial(self, item: Any) -> None:
        if isinstance(item, tuple):  # ("model", name, version, synthetic, trust): loading
            _, name, version, synthetic, trust = item
            self.panel.set_model_info(name, version, synthetic, trust)
            return
        self.session.show_prediction(self.session.token, item)

    def _on_classified(self, prediction: Prediction) -> None:
        try:
            self.session.finish_prediction(self.session.token, prediction)
        except CaseStoreError as exc:
            self.show_error("AI result not saved", str(exc))
        self.status.message(
            f"Classified in {prediction.seconds:.1f} s ({prediction.n_tiles} tiles, "
            f"{prediction.backend or 'torch'} on {prediction.device or 'cpu'})"
            if prediction.ok
            else f"Not classified: {prediction.status}",
            8000,
        )

    # -- the session's result on screen -----------------------------------------------

    def show_view(self, view: AIView | None) -> None:
        """The session's AI result changed: show it in the panel and the overlay."""
        if view is None:
            self.region_explanation = None
            self.panel.clear()
        else:
            self.panel.show_result(view)
        self.refresh_overlay()

    # -- explain a region -------------------------------------------------------------

    def explain_visible_region(self, method: str, layer: str) -> None:
        """A pytorch-grad-cam map of the region on screen, in a worker (can take a while)."""
        mosaic = self.session.mosaic
        if mosaic is None or self.panel.result is None or not self.session.ai_revealed():
            return
        if self.explain_job is not None and not self.explain_job.done.is_set():
            return
        rect = self.view.visible_scene_rect().intersected(
            QRectF(0, 0, mosaic.info.width, mosaic.info.height)
        )
        if rect.isEmpty():
            return
        x, y = int(rect.left()), int(rect.top())
        region = (x, y, max(1, int(rect.width())), max(1, int(rect.height())))
        target = self.panel.class_combo.currentData()
        pixel_um = mosaic.info.pixel_size_um

        def work(progress: Any, cancelled: Any, job: Worker) -> RegionExplanation:
            from rcm_viewer.inference import explain_region

            return explain_region(
                mosaic,
                load_chosen_bundle(),
                region,
                method,
                target,
                layer=layer,
                pixel_size_um=pixel_um,
            )

        def failed(message: str) -> None:
            self.show_error("Explanation failed", message)

        def ended() -> None:
            self.explain_job = None
            if self.region_explanation is None:
                self.panel.set_explanation_state("", False)

        self.panel.set_explanation_state(
            f"Computing {method} over the visible region…", False, busy=True
        )
        self.explain_job = self.jobs.start(
            work,
            name=f"{method} of the visible region",
            finished=self._on_explained,
            failed=failed,
            always=ended,
        )

    def _on_explained(self, explanation: RegionExplanation) -> None:
        self.region_explanation = explanation
        x, y, w, h = explanation.rect
        self.panel.set_explanation_state(
            f"Showing {explanation.method} ({explanation.layer}) for "
            f"{explanation.target_class} over the region {w} x {h} px at ({x}, {y}), "
            f"{explanation.seconds:.1f} s. Values are relative within this region.",
            True,
        )
        self.refresh_overlay()

    def clear_region_explanation(self) -> None:
        self.region_explanation = None
        self.panel.set_explanation_state("", False)
        self.refresh_overlay()

    # -- overlay and hover ------------------------------------------------------------

    def refresh_overlay(self) -> None:
        revealed = self.session.ai_revealed()
        explanation = self.region_explanation
        if explanation is not None and revealed:
            image = heatmap_image(
                explanation.heatmap,
                self.panel.colormap.currentText(),
                self.panel.threshold.value() / 100,
            )
            x, y, w, h = explanation.rect
            self.view.set_overlay_opacity(self.panel.opacity_value())
            self.view.set_overlay_visible(self.panel.show_heatmap.isChecked())
            self.view.set_overlay(image, QRectF(x, y, w, h))
            return
        overlay = self.panel.overlay() if revealed else None
        self.view.set_overlay_visible(True)
        if overlay is None:
            self.view.set_overlay(None)
            return
        image, (span_w, span_h) = overlay
        self.view.set_overlay_opacity(self.panel.opacity_value())
        self.view.set_overlay(image, QRectF(0, 0, span_w, span_h))

    def tile_probabilities_at(self, x: float, y: float) -> dict[str, float] | None:
        """The probabilities of the classified tile under a level-0 point (live result only)."""
        prediction = self.session.prediction
        if prediction is None or not self.session.ai_revealed():
            return None
        boxes = prediction.tile_boxes
        if boxes is None or len(boxes) == 0:
            return None
        inside = (
            (boxes[:, 0] <= x)
            & (x < boxes[:, 0] + boxes[:, 2])
            & (boxes[:, 1] <= y)
            & (y < boxes[:, 1] + boxes[:, 3])
        )
        hits = np.flatnonzero(inside)
        if hits.size == 0:
            return None
        probs = prediction.tile_probabilities[hits].mean(axis=0)
        return dict(zip(prediction.class_ids, (float(p) for p in probs), strict=True))
