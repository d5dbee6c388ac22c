"""The pixel size estimated from the stitched field grid, and "cannot tell" without one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rcm_viewer.mosaic.field_grid import estimate_pixel_size
from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic


def _stitched(side: int, pixel_um: float, field_um: float, seed: int) -> np.ndarray:
    """Speckled texture x per-field gain x vignetting x seams, as a VivaBlock is built."""
    rng = np.random.default_rng(seed)
    period = field_um / pixel_um
    spectrum = np.fft.fft2(rng.normal(0, 1, (side, side)))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side)))
    blobs = np.fft.ifft2(spectrum * np.exp(-((f * 40) ** 2))).real  # ~10-40 px structure
    tissue = 0.45 + 0.12 * blobs / blobs.std()
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    fx, fy = np.floor(x / period).astype(int), np.floor(y / period).astype(int)
    gains = 1 + rng.uniform(-0.12, 0.12, (fy.max() + 1, fx.max() + 1))
    lx, ly = x / period - fx - 0.5, y / period - fy - 0.5
    vignette = 1 - 0.25 * 2 * (lx**2 + ly**2)
    image = tissue * gains[fy, fx] * vignette * (1 + 0.25 * rng.normal(0, 1, (side, side)))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("pixel_um", "field_um", "downsample"),
    [(2.0, 500.0, 1.0), (0.9, 250.0, 1.0), (0.55, 250.0, 2.0), (0.75, 500.0, 10.0)],
)
def test_pixel_size_of_a_stitched_grid_within_five_percent(
    pixel_um: float, field_um: float, downsample: float
) -> None:
    side = 1200
    image = _stitched(side, pixel_um * downsample, field_um, seed=int(pixel_um * 100))
    estimate = estimate_pixel_size(image, downsample=downsample, field_um=field_um)
    assert estimate.found, estimate.basis
    assert estimate.pixel_size_um == pytest.approx(pixel_um, rel=0.05)
    assert estimate.period_px == pytest.approx(field_um / pixel_um, rel=0.05)
    assert f"{field_um:g} µm" in estimate.basis and estimate.confidence > 0


def _brownian(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth random surface without any grid (cumulative sums of noise)."""
    surface = np.cumsum(np.cumsum(rng.normal(0, 1, (side, side)), axis=0), axis=1)
    surface -= surface.min()
    return (40 + 180 * surface / surface.max()).astype(np.uint8)


@pytest.mark.parametrize("kind", ["noise", "smooth", "flat", "tiny"])
def test_no_grid_cannot_tell(kind: str) -> None:
    rng = np.random.default_rng(1)
    images = {
        "noise": rng.integers(0, 256, (800, 800), dtype=np.uint8),
        "smooth": _brownian(rng, 800),
        "flat": np.full((600, 600), 90, np.uint8),
        "tiny": rng.integers(0, 256, (40, 40), dtype=np.uint8),
    }
    estimate = estimate_pixel_size(images[kind])
    assert not estimate.found and estimate.level == "cannot tell"
    assert estimate.pixel_size_um is None and estimate.basis.startswith("Cannot tell")


def _generator_mosaic(seed: int, *, grid: bool) -> SyntheticMosaic:
    """The demo generator's mosaic: regular tissue (~70-110 µm) that competes with the grid."""
    mosaic = SyntheticMosaic(MosaicSpec("naevus", 768, 768, 0.6, seed, field_um=150.0))
    if not grid:  # the same tissue, camera and noise, without the stitched field grid
        mosaic.acquisition = dataclasses.replace(
            mosaic.acquisition,
            field_gain_sd=0.0,
            vignetting=0.0,
            seam=0.0,
            missing_fields=frozenset(),
        )
    return mosaic


def test_generator_mosaic_grid_found_and_its_tissue_alone_is_not_a_grid() -> None:
    pixels = _generator_mosaic(4, grid=True).to_array()
    estimate = estimate_pixel_size(pixels, field_um=150.0)
    assert estimate.found, estimate.basis
    assert estimate.pixel_size_um == pytest.approx(0.6, rel=0.05)
    # the grid's phase: fields start at pixel 0, so a field corner sits at a multiple of 250
    for offset in estimate.offset_px:
        assert min(offset % 250.0, 250.0 - offset % 250.0) <= 4.0, estimate.offset_px
    # an overview (2x reduced) of the same mosaic gives the same answer
    half = pixels.astype(np.float32)
    half = (half[0::2, 0::2] + half[1::2, 0::2] + half[0::2, 1::2] + half[1::2, 1::2]) / 4
    overview = estimate_pixel_size(half, downsample=2.0, field_um=150.0)
    assert overview.pixel_size_um == pytest.approx(0.6, rel=0.05), overview.basis
    tissue_only = estimate_pixel_size(_generator_mosaic(4, grid=False).to_array(), field_um=150.0)
    assert not tissue_only.found, tissue_only.basis


def test_regular_texture_and_round_scan_are_not_a_grid() -> None:
    """A lattice of soft blobs (as regular as tissue gets, but no seams) and a round scan
    on black (its edge changes the averaged pixels every column) must not read as fields."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:900, 0:900].astype(np.float64)
    lattice = 120 + 50 * np.sin(2 * np.pi * x / 150) * np.sin(2 * np.pi * y / 150)
    lattice = np.clip(lattice * (1 + 0.2 * rng.normal(0, 1, x.shape)), 0, 255).astype(np.uint8)
    disc = np.clip(rng.normal(120, 35, x.shape), 1, 255)
    disc[np.hypot(x - 450, y - 450) > 430] = 0
    for image in (lattice, disc.astype(np.uint8)):
        for field_um in (150.0, 500.0):
            estimate = estimate_pixel_size(image, field_um=field_um)
            assert not estimate.found, estimate.basis


def test_too_few_fields_cannot_tell() -> None:
    """Two fields across is not enough to trust a period, even with a clean grid."""
    image = _stitched(600, 1.0, 300.0, seed=3)  # 2 fields of 300 px
    estimate = estimate_pixel_size(image, field_um=300.0)
    assert not estimate.found and "Cannot tell" in estimate.basis
