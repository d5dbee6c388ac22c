"""Two real views of two real TIFFs at 0.5 and 1.0 µm/px, linked in micrometres."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from reading_aids_testkit import show, write_mosaic

from rcm_viewer.ui.linked_views import LinkedViews
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.overview_levels import open_with_overview

PA, PB = 0.5, 1.0  # µm per level-0 px: the same 1024 x 768 µm of tissue in both


@pytest.fixture
def linked(qtbot, tmp_path):
    a = write_mosaic(tmp_path / "a.tif", 2048, 1536, PA, seed=1)
    b = write_mosaic(tmp_path / "b.tif", 1024, 768, PB, seed=2)
    primary = MosaicView()
    views = LinkedViews(primary)
    qtbot.addWidget(views)
    views.resize(800 + views.handleWidth(), 400)
    views.show()
    qtbot.waitExposed(views)
    mosaic_a, _ = show(primary, a)
    views.show_secondary(*open_with_overview(b))
    views.setSizes([400, 400])
    qtbot.waitUntil(lambda: primary.viewport().width() == views.secondary.viewport().width())
    yield views
    for view in (primary, views.secondary):
        view.tiles.set_mosaic(None, None)
        view.tiles.wait_idle(3000)
    views.close_secondary()
    mosaic_a.close()


def _worst_mismatch(views: LinkedViews) -> float:
    """Largest screen distance (px) between where the two views show the same µm points."""
    a, b = views.primary, views.secondary
    assert a.viewport().size() == b.viewport().size()
    centre = a.visible_scene_rect().center()
    ox, oy = views.offset_um
    worst = 0.0
    for dx in (-150, 0, 150):
        for dy in (-100, 0, 100):
            um = ((centre.x() + dx / a.zoom) * PA, (centre.y() + dy / a.zoom) * PA)
            pa = a.mapFromScene(QPointF(um[0] / PA, um[1] / PA))
            pb = b.mapFromScene(QPointF((um[0] + ox) / PB, (um[1] + oy) / PB))
            worst = max(worst, abs(pa.x() - pb.x()), abs(pa.y() - pb.y()))
    return worst


def test_pan_and_zoom_stay_within_one_screen_pixel(linked) -> None:
    views = linked
    a, b = views.primary, views.secondary
    assert views.scales() == (PA, PB, True)
    a.set_zoom(1.0, QPointF(700, 600))
    assert b.zoom == pytest.approx(a.zoom * PB / PA)
    assert _worst_mismatch(views) <= 1.0
    a.zoom_by(1.7)
    assert _worst_mismatch(views) <= 1.0
    b.pan_by_fraction(0.13, -0.07)  # the second view leads: the first follows
    assert _worst_mismatch(views) <= 1.0
    b.zoom_by(0.6)
    assert a.zoom == pytest.approx(b.zoom * PA / PB)
    assert _worst_mismatch(views) <= 1.0
    a.pan_by_fraction(-0.21, 0.17)
    assert _worst_mismatch(views) <= 1.0


def test_l_unlinks_and_relinks(linked, qtbot) -> None:
    views = linked
    a, b = views.primary, views.secondary
    a.set_zoom(1.0, QPointF(1000, 800))
    views.activateWindow()
    qtbot.waitUntil(views.isActiveWindow)
    a.setFocus()
    qtbot.keyClick(a, Qt.Key.Key_L)
    assert not views.linked
    before = b.visible_scene_rect().center()
    a.pan_by_fraction(0.3, 0.2)
    assert b.visible_scene_rect().center() == before
    assert _worst_mismatch(views) > 20
    qtbot.keyClick(a, Qt.Key.Key_L)
    assert views.linked
    assert _worst_mismatch(views) <= 1.0


def _send(widget, kind, pos, buttons, modifiers) -> None:
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    event = QMouseEvent(
        kind, QPointF(pos), widget.mapToGlobal(QPointF(pos)), button, buttons, modifiers
    )
    QApplication.sendEvent(widget, event)


def test_shift_drag_aligns_one_view_and_keeps_the_offset(linked) -> None:
    views = linked
    a, b = views.primary, views.secondary
    a.set_zoom(1.0, QPointF(1000, 800))  # b at 2.0 screen px per its px (1 µm)
    a_before = a.visible_scene_rect().center()
    shift = Qt.KeyboardModifier.ShiftModifier
    left = Qt.MouseButton.LeftButton
    port = b.viewport()
    start = QPointF(200, 200)
    _send(port, QEvent.Type.MouseButtonPress, start, left, shift)
    for step in range(1, 5):
        _send(port, QEvent.Type.MouseMove, start + QPointF(-10 * step, -6 * step), left, shift)
    _send(
        port,
        QEvent.Type.MouseButtonRelease,
        start + QPointF(-40, -24),
        Qt.MouseButton.NoButton,
        shift,
    )
    assert a.visible_scene_rect().center() == a_before  # only the dragged view moved
    # dragging the content 40 px left shows 20 µm further right in the second view
    dx, dy = views.offset_um
    assert dx == pytest.approx(20, abs=1) and dy == pytest.approx(12, abs=1)
    a.pan_by_fraction(0.1, 0.1)  # linked again, with the offset
    assert _worst_mismatch(views) <= 1.0


def test_linked_cursor_is_drawn_in_the_other_view(linked, qtbot) -> None:
    views = linked
    a, b = views.primary, views.secondary
    a.set_zoom(1.0, QPointF(1000, 800))
    b.viewport().repaint()
    plain = b.viewport().grab().toImage()
    moves: list[tuple[float, float]] = []
    a.cursorMoved.connect(lambda x, y: moves.append((x, y)))
    qtbot.mouseMove(a.viewport(), pos=a.viewport().rect().center() + QPointF(30, 20).toPoint())
    assert moves
    position = views.cursor_in(b)
    assert position is not None
    # the same tissue: level-0 px of the first at 0.5 µm are half as many of the second
    assert position == pytest.approx((moves[-1][0] * PA / PB, moves[-1][1] * PA / PB))
    b.viewport().repaint()
    crossed = b.viewport().grab().toImage()
    point = b.mapFromScene(QPointF(*position))
    arm = point + QPointF(8, 0).toPoint()
    colour = crossed.pixelColor(arm)
    assert colour.red() > 200 and colour.green() > 200 and colour.blue() < 150, colour.name()
    assert plain.pixelColor(arm) != colour


def test_open_beside_runs_in_a_worker_and_a_bad_file_is_one_line(qtbot, tmp_path) -> None:
    a = write_mosaic(tmp_path / "a.tif", 1024, 768, PA)
    b = write_mosaic(tmp_path / "b.tif", 512, 384, PB)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00not a tiff at all")
    primary = MosaicView()
    views = LinkedViews(primary)
    qtbot.addWidget(views)
    views.resize(600, 300)
    mosaic_a, _ = show(primary, a)
    with qtbot.waitSignal(views.openFailed, timeout=20_000) as failed:
        views.open_secondary(bad)
    assert "bad.tif" in failed.args[0] and "\n" not in failed.args[0]
    assert not views.has_secondary
    with qtbot.waitSignal(views.secondaryOpened, timeout=20_000):
        views.open_secondary(b)
    assert views.has_secondary and views.secondary.mosaic.info.width == 512
    assert "linked in µm" in views.status_text()
    for view in (primary, views.secondary):
        view.tiles.set_mosaic(None, None)
        view.tiles.wait_idle(3000)
    views.close_secondary()
    mosaic_a.close()
