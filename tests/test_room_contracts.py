"""The room rules of docs/DESIGN.md are checked by import-linter, and the check bites.

``./dev test`` runs ``lint-imports`` on the real tree. Here a copy of the package gets two
deliberate violations (the mosaic room importing the case store, the session importing
Qt) and the same contracts must report both as broken, so a rule cannot silently stop
being checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_real_tree_keeps_every_contract() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_deliberate_violation_breaks_the_check(tmp_path: Path) -> None:
    shutil.copytree(
        REPO / "rcm_viewer",
        tmp_path / "rcm_viewer",
        ignore=shutil.ignore_patterns("__pycache__", "models", "*.pt", "*.onnx"),
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    sniff = tmp_path / "rcm_viewer" / "mosaic" / "sniff.py"
    sniff.write_text(sniff.read_text() + "\nfrom rcm_viewer.cases import store  # noqa\n")
    reader = tmp_path / "rcm_viewer" / "session" / "reader.py"
    reader.write_text(reader.read_text() + "\nimport PySide6.QtWidgets  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    broken = re.findall(r"^(.*) BROKEN$", result.stdout, flags=re.MULTILINE)
    assert any("mosaic" in line for line in broken), result.stdout[-3000:]
    assert any("Qt" in line for line in broken), result.stdout[-3000:]


def test_no_module_outside_ui_uses_widgets() -> None:
    """import-linter sees imports; this also catches a widget class named in code."""
    offenders = []
    for path in (REPO / "rcm_viewer").rglob("*.py"):
        relative = path.relative_to(REPO / "rcm_viewer")
        # the entry points start the window: cli.py (gui command), selftest.py (renders it)
        if relative.parts[0] == "ui" or relative.name in ("cli.py", "selftest.py"):
            continue
        text = path.read_text(encoding="utf-8")
        code = re.sub(r'"""[\s\S]*?"""', "", text)  # docstrings may name widgets
        if re.search(r"\bQtWidgets\b|\bQApplication\b|\bpyqtgraph\b", code):
            offenders.append(str(relative))
    assert offenders == []
