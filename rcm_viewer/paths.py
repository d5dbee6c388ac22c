"""Where the application keeps its files (repo resources, user data, logs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "rcm-viewer"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
RESOURCES_DIR = REPO_DIR / "resources"
DEMO_DIR = RESOURCES_DIR / "demo"
MODELS_DIR = REPO_DIR / "models"


def user_data_dir() -> Path:
    """Per-user data folder; ``RCM_VIEWER_DATA_DIR`` overrides it (tests, portable use)."""
    override = os.environ.get("RCM_VIEWER_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_log_dir() -> Path:
    override = os.environ.get("RCM_VIEWER_DATA_DIR")
    path = Path(override) / "logs" if override else Path(platformdirs.user_log_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_mosaic(name: str = "naevus") -> Path:
    """Path of a bundled demo mosaic (``naevus``, ``melanoma`` or ``bcc``)."""
    return DEMO_DIR / f"demo_{name}.tif"
