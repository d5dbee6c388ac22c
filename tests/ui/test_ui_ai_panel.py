"""The AI panel shows calibrated probabilities, the demo banner, and a heatmap overlay."""

from __future__ import annotations

import numpy as np
import pytest

from rcm_viewer.ui.ai_panel import (
    SYNTHETIC_BANNER,
    AIPanel,
    ResultView,
    colormap_lut,
    heatmap_image,
)


def _result(synthetic: bool = True, heatmap: bool = True) -> ResultView:
    plane = np.zeros((3, 8, 10), dtype=np.float32)
    plane[0, :4, :5] = 1.0  # melanoma hot in the top-left corner
    return ResultView(
        ("melanoma", "bcc", "naevus"),
        ("Melanoma", "Basal cell carcinoma", "Benign naevus"),
        (0.7, 0.2, 0.1),
        "ok",
        "rcm-demo",
        "1.0",
        "ab" * 32,
        synthetic,
        plane if heatmap else None,
        (1000.0, 800.0),
        "12 tissue tiles",
    )


def test_probabilities_and_the_synthetic_banner(qtbot) -> None:
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_result(_result(synthetic=True))
    assert panel.banner.isVisible() and panel.banner.text() == SYNTHETIC_BANNER
    assert "Melanoma (70%)" in panel.summary_label.text()
    widths = panel.bars.opts["width"]
    assert list(widths) == pytest.approx([0.7, 0.2, 0.1])
    assert panel.class_combo.currentData() == "melanoma"  # the top class first
    panel.show_result(_result(synthetic=False))
    assert not panel.banner.isVisible()


def test_heatmap_overlay_follows_class_threshold_and_toggle(qtbot) -> None:
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show_result(_result())
    image, span = panel.overlay()
    assert span == (1000.0, 800.0) and (image.width(), image.height()) == (10, 8)
    assert image.pixelColor(1, 1).alpha() == 255 and image.pixelColor(9, 7).alpha() == 0
    panel.class_combo.setCurrentIndex(panel.class_combo.findData("bcc"))
    image, _ = panel.overlay()
    assert image.pixelColor(1, 1).alpha() == 0
    panel.show_heatmap.setChecked(False)
    assert panel.overlay() is None
    panel.show_result(_result(heatmap=False))
    assert panel.overlay() is None and not panel.class_combo.isEnabled()


def test_colormap_is_transparent_at_zero() -> None:
    for name in ("Inferno", "Viridis", "Turbo"):
        lut = colormap_lut(name)
        assert lut.shape == (256, 4) and lut[0, 3] == 0 and lut[255, 3] == 255
    image = heatmap_image(np.array([[0.0, 0.5], [0.9, 1.0]], np.float32), "Inferno", threshold=0.6)
    assert image.pixelColor(1, 0).alpha() == 0  # 0.5 below the threshold
    assert image.pixelColor(0, 1).alpha() > 0


def test_an_unverified_model_is_said_under_the_model_name(qtbot) -> None:
    """Issue 16: an unsigned or unknown-key model is shown as "Unverified model" while it
    loads (set_model_info) and with its result (AIView.model_trust); a signed one is not."""
    from dataclasses import replace

    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_model_info("rcm-demo", "1.0", True, "unverified: unsigned")
    assert panel.trust_label.isVisible() and "Unverified model (unsigned)" in (
        panel.trust_label.text()
    )
    panel.show_result(replace(_result(), model_trust="unverified: unknown key 0123abcd"))
    assert panel.trust_label.isVisible() and "unknown key 0123abcd" in panel.trust_label.text()
    assert panel.banner.isVisible()
    panel.grab().save("/tmp/ai_panel_unverified.png")
    panel.show_result(replace(_result(), model_trust="signed by Clinic A"))
    assert not panel.trust_label.isVisible()
    assert "signed by Clinic A" in panel.model_label.toolTip()
    panel.show_result(_result())  # trust not recorded (older results): nothing claimed
    assert not panel.trust_label.isVisible()
    panel.clear()
    assert not panel.trust_label.isVisible()


def test_the_heatmap_class_follows_a_new_top_class_unless_the_reader_chose(qtbot) -> None:
    """Classifying again gave bcc the top place, but the heatmap stayed on melanoma."""
    import dataclasses

    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_result(_result())
    assert panel.class_combo.currentData() == "melanoma"
    bcc_first = dataclasses.replace(_result(), probabilities=(0.2, 0.7, 0.1))
    panel.show_result(bcc_first)
    assert panel.class_combo.currentData() == "bcc"
    panel.class_combo.setCurrentIndex(2)
    panel.class_combo.activated.emit(2)  # what a reader's pick emits
    panel.show_result(bcc_first)
    assert panel.class_combo.currentData() == "naevus"  # the reader's choice is kept
    panel.clear()  # a new classification starts
    panel.show_result(_result())
    assert panel.class_combo.currentData() == "melanoma"
