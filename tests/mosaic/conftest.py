"""Fixtures for the mosaic tests: every test gets its own user-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Remembered pixel sizes must never leak into the real user folder or between tests."""
    data_dir = tmp_path / "user-data"
    monkeypatch.setenv("RCM_VIEWER_DATA_DIR", str(data_dir))
    return data_dir
