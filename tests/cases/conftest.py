"""Fixtures for the case-store tests: real SQLite files in tmp_path, a settable clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rcm_viewer.cases import CaseStore


class SteppingClock:
    """A clock the test can set; each reading advances by one millisecond so order is stable."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def set(self, moment: datetime) -> None:
        self.now = moment

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test away from the real per-user data folder."""
    folder = tmp_path / "user-data"
    monkeypatch.setenv("RCM_VIEWER_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(datetime(2025, 3, 14, 12, 0, tzinfo=UTC))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cases.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: SteppingClock) -> Iterator[CaseStore]:
    with CaseStore(db_path, clock=clock) as opened:
        yield opened
