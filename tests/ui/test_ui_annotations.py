"""Drawing, editing and listing region annotations on a real MosaicView with a real store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QApplication

from rcm_viewer.cases import CaseStore
from rcm_viewer.cases import annotations as geo
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.ui import settings as ui_settings
from rcm_viewer.ui.annotation_panel import AnnotationPanel
from rcm_viewer.ui.annotations import AnnotationLayer
from rcm_viewer.ui.assessment_form import AssessmentForm
from rcm_viewer.ui.mosaic_view import MosaicView
from rcm_viewer.ui.tiles import DisplaySettings

PIXEL_UM = 0.5
SHOTS = os.environ.get("RCM_ANNOTATION_SHOTS")  # a folder: save screenshots there


@pytest.fixture
def mosaic_path(tmp_path: Path) -> Path:
    """A 1024 x 768 mosaic with blobs, 0.5 µm/px in the TIFF resolution tags."""
    yy, xx = np.mgrid[0:768, 0:1024]
    image = 60 + 40 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    for cx, cy in ((300, 300), (700, 450), (500, 200)):
        image += 120 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 40.0**2))
    path = tmp_path / "lesion.tif"
    tifffile.imwrite(
        path,
        np.clip(image, 0, 255).astype(np.uint8),
        resolution=(1e4 / PIXEL_UM, 1e4 / PIXEL_UM),
        resolutionunit="CENTIMETER",
    )
    return path


@pytest.fixture
def setup(qtbot, tmp_path: Path, mosaic_path: Path):
    ui_settings.set_reader_name("Dr Annot")
    store = CaseStore(tmp_path / "cases.sqlite3")
    case = store.create_case(
        "P-1",
        user="Dr Annot",
        reader_mode="ai_visible",
        mosaic_path=mosaic_path,
        pixel_size_um=PIXEL_UM,
    )
    mosaic = open_mosaic(mosaic_path)
    assert mosaic.info.pixel_size_um == pytest.approx(PIXEL_UM)
    view = MosaicView()
    view.resize(800, 600)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    view.set_mosaic(mosaic, None, 0, DisplaySettings(0, 255))
    view.set_zoom(0.75, QPointF(512, 384))
    layer = AnnotationLayer(view, store)
    layer.set_case(case.case_id, mosaic.info.pixel_size_um)
    yield view, layer, store, case.case_id
    view.tiles.wait_idle(5000)
    store.close()


def _send(
    view: MosaicView,
    kind: QEvent.Type,
    scene: tuple[float, float],
    button=Qt.MouseButton.LeftButton,
    buttons=None,
) -> None:
    pos = QPointF(view.mapFromScene(QPointF(*scene)))
    if buttons is None:
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else button
    event = QMouseEvent(
        kind, pos, view.viewport().mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(view.viewport(), event)


def _drag(view: MosaicView, points: list[tuple[float, float]]) -> None:
    _send(view, QEvent.Type.MouseButtonPress, points[0])
    for point in points[1:]:
        _send(
            view, QEvent.Type.MouseMove, point, Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton
        )
    _send(view, QEvent.Type.MouseButtonRelease, points[-1])


def _click(view: MosaicView, point: tuple[float, float]) -> None:
    _send(view, QEvent.Type.MouseButtonPress, point)
    _send(view, QEvent.Type.MouseButtonRelease, point)


def _key(view: MosaicView, key: Qt.Key) -> None:
    event = QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, event)


def _stored(store: CaseStore, case_id: str) -> list[dict]:
    return [dict(f) for f in store.get_case(case_id).roi_annotations]


def _close(a, b, tol=1.5) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_each_tool_draws_a_stored_annotation_and_undo_redo_follow_the_store(setup) -> None:
    view, layer, store, case_id = setup
    layer.set_tool("rectangle")
    _drag(view, [(100, 100), (150, 130), (200, 150)])
    (rect,) = _stored(store, case_id)
    assert geo.shape_of(rect) == "rectangle"
    assert _close(geo.bounds(rect), (100, 100, 200, 150))
    assert geo.measure(rect, PIXEL_UM).area_mm2 == pytest.approx(0.00125, rel=0.05)

    layer.set_tool("ellipse")
    _drag(view, [(400, 300), (500, 350)])
    layer.set_tool("polygon")
    for point in [(600, 100), (700, 120), (680, 220)]:
        _click(view, point)
    _key(view, Qt.Key.Key_Return)
    layer.set_tool("freehand")
    _drag(view, [(300 + 40 * np.cos(t), 550 + 40 * np.sin(t)) for t in np.linspace(0, 6, 40)])
    layer.set_tool("point")
    _click(view, (850, 650))

    stored = _stored(store, case_id)
    assert [geo.shape_of(f) for f in stored] == [
        "rectangle",
        "ellipse",
        "polygon",
        "freehand",
        "point",
    ]
    ellipse = stored[1]["properties"]["ellipse"]
    assert _close((ellipse["cx"], ellipse["cy"], ellipse["rx"], ellipse["ry"]), (450, 325, 50, 25))
    assert len(stored[2]["geometry"]["coordinates"][0]) == 4  # 3 corners, closed
    assert len(stored[3]["geometry"]["coordinates"][0]) > 10
    assert _close(stored[4]["geometry"]["coordinates"], (850, 650))
    assert {f["properties"]["classification"]["name"] for f in stored} == {geo.DEFAULT_LABEL}
    # every change is audited with the reader's name
    trail = [e for e in store.audit_trail(case_id) if e.field.startswith("roi.")]
    assert len(trail) == 5 and {e.user for e in trail} == {"Dr Annot"}

    layer.undo_stack.undo()
    assert len(_stored(store, case_id)) == 4 and len(layer.features()) == 4
    layer.undo_stack.undo()
    assert [geo.shape_of(f) for f in _stored(store, case_id)] == ["rectangle", "ellipse", "polygon"]
    layer.undo_stack.redo()
    layer.undo_stack.redo()
    assert _stored(store, case_id) == stored
    assert len(view.scene().items()) > 5


def test_escape_and_tiny_drags_make_nothing(setup) -> None:
    view, layer, store, case_id = setup
    layer.set_tool("polygon")
    _click(view, (100, 100))
    _click(view, (200, 100))
    _key(view, Qt.Key.Key_Escape)  # cancels the polygon
    assert layer.tool == "polygon" and not layer.drawing
    _key(view, Qt.Key.Key_Escape)  # back to select / pan
    assert layer.tool is None
    layer.set_tool("rectangle")
    _drag(view, [(300, 300), (301, 301)])  # a slip of the mouse
    assert _stored(store, case_id) == []


def test_double_click_closes_a_polygon(setup) -> None:
    view, layer, store, case_id = setup
    layer.set_tool("polygon")
    for point in [(100, 100), (300, 100), (300, 300)]:
        _click(view, point)
    _send(view, QEvent.Type.MouseButtonPress, (100, 300))
    _send(view, QEvent.Type.MouseButtonRelease, (100, 300))
    _send(view, QEvent.Type.MouseButtonDblClick, (100, 300))
    _send(view, QEvent.Type.MouseButtonRelease, (100, 300))
    (polygon,) = _stored(store, case_id)
    assert len(polygon["geometry"]["coordinates"][0]) == 5  # 4 corners, no double corner
    assert geo.measure(polygon, PIXEL_UM).area_um2 == pytest.approx(200 * 200 * 0.25, rel=0.02)
    # its corners are handles: drag one, the ring stays closed
    layer.set_tool(None)
    _drag(view, [(300, 300), (330, 310), (350, 320)])
    (edited,) = _stored(store, case_id)
    ring = edited["geometry"]["coordinates"][0]
    assert _close(ring[2], (350, 320)) and ring[0] == ring[-1]
    assert _close(ring[0], (100, 100)) and _close(ring[3], (100, 300))
    # a point moves as a whole
    layer.set_tool("point")
    _click(view, (600, 500))
    layer.set_tool(None)
    _drag(view, [(600, 500), (640, 530)])
    point = _stored(store, case_id)[1]
    assert _close(point["geometry"]["coordinates"], (640, 530))


def test_move_and_vertex_edit_update_the_store_and_undo(setup) -> None:
    view, layer, store, case_id = setup
    layer.set_tool("rectangle")
    _drag(view, [(100, 100), (300, 200)])
    layer.set_tool(None)
    (fid,) = [f["id"] for f in _stored(store, case_id)]
    assert layer.selected_ids() == [fid]  # a new annotation is selected
    # drag its (selected) interior by +50, +40
    _drag(view, [(200, 150), (230, 170), (250, 190)])
    (moved,) = _stored(store, case_id)
    assert _close(geo.bounds(moved), (150, 140, 350, 240))
    # drag the bottom-right corner handle out to (400, 300)
    _drag(view, [(350, 240), (380, 270), (400, 300)])
    (edited,) = _stored(store, case_id)
    assert _close(geo.bounds(edited), (150, 140, 400, 300))
    assert geo.shape_of(edited) == "rectangle"
    layer.undo_stack.undo()
    assert _close(geo.bounds(_stored(store, case_id)[0]), (150, 140, 350, 240))
    layer.undo_stack.undo()
    assert _close(geo.bounds(_stored(store, case_id)[0]), (100, 100, 300, 200))
    # an unselected annotation is hit only near its outline: dragging inside pans the view
    layer.select([])
    before = view.visible_scene_rect().center()
    _drag(view, [(200, 150), (150, 120)])
    assert _close(geo.bounds(_stored(store, case_id)[0]), (100, 100, 300, 200))
    after = view.visible_scene_rect().center()
    assert abs(after.x() - before.x()) > 20  # the hand drag panned instead


def test_ellipse_handles_resize_it_as_an_ellipse_and_delete_key(setup) -> None:
    view, layer, store, case_id = setup
    layer.set_tool("ellipse")
    _drag(view, [(400, 300), (600, 400)])  # centre 500, 350; radii 100, 50
    layer.set_tool(None)
    _drag(view, [(600, 350), (650, 350)])  # the right-hand handle
    (ellipse,) = _stored(store, case_id)
    e = ellipse["properties"]["ellipse"]
    assert _close((e["cx"], e["cy"], e["rx"], e["ry"]), (500, 350, 150, 50))
    assert _close(geo.bounds(ellipse), (350, 300, 650, 400))
    _key(view, Qt.Key.Key_Delete)
    assert _stored(store, case_id) == []
    layer.undo_stack.undo()
    assert len(_stored(store, case_id)) == 1


def test_items_stay_on_the_image_at_every_zoom(setup) -> None:
    view, layer, store, case_id = setup
    layer.add_feature(geo.rectangle_feature(200, 200, 400, 300, color=(255, 0, 0)))
    item = layer.item(layer.features()[0]["id"])
    for zoom in (0.3, 1.0, 4.0):
        view.set_zoom(zoom, QPointF(200, 200))
        corner = view.mapFromScene(QPointF(200, 200))
        frame = view.viewport().grab().toImage()
        colours = {
            frame.pixelColor(corner + QPoint(dx, dy)).getRgb()[:3]
            for dx in range(-2, 3)
            for dy in range(-2, 3)
        }
        assert any(r > 200 and g < 80 and b < 80 for r, g, b in colours), (zoom, colours)
        assert item.pen().isCosmetic()


def test_panel_lists_annotations_and_clicking_goes_there(setup, qtbot, tmp_path: Path) -> None:
    view, layer, store, case_id = setup
    panel = AnnotationPanel(layer)
    qtbot.addWidget(panel)
    panel.resize(460, 420)
    panel.show()
    layer.add_feature(geo.rectangle_feature(100, 100, 200, 150, label="Tumor", color=(200, 0, 0)))
    layer.add_feature(geo.ellipse_feature(800, 600, 60, 40, label="Nest"))
    layer.add_feature(geo.point_feature(900, 100, label="Cell", color=(80, 200, 255)))
    assert panel.tree.topLevelItemCount() == 3
    row = panel.tree.topLevelItem(0)
    assert row.text(0) == "Tumor" and row.text(1) == "Rectangle"
    assert row.text(2) == "0.00125 mm²"
    assert "50.0 × 25.0 µm" in row.toolTip(2) and "perimeter 150 µm" in row.toolTip(2)
    # clicking an entry selects it and centres the view on it
    view.set_zoom(2.0, QPointF(100, 700))
    requested = []
    panel.regionRequested.connect(requested.append)
    nest = panel.tree.topLevelItem(1)
    panel.tree.itemClicked.emit(nest, 0)
    centre = view.visible_scene_rect().center()
    assert abs(centre.x() - 800) < 3 and abs(centre.y() - 600) < 3
    assert requested and requested[0].center().x() == pytest.approx(800, abs=1)
    assert layer.selected_ids() == [nest.data(0, Qt.ItemDataRole.UserRole)]
    # relabel from the criteria list links it; colour; rename inline
    criterion = layer.criteria()[0]
    panel.set_label(criterion[2], criterion[0])
    panel.set_colour((10, 20, 30))
    stored = _stored(store, case_id)[1]
    assert geo.label_of(stored) == criterion[2] and geo.criterion_of(stored) == criterion[0]
    assert geo.color_of(stored) == (10, 20, 30)
    assert panel.tree.topLevelItem(1).text(3).startswith("\u25c6")
    panel.tree.topLevelItem(0).setText(0, "Tumour margin")
    assert geo.label_of(_stored(store, case_id)[0]) == "Tumour margin"
    layer.undo_stack.undo()
    assert geo.label_of(_stored(store, case_id)[0]) == "Tumor"
    # export, delete all, import back (fresh ids not needed: the old ones are free again)
    out = tmp_path / "export.geojson"
    assert panel.export_file(out)
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert len(exported["features"]) == 3
    layer.remove([f["id"] for f in layer.features()])
    assert _stored(store, case_id) == [] and panel.tree.topLevelItemCount() == 0
    assert panel.import_file(out) == 3
    assert len(_stored(store, case_id)) == 3
    assert panel.import_file(out) == 3  # again: ids taken, so fresh ones
    assert len({f["id"] for f in _stored(store, case_id)}) == 6
    layer.undo_stack.undo()  # one step undoes a whole import
    assert len(_stored(store, case_id)) == 3
    # a bad file: one line in the panel, nothing changed
    bad = tmp_path / "bad.geojson"
    bad.write_text("{nope", encoding="utf-8")
    errors = []
    panel.errorOccurred.connect(errors.append)
    assert panel.import_file(bad) == 0
    assert errors and "bad.geojson" in errors[0] and not panel.error_label.isHidden()
    assert len(_stored(store, case_id)) == 3
    if SHOTS:
        _screenshots(view, layer, panel, Path(SHOTS))


def test_a_refused_save_is_reported_and_the_screen_shows_the_store(setup, tmp_path) -> None:
    view, layer, store, case_id = setup
    errors = []
    layer.errorOccurred.connect(errors.append)
    fid = layer.add_feature(geo.rectangle_feature(100, 100, 300, 200))
    kept = layer.add_feature(geo.point_feature(500, 500))
    # another window on the same database deletes the rectangle meanwhile
    with CaseStore(tmp_path / "cases.sqlite3") as other:
        other.remove_roi(case_id, fid, "Dr Other")
    layer.select([fid])
    _drag(view, [(200, 150), (260, 190)])  # moving it cannot be saved
    assert errors and "not saved" in errors[-1] and fid in errors[-1]
    assert len(errors[-1].splitlines()) == 1
    assert [f["id"] for f in layer.features()] == [kept]  # what the store holds
    assert not layer.undo_stack.canUndo() or layer.undo_stack.undoText() != "Move annotation"


def test_the_form_shows_criteria_linked_to_annotations(setup, qtbot) -> None:
    view, layer, store, case_id = setup
    form = AssessmentForm(debounce_ms=0)
    qtbot.addWidget(form)
    form.set_store(store)
    checklist = next(iter(store.checklists.values()))
    item = checklist.items[0]
    criterion = f"{checklist.id}.{item.id}"
    layer.add_feature(geo.rectangle_feature(10, 10, 60, 60, label=item.label, criterion=criterion))
    layer.add_feature(geo.point_feature(99, 99, label="here", criterion=criterion))
    form.load_case(case_id)
    marker = form.links_for(checklist.id, item.id)
    assert marker is not None and not marker.isHidden()
    assert "\u25c6 2" in marker.text() and "here" in marker.toolTip()
    # its link goes to the annotations: both selected, both in view
    form.annotationLinkActivated.connect(layer.show_criterion)
    view.set_zoom(4.0, QPointF(900, 700))
    marker.linkActivated.emit(criterion)
    assert sorted(layer.selected_ids()) == sorted(f["id"] for f in layer.features())
    assert view.visible_scene_rect().contains(QPointF(10, 10))
    assert view.visible_scene_rect().contains(QPointF(99, 99))
    other = form.links_for(checklist.id, checklist.items[1].id)
    assert other is not None and other.isHidden()
    layer.annotationsChanged.connect(lambda: form.set_annotation_links(layer.features()))
    layer.remove([f["id"] for f in layer.features()])
    assert marker.isHidden()
    if SHOTS:
        layer.undo_stack.undo()
        form.resize(420, 700)
        form.show()
        form.section(checklist.id)
        form.grab().save(str(Path(SHOTS) / "form_links.png"))


def _screenshots(
    view: MosaicView, layer: AnnotationLayer, panel: AnnotationPanel, folder: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    layer.add_feature(
        geo.polygon_feature(
            [(400, 200), (560, 230), (600, 380), (450, 420), (380, 320)],
            label="Polygon",
            color=(120, 255, 120),
        )
    )
    view.fit()
    layer.select([layer.features()[1]["id"]])
    view.tiles.wait_idle(5000)
    for _ in range(3):
        QApplication.processEvents()
        view.tiles.wait_idle(5000)
        view.viewport().repaint()
    view.grab().save(str(folder / "view_annotations.png"))
    panel.resize(460, 420)
    panel.grab().save(str(folder / "panel.png"))


def test_locked_qupath_objects_cannot_be_moved_and_case_switch_clears(setup, tmp_path) -> None:
    view, layer, store, case_id = setup
    path = tmp_path / "qupath.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "id": "3f1c9a2e-8b7d-4e6f-9a0b-1c2d3e4f5a6b",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[100, 100], [300, 100], [300, 200], [100, 200], [100, 100]]
                            ],
                        },
                        "properties": {
                            "objectType": "annotation",
                            "isLocked": True,
                            "classification": {"name": "Tumor", "color": [200, 0, 0]},
                        },
                    }
                ],
            }
        )
    )
    assert layer.import_file(path) == 1
    (fid,) = [f["id"] for f in layer.features()]
    assert fid == "3f1c9a2e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
    layer.select([fid])
    _drag(view, [(200, 150), (260, 190)])
    assert _close(geo.bounds(_stored(store, case_id)[0]), (100, 100, 300, 200))
    assert not [child for child in layer.item(fid).childItems() if child.zValue() == 1]
    # another case: its own (no) annotations, and no undo into the first case
    other = store.create_case("P-2", user="Dr Annot", reader_mode="ai_visible")
    layer.set_case(other.case_id, PIXEL_UM)
    assert layer.features() == [] and not layer.undo_stack.canUndo()
    assert not [i for i in view.scene().items() if hasattr(i, "feature_id")]
    layer.set_case(case_id, PIXEL_UM)
    assert [f["id"] for f in layer.features()] == [fid]
