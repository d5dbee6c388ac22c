"""Brightness / contrast / gamma with a histogram (pyqtgraph), auto-contrast and reset."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.ui.tiles import DisplaySettings


class ContrastPanel(QWidget):
    displayChanged = Signal(object)  # DisplaySettings

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._max_value = 255.0
        self._auto_range = (0.0, 255.0)
        self._value_map = None  # MosaicInfo.pixel_map of a float/signed/32-bit file
        self._updating = False
        self.plot = pg.PlotWidget(background=(20, 20, 20))
        self.plot.setMinimumHeight(110)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideAxis("left")
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.setToolTip(
            "Histogram of the mosaic. Drag the shaded band or its edges to set "
            "the black and white points."
        )
        self.curve = pg.PlotDataItem(
            fillLevel=0,
            brush=(120, 160, 220, 110),
            pen=pg.mkPen((150, 190, 240), width=1),
            stepMode="center",
        )
        self.plot.addItem(self.curve)
        self.region = pg.LinearRegionItem(values=(0, 255), brush=(255, 190, 40, 40))
        self.region.sigRegionChanged.connect(self._on_region)
        self.plot.addItem(self.region)

        self.black_label = QLabel()
        self.white_label = QLabel()
        self.gamma = QSlider(Qt.Orientation.Horizontal)
        self.gamma.setRange(20, 300)
        self.gamma.setValue(100)
        self.gamma.setToolTip("Gamma: below 1 darkens mid-tones, above 1 brightens them")
        self.gamma.valueChanged.connect(self._emit)
        self.gamma_label = QLabel("gamma 1.00")
        self.invert = QCheckBox("Invert")
        self.invert.setToolTip("Show bright structures dark (some readers prefer it for cells)")
        self.invert.toggled.connect(self._emit)
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Stretch the 0.5-99.5 % intensity range to the screen (A)")
        self.auto_button.clicked.connect(self.auto_contrast)
        self.reset_button = QPushButton("Full range")
        self.reset_button.setToolTip("Show the full stored range without stretching")
        self.reset_button.clicked.connect(self.full_range)

        labels = QHBoxLayout()
        labels.addWidget(self.black_label)
        labels.addStretch(1)
        labels.addWidget(self.white_label)
        gamma_row = QHBoxLayout()
        gamma_row.addWidget(self.gamma_label)
        gamma_row.addWidget(self.gamma, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.auto_button)
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.invert)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.plot)
        layout.addLayout(labels)
        layout.addLayout(gamma_row)
        layout.addLayout(buttons)
        self._refresh_labels()

    def set_data(
        self, sample: np.ndarray | None, dtype: np.dtype, auto_range: tuple[float, float]
    ) -> None:
        """Histogram from a (small) sample of the mosaic; start auto-contrasted."""
        self._max_value = 65535.0 if np.dtype(dtype).itemsize == 2 else 255.0
        self._auto_range = auto_range
        if sample is not None and sample.size:
            values = sample if sample.ndim == 2 else sample[..., :3].mean(axis=-1)
            hi = max(float(np.percentile(values, 99.9)) * 1.1, auto_range[1], 1.0)
            hi = min(hi, self._max_value)
            counts, edges = np.histogram(values, bins=128, range=(0, hi))
            self.curve.setData(edges, np.log1p(counts.astype(np.float64)))
            self.plot.setXRange(0, hi, padding=0.02)
        self._updating = True
        self.region.setBounds((0, self._max_value))
        self.region.setRegion(auto_range)
        self.gamma.setValue(100)
        self.invert.setChecked(False)
        self._updating = False
        self._emit()

    def set_value_map(self, pixel_map) -> None:
        """Label black/white points in the file's own values (``MosaicInfo.pixel_map``).

        The black/white points stay in the 16-bit values the tiles hold; only the labels
        and their tooltip translate them. None: label the stored values.
        """
        self._value_map = pixel_map
        axis = self.plot.getAxis("bottom")
        if pixel_map is not None and pixel_map.kind == "linear":
            ticks = [(v, f"{pixel_map.real_value(v):.3g}") for v in (0, 16384, 32768, 49152, 65535)]
            axis.setTicks([ticks])
        else:
            axis.setTicks(None)
        self.plot.setToolTip(
            "Histogram of the mosaic. Drag the shaded band or its edges to set the black and "
            "white points." + (f"\nPixel map: {pixel_map.describe()}" if pixel_map else "")
        )
        self._refresh_labels()

    def settings(self) -> DisplaySettings:
        black, white = self.region.getRegion()
        return DisplaySettings(
            float(black),
            float(max(white, black + 1)),
            self.gamma.value() / 100.0,
            self.invert.isChecked(),
        )

    def auto_contrast(self) -> None:
        self.region.setRegion(self._auto_range)

    def full_range(self) -> None:
        self.region.setRegion((0, self._max_value))

    def _on_region(self) -> None:
        self._emit()

    def _refresh_labels(self) -> None:
        s = self.settings()
        if self._value_map is not None:
            black, white = self._value_map.real_value(s.black), self._value_map.real_value(s.white)
            self.black_label.setText(f"black {black:.4g}")
            self.white_label.setText(f"white {white:.4g}")
        else:
            self.black_label.setText(f"black {s.black:.0f}")
            self.white_label.setText(f"white {s.white:.0f}")
        self.gamma_label.setText(f"gamma {s.gamma:.2f}")

    def _emit(self, *_args) -> None:
        self._refresh_labels()
        if not self._updating:
            self.displayChanged.emit(self.settings())
