"""One open case, headless: what the window shows and what every job is checked against.

The window used to hold all of this itself, so the batch worklist and the report could
not reuse it and its stale-result guard was repeated at every worker. Now one
``CaseSession`` owns:

* the open mosaic and its case (looked up by content sha256 via ``case_for_mosaic``);
* the reader identity (one function, ``resolve_reader``);
* the AI result in one canonical form (``AIView``), live or stored;
* the reader-first gate rule (``ai_revealed``): the same rule the case store applies;
* the **job token**: every open or close starts a new generation; a background job
  captures the token when it starts and its result is dropped when the token moved on
  (``is_current``), so a late result can never land in the next mosaic's case.

It knows nothing of Qt. Views subscribe to plain events (``subscribe``); the Qt adapter
(``rcm_viewer.ui.session_signals``) turns them into signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcm_viewer.cases import CaseRecord, CaseStore
from rcm_viewer.errors import CaseStoreError
from rcm_viewer.session.ai_view import (
    AIView,
    stored_from_prediction,
    view_from_prediction,
    view_from_stored,
)
from rcm_viewer.session.cases import case_for_mosaic
from rcm_viewer.session.reader import resolve_reader

if TYPE_CHECKING:
    from rcm_viewer.inference.prediction import Prediction
    from rcm_viewer.mosaic import Mosaic

log = logging.getLogger(__name__)

#: Events a session emits, with the payload each carries.
MOSAIC_CHANGED = "mosaic_changed"  # Mosaic | None
CASE_CHANGED = "case_changed"  # CaseRecord | None
AI_CHANGED = "ai_changed"  # AIView | None
GATE_CHANGED = "gate_changed"  # bool (revealed)
EVENTS = (MOSAIC_CHANGED, CASE_CHANGED, AI_CHANGED, GATE_CHANGED)


@dataclass(frozen=True)
class CaseOpened:
    """The outcome of attaching a case to the open mosaic."""

    case: CaseRecord
    restored: bool
    view_state: Mapping[str, Any] | None


class CaseSession:
    """The open mosaic, its case, the reader and the AI result; see the module docstring.

    ``reader_name`` and ``reader_mode`` are callables so the settings are read when they
    are needed (the reader may change the name while a case is open).
    """

    def __init__(
        self,
        store: CaseStore | None,
        *,
        reader_name: Callable[[], str] = lambda: "",
        reader_mode: Callable[[], str] = lambda: "reader_first",
    ) -> None:
        self.store = store
        self._reader_name = reader_name
        self._reader_mode = reader_mode
        self._token = 0
        self.mosaic: Mosaic | None = None
        self.case: CaseRecord | None = None
        self.prediction: Prediction | None = None  # the live result of this mosaic, if any
        self.ai: AIView | None = None
        self._revealed = self._default_revealed()
        self._listeners: dict[str, list[Callable[[Any], None]]] = {name: [] for name in EVENTS}

    # -- events -----------------------------------------------------------------------

    def subscribe(self, event: str, callback: Callable[[Any], None]) -> None:
        if event not in self._listeners:
            raise ValueError(f"unknown session event {event!r}")
        self._listeners[event].append(callback)

    def _emit(self, event: str, payload: Any) -> None:
        for callback in list(self._listeners[event]):
            callback(payload)

    # -- identity and tokens ----------------------------------------------------------

    def reader(self) -> str:
        """Who the audit trail names for changes made in this session."""
        return resolve_reader(self._reader_name())

    @property
    def token(self) -> int:
        return self._token

    def is_current(self, token: int) -> bool:
        """True while the mosaic a job started on is still the open one."""
        return token == self._token

    @property
    def case_id(self) -> str | None:
        return self.case.case_id if self.case is not None else None

    # -- opening and closing ----------------------------------------------------------

    def begin_open(self) -> int:
        """A new generation starts: jobs of the old mosaic are stale from now on.

        The open case keeps its record until the new mosaic arrives, but nothing more is
        written to it (its view state must be saved *before* this call).
        """
        self._token += 1
        return self._token

    def attach_mosaic(self, token: int, mosaic: Mosaic) -> bool:
        """Make ``mosaic`` the open one; a stale one (token moved on) is closed and refused."""
        if not self.is_current(token):
            mosaic.close()
            return False
        previous = self.mosaic
        self.mosaic = mosaic
        self._set_case(None)
        self._set_ai(None, None)
        if previous is not None and previous is not mosaic:
            previous.close()
        self._emit(MOSAIC_CHANGED, mosaic)
        return True

    def attach_case(self, token: int, sha256: str) -> CaseOpened | None:
        """Restore the case of the open mosaic by its content hash, or start one.

        Returns None for a stale token or when there is no store. Raises
        ``CaseStoreError`` with a one-line message.
        """
        if not self.is_current(token) or self.store is None or self.mosaic is None:
            return None
        mosaic = self.mosaic
        case, restored = case_for_mosaic(
            self.store,
            mosaic.path,
            sha256,
            user=self.reader(),
            reader_mode=self._reader_mode(),
            pixel_size_um=mosaic.info.pixel_size_um,
        )
        self._set_case(case)
        stored = self._stored_result()
        if stored is not None and self.prediction is None:
            self._set_ai(view_from_stored(stored), None)
        return CaseOpened(case, restored, case.view_state if restored else None)

    def close(self) -> None:
        """Close the mosaic and the case (save the view state before calling this)."""
        self._token += 1
        mosaic, self.mosaic = self.mosaic, None
        self._set_case(None)
        self._set_ai(None, None)
        if mosaic is not None:
            mosaic.close()
        self._emit(MOSAIC_CHANGED, None)

    # -- case record ------------------------------------------------------------------

    def refresh_case(self) -> None:
        """Re-read the case (after the form committed the initial assessment, for example)."""
        if self.store is None or self.case is None:
            return
        self._set_case(self.store.get_case(self.case.case_id))

    def save_view_state(self, state: Mapping[str, Any]) -> None:
        """Remember where the reader was in *this* case's mosaic (never another's)."""
        if self.store is None or self.case is None or self.mosaic is None:
            return
        try:
            self.store.save_view_state(self.case.case_id, dict(state))
        except CaseStoreError as exc:
            log.info("view state not saved: %s", exc)

    def record_pixel_size(self, value: float) -> None:
        """The reader set the pixel size: remember it for the file and in the case."""
        if self.mosaic is None:
            return
        self.mosaic.set_pixel_size(value, remember=True)
        if self.store is not None and self.case is not None:
            self.case = self.store.update_case_fields(
                self.case.case_id, self.reader(), pixel_size_um=value
            )

    def _stored_result(self) -> Any:
        if self.store is None or self.case is None:
            return None
        case = self.store.get_case(self.case.case_id, include_hidden_ai=True)
        return case.ai_result

    def _set_case(self, case: CaseRecord | None) -> None:
        self.case = case
        self._emit(CASE_CHANGED, case)
        self._update_gate()

    # -- AI result and the gate -------------------------------------------------------

    def _default_revealed(self) -> bool:
        return self._reader_mode() != "reader_first"

    def ai_revealed(self) -> bool:
        """May the reader see the AI result now? The store's own rule, per case."""
        return self._revealed

    def _update_gate(self) -> None:
        revealed = self.case.ai_visible if self.case is not None else self._default_revealed()
        if revealed != self._revealed:
            self._revealed = revealed
            self._emit(GATE_CHANGED, revealed)

    def _set_ai(self, view: AIView | None, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.ai = view
        self._emit(AI_CHANGED, view)

    def clear_result(self) -> None:
        """Forget the shown result (a new classification starts)."""
        self._set_ai(None, None)

    def show_prediction(self, token: int, prediction: Prediction) -> bool:
        """A partial or final engine result of the open mosaic; stale ones are dropped."""
        if not self.is_current(token):
            return False
        self._set_ai(view_from_prediction(prediction), prediction)
        return True

    def finish_prediction(self, token: int, prediction: Prediction) -> bool:
        """The final result: shown, and stored with the case (behind the gate).

        Returns False for a stale token. Raises ``CaseStoreError`` when it cannot be
        saved (the result is still shown).
        """
        if not self.show_prediction(token, prediction):
            return False
        if prediction.ok and self.store is not None and self.case is not None:
            self.store.save_ai_result(
                self.case.case_id, stored_from_prediction(prediction), self.reader()
            )
            self.refresh_case()
        return True

    @property
    def mosaic_path(self) -> Path | None:
        return self.mosaic.path if self.mosaic is not None else None
