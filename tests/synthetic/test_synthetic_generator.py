"""The generator is deterministic, seamless under tiling, and labels its files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from rcm_viewer.errors import SyntheticError
from rcm_viewer.synthetic import LESION_CLASSES, MosaicSpec, SyntheticMosaic, write_tiff


@pytest.mark.parametrize("lesion_class", LESION_CLASSES)
def test_same_seed_same_pixels_and_different_seed_different(lesion_class: str) -> None:
    spec = MosaicSpec(lesion_class, 300, 220, 0.8, seed=42)
    a = SyntheticMosaic(spec).to_array()
    b = SyntheticMosaic(spec).to_array()
    c = SyntheticMosaic(MosaicSpec(lesion_class, 300, 220, 0.8, seed=43)).to_array()
    assert a.shape == (220, 300) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5


def test_same_seed_same_file_bytes(tmp_path) -> None:
    spec = MosaicSpec("bcc", 1300, 900, 0.6, seed=5)
    # same file name in two folders: the OME image name is taken from it
    first = write_tiff(SyntheticMosaic(spec), tmp_path / "a" / "bcc.ome.tif")
    second = write_tiff(SyntheticMosaic(spec), tmp_path / "b" / "bcc.ome.tif")
    assert first.read_bytes() == second.read_bytes()


def test_region_rendering_is_seamless_whatever_the_tiling() -> None:
    """A tile renders the same pixels as the same place in the whole mosaic."""
    mosaic = SyntheticMosaic(MosaicSpec("melanoma", 700, 600, 0.5, seed=9))
    whole = mosaic.to_array()
    for x, y, w, h in [(0, 0, 64, 64), (123, 77, 300, 211), (650, 550, 50, 50)]:
        np.testing.assert_array_equal(mosaic.render(x, y, w, h), whole[y : y + h, x : x + w])


@pytest.mark.parametrize("bits", [8, 16])
def test_metadata_round_trip(tmp_path, bits: int) -> None:
    spec = MosaicSpec("naevus", 2100, 1100, 0.65, seed=3, bits=bits)
    path = write_tiff(SyntheticMosaic(spec), tmp_path / "n.ome.tif", tile=256)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.tilewidth == 256
        assert page.dtype == (np.uint8 if bits == 8 else np.uint16)
        # TIFF resolution tags, pixels per centimetre
        x_res = page.tags["XResolution"].value
        assert page.tags["ResolutionUnit"].value == 3
        assert 1e4 / (x_res[0] / x_res[1]) == pytest.approx(0.65, rel=1e-6)
        # OME: physical size, class in Description and a MapAnnotation
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
        pixels = ome["Image"]["Pixels"]
        assert pixels["PhysicalSizeX"] == pytest.approx(0.65)
        assert pixels["PhysicalSizeXUnit"] == "µm"
        description = json.loads(ome["Image"]["Description"])
        assert description["lesion_class"] == "naevus"
        assert description["synthetic"] is True
        # pyramid: SubIFD levels of half size, each the 2x2 mean of the level above
        series = tif.series[0]
        shapes = [level.shape for level in series.levels]
        assert shapes == [(1100, 2100), (550, 1050), (275, 525)]  # down to <= 1024 px
        for upper, lower in zip(series.levels[:-1], series.levels[1:], strict=True):
            base = upper.asarray().astype(np.float64)
            half = lower.asarray().astype(np.float64)
            if base.shape[0] % 2:
                base = np.pad(base, ((0, 1), (0, 0)), mode="edge")
            if base.shape[1] % 2:
                base = np.pad(base, ((0, 0), (0, 1)), mode="edge")
            expected = (
                base[0::2, 0::2] + base[1::2, 0::2] + base[0::2, 1::2] + base[1::2, 1::2]
            ) / 4
            assert np.abs(half - expected).max() <= 1.0


def test_sixteen_bit_uses_the_range() -> None:
    img = SyntheticMosaic(MosaicSpec("bcc", 256, 256, 0.7, seed=1, bits=16)).to_array()
    assert img.dtype == np.uint16
    assert img.max() > 255 * 40


def test_acquisition_fields_margin_and_noise() -> None:
    """A multi-field mosaic shows field steps, and some seed gives a black unscanned corner."""
    found_margin = False
    for seed in range(12):
        mosaic = SyntheticMosaic(MosaicSpec("naevus", 2000, 2000, 1.0, seed=seed))
        if mosaic.acquisition.missing_fields:
            fx, fy = sorted(mosaic.acquisition.missing_fields)[0]
            block = mosaic.render(fx * 500 + 100, fy * 500 + 100, 64, 64)
            assert block.max() == 0
            found_margin = True
            break
    assert found_margin
    # speckle: neighbouring pixels are not equal even inside smooth structures
    img = SyntheticMosaic(MosaicSpec("naevus", 256, 256, 0.5, seed=2)).to_array().astype(int)
    assert np.mean(np.abs(np.diff(img, axis=1)) > 0) > 0.7


@pytest.mark.parametrize(
    "spec, message",
    [
        (MosaicSpec("lentigo", 256, 256), "unknown lesion class"),
        (MosaicSpec("bcc", 10, 256), "outside"),
        (MosaicSpec("bcc", 256, 256, pixel_size_um=5.0), "pixel size"),
        (MosaicSpec("bcc", 256, 256, bits=12), "bits"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(spec: MosaicSpec, message: str) -> None:
    with pytest.raises(SyntheticError, match=message):
        SyntheticMosaic(spec)


def test_jpeg_needs_eight_bits(tmp_path) -> None:
    with pytest.raises(SyntheticError, match="8-bit"):
        write_tiff(
            SyntheticMosaic(MosaicSpec("bcc", 256, 256, bits=16)),
            tmp_path / "x.tif",
            compression="jpeg",
        )
