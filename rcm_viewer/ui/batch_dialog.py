"""File > Classify folder...: a folder of mosaics becomes a worklist of cases.

Why it is shaped so:

* **One engine.** The worker runs ``rcm_viewer.inference.batch.classify_paths`` over a lazy
  ``FileScan``, exactly what ``rcm-viewer classify`` runs; this module adds only the
  view (progress, a live table) and the worklist (cases in the store).
* **Never in the GUI thread.** Scanning, hashing, classifying and the case-store writes
  run in a ``Worker`` (the store is thread-safe); the GUI only receives small dicts by
  signal. The dialog is non-modal, so the reader can read a case while the batch runs.
  Pause blocks the worker between batches of tiles; cancel stops it there.
* **Reader-first holds here too.** Each classified mosaic finds or creates its case
  (``case_for_mosaic``) and its result is saved with ``save_ai_result``; the table then
  reads back what the store lets it see. For a reader-first case whose initial assessment
  is not committed the store returns no result, so the table has no probability to show,
  sort by or export: it says "hidden until the initial assessment is committed". Sorting
  by a hidden probability would leak the ranking, so hidden rows sort as empty.
* **Opening a case is the window's job**: double-click or Next case emits
  ``caseOpenRequested(case_id, mosaic_path)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSortFilterProxyModel,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import CaseStore
from rcm_viewer.errors import RcmError
from rcm_viewer.inference.batch import printable
from rcm_viewer.ui.workers import Worker

HIDDEN_TEXT = "hidden until the initial assessment is committed"
HIDDEN_NOTE = (
    "Reader-first: probabilities of cases whose initial assessment is not committed are "
    "hidden (and not sortable or exported) until that assessment is committed."
)
STATUS_HIDDEN = "ok (probabilities hidden: initial assessment not committed)"
ProbabilityRole = Qt.ItemDataRole.UserRole + 1
SortRole = Qt.ItemDataRole.UserRole + 2


@dataclass(frozen=True)
class BatchEntry:
    """One file of the worklist as the table shows it (never more than the store allows)."""

    path: Path
    status: str
    ok: bool
    class_ids: tuple[str, ...]
    probabilities: tuple[float, ...] | None
    top_class: str | None
    case_id: str | None
    hidden: bool
    seconds: float
    row: Any  # the engine's ClassificationRow, without its prediction (for exports)


class BatchResultsModel(QAbstractTableModel):
    """The worklist rows: file, status, top class, one probability per class, case, time."""

    FIXED_BEFORE = ("File", "Status", "Top class")
    FIXED_AFTER = ("Case", "Seconds")

    def __init__(
        self,
        class_ids: tuple[str, ...] = ("melanoma", "bcc", "naevus"),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.class_ids = class_ids
        self.entries: list[BatchEntry] = []

    def set_classes(self, class_ids: tuple[str, ...]) -> None:
        self.beginResetModel()
        self.class_ids = tuple(class_ids)
        self.entries = []
        self.endResetModel()

    def headers(self) -> list[str]:
        return [*self.FIXED_BEFORE, *(f"p({c})" for c in self.class_ids), *self.FIXED_AFTER]

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.headers())

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,  # noqa: N802
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.headers()[section]
        return None

    def probability_column(self, column: int) -> int | None:
        index = column - len(self.FIXED_BEFORE)
        return index if 0 <= index < len(self.class_ids) else None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid():
            return None
        entry = self.entries[index.row()]
        column = index.column()
        name = self.headers()[column]
        class_index = self.probability_column(column)
        if class_index is not None:
            value = None if entry.probabilities is None else entry.probabilities[class_index]
            if role == ProbabilityRole:
                return value
            if role == SortRole:
                return -1.0 if value is None else value
            if role == Qt.ItemDataRole.DisplayRole:
                if entry.hidden:
                    return HIDDEN_TEXT
                return "" if value is None else f"{value:.3f}"
            if role == Qt.ItemDataRole.ToolTipRole and entry.hidden:
                return HIDDEN_NOTE
            return None
        if role in (Qt.ItemDataRole.DisplayRole, SortRole):
            if name == "File":
                return printable(entry.path.name)
            if name == "Status":
                return STATUS_HIDDEN if entry.hidden else entry.status
            if name == "Top class":
                return "" if entry.hidden else entry.top_class or ""
            if name == "Case":
                return entry.case_id or ""
            if name == "Seconds":
                return entry.seconds if role == SortRole else f"{entry.seconds:.1f}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{entry.path}\n{entry.status}"
        if role == Qt.ItemDataRole.ForegroundRole and not entry.ok:
            return QColor("#d9534f")
        return None

    def add(self, entry: BatchEntry) -> None:
        row = len(self.entries)
        self.beginInsertRows(QModelIndex(), row, row)
        self.entries.append(entry)
        self.endInsertRows()

    def replace_entry(self, row: int, entry: BatchEntry) -> None:
        self.entries[row] = entry
        self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))


class BatchFilterModel(QSortFilterProxyModel):
    """Sorts by ``SortRole`` (numbers as numbers); filters by status and top class."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SortRole)
        self.show_status = "all"  # all | ok | failed
        self.top_class: str | None = None

    def set_filter(self, status: str, top_class: str | None) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9; invalidateFilter is deprecated
            self.beginFilterChange()
            self.show_status, self.top_class = status, top_class
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            self.show_status, self.top_class = status, top_class
            self.invalidateFilter()

    def filterAcceptsRow(
        self,
        source_row: int,  # noqa: N802
        source_parent: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        model = self.sourceModel()
        if not isinstance(model, BatchResultsModel):
            return True
        entry = model.entries[source_row]
        if self.show_status == "ok" and not entry.ok:
            return False
        if self.show_status == "failed" and entry.ok:
            return False
        return not (self.top_class and (entry.hidden or entry.top_class != self.top_class))


class ProbabilityDelegate(QStyledItemDelegate):
    """A probability as a bar with its value; the hidden text as plain text."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        value = index.data(ProbabilityRole)
        if value is None:
            super().paint(painter, option, index)
            return
        painter.save()
        rect: QRect = option.rect.adjusted(2, 3, -2, -3)
        painter.fillRect(rect, option.palette.base())
        bar = QRect(rect.left(), rect.top(), int(rect.width() * float(value)), rect.height())
        painter.fillRect(bar, QColor(70, 130, 200, 170))
        painter.setPen(option.palette.text().color())
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{value:.3f}")
        painter.restore()


def _globs(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


class BatchDialog(QDialog):
    """Classify folders into a worklist; see the module docstring."""

    caseOpenRequested = Signal(str, str)  # case_id, mosaic path  # noqa: N815
    rowAdded = Signal(int)  # number of rows so far (tests, status bars)  # noqa: N815
    batchFinished = Signal(str)  # finished | cancelled | failed: <reason>  # noqa: N815

    def __init__(
        self,
        store: CaseStore,
        parent: QWidget | None = None,
        *,
        user: str | None = None,
        reader_mode: str | None = None,
        models_dir: str | Path | None = None,
        device: str = "auto",
    ) -> None:
        super().__init__(parent)
        from rcm_viewer.session import resolve_reader
        from rcm_viewer.ui.ai_gate import reader_mode_for_new_cases
        from rcm_viewer.ui.settings import reader_name

        self.store = store
        self.user = user or resolve_reader(reader_name())
        self.reader_mode = reader_mode or reader_mode_for_new_cases()
        self.device = device
        self.models_dir = models_dir
        self._job: Worker | None = None
        self._paused = threading.Event()
        self._started = 0.0
        self._files_done = 0
        self.setWindowTitle("Classify folder")
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.setModal(False)
        self.resize(980, 640)
        self._build()
        self._load_models()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.folder_list = QListWidget()
        self.folder_list.setToolTip("Folders (or single mosaic files) to classify")
        self.folder_list.setMaximumHeight(80)
        add = QPushButton("Add folder…")
        add.setToolTip("Add a folder of mosaics to the batch")
        add.clicked.connect(self._choose_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(
            lambda: [
                self.folder_list.takeItem(self.folder_list.row(i))
                for i in self.folder_list.selectedItems()
            ]
        )
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        folders = QHBoxLayout()
        folders.addWidget(self.folder_list, 1)
        folders.addLayout(buttons)

        self.recursive = QCheckBox("Include subfolders")
        self.recursive.setChecked(True)
        self.include = QLineEdit()
        self.include.setPlaceholderText("e.g. *.tif, lesion_*  (empty: every mosaic)")
        self.include.setToolTip(
            "Only file names (or paths below the folder) matching one of "
            "these globs, separated by commas"
        )
        self.exclude = QLineEdit()
        self.exclude.setPlaceholderText("e.g. *_old.tif")
        self.exclude.setToolTip("Leave out files matching one of these globs")
        self.model_box = QComboBox()
        self.model_box.setToolTip("The classifier model bundle")
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setRange(0.0, 50.0)
        self.pixel_size.setDecimals(3)
        self.pixel_size.setSpecialValueText("from each file")
        self.pixel_size.setSuffix(" µm/px")
        self.pixel_size.setToolTip(
            "One pixel size for every file (overrides the files); "
            "leave at 'from each file' to use what each file records"
        )
        self.output = QLineEdit()
        self.output.setPlaceholderText("optional: results.csv, .json or .jsonl")
        self.output.setToolTip(
            "Rows are appended to this file as each mosaic finishes; "
            "probabilities hidden by reader-first are left out"
        )
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_output)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Folders:", folders)
        form.addRow("", self.recursive)
        form.addRow("Include:", self.include)
        form.addRow("Exclude:", self.exclude)
        form.addRow("Model:", self.model_box)
        form.addRow("Pixel size:", self.pixel_size)
        form.addRow("Output file:", out_row)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Classify every mosaic (Ctrl+Return)")
        self.start_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Pause after the current batch of tiles; press again to go on")
        self.pause_button.toggled.connect(self.set_paused)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the batch (finished rows and cases are kept)")
        self.cancel_button.clicked.connect(self.cancel)
        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.cancel_button):
            controls.addWidget(button)
        controls.addStretch(1)

        self.overall = QProgressBar()
        self.overall.setFormat("%v / %m files")
        self.overall.setToolTip("Files done")
        self.per_file = QProgressBar()
        self.per_file.setFormat("tiles %p%")
        self.per_file.setToolTip("Tissue tiles of the current mosaic")
        self.status_label = QLabel("Choose folders, then Start.")
        self.status_label.setWordWrap(True)
        self.hidden_note = QLabel(HIDDEN_NOTE)
        self.hidden_note.setWordWrap(True)
        self.hidden_note.setStyleSheet("color: #b8860b;")
        self.hidden_note.setVisible(False)

        self.results = BatchResultsModel(parent=self)
        self.proxy = BatchFilterModel(self)
        self.proxy.setSourceModel(self.results)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Double-click a row to open its case")
        self.delegate = ProbabilityDelegate(self.table)
        self.table.doubleClicked.connect(self._open_index)
        self._apply_delegates()

        self.filter_box = QComboBox()
        self.filter_box.setToolTip("Show only some rows")
        self.filter_box.currentIndexChanged.connect(self._apply_filter)
        self.next_button = QPushButton("Next case")
        self.next_button.setToolTip("Open the next case in the table's order (Ctrl+N)")
        self.next_button.clicked.connect(self.next_case)
        QShortcut(QKeySequence("Ctrl+N"), self, activated=self.next_case)
        export_csv = QPushButton("Export CSV…")
        export_csv.clicked.connect(lambda: self._export(".csv"))
        export_json = QPushButton("Export JSON…")
        export_json.clicked.connect(lambda: self._export(".json"))
        for button in (export_csv, export_json):
            button.setToolTip("Save the rows (hidden probabilities are left out)")
        table_bar = QHBoxLayout()
        table_bar.addWidget(QLabel("Show:"))
        table_bar.addWidget(self.filter_box)
        table_bar.addStretch(1)
        table_bar.addWidget(self.next_button)
        table_bar.addWidget(export_csv)
        table_bar.addWidget(export_json)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(controls)
        layout.addWidget(self.overall)
        layout.addWidget(self.per_file)
        layout.addWidget(self.status_label)
        layout.addLayout(table_bar)
        layout.addWidget(self.hidden_note)
        layout.addWidget(self.table, 1)
        self._fill_filter()
        self._set_running(False)

    def _apply_delegates(self) -> None:
        self.table.setWordWrap(False)
        for column, name in enumerate(self.results.headers()):
            probability = self.results.probability_column(column) is not None
            if probability:
                self.table.setItemDelegateForColumn(column, self.delegate)
            width = {"File": 170, "Status": 280, "Top class": 90, "Case": 150}.get(name)
            self.table.setColumnWidth(column, 170 if probability else width or 70)

    def _fill_filter(self) -> None:
        self.filter_box.blockSignals(True)
        self.filter_box.clear()
        self.filter_box.addItem("All files", ("all", None))
        self.filter_box.addItem("Classified", ("ok", None))
        self.filter_box.addItem("Failed", ("failed", None))
        for class_id in self.results.class_ids:
            self.filter_box.addItem(f"Top class: {class_id}", ("ok", class_id))
        self.filter_box.blockSignals(False)

    def _apply_filter(self) -> None:
        status, top_class = self.filter_box.currentData() or ("all", None)
        self.proxy.set_filter(status, top_class)

    def _load_models(self) -> None:
        from rcm_viewer.inference import default_bundle_dir, list_bundles

        self.model_box.clear()
        try:
            default = default_bundle_dir(self.models_dir)
        except RcmError:
            default = None
        entries = list_bundles(self.models_dir)
        paths = {e.path for e in entries}
        if default is not None and default.resolve() not in paths:
            self.model_box.addItem(default.name, str(default))
        for entry in entries:
            label = (
                entry.manifest.display_name
                if entry.manifest
                else f"{entry.path.name} (unusable: {entry.problem})"
            )
            self.model_box.addItem(label, str(entry.path))
            if default is not None and entry.path == default.resolve():
                self.model_box.setCurrentIndex(self.model_box.count() - 1)

    # ------------------------------------------------------------------ inputs

    def add_paths(self, paths: list[str | Path]) -> None:
        for path in paths:
            self.folder_list.addItem(str(path))

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of mosaics")
        if folder:
            self.add_paths([folder])

    def _choose_output(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Results file", "results.csv", "CSV (*.csv);;JSON (*.json);;JSON Lines (*.jsonl)"
        )
        if name:
            self.output.setText(name)

    def set_model_dir(self, path: str | Path) -> None:
        self.model_box.insertItem(0, Path(path).name, str(path))
        self.model_box.setCurrentIndex(0)

    # ------------------------------------------------------------------ running

    def is_running(self) -> bool:
        return self._job is not None

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.pause_button.setChecked(False)

    def _error(self, text: str) -> None:
        self.status_label.setText(text)
        QMessageBox.warning(self, "Classify folder", text)

    def start(self) -> None:
        """Check the inputs, then run the batch in a worker (returns at once)."""
        from rcm_viewer.inference import load_bundle, read_manifest
        from rcm_viewer.inference.batch import FileScan, RowWriter, check_output_path

        if self._job is not None:
            return
        roots = [self.folder_list.item(i).text() for i in range(self.folder_list.count())]
        if not roots:
            self._error("Add at least one folder to classify.")
            return
        model_dir = self.model_box.currentData()
        output = self.output.text().strip()
        try:
            if output:
                check_output_path(output)
            if not model_dir:
                raise RcmError("No classifier model is installed: add a model bundle first.")
            manifest = read_manifest(model_dir)  # the weights are hashed in the worker
        except RcmError as exc:
            self._error(str(exc))
            return
        class_ids = manifest.class_ids
        if class_ids != self.results.class_ids:
            self.results.set_classes(class_ids)
            self._apply_delegates()
            self._fill_filter()
        scan = FileScan(
            roots,
            recursive=self.recursive.isChecked(),
            include=_globs(self.include.text()),
            exclude=_globs(self.exclude.text()),
        )
        pixel_size = self.pixel_size.value() or None
        paused = self._paused
        paused.clear()
        holder: dict[str, Worker] = {}

        def run(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> int:
            from rcm_viewer.inference.batch import classify_paths

            emit = holder["job"].signals.partial.emit
            bundle = load_bundle(model_dir)  # verifies the weights' checksum: not in the GUI

            def wait_if_paused() -> bool:
                while paused.is_set() and not cancelled():
                    time.sleep(0.05)
                return cancelled()

            def on_file(index: int, path: Path) -> None:
                wait_if_paused()
                emit({"kind": "file", "index": index, "total": scan.total or 0, "path": str(path)})

            def tiles(index: int, total: int, done: int, tile_total: int) -> None:
                progress(done, tile_total)

            writer = None
            if output:
                writer = RowWriter(output, class_ids, weights_sha256=bundle.manifest.weights_sha256)
            count = 0
            try:
                for row in classify_paths(
                    scan,
                    bundle,
                    pixel_size_um=pixel_size,
                    device=self.device,
                    progress=tiles,
                    cancel=wait_if_paused,
                    on_file=on_file,
                ):
                    entry = self._worklist_entry(row)
                    if writer is not None:
                        writer.write(_gated_row(entry))
                    emit({"kind": "row", "entry": entry, "total": scan.total or 0})
                    count += 1
                    if cancelled():
                        break
            finally:
                if writer is not None:
                    writer.close()
            return count

        job = Worker(run, name="batch classification")
        holder["job"] = job
        job.signals.partial.connect(self._on_partial)
        job.signals.progress.connect(self._on_tiles)
        job.signals.finished.connect(lambda n: self._done(f"finished: {n} file(s)"))
        job.signals.cancelled.connect(lambda: self._done("cancelled"))
        job.signals.failed.connect(lambda text: self._done(f"failed: {text}"))
        self._job = job
        self._started = time.monotonic()
        self._files_done = 0
        self.overall.setRange(0, 0)
        self.per_file.setRange(0, 100)
        self.per_file.setValue(0)
        self.status_label.setText("Looking for mosaics…")
        self._set_running(True)
        QThreadPool.globalInstance().start(job)

    def _worklist_entry(self, row: Any) -> BatchEntry:
        """(Worker thread.) Find or create the case, save the result, read back what the
        store lets this reader see."""
        from rcm_viewer.session import case_for_mosaic, stored_from_prediction

        case_id = None
        hidden = False
        probabilities = None
        top_class = None
        status = row.status
        ok = row.ok
        if ok and row.prediction is not None and row.sha256:
            try:
                case, _restored = case_for_mosaic(
                    self.store,
                    row.path,
                    row.sha256,
                    user=self.user,
                    reader_mode=self.reader_mode,
                    pixel_size_um=row.pixel_size_um,
                )
                case = self.store.save_ai_result(
                    case.case_id, stored_from_prediction(row.prediction), self.user
                )
                case_id = case.case_id
                hidden, probabilities, top_class = _visible(case)
            except (RcmError, ValueError) as exc:
                status, ok = (
                    f"{row.path.name}: classified, but the case could not be saved ({exc})",
                    False,
                )
        return BatchEntry(
            row.path,
            status,
            ok,
            tuple(row.class_ids),
            probabilities,
            top_class,
            case_id,
            hidden,
            row.seconds,
            replace(row, prediction=None),
        )

    def _on_partial(self, message: dict) -> None:
        total = int(message.get("total") or 0)
        if message["kind"] == "file":
            self.per_file.setValue(0)
            eta = ""
            if total and self._files_done:
                from rcm_viewer.inference.batch import format_eta

                per_file = (time.monotonic() - self._started) / self._files_done
                eta = f" — about {format_eta(per_file * (total - message['index']))} left"
            shown = total or "?"
            self.status_label.setText(
                f"File {message['index'] + 1} of {shown}: {Path(message['path']).name}{eta}"
            )
        elif message["kind"] == "row":
            entry: BatchEntry = message["entry"]
            self._files_done += 1
            self.results.add(entry)
            self.hidden_note.setVisible(any(e.hidden for e in self.results.entries))
            self.rowAdded.emit(len(self.results.entries))
        if total:
            self.overall.setRange(0, total)
            self.overall.setValue(self._files_done)

    def _on_tiles(self, done: int, total: int) -> None:
        if total > 0:
            self.per_file.setValue(int(100 * done / total))

    def _done(self, outcome: str) -> None:
        self._job = None
        self._set_running(False)
        failed = sum(not e.ok for e in self.results.entries)
        self.overall.setRange(0, max(len(self.results.entries), 1))
        self.overall.setValue(len(self.results.entries))
        self.status_label.setText(
            f"Batch {outcome}. {len(self.results.entries)} file(s) in the list, {failed} "
            "could not be classified."
        )
        self.batchFinished.emit(outcome)

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._paused.set()
            self.pause_button.setText("Resume")
            if self._job is not None:
                self.status_label.setText("Paused.")
        else:
            self._paused.clear()
            self.pause_button.setText("Pause")

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._paused.clear()
            self.status_label.setText("Cancelling…")

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Block until the worker has stopped (closing, tests)."""
        job = self._job
        return True if job is None else job.done.wait(timeout_s)

    def closeEvent(self, event: Any) -> None:  # noqa: N802
        self.cancel()
        super().closeEvent(event)

    # ------------------------------------------------------------------ worklist

    def refresh_cases(self) -> None:
        """Read every case back (the reader may have committed some since): reveals the
        probabilities the store now allows."""
        for row, entry in enumerate(self.results.entries):
            if entry.case_id is None:
                continue
            try:
                case = self.store.get_case(entry.case_id)
            except RcmError:
                continue
            hidden, probabilities, top_class = _visible(case)
            if (hidden, probabilities) != (entry.hidden, entry.probabilities):
                self.results.replace_entry(
                    row,
                    replace(entry, hidden=hidden, probabilities=probabilities, top_class=top_class),
                )
        self.hidden_note.setVisible(any(e.hidden for e in self.results.entries))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self.refresh_cases()
        super().changeEvent(event)

    def _open_index(self, index: QModelIndex) -> None:
        entry = self.results.entries[self.proxy.mapToSource(index).row()]
        if entry.case_id:
            self.caseOpenRequested.emit(entry.case_id, str(entry.path))

    def next_case(self) -> None:
        """Select and open the next row (in the table's current order) that has a case."""
        self.refresh_cases()
        current = self.table.currentIndex()
        start = current.row() + 1 if current.isValid() else 0
        for view_row in range(start, self.proxy.rowCount()):
            index = self.proxy.index(view_row, 0)
            entry = self.results.entries[self.proxy.mapToSource(index).row()]
            if entry.case_id:
                self.table.selectRow(view_row)
                self.table.setCurrentIndex(index)
                self.caseOpenRequested.emit(entry.case_id, str(entry.path))
                return
        self.status_label.setText("No further case in the list.")

    def _export(self, suffix: str) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Export results", f"results{suffix}", f"{suffix[1:].upper()} (*{suffix})"
        )
        if name:
            self.export(name)

    def export(self, path: str | Path) -> Path:
        """Write the table's rows (hidden probabilities left out) to CSV/JSON/JSONL."""
        from rcm_viewer.inference.batch import write_rows

        try:
            write_rows([_gated_row(e) for e in self.results.entries], path, self.results.class_ids)
        except (RcmError, OSError) as exc:
            self._error(f"Cannot export to {Path(path).name}: {exc}")
        return Path(path)


def _visible(case: Any) -> tuple[bool, tuple[float, ...] | None, str | None]:
    """(hidden, probabilities, top class) as the store shows this case to its reader."""
    result = case.ai_result
    if result is None:
        return True, None, None
    return False, tuple(float(p) for p in result.probabilities), result.top_class


def _gated_row(entry: BatchEntry) -> Any:
    """The engine row as it may leave the dialog: no probabilities of a hidden case."""
    row = entry.row
    if entry.hidden:
        return replace(row, status=STATUS_HIDDEN, probabilities=None, top_class=None)
    if not entry.ok and row.ok:
        return replace(row, status=entry.status, probabilities=None, top_class=None)
    return row
