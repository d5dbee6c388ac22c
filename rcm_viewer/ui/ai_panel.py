"""The classifier's result: probabilities, model identity, heatmap controls.

Shown inside the reader-first gate, so nothing here is visible before the
reader commits an unaided assessment (in reader-first mode). Whenever the
model is a demonstration model trained on synthetic images, a banner says so
above every probability; whenever the model is unsigned or signed by a key this
installation does not trust, a line under the model name says "Unverified model".
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.reports.display import COLORMAPS, colormap_lut
from rcm_viewer.reports.images import heatmap_image
from rcm_viewer.reports.model import SYNTHETIC_BANNER
from rcm_viewer.session import AIView

UNVERIFIED_TEXT = (
    "Unverified model ({why}): no key this installation trusts signed it, so its "
    "origin and contents cannot be checked."
)
UNVERIFIED_TOOLTIP = (
    "A model bundle is verified when it is signed (rcm-viewer sign-bundle) by "
    "a key in the trusted-keys folder of the user data folder, or by the "
    "rcm-viewer project's key (demonstration models only)."
)

#: pytorch-grad-cam methods offered for the visible region (ids of inference.CAM_METHODS;
#: listed here so the panel needs no torch). Slow ones say so.
REGION_METHODS = [
    ("gradcam", "Grad-CAM"),
    ("gradcam++", "Grad-CAM++"),
    ("hirescam", "HiResCAM"),
    ("xgradcam", "XGrad-CAM"),
    ("layercam", "Layer-CAM"),
    ("eigencam", "Eigen-CAM"),
    ("scorecam", "Score-CAM (slow: hundreds of forwards)"),
    ("ablationcam", "Ablation-CAM (slow)"),
]


ResultView = AIView  # the panel shows the canonical view of a result

#: Data of the heatmap selector's out-of-distribution layer (not a class id).
OOD_LAYER = "__ood__"
OOD_LAYER_NAME = "Tiles unlike the training data (OOD)"
GREY_BRUSH = (120, 120, 120)


def ood_message(result: ResultView) -> tuple[str, bool]:
    """The panel's words on the OOD check, and whether the probabilities are to be greyed."""
    if result.in_distribution is None:
        if result.probabilities is None:
            return "", False
        return (
            "This model has no out-of-distribution statistics: it cannot say when an "
            "image is unlike what it was trained on.",
            False,
        )
    share = result.ood_tile_share or 0.0
    score = result.ood_score or 0.0
    if not result.in_distribution:
        return (
            f"Outside what the model was trained on: this mosaic does not resemble its "
            f"training images (OOD score {score:.1f}; 1.0 is the limit; {share:.0%} of "
            "the tissue tiles are outside). The probabilities are not meaningful here: "
            "check the pixel size, the device and the image type.",
            True,
        )
    if share > 0:
        return (
            f"{share:.0%} of the tissue tiles are outside what the model was trained on "
            f"(see the heatmap layer '{OOD_LAYER_NAME}'); the rest of the mosaic "
            f"resembles its training images (OOD score {score:.2f}; 1.0 is the limit).",
            False,
        )
    return (
        f"The mosaic resembles the model's training images (OOD score {score:.2f}; 1.0 "
        "is the limit).",
        False,
    )


class ColorLegend(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colormap = "Inferno"
        self.setFixedHeight(30)
        self.setToolTip(
            "Heatmap colours: how strongly the model's last layer responded "
            "for the chosen class (relative, 0 = no response)."
        )

    def set_colormap(self, name: str) -> None:
        self._colormap = name
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        lut = colormap_lut(self._colormap)
        bar = self.rect().adjusted(2, 2, -2, -14)
        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for i in range(0, 256, 16):
            r, g, b, _ = (int(v) for v in lut[i])
            gradient.setColorAt(i / 255, QColor(r, g, b))
        painter.fillRect(bar, gradient)
        painter.setPen(self.palette().windowText().color())
        painter.drawText(bar.left(), self.height() - 1, "low")
        painter.drawText(bar.right() - 28, self.height() - 1, "high")


class AIPanel(QWidget):
    classifyRequested = Signal()
    cancelRequested = Signal()
    explainRequested = Signal(str, str)  # method id, layer
    clearExplanationRequested = Signal()
    heatmapChanged = Signal()  # class, opacity, colormap, visibility or threshold changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: ResultView | None = None
        self.banner = QLabel(SYNTHETIC_BANNER)
        self.banner.setObjectName("DemoBanner")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.model_label = QLabel("No model run yet.")
        self.model_label.setWordWrap(True)
        self.trust_label = QLabel("")
        self.trust_label.setObjectName("UnverifiedModel")
        self.trust_label.setWordWrap(True)
        self.trust_label.setStyleSheet("font-weight: bold; color: #e0a040;")
        self.trust_label.setToolTip(UNVERIFIED_TOOLTIP)
        self.trust_label.setVisible(False)
        self.classify_button = QPushButton("Classify (Ctrl+R)")
        self.classify_button.setToolTip(
            "Run the classifier on the whole mosaic in the background; the window stays usable"
        )
        self.classify_button.clicked.connect(self.classifyRequested)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancelRequested)

        self.plot = pg.PlotWidget(background=(24, 24, 24))
        self.plot.setMinimumHeight(130)
        self.plot.setMaximumHeight(170)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.setXRange(0, 1.0, padding=0.02)
        self.plot.getAxis("bottom").setTicks([[(v / 4, f"{v * 25}%") for v in range(5)]])
        self.plot.setToolTip("Calibrated probability of each class for the whole mosaic")
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.6, width=[], brush=(90, 150, 230))
        self.plot.addItem(self.bars)
        self._bar_texts: list[pg.TextItem] = []
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.ood_label = QLabel("")
        self.ood_label.setObjectName("OodWarning")
        self.ood_label.setWordWrap(True)
        self.ood_label.setToolTip(
            "Out-of-distribution check: how much the tissue tiles "
            "resemble the images the model was trained on"
        )
        self.ood_label.setVisible(False)
        self.scale_label = QLabel("")
        self.scale_label.setWordWrap(True)
        self.scale_label.setVisible(False)

        self.show_heatmap = QCheckBox("Show heatmap (H)")
        self.show_heatmap.setChecked(True)
        self.show_heatmap.toggled.connect(self.heatmapChanged)
        self.class_combo = QComboBox()
        self.class_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.class_combo.setMinimumContentsLength(8)  # a narrow side column must not clip the panel
        self.class_combo.setToolTip("Which class's activation map to overlay")
        self.class_combo.currentIndexChanged.connect(self.heatmapChanged)
        # the heatmap follows the top class of each new result, unless the reader picked one
        self.class_picked_by_reader = False
        self.class_combo.activated.connect(lambda _index: self._reader_picked_class())
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Heatmap opacity")
        self.opacity.valueChanged.connect(self.heatmapChanged)
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, 90)
        self.threshold.setValue(0)
        self.threshold.setToolTip("Hide heatmap values below this fraction of the maximum")
        self.threshold.valueChanged.connect(self.heatmapChanged)
        self.colormap = QComboBox()
        self.colormap.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.colormap.setMinimumContentsLength(8)  # a narrow side column must not clip the panel
        self.colormap.addItems(list(COLORMAPS))
        self.colormap.setToolTip("Heatmap colour palette")
        self.legend = ColorLegend()
        self.colormap.currentTextChanged.connect(self.legend.set_colormap)
        self.colormap.currentTextChanged.connect(lambda _t: self.heatmapChanged.emit())

        self.method_combo = QComboBox()
        self.method_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.method_combo.setMinimumContentsLength(8)  # a narrow column must not clip the panel
        for method_id, label in REGION_METHODS:
            self.method_combo.addItem(label, method_id)
        self.method_combo.setToolTip(
            "Second-opinion saliency method (pytorch-grad-cam) for the "
            "region on screen; Grad-CAM is the default"
        )
        self.layer_combo = QComboBox()
        self.layer_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.layer_combo.setMinimumContentsLength(8)  # a narrow side column must not clip the panel
        self.layer_combo.addItem("last block (layer4)", "layer4")
        self.layer_combo.addItem("finer (layer3)", "layer3")
        self.layer_combo.setToolTip(
            "Which network layer the map comes from: layer3 is twice "
            "as fine, layer4 is what the class decision uses"
        )
        self.explain_available = True  # False where torch is missing (the small app)
        self.explain_button = QPushButton("Explain visible region")
        self.explain_button.setToolTip(
            "Compute the chosen saliency map for the chosen class "
            "over the region on screen (zoom in first: at most "
            "about 1 mm a side)"
        )
        self.explain_button.clicked.connect(
            lambda: self.explainRequested.emit(
                self.method_combo.currentData(), self.layer_combo.currentData()
            )
        )
        self.clear_explain_button = QPushButton("Back to whole-mosaic map")
        self.clear_explain_button.clicked.connect(self.clearExplanationRequested)
        self.clear_explain_button.setVisible(False)
        self.explain_label = QLabel("")
        self.explain_label.setWordWrap(True)

        run_row = QHBoxLayout()
        run_row.addWidget(self.classify_button)
        run_row.addWidget(self.progress, 1)
        run_row.addWidget(self.cancel_button)
        heat_row = QHBoxLayout()
        heat_row.addWidget(self.show_heatmap)
        heat_row.addWidget(self.class_combo, 1)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        opacity_row.addWidget(self.opacity, 1)
        opacity_row.addWidget(QLabel("Threshold"))
        opacity_row.addWidget(self.threshold, 1)
        palette_row = QHBoxLayout()
        palette_row.addWidget(self.colormap)
        palette_row.addWidget(self.legend, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.banner)
        layout.addLayout(run_row)
        layout.addWidget(self.model_label)
        layout.addWidget(self.trust_label)
        layout.addWidget(self.ood_label)
        layout.addWidget(self.plot)
        layout.addWidget(self.scale_label)
        layout.addWidget(self.summary_label)
        self.summary_label.setMinimumHeight(self.summary_label.fontMetrics().height() * 3)
        layout.addLayout(heat_row)
        layout.addLayout(opacity_row)
        layout.addLayout(palette_row)
        explain_row = QHBoxLayout()
        explain_row.addWidget(self.method_combo, 1)
        explain_row.addWidget(self.layer_combo)
        layout.addLayout(explain_row)
        explain_buttons = QHBoxLayout()
        explain_buttons.addWidget(self.explain_button)
        explain_buttons.addWidget(self.clear_explain_button)
        layout.addLayout(explain_buttons)
        layout.addWidget(self.explain_label)
        layout.addStretch(1)
        self._set_heatmap_controls_enabled(False)

    # -- running --------------------------------------------------------------------------

    def set_running(self, running: bool) -> None:
        self.classify_button.setEnabled(not running)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if running:
            self.progress.setRange(0, 0)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done}/{total} tiles")

    def set_model_info(self, name: str, version: str, synthetic: bool, trust: str = "") -> None:
        self.banner.setVisible(synthetic)
        self.model_label.setText(f"Model: {name} {version}")
        self.set_model_trust(trust)

    def set_model_trust(self, trust: str) -> None:
        """Show "Unverified model" for an unsigned/unknown-key model ("" or signed: hide)."""
        unverified = trust.startswith("unverified")
        why = trust.split(":", 1)[1].strip() if ":" in trust else trust
        self.trust_label.setText(UNVERIFIED_TEXT.format(why=why) if unverified else "")
        self.trust_label.setVisible(unverified)
        signed = trust.startswith("signed by")
        self.model_label.setToolTip(trust if signed else "")

    # -- result ---------------------------------------------------------------------------

    def _reader_picked_class(self) -> None:
        self.class_picked_by_reader = True

    def clear(self) -> None:
        self.result = None
        self.class_picked_by_reader = False
        self.bars.setOpts(x0=[], y=[], width=[])
        for text in self._bar_texts:
            self.plot.removeItem(text)
        self._bar_texts = []
        self.summary_label.setText("")
        self.ood_label.setVisible(False)
        self.set_scale_note("")
        self.model_label.setText("No model run yet.")
        self.banner.setVisible(False)
        self.set_model_trust("")
        self.class_combo.clear()
        self._set_heatmap_controls_enabled(False)
        self.set_explanation_state("", False)
        self.set_running(False)

    def show_result(self, result: ResultView) -> None:
        previous_class = self.class_combo.currentData()
        self.result = result
        self.banner.setVisible(result.synthetic)
        sha = result.weights_sha256[:12]
        self.model_label.setText(
            f"Model: {result.model_name} {result.model_version} (weights {sha}…)"
        )
        self.set_model_trust(result.model_trust)
        self.model_label.setToolTip(
            f"weights sha256 {result.weights_sha256}"
            + (f"; {result.model_trust}" if result.model_trust else "")
        )
        for text in self._bar_texts:
            self.plot.removeItem(text)
        self._bar_texts = []
        n = len(result.class_ids)
        ticks = [(n - 1 - i, name) for i, name in enumerate(result.class_names)]
        self.plot.getAxis("left").setTicks([ticks])
        self.plot.setYRange(-0.6, n - 0.4, padding=0)
        ood_text, grey = ood_message(result)
        self.ood_label.setText(ood_text)
        self.ood_label.setVisible(bool(ood_text))
        self.ood_label.setStyleSheet("font-weight: bold; color: #e0a040;" if grey else "")
        self.set_scale_note(result.scale_note)
        if result.probabilities is not None:
            probs = list(result.probabilities)
            top = int(np.argmax(probs))
            brushes = [
                pg.mkBrush(230, 150, 60) if i == top else pg.mkBrush(90, 150, 230) for i in range(n)
            ]
            if grey:
                brushes = [pg.mkBrush(*GREY_BRUSH) for _ in range(n)]
            self.bars.setOpts(
                x0=[0] * n, y=[n - 1 - i for i in range(n)], width=probs, brushes=brushes
            )
            for i, p in enumerate(probs):
                text = pg.TextItem(f"{p * 100:.0f}%", color=(235, 235, 235), anchor=(0, 0.5))
                text.setPos(min(p, 0.82) + 0.02, n - 1 - i)
                self.plot.addItem(text)
                self._bar_texts.append(text)
            lead = "Partial result, still running: " if result.partial else ""
            if grey:
                lead += "Not meaningful (outside the training data): "
            self.summary_label.setText(
                f"{lead}Most likely: {result.class_names[top]} ({probs[top] * 100:.0f}%). "
                f"{result.detail}"
            )
        else:
            self.bars.setOpts(x0=[], y=[], width=[])
            self.summary_label.setText(f"No prediction: {result.status}. {result.detail}")
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for cid, name in zip(result.class_ids, result.class_names, strict=True):
            self.class_combo.addItem(name, cid)
        if result.ood_heatmap is not None:
            self.class_combo.addItem(OOD_LAYER_NAME, OOD_LAYER)
        index = self.class_combo.findData(previous_class) if self.class_picked_by_reader else -1
        if index < 0 and result.probabilities is not None:
            index = int(np.argmax(result.probabilities))
        self.class_combo.setCurrentIndex(max(index, 0))
        self.class_combo.blockSignals(False)
        self._set_heatmap_controls_enabled(result.heatmap is not None)
        self.heatmapChanged.emit()

    def _set_heatmap_controls_enabled(self, enabled: bool) -> None:
        for widget in (
            self.show_heatmap,
            self.class_combo,
            self.opacity,
            self.threshold,
            self.colormap,
            self.legend,
            self.method_combo,
            self.layer_combo,
            self.explain_button,
        ):
            widget.setEnabled(enabled)
        self.explain_button.setEnabled(enabled and self.explain_available)

    def set_explanation_state(self, text: str, active: bool, busy: bool = False) -> None:
        self.explain_label.setText(text)
        self.clear_explain_button.setVisible(active)
        self.explain_button.setEnabled(
            not busy and self.result is not None and self.explain_available
        )

    def set_explain_available(self, available: bool, reason: str = "") -> None:
        """Whether "Explain visible region" can run here (it needs torch)."""
        self.explain_available = available
        if reason:
            self.explain_button.setToolTip(reason)
        if not available:
            self.explain_button.setEnabled(False)

    def overlay(self) -> tuple[QImage, tuple[float, float]] | None:
        """The heatmap image for the chosen class and its level-0 span, or None."""
        result = self.result
        if result is None or result.heatmap is None or not self.show_heatmap.isChecked():
            return None
        cid = self.class_combo.currentData()
        if cid == OOD_LAYER and result.ood_heatmap is not None:
            plane = result.ood_heatmap
        elif cid is None or cid not in result.class_ids:
            return None
        else:
            plane = result.heatmap[result.class_ids.index(cid)]
        image = heatmap_image(plane, self.colormap.currentText(), self.threshold.value() / 100)
        return image, result.heatmap_span

    def set_scale_note(self, text: str) -> None:
        """Show the optional scale check (engine.check_scale) in words, or hide it."""
        self.scale_label.setText(text)
        self.scale_label.setVisible(bool(text))

    def opacity_value(self) -> float:
        return self.opacity.value() / 100.0
