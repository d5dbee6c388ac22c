"""Region annotations as GeoJSON: measurements, QuPath import/export, the case store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rcm_viewer.cases import CaseStore
from rcm_viewer.cases import annotations as geo


def test_rectangle_measurements_follow_the_pixel_size() -> None:
    feature = geo.rectangle_feature(10, 20, 110, 70, label="Tumor", color=(200, 0, 0))
    m = geo.measure(feature, 0.5)
    assert (m.width_px, m.height_px) == (100, 50)
    assert m.width_um == pytest.approx(50.0) and m.height_um == pytest.approx(25.0)
    assert m.area_um2 == pytest.approx(1250.0)
    assert m.area_mm2 == pytest.approx(0.00125)
    assert m.length_um == pytest.approx(150.0)  # perimeter 300 px
    assert "0.00125 mm²" in m.summary() and "150 µm" in m.summary()
    assert m.short() == "0.00125 mm²"
    unknown = geo.measure(feature, None)
    assert unknown.area_mm2 is None and unknown.area_px == pytest.approx(5000)
    assert "px" in unknown.summary()


def test_ellipse_is_a_polygon_that_remembers_it_is_an_ellipse() -> None:
    feature = geo.ellipse_feature(500, 400, 100, 50)
    ring = feature["geometry"]["coordinates"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert len(ring) == geo.ELLIPSE_VERTICES + 1 and ring[0] == ring[-1]
    assert feature["properties"]["ellipse"] == {"cx": 500, "cy": 400, "rx": 100, "ry": 50}
    area = geo.measure(feature, 1.0).area_px
    assert area == pytest.approx(math.pi * 100 * 50, rel=0.01)
    moved = geo.translated(feature, 10, -5)
    assert moved["properties"]["ellipse"]["cx"] == 510
    assert moved["geometry"]["coordinates"][0][0] == [ring[0][0] + 10, ring[0][1] - 5]


def test_polygon_with_a_hole_line_and_points() -> None:
    square = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]
    hole = [[25, 25], [75, 25], [75, 75], [25, 75], [25, 25]]
    donut = geo.check_feature(
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square, hole]}}
    )
    assert geo.measure(donut, 1.0).area_px == pytest.approx(10000 - 2500)
    line = geo.check_feature(
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [30, 40]]}}
    )
    assert geo.shape_of(line) == "line" and geo.measure(line, 2.0).length_um == 100
    points = geo.check_feature(
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[1, 1], [2, 2]]}}
    )
    assert geo.measure(points, 1.0).summary() == "2 points"


def test_geojson_round_trip_keeps_every_property(tmp_path: Path) -> None:
    features = [
        geo.rectangle_feature(
            0,
            0,
            100,
            50,
            label="Pagetoid cells",
            color=(255, 0, 0),
            criterion="melanoma_score.pagetoid_cells",
            name="zone A",
        ),
        geo.ellipse_feature(300, 300, 40, 20, label="Nest"),
        geo.polygon_feature([(0, 0), (10, 0), (5, 8)], freehand=True),
        geo.point_feature(12.5, 7.25, label="Cell"),
    ]
    path = geo.export_geojson(tmp_path / "out.geojson", features)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["type"] == "FeatureCollection" and len(document["features"]) == 4
    assert document["features"][0]["properties"]["objectType"] == "annotation"
    assert document["features"][0]["properties"]["classification"] == {
        "name": "Pagetoid cells",
        "color": [255, 0, 0],
    }
    back = geo.import_geojson(path)
    assert back == [geo.check_feature(f) for f in features]
    assert [geo.shape_of(f) for f in back] == ["rectangle", "ellipse", "freehand", "point"]
    assert geo.criterion_of(back[0]) == "melanoma_score.pagetoid_cells"
    assert geo.name_of(back[0]) == "zone A"


def test_a_file_written_the_way_qupath_writes_it_imports(tmp_path: Path) -> None:
    # QuPath 0.4/0.5 "Export objects as GeoJSON" (pretty printed, FeatureCollection)
    qupath = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "0f5e2c38-1f73-4c57-9f3e-7a8c9d1b2e10",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[1000, 800], [1400, 800], [1400, 1100], [1000, 1100], [1000, 800]]
                    ],
                },
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                },
            },
            {  # no classification, locked, a packed (negative ARGB) colour of its own
                "type": "Feature",
                "id": "6b1d0a52-3d2e-4b8e-a4f1-5a2f0a7c9e44",
                "geometry": {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]],
                        [[[20, 20], [30, 20], [30, 30], [20, 30], [20, 20]]],
                    ],
                },
                "properties": {"objectType": "annotation", "isLocked": True, "color": -16711936},
            },
            {  # an older export: integer colour inside the classification, a point
                "type": "Feature",
                "id": "c1e7a0b2-9d44-4a55-8f0e-2b6d3c4e5f66",
                "geometry": {"type": "Point", "coordinates": [55.5, 66.5]},
                "properties": {
                    "objectType": "annotation",
                    "name": "cell",
                    "classification": {"name": "Stroma", "colorRGB": -6895466},
                },
            },
        ],
    }
    path = tmp_path / "qupath_export.geojson"
    path.write_text(json.dumps(qupath, indent=2), encoding="utf-8")
    tumor, pair, cell = geo.import_geojson(path)
    assert tumor["id"] == "0f5e2c38-1f73-4c57-9f3e-7a8c9d1b2e10"
    assert geo.label_of(tumor) == "Tumor" and geo.color_of(tumor) == (200, 0, 0)
    assert geo.shape_of(tumor) == "polygon"
    assert geo.measure(tumor, 0.5).area_mm2 == pytest.approx(400 * 300 * 0.25 / 1e6)
    assert pair["geometry"]["type"] == "MultiPolygon" and geo.label_of(pair) == ""
    assert pair["properties"]["isLocked"] is True
    assert geo.color_of(pair) == (0, 255, 0)
    assert geo.measure(pair, 1.0).area_px == pytest.approx(200)
    assert geo.shape_of(cell) == "point" and geo.label_of(cell) == "Stroma"
    assert geo.color_of(cell) == ((-6895466 >> 16) & 255, (-6895466 >> 8) & 255, -6895466 & 255)
    assert geo.display_name(cell) == "cell"


def test_a_bare_feature_list_and_unclosed_rings_are_accepted() -> None:
    text = json.dumps(
        [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5]]]},
                "properties": None,
            }
        ]
    )
    (feature,) = geo.parse_geojson(text)
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 4
    assert feature["id"]  # a fresh id


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Topology"}', "expected a FeatureCollection"),
        ('{"type": "FeatureCollection"}', "has no features"),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
            '{"type": "GeometryCollection", "geometries": []}}]}',
            "object 1: geometry type",
        ),
        (
            '[{"type": "Feature", "geometry": {"type": "Point", "coordinates": ["a", 1]}}]',
            "not a pair of finite numbers",
        ),
        (
            '[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], '
            "[1, 1]]]}}]",
            "at least 3",
        ),
        (
            '[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, '
            '"properties": {"classification": {"name": "x", "color": "red"}}}]',
            "not a colour",
        ),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(geo.AnnotationError) as caught:
        geo.import_geojson(path)
    message = str(caught.value)
    assert "bad.geojson" in message and reason in message and "\n" not in message


def test_missing_file_and_unwritable_export(tmp_path: Path) -> None:
    with pytest.raises(geo.AnnotationError, match="missing.geojson.*does not exist"):
        geo.import_geojson(tmp_path / "missing.geojson")
    with pytest.raises(geo.AnnotationError, match="out.geojson cannot be written"):
        geo.export_geojson(tmp_path / "no-such-folder" / "out.geojson", [])


def test_relabel_link_and_unlink() -> None:
    feature = geo.point_feature(1, 2, label="a", criterion="c.i")
    changed = geo.with_properties(feature, label="b", color=0xFF0000, criterion=None)
    assert geo.label_of(changed) == "b" and geo.color_of(changed) == (255, 0, 0)
    assert geo.criterion_of(changed) is None and geo.criterion_of(feature) == "c.i"
    links = geo.criterion_links([feature, changed, geo.point_feature(0, 0, criterion="c.i")])
    assert list(links) == ["c.i"] and len(links["c.i"]) == 2


def test_features_are_stored_in_the_case_store_as_they_are(store: CaseStore) -> None:
    case = store.create_case("P1", user="dr a")
    feature = geo.ellipse_feature(100, 100, 30, 20, label="Nest", criterion="x.y")
    stored = store.add_roi(case.case_id, feature, "dr a")
    assert stored == feature
    assert list(store.get_case(case.case_id).roi_annotations) == [feature]
    assert geo.check_feature(stored) == feature  # normal form is a fixed point


def test_many_rois_are_added_and_removed_in_one_transaction(store: CaseStore) -> None:
    case = store.create_case("P1", user="dr a")
    features = [geo.point_feature(i, i, label=f"cell {i}") for i in range(50)]
    stored = store.add_rois(case.case_id, features, "dr a")
    assert [f["id"] for f in stored] == [f["id"] for f in features]
    assert list(store.get_case(case.case_id).roi_annotations) == features
    audit = [e for e in store.audit_trail(case.case_id) if e.field.startswith("roi.")]
    assert len(audit) == 50
    # one id already taken: nothing of the batch is saved
    with pytest.raises(Exception, match="already exists"):
        store.add_rois(case.case_id, [geo.point_feature(1, 1), features[3]], "dr a")
    assert len(store.get_case(case.case_id).roi_annotations) == 50
    store.remove_rois(case.case_id, [f["id"] for f in features[:40]], "dr a")
    assert list(store.get_case(case.case_id).roi_annotations) == features[40:]
    with pytest.raises(Exception, match="no region of interest"):
        store.remove_rois(case.case_id, [features[45]["id"], "missing"], "dr a")
    assert len(store.get_case(case.case_id).roi_annotations) == 10
