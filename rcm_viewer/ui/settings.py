"""Persistent user settings (window layout, recent files, reader name, preferences).

Stored as an INI file in the user data folder, so ``RCM_VIEWER_DATA_DIR``
isolates tests and portable installs exactly like the case database.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from rcm_viewer.paths import user_data_dir

MAX_RECENT_FILES = 10


def app_settings() -> QSettings:
    return QSettings(str(user_data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def recent_files() -> list[str]:
    value = app_settings().value("recent_files", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent_file(path: str) -> list[str]:
    files = [path] + [p for p in recent_files() if p != path]
    files = files[:MAX_RECENT_FILES]
    settings = app_settings()
    settings.setValue("recent_files", files)
    settings.sync()
    return files


def reader_name() -> str:
    return str(app_settings().value("reader/name", "") or "")


def set_reader_name(name: str) -> None:
    settings = app_settings()
    settings.setValue("reader/name", name)
    settings.sync()


def last_folder(key: str) -> str:
    """The folder a file dialog of this kind (``key``) last saved into; '' when none."""
    return str(app_settings().value(f"folders/{key}", "") or "")


def set_last_folder(key: str, folder: str) -> None:
    settings = app_settings()
    settings.setValue(f"folders/{key}", folder)
    settings.sync()
