"""The wheel carries the package, the bundled model and the demo mosaics, and paths.py finds
them from an unpacked wheel, a checkout and the user models folder.

One real ``pip wheel`` per session (conftest.py; about 20 s on the shared 2-core machine);
the wheel is unpacked and run in a subprocess with only that folder on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rcm_viewer import paths
from rcm_viewer.inference import default_bundle_dir, list_bundles

REPO = Path(__file__).resolve().parents[2]
BUNDLE = "rcm-demo-resnet34"


def test_wheel_holds_code_model_and_demo(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        sizes = {i.filename: i.file_size for i in zf.infolist()}
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "rcm-viewer = rcm_viewer.cli:main" in zf.read(entry_points).decode()
    # every package of the source tree (a subpackage added later must be found too)
    for init in (REPO / "rcm_viewer").rglob("__init__.py"):
        assert init.relative_to(REPO).as_posix() in names
    assert "rcm_viewer/selftest.py" in names and "rcm_viewer/ui/welcome.py" in names
    model = f"rcm_viewer/bundled_models/{BUNDLE}"
    for name in ("weights.pt", "manifest.json", "MODEL_CARD.md", "network.onnx", "ood.npz"):
        member = f"{model}/{name}"
        assert member in names
        assert sizes[member] == (REPO / "models" / BUNDLE / name).stat().st_size
    assert "rcm_viewer/inference/keys/rcm-viewer-project.pub" in names  # signing.py
    for tif in (REPO / "resources" / "demo").glob("*.tif"):
        assert f"rcm_viewer/bundled_demo/{tif.name}" in names
    assert not any(n.startswith(("models/", "resources/", "tests/")) for n in names)


def test_unpacked_wheel_finds_its_own_model_and_demo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    script = (
        "import json; from rcm_viewer import paths; "
        "from rcm_viewer.inference import default_bundle_dir, load_bundle; "
        "b = load_bundle(paths.MODELS_DIR / 'rcm-demo-resnet34', verify=True); "
        "print(json.dumps({'pkg': str(paths.PACKAGE_DIR), 'models': str(paths.MODELS_DIR), "
        "'demo': str(paths.demo_mosaic()), 'demo_ok': paths.demo_mosaic().is_file(), "
        "'default': str(default_bundle_dir()), 'name': b.manifest.name}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RCM_VIEWER_MODEL_DIR")}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["pkg"]).is_relative_to(site)  # the wheel's code, not the checkout's
    assert Path(found["models"]) == (site / "rcm_viewer" / "bundled_models").resolve()
    assert Path(found["demo"]).is_relative_to(site) and found["demo_ok"]
    assert Path(found["default"]).name == BUNDLE and found["name"] == BUNDLE


def test_checkout_finds_the_repository_folders() -> None:
    assert paths.MODELS_DIR.resolve() == (REPO / "models").resolve()
    assert paths.DEMO_DIR.resolve() == (REPO / "resources" / "demo").resolve()
    assert paths.demo_mosaic("melanoma").is_file()


def test_user_models_folder_is_searched_after_the_bundled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RCM_VIEWER_MODEL_DIR", raising=False)
    user_models = paths.user_models_dir()
    assert user_models.is_relative_to(Path(os.environ["RCM_VIEWER_DATA_DIR"]))
    mine = user_models / "my-model"
    mine.mkdir()
    source = REPO / "models" / BUNDLE
    (mine / "manifest.json").write_bytes((source / "manifest.json").read_bytes())
    (mine / "weights.pt").symlink_to(source / "weights.pt")
    listed = [e.path for e in list_bundles()]
    assert listed[0].name == BUNDLE and listed[-1] == mine.resolve()
    assert default_bundle_dir().name == BUNDLE  # the bundled model stays the default
    empty = tmp_path / "no-bundled"
    empty.mkdir()
    monkeypatch.setattr("rcm_viewer.paths.MODELS_DIR", empty)
    assert default_bundle_dir() == mine  # nothing bundled: the user's only model
    assert json.loads((mine / "manifest.json").read_text())["name"] == BUNDLE


def test_open_models_folder_returns_the_user_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no xdg-open: the folder is still created and returned
    folder = paths.open_models_folder()
    assert folder == paths.user_models_dir() and folder.is_dir()
