"""Start a background job whose results count only while its mosaic is still open.

Every worker the window starts (opening, fingerprinting, building levels, a page's
overview, classifying, explaining) used to capture the open-mosaic token and compare it
in each of its slots: twelve copies of one guard. ``JobRunner.start`` captures the
session's token once and wraps the slots: a stale job's results and errors are dropped;
``always`` runs whatever happens (hiding a progress bar, clearing a busy flag).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool

from rcm_viewer.session import CaseSession
from rcm_viewer.ui.workers import Worker

#: work(progress, cancelled, job) -> result; ``job.signals.partial.emit`` streams results.
JobWork = Callable[[Callable[[int, int], None], Callable[[], bool], Worker], Any]


class JobRunner(QObject):
    """Runs ``Worker`` jobs on a pool, guarded by a ``CaseSession``'s token."""

    def __init__(self, session: CaseSession, pool: QThreadPool, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.pool = pool
        self.jobs: list[Worker] = []

    def start(
        self,
        work: JobWork,
        *,
        name: str,
        finished: Callable[[Any], None] | None = None,
        failed: Callable[[str], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        partial: Callable[[Any], None] | None = None,
        cancelled: Callable[[], None] | None = None,
        always: Callable[[], None] | None = None,
        stale: Callable[[Any], None] | None = None,
    ) -> Worker:
        """Start ``work`` in the pool; every callback except ``always`` (and ``progress``,
        which only moves a bar) is skipped once the session moved on to another mosaic.
        ``stale`` receives the result of a job that finished too late (to close a file it
        opened, say)."""
        token = self.session.token
        job: Worker

        def guarded(callback: Callable[..., None] | None) -> Callable[..., None]:
            def slot(*args: Any) -> None:
                if callback is not None and self.session.is_current(token):
                    callback(*args)

            return slot

        def ending(callback: Callable[..., None] | None) -> Callable[..., None]:
            inner = guarded(callback)

            def slot(*args: Any) -> None:
                if always is not None:
                    always()
                inner(*args)

            return slot

        job = Worker(lambda report, is_cancelled: work(report, is_cancelled, job), name=name)
        job.token = token  # type: ignore[attr-defined]
        if progress is not None:
            job.signals.progress.connect(progress)
        if partial is not None:
            job.signals.partial.connect(guarded(partial))

        def finished_slot(result: Any) -> None:
            if stale is not None and not self.session.is_current(token):
                stale(result)
            ending(finished)(result)

        job.signals.finished.connect(finished_slot)
        job.signals.failed.connect(ending(failed))
        job.signals.cancelled.connect(ending(cancelled))
        self.jobs = [j for j in self.jobs if not j.done.is_set()]
        self.jobs.append(job)
        self.pool.start(job)
        return job

    def busy(self) -> bool:
        return any(not job.done.is_set() for job in self.jobs)
