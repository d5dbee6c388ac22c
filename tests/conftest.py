"""Suite-wide settings: headless Qt and a throw-away user data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Never touch the real user's case database, settings or logs."""
    data_dir = tmp_path_factory.mktemp("user-data")
    monkeypatch.setenv("RCM_VIEWER_DATA_DIR", str(data_dir))
    return data_dir
