"""Review coverage on a coarse grid: frames at diagnostic zoom, dwell, tissue, storage."""

from __future__ import annotations

import json

import numpy as np

from rcm_viewer.session.coverage import (
    VIEW_STATE_KEY,
    ReviewCoverage,
    coverage_from_view_state,
)


def test_cells_whose_centres_were_on_screen_are_seen() -> None:
    cov = ReviewCoverage(2560, 1280, cell_px=256)
    assert (cov.rows, cov.cols) == (5, 10)
    # x 100..700 covers the centres of cells 0 (128), 1 (384) and 2 (640); y 0..400: rows 0, 1
    cov.record((100, 0, 600, 400), zoom=1.0, now=0.0)
    expected = np.zeros((5, 10), dtype=bool)
    expected[0:2, 0:3] = True
    assert (cov.seen == expected).all()
    assert cov.share_reviewed() == 6 / 50


def test_frames_below_the_diagnostic_zoom_do_not_count() -> None:
    cov = ReviewCoverage(2560, 1280, cell_px=256, min_zoom=0.5)
    cov.record((0, 0, 2560, 1280), zoom=0.25, now=0.0)
    assert not cov.seen.any() and cov.share_reviewed() == 0.0


def test_dwell_goes_to_the_frame_on_screen_and_is_capped() -> None:
    cov = ReviewCoverage(1024, 1024, cell_px=256, max_dwell_s=10)
    cov.record((0, 0, 512, 512), 1.0, now=0.0)
    cov.record((512, 512, 512, 512), 1.0, now=2.5)  # first frame stayed 2.5 s
    cov.flush(now=100.0)  # the reader left: 10 s at most
    assert cov.dwell[0, 0] == 2.5 and cov.dwell[1, 1] == 2.5
    assert cov.dwell[2, 2] == 10.0 and cov.dwell[0, 3] == 0.0


def test_share_is_of_tissue_only() -> None:
    overview = np.zeros((100, 200), dtype=np.uint8)  # 2000 x 1000 px mosaic at 1/10
    overview[:, :100] = 180  # left half tissue, right half black margin
    cov = ReviewCoverage(2000, 1000, cell_px=250)
    cov.set_tissue_from_overview(overview)
    assert cov.tissue[:, :4].all() and not cov.tissue[:, 4:].any()
    cov.record((0, 0, 1000, 500), 1.0, 0.0)  # the top-left quarter: half the tissue
    assert cov.share_reviewed() == 0.5
    cov.record((1000, 0, 1000, 1000), 1.0, 1.0)  # margin only: no change
    assert cov.share_reviewed() == 0.5
    assert cov.was_reviewed((100, 100, 300, 300))
    assert not cov.was_reviewed((100, 700, 300, 200))


def test_commit_freezes_what_was_seen_before_the_reveal() -> None:
    cov = ReviewCoverage(1024, 1024, cell_px=256)
    cov.record((0, 0, 512, 512), 1.0, 0.0)
    cov.mark_commit()
    cov.record((512, 512, 512, 512), 1.0, 1.0)  # the tour after the reveal
    assert not cov.was_reviewed((600, 600, 100, 100))
    assert cov.was_reviewed((600, 600, 100, 100), at_commit=False)
    assert cov.share_reviewed(at_commit=True) == 0.25 and cov.share_reviewed() == 0.5


def test_huge_mosaics_get_a_capped_grid() -> None:
    cov = ReviewCoverage(100_000, 80_000, cell_px=256, max_cells=128 * 128)
    assert cov.rows * cov.cols <= 128 * 128
    assert cov.cols * cov.cell_px >= 100_000 and cov.rows * cov.cell_px >= 80_000


def test_round_trip_through_json_in_the_view_state() -> None:
    overview = np.zeros((64, 64), dtype=np.uint16)
    overview[8:56, 8:56] = 3000
    cov = ReviewCoverage(4096, 4096, cell_px=256)
    cov.set_tissue_from_overview(overview)
    cov.record((0, 0, 2048, 1024), 1.0, 0.0)
    cov.record((2048, 2048, 1024, 1024), 2.0, 3.0)
    cov.mark_commit()
    cov.flush(4.0)
    state = json.loads(json.dumps({"zoom": 1.0, VIEW_STATE_KEY: cov.to_dict()}))
    back = coverage_from_view_state(state, 4096, 4096)
    assert back is not None
    assert (back.seen == cov.seen).all() and (back.tissue == cov.tissue).all()
    assert np.allclose(back.dwell, cov.dwell, atol=0.05)
    assert (back.seen_at_commit == cov.seen_at_commit).all()
    assert back.share_reviewed() == cov.share_reviewed()
    assert state[VIEW_STATE_KEY]["share_reviewed"] == round(cov.share_reviewed(), 4)
    # another mosaic's coverage, or damage, is not taken
    assert coverage_from_view_state(state, 4096, 2048) is None
    state[VIEW_STATE_KEY]["seen"] = "not base64!"
    assert coverage_from_view_state(state, 4096, 4096) is None
    assert coverage_from_view_state({"zoom": 1}, 4096, 4096) is None
