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
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_DIR,
    )


def sample_ai_result():
    """A small stored AI result (70 % melanoma) for tests of the case store's users."""
    from rcm_viewer.cases import AIResult

    return AIResult.from_probabilities(
        "demo-resnet", "1", "0" * 64, {"melanoma": 0.7, "bcc": 0.2, "naevus": 0.1}
    )
