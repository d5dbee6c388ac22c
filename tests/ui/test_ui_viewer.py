"""The viewer as a reader uses it: open, pan, zoom, contrast, overview, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt

from rcm_viewer.paths import demo_mosaic
from rcm_viewer.ui import settings as ui_settings
from rcm_viewer.ui.main_window import MainWindow
from rcm_viewer.ui.mosaic_view import format_length, nice_scale_bar
from rcm_viewer.ui.tiles import TILE_PX


@pytest.fixture
def window(make_window):
    return make_window()


def _settle(win: MainWindow) -> None:
    for _ in range(4):
        assert win.wait_until_idle(30)
        win.view.viewport().repaint()
    assert win.wait_until_idle(30)


def _open(win: MainWindow, path) -> None:
    win.open_path(path)
    _settle(win)
    assert win.last_error is None, win.last_error


def test_demo_mosaic_is_visible(window) -> None:
    _open(window, demo_mosaic("naevus"))
    assert window.mosaic is not None and window.mosaic.info.width == 2048
    assert "demo_naevus.tif" in window.windowTitle()
    frame = window.view.viewport().grab().toImage()
    pixels = np.array(
        [
            [frame.pixelColor(x, y).value() for x in range(100, frame.width() - 100, 25)]
            for y in range(100, frame.height() - 100, 25)
        ]
    )
    assert pixels.mean() > 40 and pixels.std() > 10  # the mosaic, not a black screen
    assert str(demo_mosaic("naevus").resolve()) == ui_settings.recent_files()[0]


def test_visible_tiles_are_the_right_ones_at_the_right_level(window) -> None:
    _open(window, demo_mosaic("bcc"))
    view = window.view
    mosaic = window.mosaic
    # fit: the whole 2048 px mosaic in ~1000 px needs the half-resolution level
    assert view.zoom < 0.6
    assert view.current_level == 1
    assert set(view.last_drawn) == {(1, c, r) for c in range(2) for r in range(2)}
    # 1:1 in the middle: level 0 and exactly the tiles under the viewport
    view.set_zoom(1.0, QPointF(1024, 1024))
    _settle(window)
    assert view.current_level == 0
    rect = view.visible_scene_rect()
    expected = {
        (0, c, r)
        for c in range(
            int(max(rect.left(), 0)) // TILE_PX, int(min(rect.right(), 2047)) // TILE_PX + 1
        )
        for r in range(
            int(max(rect.top(), 0)) // TILE_PX, int(min(rect.bottom(), 2047)) // TILE_PX + 1
        )
    }
    assert set(view.last_drawn) == expected
    # what is on screen is the stored pixels through the display lookup table
    lut = view.tiles.lut
    frame = view.viewport().grab().toImage()
    for sx, sy in [(1000, 1000), (900, 1100), (1200, 950)]:
        point = view.mapFromScene(QPointF(sx + 0.5, sy + 0.5))
        shown = frame.pixelColor(point).value()
        # allow the mapping to land on a neighbouring pixel
        stored = mosaic.read_region(0, sx - 1, sy - 1, 3, 3)
        assert shown in {int(v) for v in lut[stored].ravel()}, (sx, sy)


def test_keyboard_and_wheel_navigation(window, qtbot) -> None:
    _open(window, demo_mosaic("melanoma"))
    view = window.view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_1)
    assert view.zoom == pytest.approx(1.0)
    before = view.visible_scene_rect().center()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    after = view.visible_scene_rect().center()
    assert after.x() > before.x() + 10 and after.y() > before.y() + 10
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.zoom == pytest.approx(1.25)
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    assert view.zoom == pytest.approx(1.0)
    qtbot.keyClick(view, Qt.Key.Key_F)
    assert view.zoom == pytest.approx(view.fit_zoom())
    # a tour of 60 steps through all levels draws without errors
    for step in range(60):
        view.zoom_by(1.08 if step < 30 else 0.93)
        view.pan_by_fraction(0.03, 0.02 if step % 2 else -0.02)
        view.viewport().repaint()
    _settle(window)
    assert not view.tiles.failures


def test_overview_click_moves_the_view(window, qtbot) -> None:
    _open(window, demo_mosaic("naevus"))
    window.view.set_zoom(1.0)
    overview = window.overview
    target = overview._image_rect()
    qtbot.mouseClick(
        overview,
        Qt.MouseButton.LeftButton,
        pos=QPoint(
            int(target.left() + target.width() * 0.25), int(target.top() + target.height() * 0.75)
        ),
    )
    center = window.view.visible_scene_rect().center()
    assert center.x() == pytest.approx(2048 * 0.25, abs=40)
    assert center.y() == pytest.approx(2048 * 0.75, abs=40)


def test_contrast_change_redraws_with_the_new_table(window) -> None:
    _open(window, demo_mosaic("naevus"))
    view = window.view
    center = view.viewport().rect().center()
    before = view.viewport().grab().toImage().pixelColor(center).value()
    window.contrast.invert.setChecked(True)
    _settle(window)
    after = view.viewport().grab().toImage().pixelColor(center).value()
    assert abs((255 - before) - after) <= 3


def test_scale_bar_lengths_are_round_and_readable() -> None:
    for pixel_um in (0.5, 0.75, 1.0):
        for zoom in (0.05, 0.3, 1.0, 4.0, 16.0):
            length_um, length_px = nice_scale_bar(pixel_um, zoom)
            mantissa = length_um / 10 ** np.floor(np.log10(length_um))
            assert round(mantissa, 6) in (1, 2, 5)
            assert 40 <= length_px <= 180
    assert format_length(500) == "500 µm" and format_length(2000) == "2 mm"


def test_bad_file_gives_a_dialog_and_the_window_keeps_working(window, tmp_path) -> None:
    bad = tmp_path / "lesion_07.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    window.open_path(bad)
    _settle(window)
    assert window.last_error is not None and "lesion_07.tif" in window.last_error
    assert "\n" not in window.last_error
    window.last_error = None
    _open(window, demo_mosaic("naevus"))
    assert window.mosaic is not None


def test_damage_found_while_building_levels_is_a_dialog_not_a_crash(window, tmp_path) -> None:
    image = (np.random.default_rng(5).random((2100, 2600)) * 60000).astype(np.uint16)
    path = tmp_path / "late_damage.tif"
    tifffile.imwrite(path, image, rowsperstrip=32, compression="lzw")
    page = tifffile.TiffFile(path).pages[0]
    with open(path, "r+b") as fh:
        fh.seek(page.dataoffsets[50])
        fh.write(b"\xff" * page.databytecounts[50])
    window.open_path(path)
    _settle(window)
    assert window.last_error is not None and "late_damage.tif" in window.last_error
    assert "strip 51" in window.last_error
    assert window.mosaic is not None and not window.progress.isVisible()
    window.last_error = None
    _open(window, demo_mosaic("naevus"))  # the window goes on working


def test_flat_large_image_builds_levels_in_the_background(window, tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((3000, 4200)) * 200).astype(np.uint8)
    path = tmp_path / "flat.png"
    Image.fromarray(image).save(path)
    window.open_path(path)
    _settle(window)
    assert window.last_error is None
    assert window.mosaic.levels_ready() and window.mosaic.level_count >= 3
    assert window.overview._image is not None
    assert "pixel size unknown" in window.pixel_label.text()
    window.set_pixel_size(0.5)
    assert "0.5 µm/px" in window.pixel_label.text()


def test_flat_tiff_shows_a_preview_first_and_keeps_the_readers_contrast(
    window, tmp_path, monkeypatch
) -> None:
    """A flat 16-bit LZW file: the whole mosaic appears from a preview before its levels
    are built; a contrast the reader sets meanwhile survives the switch to the real ones."""
    yy, xx = np.mgrid[0:3000, 0:4200]
    image = (1000 + (yy + xx) // 3 + (yy * xx) % 97).astype(np.uint16)
    path = tmp_path / "flat16.tif"
    tifffile.imwrite(path, image, rowsperstrip=32, compression="lzw")
    seen = []
    real_preview = window.levels._on_preview

    def spy(result):
        real_preview(result)
        frame = window.view.viewport().grab().toImage()
        values = np.array(
            [
                [frame.pixelColor(x, y).value() for x in range(50, frame.width() - 50, 40)]
                for y in range(50, frame.height() - 50, 40)
            ]
        )
        seen.append((window.mosaic.levels_ready(), values, window.progress.format()))
        window.contrast.region.setRegion((1500, 2500))  # the reader adjusts at once

    monkeypatch.setattr(window.levels, "_on_preview", spy)
    window.open_path(path)
    _settle(window)
    assert window.last_error is None
    assert len(seen) == 1
    ready, values, progress_text = seen[0]
    assert not ready and "preview" in progress_text
    assert values.std() > 10 and (values > 20).mean() > 0.3  # the mosaic, not black
    assert window.mosaic.levels_ready()
    settings = window.contrast.settings()
    assert (settings.black, settings.white) == pytest.approx((1500, 2500), abs=1)
    smallest = window.mosaic.level_count - 1
    info = window.mosaic.info.levels[smallest]
    np.testing.assert_array_equal(
        window._overview_pixels, window.mosaic.read_region(smallest, 0, 0, info.width, info.height)
    )
    assert window.view._overview_level == smallest


def test_sixteen_bit_mosaic_is_auto_contrasted(window, tmp_path) -> None:
    data = np.random.default_rng(1).integers(1000, 5000, (900, 1100)).astype(np.uint16)
    path = tmp_path / "sixteen.tif"
    tifffile.imwrite(path, data, tile=(256, 256), compression="lzw")
    _open(window, path)
    settings = window.contrast.settings()
    assert 900 <= settings.black <= 2000 and 4000 <= settings.white <= 5100
    frame = window.view.viewport().grab().toImage()
    center = frame.pixelColor(frame.rect().center()).value()
    assert 30 < center < 230


def test_layout_and_recent_files_survive_a_restart(qtbot) -> None:
    first = MainWindow()
    qtbot.addWidget(first)
    first.resize(700, 500)  # within the offscreen screen (800 x 600)
    first.show()
    first.display_dock.hide()
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.size().width() == 700
    assert not second.display_dock.isVisible()
    second.close()


def test_the_window_opens_a_mosaic_without_importing_torch() -> None:
    """Start-up stays light: torch loads only when the classifier first runs."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from rcm_viewer.ui.app import create_app\n"
        "from rcm_viewer.ui.main_window import MainWindow\n"
        "from rcm_viewer.paths import demo_mosaic\n"
        "app = create_app(); w = MainWindow(); w.show(); w.open_path(demo_mosaic())\n"
        "assert w.wait_until_idle(30) and w.mosaic is not None\n"
        "print('torch' in sys.modules)\n"
        "w.close()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_stack_pages_are_navigable(window, tmp_path) -> None:
    pages = np.stack([np.full((600, 800), value, np.uint8) for value in (40, 120, 200)])
    pages[:, 100:200, 100:200] = 0  # some structure, so auto-contrast has a range
    path = tmp_path / "vivastack.tif"
    tifffile.imwrite(path, pages, photometric="minisblack")
    _open(window, path)
    assert window.mosaic.pages == 3 and window.page_spin.isVisibleTo(window)
    values = []
    for page in range(3):
        window.page_spin.setValue(page + 1)
        _settle(window)
        value = window.view.tiles.raw_value(window.view.current_level, 400, 400)
        values.append(value)
    assert values == [40, 120, 200]


def test_page_chosen_while_levels_build_gets_its_own_overview(
    window, tmp_path, monkeypatch
) -> None:
    """A large flat stack: the reader moves to page 2 while the levels are still being
    built; the overview must end up showing page 2, not the first page."""
    pages = np.stack([np.full((4000, 2600), value, np.uint8) for value in (60, 180)])
    pages[:, 500:900, 500:900] = 0
    path = tmp_path / "big_stack.tif"
    tifffile.imwrite(path, pages, photometric="minisblack", rowsperstrip=16)
    import threading

    from rcm_viewer.mosaic import Mosaic

    real_preview = window.levels._on_preview
    real_build = Mosaic.build_levels
    page_chosen = threading.Event()
    moved = []

    def build_levels(self, *args, preview=None, **kwargs):
        """The build thread waits, after its preview, until the reader chose the page,
        so 'during the build' holds on a loaded machine too."""

        def held_preview(pixels):
            preview(pixels)
            page_chosen.wait(30)

        return real_build(self, *args, preview=held_preview if preview else None, **kwargs)

    def spy(result):
        real_preview(result)
        window.page_spin.setValue(2)  # during the build
        moved.append(window.mosaic.levels_ready())
        page_chosen.set()

    monkeypatch.setattr(Mosaic, "build_levels", build_levels)
    monkeypatch.setattr(window.levels, "_on_preview", spy)
    window.open_path(path)
    _settle(window)
    assert window.last_error is None
    assert moved == [False]
    assert window.view.tiles.page == 1 and window.mosaic.levels_ready()
    overview = window._overview_pixels
    assert overview.shape[0] < 1100
    assert np.median(overview) == 180
