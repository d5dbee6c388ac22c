"""Suite-wide settings: headless Qt and a throw-away user data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Never touch the real user's case database, settings or logs."""
    data_dir = tmp_path_factory.mktemp("user-data")
    monkeypatch.setenv("RCM_VIEWER_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(scope="session")
def tiny_trained_bundle(tmp_path_factory: pytest.TempPathFactory):
    """The tiny ResNet-18 trained on the three synthetic sources, once per test run.

    Both the inference tests and the window's classification tests use it; training it
    twice cost ~30 s (much more on a loaded machine). One torch thread: the two cores are
    shared and an oversubscribed OpenMP pool runs several times slower.
    """
    import inference_testkit as kit
    import torch

    os.environ["RCM_VIEWER_TORCH_THREADS"] = "1"
    torch.set_num_threads(1)
    return kit.train_tiny_bundle(
        tmp_path_factory.mktemp("bundles") / "trained", kit.render_sources()
    )
