"""Session fixtures for the inference tests: mosaics rendered once, bundles built once.

Rendering costs ~1 s per 1024 px mosaic and training the tiny model ~10 s on two cores,
so both are shared by every test (they only read them). No fixture here opens a mosaic:
opening reads the per-test user folder (remembered pixel sizes) set by tests/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import inference_testkit as kit
import numpy as np
import pytest
import torch

from rcm_viewer.inference import ModelBundle

# One thread: the two cores are shared with other jobs, and an oversubscribed OpenMP pool
# runs several times slower than a single thread. The engine (and CLI subprocesses) read
# the variable; the direct torch calls in the fixtures use the setting below.
os.environ["RCM_VIEWER_TORCH_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sources() -> dict[str, np.ndarray]:
    return kit.render_sources()


@pytest.fixture(scope="session")
def mosaic_files(
    tmp_path_factory: pytest.TempPathFactory, sources: dict[str, np.ndarray]
) -> dict[str, Path]:
    """name -> file: the composite (pyramid and flat), no-tissue and awkward inputs."""
    root = tmp_path_factory.mktemp("mosaics")
    comp = kit.composite(sources)
    small = (256, 256)
    margin = comp.copy()
    margin[:, : kit.SIDE // 2] = 0
    files = {
        "composite": kit.write_tiff(root / "composite.tif", comp, pyramid=True),
        "composite_flat": kit.write_tiff(root / "composite_flat.tif", comp),
        "half_black": kit.write_tiff(root / "half_black.tif", margin, pyramid=True),
        "no_pixel_size": kit.write_tiff(root / "no_pixel_size.tif", comp, None),
        "rgb": kit.write_tiff(root / "rgb.tif", np.repeat(comp[:512, :512, None], 3, axis=2)),
        "gray_512": kit.write_tiff(root / "gray_512.tif", comp[:512, :512]),
        "black": kit.write_tiff(root / "black.tif", np.zeros(small, np.uint8)),
        "blank": kit.write_tiff(root / "blank.tif", np.full(small, 128, np.uint8)),
        "saturated": kit.write_tiff(root / "saturated.tif", np.full(small, 255, np.uint8)),
    }
    not_an_image = root / "broken.tif"
    not_an_image.write_bytes(b"this is not a TIFF file at all")
    files["broken"] = not_an_image
    return files


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """ResNet-18, random weights, 96 px tiles at 2 µm/px: plumbing and maths only."""
    return kit.random_bundle(tmp_path_factory.mktemp("bundles") / "random")


@pytest.fixture(scope="session")
def trained_bundle(tiny_trained_bundle: ModelBundle) -> ModelBundle:
    return tiny_trained_bundle  # trained once per run (tests/conftest.py)
