"""Review coverage from the frames a real view paints of a real TIFF, and what it draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from reading_aids_testkit import show, write_mosaic

from rcm_viewer.cases import CaseStore
from rcm_viewer.session.coverage import VIEW_STATE_KEY
from rcm_viewer.ui.coverage import CoverageController, CoverageLabel
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget
from rcm_viewer.ui.reading_settings import set_coverage_tracking_enabled, set_diagnostic_zoom

W, H, MARGIN = 2048, 1536, 512  # the right 512 px are black margin: 6 of 8 columns tissue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(qtbot, tmp_path):
    path = write_mosaic(tmp_path / "m.tif", W, H, 0.5, margin_right=MARGIN)
    view = MosaicView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    mosaic, pixels = show(view, path)
    overview = OverviewWidget()
    qtbot.addWidget(overview)
    overview.set_image(view._overview, W, H)
    overview.resize(256, 192)
    controller = CoverageController(view, overview)
    clock = Clock()
    controller._clock = clock
    controller.start(W, H, pixels)
    yield view, overview, controller, clock, pixels
    view.tiles.set_mosaic(None, None)
    view.tiles.wait_idle(3000)
    mosaic.close()


def _expected_cells(rects, cell: float, rows: int, cols: int) -> np.ndarray:
    """Cells whose centre lies in any of the rectangles, computed independently."""
    seen = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            x, y = (c + 0.5) * cell, (r + 0.5) * cell
            seen[r, c] = any(rx <= x <= rx + rw and ry <= y <= ry + rh for rx, ry, rw, rh in rects)
    return seen


def _pan(view: MosaicView, clock: Clock, steps) -> list[tuple[float, float, float, float]]:
    shown = []
    for cx, cy, zoom, seconds in steps:
        view.set_zoom(zoom, QPointF(cx, cy))
        view.viewport().repaint()  # one painted frame, as the event loop would paint it
        rect = view.visible_scene_rect()
        if view.zoom >= 0.5:
            shown.append((rect.x(), rect.y(), rect.width(), rect.height()))
        clock.now += seconds
    return shown


SCRIPT = [  # centre x, y, zoom, seconds on screen
    (W / 2, H / 2, 0.2, 3.0),  # fit-ish: below diagnostic zoom, not counted
    (300, 300, 1.0, 2.0),
    (600, 300, 1.0, 1.0),
    (900, 450, 1.0, 0.5),
    (900, 1100, 0.7, 1.5),
    (1800, 1100, 1.0, 4.0),  # over the margin: no tissue
]


def test_a_scripted_pan_covers_exactly_the_cells_of_the_frames_shown(setup) -> None:
    view, overview, controller, clock, _ = setup
    cov = controller.coverage
    assert cov.tissue[:, :6].all() and not cov.tissue[:, 6:].any()
    shown = _pan(view, clock, SCRIPT)
    assert len(shown) == 5
    expected = _expected_cells(shown, cov.cell_px, cov.rows, cov.cols)
    assert expected.any() and not expected.all()
    assert (cov.seen == expected).all()
    tissue = cov.tissue
    assert controller.share_reviewed() == pytest.approx((expected & tissue).sum() / tissue.sum())
    # dwell: the time until the next frame, for the cells of the frame on screen
    controller.state_for_view_state()  # flushes the last frame
    only_first = _expected_cells(shown[:1], cov.cell_px, cov.rows, cov.cols) & ~_expected_cells(
        shown[1:], cov.cell_px, cov.rows, cov.cols
    )
    assert only_first.any()
    assert np.allclose(cov.dwell[only_first], 2.0)
    assert cov.dwell[~expected].sum() == 0
    assert f"{controller.share_reviewed():.0%}" in controller.share_text()


def test_v_hatches_unseen_tissue_and_the_overview_shades_it(setup, qtbot) -> None:
    view, overview, controller, clock, _ = setup
    _pan(view, clock, SCRIPT[1:3])
    cov = controller.coverage
    view.set_zoom(0.15, QPointF(W / 2, H / 2))  # zoomed out: not a diagnostic frame
    view.viewport().repaint()
    plain = view.viewport().grab().toImage()
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    qtbot.keyClick(view, Qt.Key.Key_V)
    assert controller.overlay_visible
    view.viewport().repaint()
    hatched = view.viewport().grab().toImage()
    seen_cell = tuple(int(v) for v in np.argwhere(cov.seen & cov.tissue)[0])
    unseen_cell = tuple(int(v) for v in np.argwhere(cov.unseen_tissue())[-1])
    margin_cell = (cov.rows - 1, cov.cols - 1)

    def at(image, cell):
        r, c = cell
        point = view.mapFromScene(QPointF((c + 0.5) * cov.cell_px, (r + 0.5) * cov.cell_px))
        return image.pixelColor(point.x(), point.y())

    for cell, tinted in ((seen_cell, False), (unseen_cell, True), (margin_cell, False)):
        before, after = at(plain, cell), at(hatched, cell)
        changed = (after.red() - after.blue()) - (before.red() - before.blue()) > 30
        assert changed == tinted, (cell, before.name(), after.name())
    controller._refresh_overview()
    shade = overview._shade
    assert shade is not None
    sx, sy = shade.width() / cov.cols, shade.height() / cov.rows

    def alpha(cell):
        r, c = cell
        return shade.pixelColor(math.floor((c + 0.5) * sx), math.floor((r + 0.5) * sy)).alpha()

    assert alpha(unseen_cell) > 0 and alpha(seen_cell) == 0 and alpha(margin_cell) == 0
    qtbot.keyClick(view, Qt.Key.Key_V)
    assert not controller.overlay_visible


def test_coverage_is_stored_in_the_case_and_comes_back(setup, qtbot, tmp_path) -> None:
    view, overview, controller, clock, pixels = setup
    shown = _pan(view, clock, SCRIPT[1:4])
    controller.mark_commit()
    store = CaseStore(tmp_path / "cases.sqlite")
    try:
        case = store.create_case("P1", user="reader")
        state = {"zoom": 1.0, **controller.state_for_view_state()}
        store.save_view_state(case.case_id, state)
        saved = store.get_case(case.case_id).view_state
        assert saved[VIEW_STATE_KEY]["share_reviewed"] == round(controller.share_reviewed(), 4)
        again = CoverageController(view, overview)
        again.start(W, H, pixels, view_state=saved)
        assert (again.coverage.seen == controller.coverage.seen).all()
        assert again.coverage.seen_at_commit is not None
        x, y, w, h = shown[0]
        assert again.was_reviewed((x + w / 4, y + h / 4, w / 2, h / 2))
        assert not again.was_reviewed((1200, 1200, 200, 200))
    finally:
        store.close()


def test_settings_turn_tracking_off_and_move_the_diagnostic_zoom(setup, qtbot) -> None:
    view, overview, controller, clock, pixels = setup
    set_diagnostic_zoom(0.8)
    controller.start(W, H, pixels)
    _pan(view, clock, [(300, 300, 0.7, 1.0)])
    assert not controller.coverage.seen.any()  # 70 % is below 80 %
    _pan(view, clock, [(300, 300, 1.0, 1.0)])
    assert controller.coverage.seen.any()
    set_coverage_tracking_enabled(False)
    controller.start(W, H, pixels)
    _pan(view, clock, [(900, 900, 1.0, 1.0)])
    assert not controller.coverage.seen.any()
    label = CoverageLabel(controller)
    qtbot.addWidget(label)
    assert "not tracked" in label.text()
