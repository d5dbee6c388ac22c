"""Helpers shared by test modules (a unique name: pytest puts several conftest.py on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 120):
    """Run ``python -m rcm_viewer ARGS`` in a subprocess, as a user would."""
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "rcm_viewer", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_DIR,
    )
