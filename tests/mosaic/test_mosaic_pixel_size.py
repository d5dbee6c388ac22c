"""Pixel size in µm from every place it may hide, and the value a user remembers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import gradient
from PIL import Image

from rcm_viewer.mosaic import (
    PIXEL_SIZE_SOURCES,
    MosaicError,
    forget_pixel_size,
    open_mosaic,
    remember_pixel_size,
    remembered_pixel_size,
)
from rcm_viewer.mosaic.pixel_size import USER_STORE_NAME, ome_pixel_size

IMAGE = gradient(40, 50)


def _info(path: Path):
    with open_mosaic(path) as mosaic:
        info = mosaic.info
    assert info.pixel_size_source in PIXEL_SIZE_SOURCES
    return info


@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        (20_000.0, "CENTIMETER", 0.5),
        (50_800.0, "INCH", 0.5),
        (1_250.0, "MILLIMETER", 0.8),
        (2.0, "MICROMETER", 0.5),
    ],
)
def test_tiff_resolution_units(
    tmp_path: Path, resolution: float, unit: str, expected: float
) -> None:
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, IMAGE, resolution=(resolution, resolution), resolutionunit=unit)
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(expected)
    assert info.pixel_size_source == "tiff-resolution"
    assert info.field_of_view_mm == pytest.approx((50 * expected / 1000, 40 * expected / 1000))


@pytest.mark.parametrize(
    ("resolution", "unit"),
    [(72.0, "INCH"), (300.0, "INCH"), (1.0, "CENTIMETER"), (1e9, "CENTIMETER")],
)
def test_absurd_resolutions_are_ignored(tmp_path: Path, resolution: float, unit: str) -> None:
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, IMAGE, resolution=(resolution, resolution), resolutionunit=unit)
    info = _info(path)
    assert info.pixel_size_um is None and info.pixel_size_source == "unknown"
    assert any("not a microscope pixel size" in n for n in info.metadata["pixel_size_ignored"])


def test_default_tifffile_resolution_means_unknown(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, IMAGE)
    info = _info(path)
    assert info.pixel_size_um is None and info.pixel_size_source == "unknown"


@pytest.mark.parametrize(
    ("size", "unit", "expected"), [(0.6, "µm", 0.6), (750.0, "nm", 0.75), (0.0005, "mm", 0.5)]
)
def test_ome_physical_size(tmp_path: Path, size: float, unit: str, expected: float) -> None:
    path = tmp_path / "image.ome.tif"
    tifffile.imwrite(
        path,
        IMAGE,
        ome=True,
        metadata={
            "PhysicalSizeX": size,
            "PhysicalSizeXUnit": unit,
            "PhysicalSizeY": size,
            "PhysicalSizeYUnit": unit,
        },
    )
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(expected)
    assert info.pixel_size_source == "ome"
    assert info.format_description.startswith("OME-TIFF")


def test_ome_xml_without_pixels_or_broken() -> None:
    assert ome_pixel_size("<OME/>")[0] is None
    assert ome_pixel_size("<OME><Image><Pixels")[0] is None


def test_imagej_unit(tmp_path: Path) -> None:
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(
        path,
        np.stack([IMAGE, IMAGE]),
        imagej=True,
        resolution=(1 / 0.8, 1 / 0.8),
        metadata={"axes": "ZYX", "unit": "micron", "spacing": 3.0},
    )
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(0.8)
    assert info.pixel_size_source == "tiff-resolution"
    assert info.metadata["z_step_um"] == pytest.approx(3.0)


def test_json_description_from_our_generator(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.tif"
    tifffile.imwrite(
        path,
        IMAGE,
        tile=(16, 16),
        metadata={"pixel_size_um": 0.55, "lesion_class": "melanoma", "generator": "test"},
    )
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(0.55)
    assert info.pixel_size_source == "tiff-metadata"
    assert info.lesion_class == "melanoma"
    assert info.metadata["tiff_metadata"]["generator"] == "test"


def test_conflicting_sources_warn_and_the_stronger_wins(tmp_path: Path) -> None:
    path = tmp_path / "conflict.tif"
    tifffile.imwrite(
        path,
        IMAGE,
        metadata={"pixel_size_um": 0.5},
        resolution=(10_000.0, 10_000.0),
        resolutionunit="CENTIMETER",  # 1.0 µm/px
    )
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(0.5)
    assert any("says 1 µm/px" in w for w in info.warnings)


@pytest.mark.parametrize("sidecar_name", ["scan.tif.json", "scan.json"])
def test_sidecar_json(tmp_path: Path, sidecar_name: str) -> None:
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, IMAGE, resolution=(10_000.0, 10_000.0), resolutionunit="CENTIMETER")
    (tmp_path / sidecar_name).write_text(
        json.dumps({"pixel_size_um": 0.7, "lesion_class": "bcc"}), encoding="utf-8"
    )
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(0.7)
    assert info.pixel_size_source == "sidecar"
    assert info.lesion_class == "bcc"


def test_broken_sidecar_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    Image.fromarray(gradient(10, 10, "uint8")).save(path)
    (tmp_path / "scan.png.json").write_text("{not json", encoding="utf-8")
    info = _info(path)
    assert info.pixel_size_um is None


def test_png_physical_resolution(tmp_path: Path) -> None:
    path = tmp_path / "phys.png"
    Image.fromarray(gradient(10, 10, "uint8")).save(path, dpi=(50_800, 50_800))
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(0.5, rel=1e-3)
    assert info.pixel_size_source == "image-resolution"


def test_remembered_pixel_size_round_trip(tmp_path: Path, _private_user_data: Path) -> None:
    path = tmp_path / "unknown.tif"
    tifffile.imwrite(path, IMAGE)
    assert _info(path).pixel_size_um is None
    remember_pixel_size(path, 0.51)
    assert (_private_user_data / USER_STORE_NAME).is_file()
    assert remembered_pixel_size(path) == pytest.approx(0.51)
    info = _info(path)
    assert info.pixel_size_um == pytest.approx(0.51) and info.pixel_size_source == "user"
    # the user's word beats the file's
    assert forget_pixel_size(path)
    assert not forget_pixel_size(path)
    assert _info(path).pixel_size_um is None


def test_user_value_overrides_file_metadata(tmp_path: Path) -> None:
    path = tmp_path / "wrong.tif"
    tifffile.imwrite(path, IMAGE, metadata={"pixel_size_um": 0.5})
    remember_pixel_size(path, 0.9)
    info = _info(path)
    assert (info.pixel_size_um, info.pixel_size_source) == (pytest.approx(0.9), "user")


def test_remembered_value_does_not_follow_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "changing.tif"
    tifffile.imwrite(path, IMAGE)
    remember_pixel_size(path, 0.6)
    tifffile.imwrite(path, gradient(41, 50))  # different size on disk
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 10))
    assert remembered_pixel_size(path) is None
    assert _info(path).pixel_size_source == "unknown"


@pytest.mark.parametrize("value", [0.0, -1.0, 352.8, 1e-4, float("nan"), "abc"])
def test_remember_rejects_implausible_values(tmp_path: Path, value) -> None:
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, IMAGE)
    with pytest.raises(MosaicError, match=r"^x\.tif cannot use pixel size"):
        remember_pixel_size(path, value)


def test_remember_for_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MosaicError, match="gone.tif"):
        remember_pixel_size(tmp_path / "gone.tif", 0.5)


def test_corrupt_store_is_ignored_and_replaced(tmp_path: Path, _private_user_data: Path) -> None:
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, IMAGE)
    _private_user_data.mkdir(parents=True, exist_ok=True)
    (_private_user_data / USER_STORE_NAME).write_text("garbage{", encoding="utf-8")
    assert remembered_pixel_size(path) is None
    remember_pixel_size(path, 0.5)
    assert remembered_pixel_size(path) == pytest.approx(0.5)


def test_set_pixel_size_on_an_open_mosaic(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, IMAGE)
    with open_mosaic(path) as mosaic:
        info = mosaic.set_pixel_size(0.65)
        assert info is mosaic.info
        assert (info.pixel_size_um, info.pixel_size_source) == (0.65, "user")
        with pytest.raises(MosaicError):
            mosaic.set_pixel_size(500)
    assert _info(path).pixel_size_um == pytest.approx(0.65)
