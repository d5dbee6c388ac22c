"""Settings of the reading aids (issue 15): diagnostic zoom, coverage, tour zoom, classify at open.

One function per setting, read when it is needed (as ``ai_gate.reader_first_enabled``),
so a change in the settings applies to the next frame or the next mosaic without a
restart. All keys live under ``reading/``.
"""

from __future__ import annotations

from rcm_viewer.ui.ai_gate import _as_bool
from rcm_viewer.ui.settings import app_settings

DIAGNOSTIC_ZOOM_KEY = "reading/diagnostic_zoom"
TRACK_COVERAGE_KEY = "reading/track_coverage"
TOUR_ZOOM_KEY = "reading/tour_zoom"
CLASSIFY_AT_OPEN_KEY = "reading/classify_at_open"

DEFAULT_DIAGNOSTIC_ZOOM = 0.5  # 50 %: screen px per level-0 px
DEFAULT_TOUR_ZOOM = 1.0  # 1:1


def _as_float(value: object, default: float, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    if not low <= number <= high:
        return default
    return number


def _set(key: str, value: object) -> None:
    settings = app_settings()
    settings.setValue(key, value)
    settings.sync()


def diagnostic_zoom() -> float:
    """The least zoom (screen px per level-0 px) at which a frame counts as reviewed."""
    return _as_float(
        app_settings().value(DIAGNOSTIC_ZOOM_KEY, DEFAULT_DIAGNOSTIC_ZOOM),
        DEFAULT_DIAGNOSTIC_ZOOM,
        0.05,
        16.0,
    )


def set_diagnostic_zoom(zoom: float) -> None:
    _set(DIAGNOSTIC_ZOOM_KEY, float(zoom))


def coverage_tracking_enabled() -> bool:
    """Whether review coverage is recorded (default on)."""
    return _as_bool(app_settings().value(TRACK_COVERAGE_KEY, True), True)


def set_coverage_tracking_enabled(enabled: bool) -> None:
    _set(TRACK_COVERAGE_KEY, bool(enabled))


def tour_zoom() -> float:
    """The zoom the hotspot tour shows each stop at (default 1:1)."""
    return _as_float(
        app_settings().value(TOUR_ZOOM_KEY, DEFAULT_TOUR_ZOOM), DEFAULT_TOUR_ZOOM, 0.05, 16.0
    )


def set_tour_zoom(zoom: float) -> None:
    _set(TOUR_ZOOM_KEY, float(zoom))


def classify_at_open_enabled() -> bool:
    """Whether, in reader-first mode, the model starts as soon as a mosaic opens (default on).

    The result stays behind the gate; it is only ready sooner at the commit.
    """
    return _as_bool(app_settings().value(CLASSIFY_AT_OPEN_KEY, True), True)


def set_classify_at_open_enabled(enabled: bool) -> None:
    _set(CLASSIFY_AT_OPEN_KEY, bool(enabled))


def should_classify_at_open(
    reader_mode: str | None, revealed: bool, pixel_size_um: float | None
) -> bool:
    """The rule for starting the model at open: reader-first case, result still hidden,
    the pixel size known (never ask for it at open), and the setting on."""
    return (
        reader_mode == "reader_first"
        and not revealed
        and bool(pixel_size_um)
        and classify_at_open_enabled()
    )


__all__ = [
    "classify_at_open_enabled",
    "coverage_tracking_enabled",
    "diagnostic_zoom",
    "set_classify_at_open_enabled",
    "set_coverage_tracking_enabled",
    "set_diagnostic_zoom",
    "set_tour_zoom",
    "should_classify_at_open",
    "tour_zoom",
]
