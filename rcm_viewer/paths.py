"""Where the application keeps its files (bundled model and demo, user data, logs).

The bundled model (``models/``) and demo mosaics (``resources/demo/``) stay where they are in
the repository (41 MB of weights must not move in git); setup.py maps them to the package names
``rcm_viewer.bundled_models`` and ``rcm_viewer.bundled_demo``. So one lookup finds them in every
way the program runs: a wheel or a frozen (PyInstaller) app has them under
``rcm_viewer/bundled_*``; an editable install maps the names back to the repository folders; a
bare checkout on ``PYTHONPATH`` falls back to the repository folders. ``MODELS_DIR``,
``DEMO_DIR`` and ``demo_mosaic()`` keep their meaning for existing callers.

User-added models live in ``user_models_dir()`` (under the user data folder) and are searched
after the bundled ones.

The data and log folders hold patient pseudonyms and clinical assessments, so they are
private: created 0700 (the default per-user folders are tightened to 0700 when they are
ours), and :func:`restrict_new_files` makes every file the program creates 0600 (a umask,
because SQLite's -wal/-shm, QSettings and the log handler create files themselves). A
folder that cannot be created raises :class:`DataFolderError`: one line saying what to do.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import platformdirs

from rcm_viewer.errors import RcmError

APP_NAME = "rcm-viewer"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

#: package name -> folder inside the repository (kept in step with setup.py).
BUNDLED_PACKAGES = {
    "rcm_viewer.bundled_models": "models",
    "rcm_viewer.bundled_demo": "resources/demo",
}


def bundled_dir(package: str) -> Path:
    """The folder of a data-only package, wherever the program is installed.

    ``find_spec`` rather than ``importlib.resources.files``: the data folders have no
    ``__init__.py`` (they are namespace packages), for which ``files`` returns a
    ``MultiplexedPath`` and not a real folder the model loader can open.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for location in spec.submodule_search_locations or ():
            if Path(location).is_dir():
                return Path(location).resolve()
    inside = PACKAGE_DIR / package.rsplit(".", 1)[-1]  # frozen app, unpacked wheel
    if inside.is_dir():
        return inside
    return REPO_DIR / BUNDLED_PACKAGES[package]  # a checkout run from PYTHONPATH


RESOURCES_DIR = REPO_DIR / "resources"
DEMO_DIR = bundled_dir("rcm_viewer.bundled_demo")
MODELS_DIR = bundled_dir("rcm_viewer.bundled_models")


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


def user_models_dir() -> Path:
    """Where a user drops extra model bundles (one sub-folder each); created on demand."""
    path = user_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_search_dirs() -> list[Path]:
    """Folders searched for model bundles, bundled first, then the user's."""
    dirs = [MODELS_DIR]
    with contextlib.suppress(OSError, RcmError):  # a read-only home must not hide the model
        dirs.append(user_models_dir())
    return dirs


def demo_mosaic(name: str = "naevus") -> Path:
    """Path of a bundled demo mosaic (``naevus``, ``melanoma`` or ``bcc``)."""
    return DEMO_DIR / f"demo_{name}.tif"


def open_models_folder() -> Path:
    """Show the user models folder in the system file manager; returns the folder.

    For "Analysis > Model > Open models folder". Plain subprocess (no Qt here: paths is
    outside ui/); the window may prefer ``QDesktopServices.openUrl`` on the returned path.
    Never waits for the file manager; a missing opener is not an error (the path is shown).
    """
    folder = user_models_dir()
    if sys.platform.startswith("win"):
        os.startfile(folder)  # type: ignore[attr-defined]  # noqa: S606
        return folder
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [opener, str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    return folder
