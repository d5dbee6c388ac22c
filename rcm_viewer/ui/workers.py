"""Run engine work off the GUI thread, with progress, result and error signals.

job = Worker(lambda progress, cancelled: slow(progress=progress, cancel=cancelled))
job.signals.finished.connect(...)
QThreadPool.globalInstance().start(job)
job.cancel()  # cooperative: the function polls ``cancelled()``
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Signal

from rcm_viewer.errors import RcmError

log = logging.getLogger(__name__)


class WorkerSignals(QObject):
    progress = Signal(int, int)
    partial = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Worker(QRunnable):
    def __init__(
        self,
        fn: Callable[[Callable[[int, int], None], Callable[[], bool]], Any],
        name: str = "task",
    ) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the owner keeps a reference to cancel it
        self.fn = fn
        self.name = name
        self.signals = WorkerSignals()
        self._cancel = threading.Event()
        self.done = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        try:
            result = self.fn(self.signals.progress.emit, self._cancel.is_set)
            if self._cancel.is_set():
                self.signals.cancelled.emit()
            else:
                self.signals.finished.emit(result)
        except RcmError as exc:
            if self._cancel.is_set():
                self.signals.cancelled.emit()
                return
            log.info("%s failed: %s", self.name, exc, exc_info=True)
            self.signals.failed.emit(str(exc))
        except Exception as exc:
            log.exception("%s failed", self.name)
            self.signals.failed.emit(f"{self.name} failed: {type(exc).__name__}: {exc}")
        finally:
            self.done.set()
