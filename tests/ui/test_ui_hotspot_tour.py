"""The hotspot tour on a real view of a real TIFF, with a result whose peaks are known."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from reading_aids_testkit import settle, show, write_mosaic

from rcm_viewer.inference.prediction import Prediction
from rcm_viewer.session import CaseSession
from rcm_viewer.ui.hotspot_tour import HotspotPanel, HotspotTour
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview import OverviewWidget

CLASSES = ("melanoma", "bcc", "naevus")
NAMES = ("Melanoma", "BCC", "Naevus")
CELL = 64  # level-0 px per heatmap cell: a 32 x 24 map over 2048 x 1536


def _prediction() -> Prediction:
    heat = np.zeros((3, 24, 32), dtype=np.float32)
    yy, xx = np.mgrid[0:24, 0:32]

    def blob(k: int, r: int, c: int, height: float) -> None:
        heat[k] = np.maximum(heat[k], height * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 2.0))

    blob(0, 6, 8, 0.9)  # melanoma, strongest
    blob(0, 6, 9, 0.8)  # its shoulder: suppressed
    blob(0, 17, 24, 0.7)  # melanoma, second
    blob(1, 12, 16, 0.95)  # bcc: the strongest of any class
    return Prediction(
        "ok",
        CLASSES,
        NAMES,
        probabilities=(0.6, 0.3, 0.1),
        top_class="melanoma",
        heatmap=heat,
        heatmap_cell_px=CELL,
        heatmap_scale=1.0,
        model_name="test",
        model_version="1",
        weights_sha256="0" * 64,
    )


def _centre(r: int, c: int) -> tuple[float, float]:
    return (c + 0.5) * CELL, (r + 0.5) * CELL


@pytest.fixture
def setup(qtbot, tmp_path):
    path = write_mosaic(tmp_path / "m.tif", 2048, 1536, 0.5)
    view = MosaicView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    mosaic, _ = show(view, path)
    session = CaseSession(None, reader_mode=lambda: "ai_visible")
    token = session.begin_open()
    assert session.attach_mosaic(token, mosaic)
    assert session.show_prediction(token, _prediction())
    overview = OverviewWidget()
    qtbot.addWidget(overview)
    overview.set_image(view._overview, 2048, 1536)
    overview.resize(240, 180)  # not shown: the view keeps the focus (N goes to it)
    panel = HotspotPanel()
    qtbot.addWidget(panel)
    tour = HotspotTour(session, view, overview, panel)
    yield session, view, overview, panel, tour
    view.tiles.set_mosaic(None, None)
    view.tiles.wait_idle(3000)
    session.close()


def _shown_centre(view: MosaicView) -> tuple[float, float]:
    centre = view.visible_scene_rect().center()
    return centre.x(), centre.y()


def test_n_and_shift_n_visit_the_peaks_of_the_top_class_at_one_to_one(setup, qtbot) -> None:
    session, view, overview, panel, tour = setup
    assert panel.class_combo.currentData() == "melanoma"  # the top class by default
    expected = [_centre(6, 8), _centre(17, 24)]  # the shoulder at (6, 9) is no stop
    assert [s.rank for s in tour.hotspots] == [1, 2]
    assert panel.list.count() == 2
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    visits = []
    for key, modifier in (
        (Qt.Key.Key_N, Qt.KeyboardModifier.NoModifier),
        (Qt.Key.Key_N, Qt.KeyboardModifier.NoModifier),
        (Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier),
    ):
        qtbot.keyClick(view, key, modifier)
        settle(qtbot, view)
        assert view.zoom == pytest.approx(1.0)
        assert view.current_level == 0
        visits.append(_shown_centre(view))
    # first, second, back to the first; the 3 x 3 weighted centre lies within a cell
    for (x, y), (ex, ey) in zip(visits, [expected[0], expected[1], expected[0]], strict=True):
        assert abs(x - ex) < CELL / 2 and abs(y - ey) < CELL / 2
    assert panel.list.currentRow() == 0
    # the stop is what is on screen: level-0 tiles under the peak were drawn
    rect = view.visible_scene_rect()
    assert rect.contains(QPointF(*expected[0]))
    assert view.last_drawn and all(key[0] == 0 for key in view.last_drawn)


def test_any_class_and_click_to_go(setup, qtbot) -> None:
    session, view, overview, panel, tour = setup
    panel.class_combo.setCurrentIndex(panel.class_combo.findData(None))
    assert [s.class_id for s in tour.hotspots][:2] == ["bcc", "melanoma"]
    item = panel.list.item(0)
    assert item.text().startswith("1. BCC 0.95")
    qtbot.mouseClick(
        panel.list.viewport(),
        Qt.MouseButton.LeftButton,
        pos=panel.list.visualItemRect(item).center(),
    )
    x, y = _shown_centre(view)
    ex, ey = _centre(12, 16)
    assert abs(x - ex) < CELL / 2 and abs(y - ey) < CELL / 2


def test_numbers_are_drawn_on_the_overview(setup) -> None:
    session, view, overview, panel, tour = setup
    assert [m[2] for m in overview._markers] == ["1", "2"]
    frame = overview.grab().toImage()
    target = overview._image_rect()
    for x, y, _label in overview._markers:
        # just left of the number, inside the marker's disc
        px = target.left() + x / 2048 * target.width() - 5
        py = target.top() + y / 1536 * target.height()
        colour = frame.pixelColor(round(px), round(py))
        assert colour.blue() > 200 and colour.red() < 120, (x, y, colour.name())


def test_nothing_before_the_reveal(qtbot, tmp_path) -> None:
    path = write_mosaic(tmp_path / "m.tif", 1024, 768, 0.5)
    view = MosaicView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    mosaic, _ = show(view, path)
    session = CaseSession(None, reader_mode=lambda: "reader_first")
    token = session.begin_open()
    session.attach_mosaic(token, mosaic)
    session.show_prediction(token, _prediction())  # arrived behind the gate
    overview = OverviewWidget()
    panel = HotspotPanel()
    tour = HotspotTour(session, view, overview, panel)
    assert not session.ai_revealed()
    assert tour.hotspots == [] and panel.list.count() == 0 and overview._markers == []
    before = _shown_centre(view), view.zoom
    tour.next()
    assert (_shown_centre(view), view.zoom) == before
    assert "after you commit" in panel.hint.text()
    view.tiles.set_mosaic(None, None)
    view.tiles.wait_idle(3000)
    session.close()


def test_the_list_says_whether_each_stop_was_reviewed(setup) -> None:
    session, view, overview, panel, tour = setup
    first = tour.hotspots[0].rect
    tour.reviewed = lambda rect: rect == first  # as CoverageController.was_reviewed answers
    tour.refresh()
    assert panel.list.item(0).text().endswith("✓")
    assert panel.list.item(1).text().endswith("✗")
