"""Issue 16, findings 7 and 9, with the real program in a subprocess (Qt offscreen).

Ctrl+C (SIGINT) must close the window as File > Quit does: exit 0 within seconds, the
case store closed (SQLite removes the -wal of a cleanly closed database). Files the
program creates are private; an unusable data folder is one line, not a traceback.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RCM_VIEWER_DATA_DIR"] = str(data)
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_closes_the_window_cleanly_and_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # no classification at open: compiling the model cannot be interrupted, and on a loaded
    # machine it would make the close wait; this test is about the signal, not the model
    data.mkdir(mode=0o700)
    settings = data / "settings.ini"
    settings.write_text("[reading]\nclassify_at_open=false\n", encoding="utf-8")
    settings.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rcm_viewer", "gui"],
        env=_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = data / "cases.sqlite3"
    deadline = time.monotonic() + 60
    while not Path(f"{db}-wal").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert Path(f"{db}-wal").exists(), "the window never opened its case store"
    time.sleep(1.0)  # let the event loop run
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGINT did not close the window within 15 s")
    assert proc.returncode == 0, err
    assert time.monotonic() - sent < 10
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not Path(f"{db}-wal").exists(), "the case store was not closed"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    created = [p for p in data.rglob("*")]
    assert db in created
    for path in created:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


@pytest.mark.parametrize("command", [["gui"], ["info", "missing.tif"]])
def test_a_data_folder_that_cannot_be_created_is_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    blocker = tmp_path / "not-a-folder"  # fails for root too, unlike a 0500 folder
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "rcm_viewer", *command],
        env=_env(blocker / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stderr.strip().splitlines()
    if command == ["gui"]:
        assert result.returncode == 2
        assert len(lines) == 1 and "data folder" in lines[0], result.stderr
        assert "RCM_VIEWER_DATA_DIR" in lines[0]
    assert "PermissionError" not in result.stderr and "Traceback" not in result.stderr
