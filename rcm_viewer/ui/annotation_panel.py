"""The list of a case's region annotations: what each is, how big, and a click to go there.

Why it is shaped so: the panel is a view of :class:`AnnotationLayer` (it holds no
annotation state of its own and redraws on ``annotationsChanged``), so the list, the
items on the mosaic and the store cannot disagree. Every edit it offers (relabel,
colour, criterion link, delete, import) goes through the layer's undo stack and is saved
at once. File dialogs and the colour picker are thin wrappers around plain methods
(``import_file``, ``export_file``, ``set_colour``) that tests and the window call
directly. Errors are shown in the panel and sent on ``errorOccurred`` for the window's
dialog; nothing here blocks on a modal box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import annotations as geo
from rcm_viewer.ui.annotations import AnnotationLayer

COLUMNS = ("Label", "Shape", "Size", "Criterion")
ID_ROLE = Qt.ItemDataRole.UserRole
#: Colours offered first (distinct on a grey RCM mosaic); any other comes from the picker.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 210, 0),
    (255, 80, 80),
    (80, 200, 255),
    (120, 255, 120),
    (255, 120, 255),
    (255, 160, 40),
)
GEOJSON_FILTER = "GeoJSON (*.geojson *.json);;All files (*)"


def _swatch(rgb: Sequence[int], size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(int(rgb[0]), int(rgb[1]), int(rgb[2])))
    return QIcon(pixmap)


class AnnotationPanel(QWidget):
    """Annotations of the open case, with the tools and the edits a reader needs.

    ``regionRequested(QRectF)`` carries the level-0 rectangle of the annotation clicked
    in the list; the panel also asks the layer to show it. ``errorOccurred(str)``
    repeats the layer's one-line errors for a dialog.
    """

    regionRequested = Signal(QRectF)
    errorOccurred = Signal(str)

    def __init__(self, layer: AnnotationLayer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("annotationPanel")
        self.layer = layer
        self._updating = False
        self._build()
        layer.annotationsChanged.connect(self.refresh)
        layer.selectionChanged.connect(self._show_selection)
        layer.errorOccurred.connect(self._show_error)
        layer.toolChanged.connect(self._show_tool)
        self.regionRequested.connect(layer.show_rect)
        self.refresh()

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.setSpacing(4)

        tools = QGridLayout()  # two rows: the side column stays narrow on a laptop
        tools.setSpacing(2)
        self.tool_buttons: dict[str | None, QToolButton] = {}
        for tool, action in self.layer.tool_actions(self).items():
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setAutoRaise(True)
            text = action.text().replace("&", "")
            button.setText("Select" if tool is None else text)
            index = len(self.tool_buttons)
            self.tool_buttons[tool] = button
            tools.addWidget(button, index // 3, index % 3)
        outer.addLayout(tools)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        self.label_combo = QComboBox(self)
        self.label_combo.setEditable(True)
        self.label_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.label_combo.setToolTip(
            "Label of the selected annotations and of the next ones drawn: type any text and "
            "press Enter, or choose an RCM criterion of the form (this also links it)."
        )
        self.criterion_combo = QComboBox(self)
        self.criterion_combo.setToolTip(
            "Link the selected annotations to a criterion of the assessment form "
            '("pagetoid cells here"); the form marks linked criteria with \u25c6.'
        )
        self.colour_combo = QComboBox(self)
        self.colour_combo.setToolTip("Colour of the selected annotations and of the next ones")
        for rgb in PALETTE:
            self.colour_combo.addItem(_swatch(rgb), "", rgb)
        self.colour_combo.addItem("Other…", None)
        colour_row = QHBoxLayout()
        colour_row.addWidget(self.colour_combo, 1)
        form.addRow("Label", self.label_combo)
        form.addRow("Criterion", self.criterion_combo)
        form.addRow("Colour", colour_row)
        outer.addLayout(form)
        for combo in (self.label_combo, self.criterion_combo):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)

        self.tree = QTreeWidget(self)
        self.tree.setObjectName("annotationList")
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        triggers = QAbstractItemView.EditTrigger
        self.tree.setEditTriggers(triggers.DoubleClicked | triggers.EditKeyPressed)
        self.tree.setToolTip(
            "Click an annotation to go there; double-click (or F2) its label to rename it."
        )
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(3, 90)
        outer.addWidget(self.tree, 1)

        buttons = QHBoxLayout()
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.setToolTip("Delete the selected annotations (Del; Ctrl+Z undoes)")
        self.import_button = QPushButton("Import…", self)
        self.import_button.setToolTip(
            "Add annotations from a GeoJSON file (as QuPath exports them: File > Export "
            "objects as GeoJSON)"
        )
        self.export_button = QPushButton("Export…", self)
        self.export_button.setToolTip(
            "Save the annotations as GeoJSON in full-resolution pixel coordinates "
            "(QuPath: File > Import objects)"
        )
        self.undo_button = QToolButton(self)
        self.undo_button.setDefaultAction(self.layer.undo_stack.createUndoAction(self, "Undo"))
        self.redo_button = QToolButton(self)
        self.redo_button.setDefaultAction(self.layer.undo_stack.createRedoAction(self, "Redo"))
        for widget in (self.undo_button, self.redo_button, self.delete_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        files = QHBoxLayout()
        for widget in (self.import_button, self.export_button):
            files.addWidget(widget)
        files.addStretch(1)
        outer.addLayout(files)

        self.summary_label = QLabel(self)
        self.summary_label.setWordWrap(True)
        self.error_label = QLabel(self)
        self.error_label.setObjectName("annotationError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d04040; font-weight: bold;")
        self.error_label.hide()
        outer.addWidget(self.summary_label)
        outer.addWidget(self.error_label)

        self.tree.itemSelectionChanged.connect(self._tree_selection_changed)
        self.tree.itemClicked.connect(self._item_clicked)
        self.tree.itemChanged.connect(self._item_edited)
        self.label_combo.lineEdit().returnPressed.connect(self._label_typed)
        self.label_combo.activated.connect(self._label_chosen)
        self.criterion_combo.activated.connect(self._criterion_chosen)
        self.colour_combo.activated.connect(self._colour_chosen)
        self.delete_button.clicked.connect(self.layer.remove_selected)
        self.import_button.clicked.connect(self._import_dialog)
        self.export_button.clicked.connect(self._export_dialog)

    # ------------------------------------------------------------------ showing

    def _fill_choices(self) -> None:
        criteria = self.layer.criteria()
        with QSignalBlocker(self.label_combo):
            text = self.label_combo.currentText()
            self.label_combo.clear()
            self.label_combo.addItem(geo.DEFAULT_LABEL, None)
            for key, _title, label in criteria:
                self.label_combo.addItem(label, key)
            self.label_combo.setEditText(text or self.layer.current_label)
        with QSignalBlocker(self.criterion_combo):
            current = self.criterion_combo.currentData()
            self.criterion_combo.clear()
            self.criterion_combo.addItem("\u2014 not linked \u2014", None)
            for key, title, label in criteria:
                self.criterion_combo.addItem(f"{title}: {label}", key)
            index = self.criterion_combo.findData(current)
            self.criterion_combo.setCurrentIndex(max(0, index))

    def refresh(self) -> None:
        """Rebuild the list from the layer (keeps the selection)."""
        self._fill_choices()
        selected = set(self.layer.selected_ids())
        self._updating = True
        try:
            self.tree.clear()
            for feature in self.layer.features(copy=False):
                fid = str(feature["id"])
                measurement = self.layer.measurement(fid)
                criterion = geo.criterion_of(feature)
                row = QTreeWidgetItem(
                    [
                        geo.label_of(feature) or geo.display_name(feature),
                        geo.SHAPE_LABELS[geo.shape_of(feature)],
                        measurement.short(),
                        "\u25c6 " + self.layer.criterion_text(criterion).split(": ")[-1]
                        if criterion
                        else "",
                    ]
                )
                row.setData(0, ID_ROLE, fid)
                row.setIcon(0, _swatch(geo.color_of(feature)))
                row.setFlags(row.flags() | Qt.ItemFlag.ItemIsEditable)
                row.setToolTip(0, self._tooltip(feature, measurement))
                row.setToolTip(2, self._tooltip(feature, measurement))
                if criterion:
                    row.setToolTip(3, f"Linked to {self.layer.criterion_text(criterion)}")
                self.tree.addTopLevelItem(row)
                row.setSelected(fid in selected)
        finally:
            self._updating = False
        count = self.tree.topLevelItemCount()
        enabled = self.layer.case_id is not None
        for widget in (
            self.import_button,
            self.label_combo,
            self.criterion_combo,
            self.colour_combo,
            *self.tool_buttons.values(),
        ):
            widget.setEnabled(enabled)
        self.export_button.setEnabled(enabled and count > 0)
        self.delete_button.setEnabled(bool(selected))
        if not enabled:
            self.summary_label.setText("Open a mosaic to annotate it.")
        elif count == 0:
            self.summary_label.setText(
                "No annotations yet: choose a tool (R, E, P, D, T) and draw on the mosaic."
            )
        else:
            scale = "" if self.layer.pixel_size_um else " (pixel size unknown: sizes in px)"
            self.summary_label.setText(f"{count} annotation(s); saved with the case{scale}.")

    def _tooltip(self, feature: dict, measurement: geo.Measurement) -> str:
        lines = [geo.display_name(feature)]
        if geo.name_of(feature) and geo.label_of(feature):
            lines.append(f"Label: {geo.label_of(feature)}")
        if measurement.width_um is not None and measurement.shape != "point":
            lines.append(f"{measurement.width_um:.1f} \u00d7 {measurement.height_um:.1f} \u00b5m")
        elif measurement.shape != "point":
            lines.append(f"{measurement.width_px:.0f} \u00d7 {measurement.height_px:.0f} px")
        lines.append(measurement.summary())
        if feature.get("properties", {}).get("isLocked"):
            lines.append("Locked (from QuPath): cannot be moved or edited")
        return "\n".join(lines)

    def _show_selection(self, ids: list[str]) -> None:
        wanted = set(ids)
        self._updating = True
        try:
            for index in range(self.tree.topLevelItemCount()):
                row = self.tree.topLevelItem(index)
                row.setSelected(row.data(0, ID_ROLE) in wanted)
        finally:
            self._updating = False
        self.delete_button.setEnabled(bool(ids))
        if len(ids) == 1:
            feature = self.layer.feature(ids[0])
            with QSignalBlocker(self.label_combo):
                self.label_combo.setEditText(geo.label_of(feature))
            with QSignalBlocker(self.criterion_combo):
                index = self.criterion_combo.findData(geo.criterion_of(feature))
                self.criterion_combo.setCurrentIndex(max(0, index))

    def _show_tool(self, tool: str | None) -> None:
        self.error_label.hide()

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()
        self.errorOccurred.emit(message)

    # ------------------------------------------------------------------ list actions

    def row_for(self, feature_id: str) -> QTreeWidgetItem | None:
        for index in range(self.tree.topLevelItemCount()):
            row = self.tree.topLevelItem(index)
            if row.data(0, ID_ROLE) == feature_id:
                return row
        return None

    def _tree_selection_changed(self) -> None:
        if self._updating:
            return
        ids = [str(row.data(0, ID_ROLE)) for row in self.tree.selectedItems()]
        self.layer.select(ids)

    def _item_clicked(self, row: QTreeWidgetItem, _column: int) -> None:
        fid = str(row.data(0, ID_ROLE))
        self.go_to(fid)

    def go_to(self, feature_id: str) -> None:
        """Select an annotation and ask the view to show it (``regionRequested``)."""
        self.layer.select([feature_id])
        self.regionRequested.emit(self.layer.region_of(feature_id))

    def _item_edited(self, row: QTreeWidgetItem, column: int) -> None:
        if self._updating or column != 0:
            return
        fid = str(row.data(0, ID_ROLE))
        text = row.text(0).strip()
        if text and text != geo.label_of(self.layer.feature(fid)):
            self.layer.update_properties([fid], "Rename annotation", label=text)
        else:
            self.refresh()

    # ------------------------------------------------------------------ edits

    def _targets(self) -> list[str]:
        return self.layer.selected_ids()

    def set_label(self, label: str, criterion: str | None | bool = False) -> None:
        """Label the selected annotations (and the next ones); a criterion also links them."""
        label = label.strip()
        if not label:
            return
        self.layer.set_style(label=label, criterion=criterion)
        changes: dict = {"label": label}
        if criterion is not False:
            changes["criterion"] = criterion or None
        self.layer.update_properties(self._targets(), "Relabel annotation", **changes)

    def set_criterion(self, criterion: str | None) -> None:
        """Link the selected annotations to a criterion (None unlinks)."""
        self.layer.set_style(criterion=criterion)
        self.layer.update_properties(self._targets(), "Link annotation", criterion=criterion)

    def set_colour(self, colour: QColor | Sequence[int]) -> None:
        rgb = (
            (colour.red(), colour.green(), colour.blue())
            if isinstance(colour, QColor)
            else tuple(int(c) for c in colour[:3])
        )
        self.layer.set_style(color=rgb)
        self.layer.update_properties(self._targets(), "Recolour annotation", color=list(rgb))

    def import_file(self, path: str | Path) -> int:
        self.error_label.hide()
        count = self.layer.import_file(path)
        if count:
            self.summary_label.setText(f"Imported {count} annotation(s) from {Path(path).name}.")
        return count

    def export_file(self, path: str | Path) -> bool:
        self.error_label.hide()
        ok = self.layer.export_file(path)
        if ok:
            self.summary_label.setText(
                f"Exported {len(self.layer.features())} annotation(s) to {Path(path).name}."
            )
        return ok

    def _label_typed(self) -> None:
        text = self.label_combo.currentText()
        index = self.label_combo.findText(text)
        key = self.label_combo.itemData(index) if index >= 0 else None
        self.set_label(text, key if key else False)

    def _label_chosen(self, index: int) -> None:
        key = self.label_combo.itemData(index)
        self.set_label(self.label_combo.itemText(index), key if key else False)
        if key:
            with QSignalBlocker(self.criterion_combo):
                self.criterion_combo.setCurrentIndex(max(0, self.criterion_combo.findData(key)))

    def _criterion_chosen(self, index: int) -> None:
        self.set_criterion(self.criterion_combo.itemData(index))

    def _colour_chosen(self, index: int) -> None:
        rgb = self.colour_combo.itemData(index)
        if rgb is None:
            current = QColor(*self.layer.current_color)
            picked = QColorDialog.getColor(current, self, "Annotation colour")
            if not picked.isValid():
                return
            self.set_colour(picked)
            return
        self.set_colour(rgb)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import annotations", "", GEOJSON_FILTER)
        if path:
            self.import_file(path)

    def _export_dialog(self) -> None:
        name = f"{self.layer.case_id or 'annotations'}.geojson"
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations", name, GEOJSON_FILTER)
        if path:
            self.export_file(path)
