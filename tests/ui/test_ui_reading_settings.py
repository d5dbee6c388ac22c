"""The reading-aid settings: defaults, bad values, and the classify-at-open rule."""

from __future__ import annotations

from rcm_viewer.ui import reading_settings as rs
from rcm_viewer.ui.settings import app_settings


def test_defaults_and_round_trips() -> None:
    assert rs.diagnostic_zoom() == 0.5 and rs.tour_zoom() == 1.0
    assert rs.coverage_tracking_enabled() and rs.classify_at_open_enabled()
    rs.set_diagnostic_zoom(0.75)
    rs.set_tour_zoom(2.0)
    rs.set_coverage_tracking_enabled(False)
    assert (rs.diagnostic_zoom(), rs.tour_zoom(), rs.coverage_tracking_enabled()) == (
        0.75,
        2.0,
        False,
    )
    app_settings().setValue(rs.DIAGNOSTIC_ZOOM_KEY, "lots")
    assert rs.diagnostic_zoom() == 0.5  # a damaged value falls back to the default


def test_classify_at_open_only_for_hidden_reader_first_results_with_a_pixel_size() -> None:
    assert rs.should_classify_at_open("reader_first", False, 0.5)
    assert not rs.should_classify_at_open("reader_first", False, None)  # never ask at open
    assert not rs.should_classify_at_open("ai_visible", True, 0.5)
    assert not rs.should_classify_at_open("reader_first", True, 0.5)
    rs.set_classify_at_open_enabled(False)
    assert not rs.should_classify_at_open("reader_first", False, 0.5)
