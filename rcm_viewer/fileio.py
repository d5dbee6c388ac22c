"""One way to write a file so that a crash never leaves half of it behind.

Case exports, batch outputs, checkpoints, reports and the pixel-size store all
replace a file that a reader or a later run trusts. Each is written to a
temporary file in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on one file system), so the target is either
the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_with"]


def atomic_write_with(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    *,
    fsync: bool = True,
    mode: int | None = None,
) -> Path:
    """Call ``write(stream)`` on a temporary binary file, then rename it over ``path``.

    ``mode`` sets the permission bits of the new file (for example ``0o600`` for files
    that hold patient data). Raises ``OSError`` as the file system reports it; the
    temporary file is removed on any failure.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return target


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    fsync: bool = True,
    mode: int | None = None,
) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; see :func:`atomic_write_with`."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda stream: stream.write(payload), fsync=fsync, mode=mode)
