"""The AI panel says in words when a mosaic is outside the training data, greys the bars,
offers the OOD tiles as a heatmap layer; the pixel-size dialog never pre-fills a value."""

from __future__ import annotations

import dataclasses

import numpy as np

from rcm_viewer.mosaic.field_grid import PixelSizeEstimate
from rcm_viewer.ui.ai_panel import GREY_BRUSH, OOD_LAYER, AIPanel, ResultView
from rcm_viewer.ui.pixel_size_dialog import PixelSizeDialog


def _view(**ood: object) -> ResultView:
    plane = np.zeros((3, 8, 10), dtype=np.float32)
    base = ResultView(
        ("melanoma", "bcc", "naevus"),
        ("Melanoma", "Basal cell carcinoma", "Benign naevus"),
        (0.7, 0.2, 0.1),
        "ok",
        "rcm-demo",
        "1.0",
        "ab" * 32,
        True,
        plane,
        (1000.0, 800.0),
        "12 tissue tiles",
    )
    return dataclasses.replace(base, **ood)


def _brush_rgb(panel: AIPanel) -> list[tuple[int, int, int]]:
    return [b.color().getRgb()[:3] for b in panel.bars.opts["brushes"]]


def test_outside_the_training_data_is_said_and_the_bars_are_grey(qtbot) -> None:
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    ood_map = np.zeros((8, 10), dtype=np.float32)
    ood_map[:, 5:] = 1.0
    panel.show_result(
        _view(ood_score=3.2, in_distribution=False, ood_tile_share=0.6, ood_heatmap=ood_map)
    )
    text = panel.ood_label.text()
    assert panel.ood_label.isVisible()
    assert "Outside what the model was trained on" in text and "60%" in text
    assert "not meaningful" in text and "Not meaningful" in panel.summary_label.text()
    assert _brush_rgb(panel) == [GREY_BRUSH] * 3
    # the OOD tiles are a heatmap layer
    index = panel.class_combo.findData(OOD_LAYER)
    assert index >= 0
    panel.class_combo.setCurrentIndex(index)
    image, _ = panel.overlay()
    assert image.pixelColor(8, 3).alpha() == 255 and image.pixelColor(1, 3).alpha() == 0
    panel.resize(460, 760)
    panel.grab().save("/tmp/trust_ai_panel_ood.png")


def test_in_distribution_with_a_share_of_foreign_tiles_and_no_statistics(qtbot) -> None:
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_result(
        _view(
            ood_score=0.6,
            in_distribution=True,
            ood_tile_share=0.1,
            ood_heatmap=np.zeros((8, 10), np.float32),
        )
    )
    assert "10% of the tissue tiles are outside" in panel.ood_label.text()
    assert GREY_BRUSH not in _brush_rgb(panel)
    panel.show_result(_view())
    assert "no out-of-distribution statistics" in panel.ood_label.text()
    assert panel.class_combo.findData(OOD_LAYER) < 0
    panel.set_scale_note("Scale-sensitive: the answer changes")
    assert panel.scale_label.isVisible()


def test_pixel_size_dialog_starts_empty_and_offers_the_estimate(qtbot) -> None:
    overview = np.random.default_rng(0).integers(0, 255, (200, 300), dtype=np.uint8)
    dialog = PixelSizeDialog(overview, 4.0, file_name="lesion.tif")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.edit.text() == "" and not dialog.ok_button.isEnabled()
    assert dialog.value() is None and not dialog.use_button.isEnabled()
    qtbot.keyClicks(dialog.edit, "abc")
    assert not dialog.ok_button.isEnabled()
    estimate = PixelSizeEstimate(
        0.8, 0.9, "high", "Fields of 500 µm repeat every 625 px.", 625.0, 500.0, (10.0, 20.0)
    )
    dialog.set_estimate(estimate)
    assert dialog.edit.text() == ""  # shown, never applied silently
    assert "0.8 µm/px" in dialog.estimate_label.text()
    assert dialog.grid_period_px() == 625.0 / 4
    dialog.use_button.click()
    assert dialog.value() == 0.8 and dialog.ok_button.isEnabled()
    dialog.edit.setText("0.5")
    assert dialog.grid_period_px() == 250.0  # the grid follows the typed value
    dialog.grab().save("/tmp/trust_pixel_dialog.png")
    dialog.edit.setText("500")  # implausible
    assert not dialog.ok_button.isEnabled()


def test_pixel_size_dialog_says_when_it_cannot_tell(qtbot) -> None:
    dialog = PixelSizeDialog(np.zeros((64, 64), np.uint8), 1.0)
    qtbot.addWidget(dialog)
    dialog.set_estimate(
        PixelSizeEstimate(
            None, 0.0, "cannot tell", "Cannot tell the pixel size from the image: no grid."
        )
    )
    assert "Cannot tell" in dialog.estimate_label.text()
    assert not dialog.use_button.isEnabled() and dialog.grid_period_px() is None
