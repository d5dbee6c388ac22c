"""The reader-first gate in front of the AI result panel.

Sequential reading (see DOMAIN.md, "Reader-assist conventions") only means
something if the reader cannot glance at the AI before recording an unaided
answer. The engine already withholds the AI result (``CaseRecord.ai_visible``);
this widget makes the *panel* follow the same rule, so a stale panel from the
previous case, or a result that arrives from a worker thread, cannot show early.

How it is made impossible rather than unlikely: the content widget lives inside
a private holder that stays hidden while the gate is closed. ``QWidget.isVisible``
is only True when every ancestor is visible, so even a stray ``content.show()``
from elsewhere leaves it invisible until the gate opens.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from rcm_viewer.cases import CaseRecord
from rcm_viewer.ui.settings import app_settings

READER_FIRST_KEY = "workflow/reader_first"

# One line each: on a laptop screen the hidden panel must not take the form's room.
HIDDEN_TEXT = "AI result hidden until you commit your initial assessment."
NO_CASE_TEXT = "Open a mosaic. The AI result is shown after you commit your assessment."
WAITING_TEXT = "(a result is ready)"


def _as_bool(value: object, default: bool) -> bool:
    """QSettings INI files give booleans back as text ("true"/"false"): read both forms."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    return default


def reader_first_enabled() -> bool:
    """Whether new cases use the reader-first workflow (default True: the safer choice)."""
    return _as_bool(app_settings().value(READER_FIRST_KEY, True), True)


def set_reader_first_enabled(enabled: bool) -> None:
    settings = app_settings()
    settings.setValue(READER_FIRST_KEY, bool(enabled))
    settings.sync()


def reader_mode_for_new_cases() -> str:
    """The ``reader_mode`` to pass to ``CaseStore.create_case`` under the current setting.

    The mode is fixed per case at creation, so changing the setting never
    reveals the AI for a case that was started reader-first.
    """
    return "reader_first" if reader_first_enabled() else "ai_visible"


class AIGate(QWidget):
    """Holds the AI result panel and hides it behind a placeholder until the rule allows it."""

    revealedChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._content: QWidget | None = None
        self._revealed = False
        self._case: CaseRecord | None = None

        self._placeholder = QLabel(self)
        self._placeholder.setObjectName("aiGatePlaceholder")
        self._placeholder.setWordWrap(True)
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setMargin(6)
        self._placeholder.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._placeholder.setToolTip(
            "Reader-first workflow: record your own reading first, then compare with the AI. "
            "Change it in the preferences (applies to new cases)."
        )

        # The holder, not the content, is what gets hidden: see the module docstring.
        self._holder = QWidget(self)
        self._holder.setObjectName("aiGateHolder")
        self._holder_layout = QVBoxLayout(self._holder)
        self._holder_layout.setContentsMargins(0, 0, 0, 0)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._placeholder)
        layout.addWidget(self._holder)
        self._apply(False)

    # ------------------------------------------------------------------ public API

    def set_content(self, widget: QWidget | None) -> QWidget | None:
        """Put the AI result panel behind the gate; returns the previous panel (detached)."""
        old = self._content
        if old is widget:
            return None
        if old is not None:
            self._holder_layout.removeWidget(old)
            old.hide()
            old.setParent(None)
        self._content = widget
        if widget is not None:
            self._holder_layout.addWidget(widget)
            widget.show()  # shown inside the holder; the holder decides what the reader sees
        self._apply(self._revealed)
        return old

    def content(self) -> QWidget | None:
        return self._content

    def placeholder(self) -> QLabel:
        """The label shown instead of the AI panel while the gate is closed."""
        return self._placeholder

    def reader_first(self) -> bool:
        """The preference for new cases (``workflow/reader_first``, default True)."""
        return reader_first_enabled()

    def is_revealed(self) -> bool:
        """True when the AI panel may be seen (it is then visible if the gate itself is)."""
        return self._revealed

    def update_from_case(self, case: CaseRecord | None) -> None:
        """Open or close the gate for this case (None: no case open, the preference decides)."""
        self._case = case
        revealed = case.ai_visible if case is not None else not self.reader_first()
        self._apply(revealed)

    # ------------------------------------------------------------------ internals

    def _apply(self, revealed: bool) -> None:
        changed = revealed != self._revealed
        self._revealed = revealed
        if self._case is None:
            text = NO_CASE_TEXT
        else:
            text = HIDDEN_TEXT
            if self._case.ai_result_stored:
                text += " " + WAITING_TEXT
        self._placeholder.setText(text)
        # Hide before showing so there is never a moment with both (or the content) on screen.
        if revealed:
            self._placeholder.hide()
            self._holder.show()
        else:
            self._holder.hide()
            self._placeholder.show()
        if changed:
            self.revealedChanged.emit(revealed)
