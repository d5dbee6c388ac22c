"""Slow: the wheel pip-installed into a fresh virtualenv, and the frozen app (PyInstaller).

Skipped unless ``RCM_RUN_PACKAGING=1`` (minutes: a ResNet-34 self-test and, for the frozen
app, a 7-15 minute PyInstaller build of the small flavour on the shared 2-core machine).
``RCM_PACKAGING_REUSE_BUILD=1`` tests an existing installer/dist/small build instead.
Nothing is downloaded: the virtualenv reuses this interpreter's installed packages through a
.pth line, and pip installs only the wheel (``--no-deps --no-index``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "installer" / "dist"

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(
        os.environ.get("RCM_RUN_PACKAGING") != "1",
        reason="packaging tests take minutes: set RCM_RUN_PACKAGING=1",
    ),
]


def _clean_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "RCM_VIEWER_MODEL_DIR", "VIRTUAL_ENV")
    }
    env["RCM_VIEWER_DATA_DIR"] = str(data_dir)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return env


def _self_test(executable: Path, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    done = subprocess.run(
        [str(executable), "--self-test"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("rcm-viewer self-test")]
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, lines[0]


def test_wheel_in_a_fresh_venv_classifies_the_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    (site / "_reuse_installed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(wheel),
        ],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    env = _clean_env(tmp_path / "data")
    where = subprocess.check_output(
        [str(python), "-c", "import rcm_viewer.paths as p; print(p.PACKAGE_DIR, p.MODELS_DIR)"],
        cwd=tmp_path,
        env=env,
        text=True,
    ).split()
    assert all(Path(w).is_relative_to(site) for w in where), where
    demo = Path(where[1]).parent / "bundled_demo" / "demo_naevus.tif"
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [
            str(venv / "bin" / "rcm-viewer"),
            "classify",
            str(demo),
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert rows[0]["status"] == "ok" and rows[0]["model"] == "rcm-demo-resnet34", rows
    code, line = _self_test(venv / "bin" / "rcm-viewer", env, tmp_path)
    assert code == 0, line
    assert "classify ok" in line and "via torch" in line and "window ok" in line


def _frozen_build() -> Path:
    app = DIST / "small" / "rcm-viewer"
    if os.environ.get("RCM_PACKAGING_REUSE_BUILD") != "1" or not app.is_dir():
        subprocess.run(
            [sys.executable, str(REPO / "installer" / "build.py"), "--flavour", "small"],
            check=True,
            cwd=REPO,
            timeout=3600,
        )
    return app


def _check_small_self_test(code: int, line: str) -> None:
    for step in ("seals ok", "open ok", "window ok"):
        assert step in line, line
    openvino_backend = list((REPO / "rcm_viewer" / "inference").rglob("*openvino*.py"))
    if openvino_backend:
        assert code == 0 and "classify ok" in line, line
    else:  # until the OpenVINO backend lands (issue 11) the small app cannot classify
        assert code == 1 and "classify failed" in line and "no inference backend" in line


def test_frozen_small_app_and_its_deb_pass_the_self_test(tmp_path: Path) -> None:
    app = _frozen_build()
    env = _clean_env(tmp_path / "data")
    _check_small_self_test(*_self_test(app / "rcm-viewer", env, tmp_path))
    debs = sorted(DIST.glob("rcm-viewer_*_amd64.deb"))
    assert debs, "build.py made no .deb"
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    desktop = (root / "usr/share/applications/rcm-viewer.desktop").read_text()
    assert "MimeType=image/tiff;image/bmp;image/png;image/jpeg;" in desktop
    assert (root / "usr/share/icons/hicolor/256x256/apps/rcm-viewer.png").is_file()
    assert os.readlink(root / "usr/bin/rcm-viewer") == "/opt/rcm-viewer/rcm-viewer"
    _check_small_self_test(*_self_test(root / "opt/rcm-viewer/rcm-viewer", env, tmp_path))
