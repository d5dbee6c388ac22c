"""Where the application keeps its files (repo resources, user data, logs).

The data and log folders hold patient pseudonyms and clinical assessments, so they are
private: created 0700 (the default per-user folders are tightened to 0700 when they are
ours), and :func:`restrict_new_files` makes every file the program creates 0600 (a umask,
because SQLite's -wal/-shm, QSettings and the log handler create files themselves). A
folder that cannot be created raises :class:`DataFolderError`: one line saying what to do.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import platformdirs

from rcm_viewer.errors import RcmError

APP_NAME = "rcm-viewer"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
RESOURCES_DIR = REPO_DIR / "resources"
DEMO_DIR = RESOURCES_DIR / "demo"
MODELS_DIR = REPO_DIR / "models"


class DataFolderError(RcmError):
    """The per-user data or log folder cannot be created or used."""


def restrict_new_files() -> None:
    """Files this process creates from now on are 0600 and folders 0700 (umask 077)."""
    os.umask(0o077)


def _private_folder(path: Path, *, tighten: bool) -> Path:
    """Create ``path`` 0700; tighten an existing one when it is the app's own folder."""
    existed = path.is_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFolderError(
            f"Cannot create the rcm-viewer data folder {path} ({exc.strerror or exc}): "
            "create it yourself, fix its permissions, or set RCM_VIEWER_DATA_DIR to a "
            "folder you can write"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataFolderError(
            f"The rcm-viewer data folder {path} is not writable: fix its permissions or set "
            "RCM_VIEWER_DATA_DIR to a folder you can write"
        )
    if tighten or not existed:
        with contextlib.suppress(OSError):
            if path.stat().st_uid == os.getuid():
                path.chmod(0o700)
    return path


def user_data_dir() -> Path:
    """Per-user data folder; ``RCM_VIEWER_DATA_DIR`` overrides it (tests, portable use)."""
    override = os.environ.get("RCM_VIEWER_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    return _private_folder(path, tighten=not override)


def user_log_dir() -> Path:
    override = os.environ.get("RCM_VIEWER_DATA_DIR")
    if override:
        user_data_dir()  # the parent is private too
    path = Path(override) / "logs" if override else Path(platformdirs.user_log_dir(APP_NAME))
    return _private_folder(path, tighten=True)


def demo_mosaic(name: str = "naevus") -> Path:
    """Path of a bundled demo mosaic (``naevus``, ``melanoma`` or ``bcc``)."""
    return DEMO_DIR / f"demo_{name}.tif"
