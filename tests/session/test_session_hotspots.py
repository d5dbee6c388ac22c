"""Hotspots from a heatmap: the strongest peaks, neighbours suppressed, per class or any."""

from __future__ import annotations

import numpy as np
import pytest

from rcm_viewer.session.hotspots import find_hotspots, suppression_radius_px

CLASSES = ("melanoma", "bcc", "naevus")


def _heatmap(
    peaks: list[tuple[int, int, int, float]], rows: int = 32, cols: int = 48, sigma: float = 1.5
) -> np.ndarray:
    """(class, row, col, height) gaussian blobs on a (3, rows, cols) map."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    heat = np.zeros((len(CLASSES), rows, cols), dtype=np.float32)
    for k, r, c, height in peaks:
        heat[k] = np.maximum(
            heat[k], height * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
        )
    return heat


def test_peaks_come_in_order_and_neighbours_are_not_repeats() -> None:
    # cells of 64 px: a 48 x 32 map over 3072 x 2048 px
    heat = _heatmap([(0, 5, 5, 0.9), (0, 5, 6, 0.85), (0, 20, 30, 0.7), (0, 28, 44, 0.5)])
    spots = find_hotspots(heat, (3072, 2048), CLASSES, "melanoma", count=5, radius_px=300)
    assert [s.rank for s in spots] == [1, 2, 3]
    centres = [(round(s.center[0] / 64 - 0.5), round(s.center[1] / 64 - 0.5)) for s in spots]
    # the shoulder at (5, 6) is inside the first peak's radius: not a stop of its own
    assert centres[1:] == [(30, 20), (44, 28)]
    assert abs(spots[0].center[0] / 64 - 0.5 - 5.4) < 0.6 and abs(spots[0].center[1] / 64 - 5.5) < 1
    assert [round(s.peak, 2) for s in spots] == [0.9, 0.7, 0.5]
    for spot in spots:
        x, y, w, h = spot.rect
        assert x <= spot.center[0] <= x + w and y <= spot.center[1] <= y + h
        assert x >= 0 and x + w <= 3072 and y >= 0 and y + h <= 2048


def test_without_suppression_the_shoulder_is_a_second_stop() -> None:
    heat = _heatmap([(0, 5, 5, 0.9)], sigma=1.0)
    spots = find_hotspots(heat, (3072, 2048), CLASSES, "melanoma", count=2, radius_px=0)
    assert len(spots) == 2
    assert abs(spots[1].center[0] - spots[0].center[0]) <= 64 * 1.5


def test_any_class_takes_the_maximum_and_names_the_class() -> None:
    heat = _heatmap([(0, 4, 4, 0.6), (1, 20, 40, 0.95), (2, 28, 8, 0.3)])
    spots = find_hotspots(heat, (3072, 2048), CLASSES, None, count=3, radius_px=200)
    assert [s.class_id for s in spots] == ["bcc", "melanoma", "naevus"]
    only_naevus = find_hotspots(heat, (3072, 2048), CLASSES, "naevus", count=3, radius_px=200)
    assert [s.class_id for s in only_naevus] == ["naevus"]


def test_flat_or_empty_maps_have_no_hotspots_and_bad_input_is_refused() -> None:
    assert find_hotspots(np.zeros((3, 8, 8)), (512, 512), CLASSES, None) == []
    with pytest.raises(ValueError, match="classes"):
        find_hotspots(np.zeros((2, 8, 8)), (512, 512), CLASSES, None)
    with pytest.raises(ValueError, match="not in this result"):
        find_hotspots(np.zeros((3, 8, 8)), (512, 512), CLASSES, "scc")


def test_radius_in_micrometres_uses_the_pixel_size() -> None:
    assert suppression_radius_px(250.0, 0.5) == 500.0
    assert suppression_radius_px(250.0, None, 300.0) == 300.0
