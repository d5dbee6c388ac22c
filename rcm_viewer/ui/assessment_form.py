"""The reader's assessment form: a side panel built from the checklist data.

Why it is shaped this way:

* **Built from data.** Every checklist, group, item, tooltip and point value
  comes from ``store.checklists`` (``rcm_viewer.cases.checklists``), so a clinic
  that drops a corrected checklist JSON file gets a matching form with no code
  change. There is no per-checklist widget code here.
* **Saved at once.** Each click goes straight to the :class:`CaseStore` (one
  SQLite transaction per edit). Typed text is saved after a short pause
  (``debounce_ms``, 300 ms) and flushed on focus-out, case switch, hide and
  close, so a crash loses at most the last few keystrokes.
* **A failed save is never silent.** The widget keeps what the reader chose or
  typed, a banner says what was not saved, ``errorOccurred`` carries the
  readable message to the main window, and the failed edits are retried before
  the next save (or with the banner's Retry button). Committing is refused while
  anything is unsaved, so the committed (locked) assessment is what the reader saw.
* **Explicit stage.** The form writes to the stage it shows (initial, then
  revised after commit) rather than letting the engine pick, so if another
  window commits the case first, an edit is refused loudly instead of landing
  in a stage the reader is not looking at.
* **Dark-theme friendly.** No colours are hard-coded: emphasis uses palette
  roles (Highlight for a met threshold, a WindowText/Window blend for secondary
  text), recomputed when the palette changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QMouseEvent, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rcm_viewer.cases import (
    ANSWER_VALUES,
    DIAGNOSES,
    DIAGNOSIS_LABELS,
    MANAGEMENT_LABELS,
    MANAGEMENTS,
    Assessment,
    CaseRecord,
    CaseStore,
    Checklist,
    ChecklistItem,
    ChecklistScore,
    score_checklist,
)
from rcm_viewer.cases.annotations import criterion_links, display_name
from rcm_viewer.errors import RcmError
from rcm_viewer.session import resolve_reader
from rcm_viewer.ui.settings import reader_name, set_reader_name

log = logging.getLogger(__name__)

#: Short button texts for the tri-state answer (the full wording is in each tooltip).
ANSWER_BUTTON_TEXT: Mapping[str, str] = {
    "present": "Present",
    "absent": "Absent",
    "not_assessable": "N/A",
}
ANSWER_TOOLTIPS: Mapping[str, str] = {
    "present": "Present: the feature is seen in the mosaic.",
    "absent": "Absent: the area was assessable and the feature is not there.",
    "not_assessable": (
        "Not assessable: the area cannot be judged (artefact, not imaged, poor quality). "
        "Counts 0 points, and the score says whether it could change the outcome."
    ),
}
CONFIDENCE_TOOLTIPS: Mapping[str, str] = {
    "1": "1: very unsure",
    "2": "2: unsure",
    "3": "3: moderately sure",
    "4": "4: sure",
    "5": "5: very sure",
}
#: Palette references only, so the chosen answer stands out in light and dark themes alike;
#: focus gets a thicker outline so keyboard users can tell "focused" from "chosen".
CHOICE_STYLE = """
QToolButton {
    padding: 2px 5px;
    border: 1px solid palette(mid);
    border-radius: 3px;
    background: palette(button);
    color: palette(button-text);
}
QToolButton:hover { border-color: palette(highlight); }
QToolButton:checked {
    background: palette(highlight);
    color: palette(highlighted-text);
    border-color: palette(highlight);
}
QToolButton:focus { border: 2px solid palette(highlight); padding: 1px 4px; }
"""
DEFAULT_DEBOUNCE_MS = 300
PANEL_WIDTH = 390


# --------------------------------------------------------------------------- small widgets


def _muted_colour(palette: QPalette) -> QColor:
    """Secondary-text colour: 60% text over the background, readable in light and dark themes."""
    text = palette.color(QPalette.ColorRole.WindowText)
    back = palette.color(QPalette.ColorRole.Window)
    mix = 0.62

    def blend(a: int, b: int) -> int:
        return round(a * mix + b * (1 - mix))

    return QColor(
        blend(text.red(), back.red()),
        blend(text.green(), back.green()),
        blend(text.blue(), back.blue()),
    )


def _small_font(widget: QWidget, delta: float = -1.0, bold: bool = False) -> None:
    font = widget.font()
    if font.pointSizeF() > 0:
        font.setPointSizeF(max(6.0, font.pointSizeF() + delta))
    font.setBold(bold)
    widget.setFont(font)


class ChoiceButtons(QWidget):
    """A row of small checkable buttons: at most one checked, and "none" is allowed.

    A plain exclusive ``QButtonGroup`` cannot go back to "unanswered", which a
    reader needs after a slip of the mouse; clicking the checked button again
    clears the answer.
    """

    valueChanged = Signal(object)  # str | None

    def __init__(
        self, choices: Sequence[tuple[str, str, str]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._value: str | None = None
        self._buttons: dict[str, QToolButton] = {}
        self.setStyleSheet(CHOICE_STYLE)
        self._group = QButtonGroup(self)
        self._group.setExclusive(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for value, text, tooltip in choices:
            button = QToolButton(self)
            button.setText(text)
            button.setToolTip(tooltip)
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setProperty("choiceValue", value)
            self._group.addButton(button)
            self._buttons[value] = button
            layout.addWidget(button)
        layout.addStretch(1)
        self._group.buttonClicked.connect(self._on_clicked)

    def button(self, value: str) -> QToolButton:
        return self._buttons[value]

    def buttons(self) -> dict[str, QToolButton]:
        return dict(self._buttons)

    def value(self) -> str | None:
        return self._value

    def setValue(self, value: str | None) -> None:  # noqa: N802 - Qt naming
        """Show a saved value without emitting ``valueChanged`` (loading is not editing)."""
        self._value = value if value in self._buttons else None
        for key, button in self._buttons.items():
            button.setChecked(key == self._value)

    def _on_clicked(self, button: QAbstractButton) -> None:
        value = str(button.property("choiceValue"))
        if button.isChecked():
            for key, other in self._buttons.items():
                if key != value:
                    other.setChecked(False)
            self._value = value
        else:
            self._value = None
        self.valueChanged.emit(self._value)


class WrapLabel(QLabel):
    """A word-wrapping label that asks for the height its text needs at its real width.

    Nested box layouts inside a scroll area do not always pass height-for-width
    down, which clipped the third line of long item labels; pinning the
    minimum height on every resize keeps every line readable.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        needed = self.heightForWidth(self.width())
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)


class _ClickableLabel(WrapLabel):
    """A label that toggles its section when clicked, like the arrow beside it."""

    clicked = Signal()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
            event.accept()
            return
        super().mousePressEvent(event)


class CollapsibleSection(QWidget):
    """A titled section whose body folds away; the summary line under the title stays visible.

    The score lives in the summary line, so a reader who folds a finished
    checklist still sees its result.
    """

    def __init__(self, title: str, tooltip: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # An arrow button plus a wrapping label: a QToolButton's text cannot wrap, and a long
        # checklist title would otherwise force the whole panel wider than the dock.
        self.header = QToolButton(self)
        self.header.setToolTip(f"Show or hide: {title}")
        self.header.setAccessibleName(title)
        self.header.setCheckable(True)
        self.header.setChecked(True)
        self.header.setArrowType(Qt.ArrowType.DownArrow)
        self.header.setAutoRaise(True)
        self.header.toggled.connect(self.set_expanded)
        self.title = _ClickableLabel(title, self)
        self.title.setWordWrap(True)
        self.title.setToolTip(tooltip or title)
        self.title.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        _small_font(self.title, 0.0, bold=True)
        self.title.clicked.connect(self.header.toggle)
        title_row = QHBoxLayout()
        title_row.setContentsMargins(0, 0, 0, 0)
        title_row.setSpacing(2)
        title_row.addWidget(self.header, 0, Qt.AlignmentFlag.AlignTop)
        title_row.addWidget(self.title, 1)

        self.summary = WrapLabel("", self)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setMargin(4)
        self.summary.hide()

        self.body = QWidget(self)
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(14, 0, 0, 4)
        self.body_layout.setSpacing(2)

        rule = QFrame(self)
        rule.setFrameShape(QFrame.Shape.HLine)
        rule.setFrameShadow(QFrame.Shadow.Sunken)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        layout.addWidget(rule)
        layout.addLayout(title_row)
        layout.addWidget(self.summary)
        layout.addWidget(self.body)

    def set_expanded(self, expanded: bool) -> None:
        if self.header.isChecked() != expanded:
            self.header.setChecked(expanded)
            return
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)

    def is_expanded(self) -> bool:
        return self.header.isChecked()


@dataclass
class _ItemRow:
    """The widgets of one checklist item (kept to set values and show "initially: ...")."""

    checklist_id: str
    item_id: str
    label: QLabel
    choice: ChoiceButtons
    initially: QLabel
    links: QLabel | None = None  # "◆ 2": region annotations linked to this criterion


@dataclass
class _ChecklistView:
    checklist: Checklist
    section: CollapsibleSection
    rows: dict[str, _ItemRow]


# --------------------------------------------------------------------------- the form


class AssessmentForm(QWidget):
    """Side panel where the reader records checklist answers, diagnosis and management.

    Public API: :meth:`set_store`, :meth:`load_case`, :meth:`clear`,
    :attr:`current_case_id`, :meth:`flush`, :meth:`commit_initial`, and the
    signals ``initialCommitted(case_id)``, ``assessmentChanged(case_id)`` and
    ``errorOccurred(message)``.
    """

    initialCommitted = Signal(str)
    assessmentChanged = Signal(str)
    errorOccurred = Signal(str)
    #: "checklist_id.item_id" of a criterion whose annotation marker (◆ n) was clicked
    annotationLinkActivated = Signal(str)

    def __init__(
        self, parent: QWidget | None = None, *, debounce_ms: int = DEFAULT_DEBOUNCE_MS
    ) -> None:
        super().__init__(parent)
        self.setObjectName("assessmentForm")
        self._store: CaseStore | None = None
        self._case: CaseRecord | None = None
        self._stage: str = "initial"
        self._loading = False
        self._views: dict[str, _ChecklistView] = {}
        self._muted: list[QLabel] = []
        # Typed text waiting for the debounce timer: field name -> value (current case).
        self._pending_text: dict[str, str] = {}
        # Edits the store refused, retried before the next save: key -> (description, action).
        self._unsaved: dict[str, tuple[str, Callable[[], None]]] = {}
        self._last_error = ""

        self._text_timer = QTimer(self)
        self._text_timer.setSingleShot(True)
        self._text_timer.setInterval(max(0, int(debounce_ms)))
        self._text_timer.timeout.connect(self.flush)

        self.setMinimumWidth(340)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self._build()
        self._static_muted = len(self._muted)
        self.clear()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.flush)

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.setSpacing(4)

        self.stage_label = QLabel(self)
        self.stage_label.setObjectName("stageLabel")
        self.stage_label.setWordWrap(True)
        _small_font(self.stage_label, 1.0, bold=True)
        self.initially_label = QLabel(self)
        self.initially_label.setObjectName("initiallyLabel")
        self.initially_label.setWordWrap(True)
        self.initially_label.setToolTip(
            "The committed initial (unaided) assessment. It is locked; changes are recorded "
            "in the revised assessment."
        )
        self._mute(self.initially_label)
        outer.addWidget(self.stage_label)
        outer.addWidget(self.initially_label)

        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Always on: a scroll bar that appears after layout narrows the body and clips labels
        # that were wrapped for the wider width.
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(0, 0, 6, 0)
        self.body_layout.setSpacing(4)
        self.scroll.setWidget(self.body)
        outer.addWidget(self.scroll, 1)

        self._build_case_section()
        self._checklist_anchor = self.body_layout.count()
        self._build_conclusion_section()
        self.body_layout.addStretch(1)

        # Bottom bar (outside the scroll area, so commit and errors are always in view).
        self.error_frame = QFrame(self)
        self.error_frame.setFrameShape(QFrame.Shape.StyledPanel)
        error_layout = QHBoxLayout(self.error_frame)
        error_layout.setContentsMargins(6, 4, 6, 4)
        icon = QLabel(self.error_frame)
        icon.setPixmap(
            self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(20, 20)
        )
        self.error_label = QLabel(self.error_frame)
        self.error_label.setObjectName("saveErrorLabel")
        self.error_label.setWordWrap(True)
        _small_font(self.error_label, 0.0, bold=True)
        self.retry_button = QPushButton("Retry", self.error_frame)
        self.retry_button.setToolTip("Try again to save the changes listed here.")
        self.retry_button.clicked.connect(self.retry_unsaved)
        self.discard_button = QPushButton("Discard", self.error_frame)
        self.discard_button.setToolTip(
            "Forget the unsaved changes and show what is saved in the case database."
        )
        self.discard_button.clicked.connect(self.discard_unsaved)
        error_layout.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        error_layout.addWidget(self.error_label, 1)
        buttons = QVBoxLayout()
        buttons.setSpacing(2)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self.discard_button)
        error_layout.addLayout(buttons)
        self.error_frame.hide()
        outer.addWidget(self.error_frame)

        self.commit_button = QPushButton("Commit initial assessment", self)
        self.commit_button.setObjectName("commitButton")
        self.commit_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.commit_button.setToolTip(
            "Lock your initial (unaided) assessment now (Ctrl+Enter). No further confirmation "
            "is asked. Later changes are recorded as the revised assessment."
        )
        self.commit_button.clicked.connect(self.commit_initial)
        self.commit_hint = QLabel(self)
        self.commit_hint.setWordWrap(True)
        self._mute(self.commit_hint)
        outer.addWidget(self.commit_button)
        outer.addWidget(self.commit_hint)

        self.status_label = QLabel(self)
        self.status_label.setObjectName("saveStatusLabel")
        self.status_label.setWordWrap(True)
        self._mute(self.status_label)
        outer.addWidget(self.status_label)

    def _build_case_section(self) -> None:
        section = CollapsibleSection("Case", "Who and what this assessment is about.", self.body)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.case_id_edit = QLineEdit(section.body)
        self.case_id_edit.setReadOnly(True)
        self.case_id_edit.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.case_id_edit.setToolTip("Case identifier (read-only; select to copy).")
        self.date_label = QLabel(section.body)
        self.date_label.setToolTip("When the case was created and last saved (local time).")
        self.pseudonym_edit = QLineEdit(section.body)
        self.pseudonym_edit.setPlaceholderText("No real names")
        self.pseudonym_edit.setToolTip(
            "Patient pseudonym: a code that identifies the patient within your clinic. Do not "
            "enter real names."
        )
        self.lesion_site_edit = QLineEdit(section.body)
        self.lesion_site_edit.setPlaceholderText("e.g. left upper back")
        self.lesion_site_edit.setToolTip("Body site of the lesion.")
        self.reader_edit = QLineEdit(section.body)
        self.reader_edit.setPlaceholderText("Your name")
        self.reader_edit.setToolTip(
            "Reader name: recorded with the assessment and in the audit trail of every change, "
            "and remembered for the next case."
        )
        form.addRow("Case id", self.case_id_edit)
        form.addRow("Date", self.date_label)
        form.addRow("Pseudonym", self.pseudonym_edit)
        form.addRow("Lesion site", self.lesion_site_edit)
        form.addRow("Reader", self.reader_edit)
        section.body_layout.addLayout(form)
        self.body_layout.addWidget(section)
        self.case_section = section

        self.pseudonym_edit.textEdited.connect(lambda t: self._text_edited("patient_pseudonym", t))
        self.lesion_site_edit.textEdited.connect(lambda t: self._text_edited("lesion_site", t))
        self.reader_edit.textEdited.connect(lambda t: self._text_edited("reader_name", t))
        for edit in (self.pseudonym_edit, self.lesion_site_edit, self.reader_edit):
            edit.editingFinished.connect(self.flush)

    def _build_conclusion_section(self) -> None:
        section = CollapsibleSection(
            "Reader's conclusion",
            "Your diagnosis, how sure you are, and what you recommend.",
            self.body,
        )
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.diagnosis_combo = QComboBox(section.body)
        self.diagnosis_combo.addItem("Choose a diagnosis…", None)
        for value in DIAGNOSES:
            self.diagnosis_combo.addItem(DIAGNOSIS_LABELS[value], value)
        self.diagnosis_combo.setToolTip(
            "Your diagnosis from the RCM reading. Choose 'Uncertain' rather than guessing: it "
            "is required before committing the initial assessment."
        )
        self.confidence_choice = ChoiceButtons(
            [(str(n), str(n), CONFIDENCE_TOOLTIPS[str(n)]) for n in range(1, 6)], section.body
        )
        self.confidence_choice.setToolTip("Confidence in your diagnosis, 1 (very unsure) to 5.")
        self.management_combo = QComboBox(section.body)
        self.management_combo.addItem("Choose management…", None)
        for value in MANAGEMENTS:
            self.management_combo.addItem(MANAGEMENT_LABELS[value], value)
        self.management_combo.setToolTip("The management you recommend for this lesion.")
        self.notes_edit = QPlainTextEdit(section.body)
        self.notes_edit.setPlaceholderText("Free-text notes (saved as you type)")
        self.notes_edit.setToolTip("Free-text notes; saved as you type.")
        self.notes_edit.setTabChangesFocus(True)
        self.notes_edit.setMinimumHeight(70)
        self.notes_edit.setMaximumHeight(140)
        self.notes_edit.installEventFilter(self)

        form.addRow("Diagnosis", self.diagnosis_combo)
        form.addRow("Confidence", self.confidence_choice)
        form.addRow("Management", self.management_combo)
        form.addRow("Notes", self.notes_edit)
        section.body_layout.addLayout(form)
        self.body_layout.addWidget(section)
        self.conclusion_section = section

        self.diagnosis_combo.currentIndexChanged.connect(
            lambda _i: self._field_chosen("diagnosis", self.diagnosis_combo.currentData())
        )
        self.management_combo.currentIndexChanged.connect(
            lambda _i: self._field_chosen("management", self.management_combo.currentData())
        )
        self.confidence_choice.valueChanged.connect(
            lambda v: self._field_chosen("confidence", int(v) if v is not None else None)
        )
        self.notes_edit.textChanged.connect(self._notes_changed)

    def _build_checklists(self, checklists: Mapping[str, Checklist]) -> None:
        """(Re)build one collapsible section per checklist, purely from its data."""
        for view in self._views.values():
            self.body_layout.removeWidget(view.section)
            view.section.deleteLater()
        self._views = {}
        self._muted = self._muted[: self._static_muted]
        position = self._checklist_anchor
        for checklist in checklists.values():
            view = self._build_checklist(checklist)
            self.body_layout.insertWidget(position, view.section)
            position += 1
            self._views[checklist.id] = view
        self._update_tab_order()

    def _build_checklist(self, checklist: Checklist) -> _ChecklistView:
        tooltip = checklist.description
        if checklist.reference:
            tooltip += f"\n\nReference: {checklist.reference}"
        if checklist.scoring.performance:
            tooltip += f"\nReported performance: {checklist.scoring.performance}"
        if checklist.source != "built-in":
            tooltip += f"\nDefinition file: {checklist.source}"
        section = CollapsibleSection(checklist.title, tooltip, self.body)
        section.summary.show()
        section.summary.setObjectName(f"score_{checklist.id}")
        section.summary.setToolTip(tooltip)
        scored = checklist.scoring.threshold is not None
        rows: dict[str, _ItemRow] = {}
        for group in checklist.groups:
            if group:
                title = QLabel(checklist.group_titles.get(group, group.capitalize()), section.body)
                _small_font(title, -0.5, bold=True)
                title.setContentsMargins(0, 4, 0, 0)
                section.body_layout.addWidget(title)
            for item in checklist.items:
                if item.group != group:
                    continue
                rows[item.id] = self._build_item_row(checklist, item, scored, section)
        return _ChecklistView(checklist, section, rows)

    def _build_item_row(
        self,
        checklist: Checklist,
        item: ChecklistItem,
        scored: bool,
        section: CollapsibleSection,
    ) -> _ItemRow:
        row = QWidget(section.body)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 1, 0, 1)
        layout.setSpacing(4)
        texts = QVBoxLayout()
        texts.setSpacing(0)
        label = WrapLabel(item.label, row)
        label.setToolTip(item.definition or item.label)
        label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        initially = QLabel(row)
        _small_font(initially, -1.0)
        self._mute(initially)
        initially.hide()
        texts.addWidget(label)
        texts.addWidget(initially)
        layout.addLayout(texts, 1)
        if scored:
            points = QLabel(f"{item.points:+d}".replace("-", "\u2212"), row)
            points.setToolTip(f"{item.points:+d} point(s) when present")
            points.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            points.setMinimumWidth(points.fontMetrics().horizontalAdvance("\u22122") + 4)
            self._mute(points)
            layout.addWidget(points)
        choice = ChoiceButtons(
            [
                (v, ANSWER_BUTTON_TEXT[v], f"{item.label}\n{ANSWER_TOOLTIPS[v]}")
                for v in ANSWER_VALUES
            ],
            row,
        )
        choice.setToolTip(item.definition)
        links = QLabel(row)
        links.setObjectName(f"links_{checklist.id}_{item.id}")
        links.hide()
        links.setTextFormat(Qt.TextFormat.RichText)
        links.linkActivated.connect(self.annotationLinkActivated)
        layout.addWidget(links, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(choice, 0, Qt.AlignmentFlag.AlignVCenter)
        section.body_layout.addWidget(row)
        choice.valueChanged.connect(
            lambda value, c=checklist.id, i=item.id: self._answer_chosen(c, i, value)
        )
        return _ItemRow(checklist.id, item.id, label, choice, initially, links)

    def _update_tab_order(self) -> None:
        """Tab goes top to bottom: case details, each checklist's answers, conclusion, commit."""
        chain: list[QWidget] = [self.pseudonym_edit, self.lesion_site_edit, self.reader_edit]
        for view in self._views.values():
            chain.append(view.section.header)
            for row in view.rows.values():
                chain.extend(row.choice.buttons().values())
        chain.append(self.conclusion_section.header)
        chain.append(self.diagnosis_combo)
        chain.extend(self.confidence_choice.buttons().values())
        chain += [self.management_combo, self.notes_edit, self.commit_button]
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def _mute(self, label: QLabel) -> None:
        self._muted.append(label)
        palette = label.palette()
        palette.setColor(QPalette.ColorRole.WindowText, _muted_colour(self.palette()))
        label.setPalette(palette)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        """Recompute the palette-derived colours when the theme changes."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            colour = _muted_colour(self.palette())
            for label in self._muted:
                palette = label.palette()
                palette.setColor(QPalette.ColorRole.WindowText, colour)
                label.setPalette(palette)

    # ------------------------------------------------------------------ public API

    @property
    def current_case_id(self) -> str | None:
        return self._case.case_id if self._case is not None else None

    @property
    def current_stage(self) -> str | None:
        """The stage edits go to now ('initial' or 'revised'), None without a case."""
        return self._stage if self._case is not None else None

    @property
    def store(self) -> CaseStore | None:
        return self._store

    def set_store(self, store: CaseStore | None) -> None:
        """Use this store; the checklist sections are rebuilt from its checklists."""
        self.flush()
        self._store = store
        self._case = None
        self._build_checklists(store.checklists if store is not None else {})
        self.clear()

    def load_case(self, case_id: str) -> CaseRecord | None:
        """Show a case from the store (pending typing for the previous case is saved first)."""
        self.flush()
        if self._store is None:
            self._report("No case database is open, so the case cannot be shown.")
            return None
        try:
            case = self._store.get_case(case_id)
        except RcmError as exc:
            self._report(str(exc))
            return None
        self._show_case(case)
        return case

    def _scroll_to_top(self) -> None:
        """A new case starts at the top (case id, pseudonym), not where the last one was;
        again after the layout settles, which can move the bar once more."""
        bar = self.scroll.verticalScrollBar()
        bar.setValue(0)
        QTimer.singleShot(0, lambda: bar.setValue(0))

    def clear(self) -> None:
        """Show no case (typing still pending for the previous case is saved first)."""
        self.flush()
        self._scroll_to_top()
        self._case = None
        self._stage = "initial"
        self._loading = True
        try:
            self.case_id_edit.clear()
            self.date_label.setText("")
            for edit in (self.pseudonym_edit, self.lesion_site_edit):
                edit.clear()
            self.reader_edit.setText(reader_name())
            self.diagnosis_combo.setCurrentIndex(0)
            self.management_combo.setCurrentIndex(0)
            self.confidence_choice.setValue(None)
            self.notes_edit.setPlainText("")
            for view in self._views.values():
                for row in view.rows.values():
                    row.choice.setValue(None)
                    row.initially.hide()
                    if row.links is not None:
                        row.links.hide()
        finally:
            self._loading = False
        self.body.setEnabled(False)
        self.stage_label.setText("No case open")
        self.initially_label.hide()
        self.status_label.setText("Open a mosaic or a case to start an assessment.")
        self._refresh_scores()
        self._refresh_commit()

    def flush(self) -> None:
        """Save typed text now instead of waiting for the debounce timer."""
        self._text_timer.stop()
        if not self._pending_text or self._case is None:
            self._pending_text.clear()
            return
        pending, self._pending_text = self._pending_text, {}
        case_id, stage = self._case.case_id, self._stage
        for name, value in pending.items():
            self._save_text_field(case_id, stage, name, value)

    def retry_unsaved(self) -> bool:
        """Try the refused edits again; True when nothing is left unsaved."""
        ok = self._drain(report=True)
        self._refresh_error_banner()
        return ok

    def unsaved_changes(self) -> list[str]:
        """Readable descriptions of edits the store refused (shown in the banner)."""
        return [description for description, _action in self._unsaved.values()]

    def commit_initial(self) -> bool:
        """Lock the initial assessment (reader-first: this is what reveals the AI result)."""
        if self._case is None or self._store is None or self._stage != "initial":
            return False
        self.flush()
        if not self._drain(report=True):
            self._report(
                "The initial assessment was not committed because some changes are not saved: "
                + self._last_error
            )
            self._refresh_error_banner()
            return False
        case_id = self._case.case_id
        try:
            case = self._store.commit_initial_assessment(case_id, self._user())
        except Exception as exc:  # noqa: BLE001 - shown to the reader, never a crash
            self._log_unexpected(exc)
            self._report(str(exc))
            return False
        self._show_case(case)
        self.status_label.setText("Initial assessment committed; edits now go to the revision.")
        self.initialCommitted.emit(case_id)
        self.assessmentChanged.emit(case_id)
        return True

    def current_scores(self) -> dict[str, ChecklistScore]:
        """Scores of what the form shows now (what the reader sees, saved or not)."""
        return {
            cid: score_checklist(view.checklist, self._answers(cid))
            for cid, view in self._views.items()
        }

    def score_label(self, checklist_id: str) -> QLabel:
        return self._views[checklist_id].section.summary

    def section(self, checklist_id: str) -> CollapsibleSection:
        return self._views[checklist_id].section

    def choice_for(self, checklist_id: str, item_id: str) -> ChoiceButtons:
        return self._views[checklist_id].rows[item_id].choice

    def initially_for(self, checklist_id: str, item_id: str) -> QLabel:
        return self._views[checklist_id].rows[item_id].initially

    def links_for(self, checklist_id: str, item_id: str) -> QLabel | None:
        return self._views[checklist_id].rows[item_id].links

    def set_annotation_links(self, features: Sequence[Mapping[str, object]]) -> None:
        """Mark each criterion that region annotations are linked to ("pagetoid cells here").

        ``features`` are the case's GeoJSON annotations; a feature's
        ``properties.criterion`` is ``"checklist_id.item_id"``. Call it again after the
        annotations change (``AnnotationLayer.annotationsChanged``).
        """
        links = criterion_links(features)
        for cid, view in self._views.items():
            for item_id, row in view.rows.items():
                if row.links is None:
                    continue
                linked = links.get(f"{cid}.{item_id}", [])
                if not linked:
                    row.links.hide()
                    continue
                names = [display_name(f) for f in linked]
                shown = "\n".join(f"\u2022 {n}" for n in names[:10])
                if len(names) > 10:
                    shown += f"\n\u2026 and {len(names) - 10} more"
                row.links.setText(
                    f'<a href="{cid}.{item_id}" style="text-decoration: none">'
                    f"\u25c6 {len(linked)}</a>"
                )
                row.links.setToolTip(
                    f"{len(linked)} region annotation(s) on the mosaic linked to "
                    f"'{row.label.text()}':\n{shown}\nClick to show them on the mosaic."
                )
                row.links.show()

    # ------------------------------------------------------------------ showing a case

    def _show_case(self, case: CaseRecord) -> None:
        if self._case is None or self._case.case_id != case.case_id:
            self._scroll_to_top()
        self._case = case
        self._stage = case.editable_stage
        shown: Assessment = (
            case.revised if (self._stage == "revised" and case.revised) else case.initial
        )
        self._loading = True
        try:
            self.case_id_edit.setText(case.case_id)
            created = case.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
            updated = case.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
            self.date_label.setText(created)
            self.date_label.setToolTip(f"Created {created}; last saved {updated} (local time).")
            self.pseudonym_edit.setText(case.patient_pseudonym)
            self.lesion_site_edit.setText(shown.lesion_site or case.lesion_site or "")
            self.reader_edit.setText(shown.reader_name or reader_name())
            self._set_combo(self.diagnosis_combo, shown.diagnosis)
            self._set_combo(self.management_combo, shown.management)
            self.confidence_choice.setValue(
                str(shown.confidence) if shown.confidence is not None else None
            )
            if self.notes_edit.toPlainText() != shown.notes:
                self.notes_edit.setPlainText(shown.notes)
            for cid, view in self._views.items():
                for item_id, row in view.rows.items():
                    row.choice.setValue(shown.answer(cid, item_id))
        finally:
            self._loading = False
        self._pending_text.clear()
        self.set_annotation_links(case.roi_annotations)
        self.body.setEnabled(True)
        self._show_stage()
        self.status_label.setText(f"Case {case.case_id}: every change is saved at once.")
        self._refresh_scores()
        self._refresh_commit()

    @staticmethod
    def _set_combo(combo: QComboBox, value: object) -> None:
        index = combo.findData(value) if value is not None else 0
        combo.setCurrentIndex(max(0, index))

    def _show_stage(self) -> None:
        case = self._case
        if case is None:
            return
        if self._stage == "initial":
            if case.reader_mode == "reader_first":
                self.stage_label.setText("Initial assessment (unaided; AI result hidden)")
            else:
                self.stage_label.setText("Initial assessment")
            self.initially_label.hide()
            for view in self._views.values():
                for row in view.rows.values():
                    row.initially.hide()
            return
        self.stage_label.setText("Revised assessment (after AI)")
        initial = case.initial
        parts = [DIAGNOSIS_LABELS.get(initial.diagnosis or "", "no diagnosis")]
        if initial.confidence is not None:
            parts.append(f"confidence {initial.confidence}")
        if initial.management:
            parts.append(MANAGEMENT_LABELS[initial.management].lower())
        when = (
            initial.committed_at.astimezone().strftime("%Y-%m-%d %H:%M")
            if initial.committed_at
            else ""
        )
        self.initially_label.setText(f"Initially: {', '.join(parts)} (committed {when})")
        self.initially_label.show()
        self._refresh_initially_marks()

    def _refresh_initially_marks(self) -> None:
        """In the revision, mark each item whose answer differs from the committed one."""
        if self._case is None or self._stage != "revised":
            return
        initial = self._case.initial
        for cid, view in self._views.items():
            for item_id, row in view.rows.items():
                before = initial.answer(cid, item_id)
                if before != row.choice.value():
                    text = ANSWER_BUTTON_TEXT.get(before or "", "unanswered")
                    if before == "not_assessable":
                        text = "not assessable"
                    row.initially.setText(f"initially: {text.lower()}")
                    row.initially.show()
                else:
                    row.initially.hide()

    # ------------------------------------------------------------------ scores and commit

    def _answers(self, checklist_id: str) -> dict[str, str | None]:
        view = self._views[checklist_id]
        return {item_id: row.choice.value() for item_id, row in view.rows.items()}

    def _refresh_scores(self) -> None:
        for cid, view in self._views.items():
            score = score_checklist(view.checklist, self._answers(cid))
            self._show_score(view, score)

    def _show_score(self, view: _ChecklistView, score: ChecklistScore) -> None:
        label = view.section.summary
        checklist = view.checklist
        if score.threshold is None:
            positive = sum(1 for item in checklist.items if item.points > 0)
            headline = f"<b>{score.total} of {positive}</b> present"
        else:
            if score.threshold_met:
                verdict = f"\u25b2 threshold {score.threshold} met"
            else:
                verdict = f"below threshold {score.threshold}"
            headline = f"<b>{score.total} / {score.max_possible}</b> \u00b7 {verdict}"
        # the explanation at the body's own size: <small> was too small to read (issue 17)
        label.setText(f"{headline}<br>{_escape(score.interpretation)}")
        highlighted = bool(score.threshold_met)
        label.setProperty("thresholdMet", highlighted)
        label.setAutoFillBackground(highlighted)
        label.setBackgroundRole(
            QPalette.ColorRole.Highlight if highlighted else QPalette.ColorRole.Window
        )
        label.setForegroundRole(
            QPalette.ColorRole.HighlightedText if highlighted else QPalette.ColorRole.WindowText
        )

    def _refresh_commit(self) -> None:
        case = self._case
        initial_stage = case is not None and self._stage == "initial"
        self.commit_button.setVisible(case is None or initial_stage)
        chosen = self.diagnosis_combo.currentData() is not None
        self.commit_button.setEnabled(initial_stage and chosen and self._store is not None)
        if case is None:
            self.commit_hint.setText("")
            self.commit_hint.hide()
            return
        self.commit_hint.show()
        if not initial_stage:
            self.commit_hint.setText(
                "Initial assessment locked. Changes are recorded in the revised assessment; "
                "the initial answers stay as committed."
            )
        elif not chosen:
            self.commit_hint.setText(
                "Choose a diagnosis (or 'Uncertain') to commit the initial assessment."
            )
        elif case.reader_mode == "reader_first":
            self.commit_hint.setText(
                "Commit locks your unaided answers and shows the AI result (Ctrl+Enter)."
            )
        else:
            self.commit_hint.setText(
                "Commit locks your answers; later changes are recorded as a revision (Ctrl+Enter)."
            )

    # ------------------------------------------------------------------ edits

    def _answer_chosen(self, checklist_id: str, item_id: str, value: str | None) -> None:
        if self._loading or self._case is None:
            return
        self._refresh_scores()
        self._refresh_initially_marks()
        case_id, stage = self._case.case_id, self._stage
        store = self._store

        def action() -> None:
            assert store is not None
            store.set_answer(case_id, stage, checklist_id, item_id, value, self._user())

        self._save(
            f"{case_id}/{stage}/answer/{checklist_id}/{item_id}",
            f"answer '{self._views[checklist_id].rows[item_id].label.text()}'",
            action,
        )

    def _field_chosen(self, name: str, value: object) -> None:
        if self._loading or self._case is None:
            return
        self._refresh_commit()
        case_id, stage = self._case.case_id, self._stage
        store = self._store

        def action() -> None:
            assert store is not None
            store.update_assessment_fields(case_id, stage, self._user(), **{name: value})

        self._save(f"{case_id}/{stage}/{name}", name.replace("_", " "), action)

    def _notes_changed(self) -> None:
        if self._loading:
            return
        self._text_edited("notes", self.notes_edit.toPlainText())

    def _text_edited(self, name: str, value: str) -> None:
        if self._loading or self._case is None:
            return
        self._pending_text[name] = value
        self._text_timer.start()

    def _save_text_field(self, case_id: str, stage: str, name: str, value: str) -> None:
        store = self._store
        if name == "reader_name":
            # Remembered for the next case even if the store refuses the edit.
            set_reader_name(value.strip())

        def action() -> None:
            assert store is not None
            user = self._user()
            if name == "patient_pseudonym":
                store.update_case_fields(case_id, user, patient_pseudonym=value.strip())
            elif name == "lesion_site":
                site = value.strip() or None
                store.update_assessment_fields(case_id, stage, user, lesion_site=site)
                # The case header feeds the case list and reports.
                store.update_case_fields(case_id, user, lesion_site=site)
            elif name == "reader_name":
                store.update_assessment_fields(
                    case_id, stage, user, reader_name=value.strip() or None
                )
            else:
                store.update_assessment_fields(case_id, stage, user, **{name: value})

        self._save(f"{case_id}/{stage}/{name}", name.replace("_", " "), action)

    def _save(self, key: str, description: str, action: Callable[[], None]) -> None:
        """Queue an edit after any earlier refused ones and try to save them all, in order."""
        if self._store is None:
            self._report("No case database is open: the change was not saved.")
            return
        self._unsaved.pop(key, None)  # a newer value of the same field supersedes the old one
        case_label = key.split("/", 1)[0]
        self._unsaved[key] = (f"{description} (case {case_label})", action)
        self._drain(report=True)
        self._refresh_error_banner()
        if key not in self._unsaved:
            if not self._unsaved:
                self.status_label.setText(f"All changes saved ({_clock_now()}).")
            self.status_label.setToolTip(f"Last saved: {description}")
            if self._case is not None:
                self.assessmentChanged.emit(self._case.case_id)

    def _drain(self, *, report: bool) -> bool:
        """Try every queued edit, oldest first; True when none is left unsaved.

        Every entry is tried (not just up to the first refusal) so that one edit
        the store refuses for good, e.g. a stage another window locked, cannot
        hold back every later edit. One message per attempt reaches the reader.
        """
        failures: list[str] = []
        for key in list(self._unsaved):
            description, action = self._unsaved[key]
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a failed save must reach the reader
                self._log_unexpected(exc)
                failures.append(f"Could not save {description}: {exc}")
                continue
            del self._unsaved[key]
        if failures:
            self._last_error = failures[0]
            if len(failures) > 1:
                self._last_error += f" ({len(failures) - 1} more change(s) not saved)"
            if report:
                self.errorOccurred.emit(self._last_error)
        return not self._unsaved

    def discard_unsaved(self) -> None:
        """Give up the refused edits and show what the store really holds."""
        self._unsaved.clear()
        self._pending_text.clear()
        self._refresh_error_banner()
        if self._case is not None:
            case_id = self._case.case_id
            self._case = None  # nothing left to flush
            self.load_case(case_id)

    def _refresh_error_banner(self) -> None:
        if not self._unsaved:
            self.error_frame.hide()
            return
        count = len(self._unsaved)
        noun = "change is" if count == 1 else "changes are"
        self.error_label.setText(
            f"{count} {noun} NOT saved; the form keeps them and will retry.\n{self._last_error}"
        )
        self.error_label.setToolTip("\n".join(self.unsaved_changes()))
        self.status_label.setText("Not saved: see above.")
        self.error_frame.show()

    def _report(self, message: str) -> None:
        self._last_error = message
        self.status_label.setText(message)
        self.errorOccurred.emit(message)

    @staticmethod
    def _log_unexpected(exc: Exception) -> None:
        if isinstance(exc, RcmError):
            log.warning("%s", exc)
        else:  # a bug, not a full disk: keep the traceback in the log file
            log.exception("Unexpected error while saving the assessment")

    def _user(self) -> str:
        """Who makes the change, for the audit trail: the reader field, else the OS account."""
        return resolve_reader(self.reader_edit.text().strip() or reader_name())

    # ------------------------------------------------------------------ Qt plumbing

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.notes_edit and event.type() == QEvent.Type.FocusOut:
            self.flush()
        return super().eventFilter(watched, event)

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.flush()
        super().hideEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.flush()
        super().closeEvent(event)

    def sizeHint(self):  # noqa: N802 - Qt override
        hint = super().sizeHint()
        hint.setWidth(PANEL_WIDTH)
        return hint


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clock_now() -> str:
    from datetime import datetime

    return datetime.now().strftime("%H:%M:%S")
