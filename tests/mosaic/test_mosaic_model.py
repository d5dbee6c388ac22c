"""The frozen data objects that leave the room (MosaicInfo, LevelInfo)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import gradient
from PIL import Image

from rcm_viewer.mosaic import LevelInfo, MosaicInfo, open_mosaic


def _files(tmp_path: Path) -> list[Path]:
    paths = []
    p = tmp_path / "ome.ome.tif"
    tifffile.imwrite(p, gradient(40, 50), ome=True, metadata={"PhysicalSizeX": 0.5})
    paths.append(p)
    p = tmp_path / "imagej.tif"
    tifffile.imwrite(p, np.stack([gradient(40, 50)] * 2), imagej=True, metadata={"axes": "ZYX"})
    paths.append(p)
    p = tmp_path / "described.tif"
    tifffile.imwrite(
        p,
        gradient(40, 50),
        description="VivaScope export\nline two",
        metadata=None,
        software="acquire 1.0",
    )
    paths.append(p)
    p = tmp_path / "json.tif"
    tifffile.imwrite(p, gradient(40, 50), metadata={"pixel_size_um": 0.5, "nested": {"a": [1]}})
    paths.append(p)
    for suffix in (".png", ".jpg", ".bmp"):
        p = tmp_path / f"flat{suffix}"
        Image.fromarray(gradient(40, 50, "uint8")).save(p)
        paths.append(p)
    return paths


def test_info_is_frozen_hashable_and_json_ready(tmp_path: Path) -> None:
    for path in _files(tmp_path):
        with open_mosaic(path) as mosaic:
            info = mosaic.info
        assert isinstance(info, MosaicInfo) and all(isinstance(lv, LevelInfo) for lv in info.levels)
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.width = 1  # type: ignore[misc]
        hash(info)
        data = json.loads(json.dumps(info.to_dict()))
        assert data["path"] == str(path.resolve())
        assert data["width"] == 50 and data["height"] == 40
        assert info.level_count == len(info.levels) == 1
        assert info.file_size == path.stat().st_size


def test_plain_description_and_software_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "described.tif"
    tifffile.imwrite(
        path,
        gradient(40, 50),
        description="VivaScope export",
        metadata=None,
        software="acquire 1.0",
    )
    with open_mosaic(path) as mosaic:
        assert mosaic.info.metadata["description"] == "VivaScope export"
        assert mosaic.info.metadata["software"] == "acquire 1.0"
        assert repr(mosaic).startswith("<Mosaic described.tif 50x40 uint16")
