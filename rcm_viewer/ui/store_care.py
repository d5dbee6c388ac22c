"""Looking after the case database while the window runs: a full check, backups, restore.

``quick_check`` at open misses damage inside an index (issue 16: a melanoma score read 6
instead of 8), so after the window shows a full check runs in a worker, together with a
backup; another backup follows every ``BACKUP_MINUTES`` when something changed. Damage
is reported with the offer to restore the newest good backup; the damaged file is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, QTimer
from PySide6.QtWidgets import QMessageBox, QWidget

from rcm_viewer.cases import CaseStore
from rcm_viewer.errors import CaseStoreError
from rcm_viewer.ui.workers import Worker

log = logging.getLogger(__name__)

BACKUP_MINUTES = 10


class StoreCare(QObject):
    """Runs the full check and backups of one ``CaseStore`` off the GUI thread."""

    def __init__(
        self,
        store: CaseStore,
        pool: QThreadPool,
        parent: QWidget,
        show_error: Callable[[str, str], None],
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.pool = pool
        self.window = parent
        self.show_error = show_error
        self.problems: list[str] | None = None  # the last full check's findings
        self.jobs: list[Worker] = []
        self.timer = QTimer(self)
        self.timer.setInterval(BACKUP_MINUTES * 60 * 1000)
        self.timer.timeout.connect(self.backup_if_changed)

    def _run(
        self, work: Callable[[], Any], name: str, finished: Callable[[Any], None] | None = None
    ) -> Worker:
        job = Worker(lambda progress, cancelled: work(), name=name)
        if finished is not None:
            job.signals.finished.connect(finished)
        job.signals.failed.connect(lambda message: log.warning("%s: %s", name, message))
        self.jobs = [j for j in self.jobs if not j.done.is_set()] + [job]
        self.pool.start(job)
        return job

    def start(self) -> None:
        """After the window shows: the full check, then a backup if the file is healthy."""

        def check_then_backup() -> list[str]:
            problems = self.store.full_check()
            if not problems:
                self.store.backup_now()
            return problems

        self._run(check_then_backup, "checking the case database", self._on_checked)
        self.timer.start()

    def backup_if_changed(self) -> None:
        self._run(self.store.backup_if_changed, "backing up the case database")

    def busy(self) -> bool:
        return any(not job.done.is_set() for job in self.jobs)

    def _on_checked(self, problems: list[str]) -> None:
        self.problems = problems
        if not problems:
            return
        log.error("case database check: %s", "; ".join(problems))
        shown = "\n".join(problems[:8]) + ("\n…" if len(problems) > 8 else "")
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "Case database damaged",
            "The case database failed its full check:\n\n"
            + shown
            + "\n\nRestore the newest good backup? The damaged file is kept "
            "beside it.",
            QMessageBox.StandardButton.NoButton,
            self.window,
        )
        restore = box.addButton("Restore newest good backup", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        box.buttonClicked.connect(lambda button: button is restore and self.restore())
        box.open()
        self.damage_box = box

    def restore(self) -> None:
        try:
            restored = self.store.restore_newest_good_backup()
        except CaseStoreError as exc:
            self.show_error("Case database", str(exc))
            return
        aside = self.store.moved_aside_path
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Case database restored",
            f"Restored from {restored.name}. The damaged database was kept as "
            f"{aside}. Reopen the mosaic you were reading.",
            QMessageBox.StandardButton.Ok,
            self.window,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # never modal: the window stays usable
        self.restored_box = box
