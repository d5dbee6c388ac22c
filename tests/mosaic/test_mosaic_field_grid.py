"""The pixel size estimated from the stitched field grid, and "cannot tell" without one."""

from __future__ import annotations

import numpy as np
import pytest

from rcm_viewer.mosaic.field_grid import estimate_pixel_size


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


@pytest.mark.parametrize(("pixel_um", "field_um", "downsample"),
                         [(2.0, 500.0, 1.0), (0.9, 250.0, 1.0), (0.55, 250.0, 2.0),
                          (7.5, 500.0, 1.0)])
def test_pixel_size_of_a_stitched_grid_within_five_percent(pixel_um: float, field_um: float,
                                                           downsample: float) -> None:
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
