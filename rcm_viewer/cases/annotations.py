"""Region annotations as plain GeoJSON Features: build, check, measure, import and export.

Why it is shaped so:

* **The stored form is the exchange form.** An annotation is a GeoJSON Feature in
  full-resolution (level-0) pixel coordinates, QuPath style: ``properties.objectType``,
  ``properties.classification = {"name", "color": [r, g, b]}``. The case store keeps it
  as is (``CaseStore.add_roi``), the report draws it, QuPath opens the exported file.
  No second model to keep in sync, so nothing is lost between the three.
* **Ellipses are polygons with a memory.** Other tools only know polygons, so an ellipse
  is stored as a 64-vertex polygon plus ``properties.ellipse = {cx, cy, rx, ry}`` from
  which the viewer edits it as an ellipse again.
* **Import accepts what QuPath writes** (a FeatureCollection, a bare Feature or a JSON
  list of Features; MultiPolygon; no classification; a colour as a packed integer or a
  list; ``isLocked``; detections) and refuses anything else with one line that names
  the file and the reason. Each Feature is normalised, so the rest of the program sees
  one shape of data.
* **Pure Python** (no Qt, no numpy): the report and the command line use it headless.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcm_viewer.errors import CaseStoreError
from rcm_viewer.fileio import atomic_write

#: Drawing shapes the viewer knows; "line" comes from imported LineStrings.
SHAPES: tuple[str, ...] = ("rectangle", "ellipse", "polygon", "freehand", "point", "line")
SHAPE_LABELS: Mapping[str, str] = {
    "rectangle": "Rectangle",
    "ellipse": "Ellipse",
    "polygon": "Polygon",
    "freehand": "Freehand",
    "point": "Point",
    "line": "Line",
}
GEOMETRY_TYPES: tuple[str, ...] = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
)
ELLIPSE_VERTICES = 64
DEFAULT_COLOR: tuple[int, int, int] = (255, 210, 0)
DEFAULT_LABEL = "Region"
#: QuPath object types we keep on import (everything is an annotation to us on export).
OBJECT_TYPES: tuple[str, ...] = ("annotation", "detection", "tile", "cell", "tma_core")
MAX_IMPORT_BYTES = 200 * 1024 * 1024
MAX_IMPORT_FEATURES = 100_000


class AnnotationError(CaseStoreError):
    """An annotation or an annotation file is not usable (one line: the file and why)."""


# --------------------------------------------------------------------------- building


def _point(x: float, y: float) -> list[float]:
    return [round(float(x), 3), round(float(y), 3)]


def _closed(ring: Sequence[Sequence[float]]) -> list[list[float]]:
    points = [_point(p[0], p[1]) for p in ring]
    if points and points[0] != points[-1]:
        points.append(list(points[0]))
    return points


def make_feature(
    shape: str,
    geometry: Mapping[str, Any],
    *,
    label: str = DEFAULT_LABEL,
    color: Sequence[int] = DEFAULT_COLOR,
    criterion: str | None = None,
    name: str | None = None,
    feature_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Feature in the agreed QuPath-style shape (a fresh UUID unless ``feature_id``)."""
    if shape not in SHAPES:
        raise AnnotationError(f"Unknown annotation shape {shape!r}")
    properties: dict[str, Any] = {
        "objectType": "annotation",
        "classification": {"name": str(label), "color": _rgb(color)},
        "shape": shape,
    }
    if criterion:
        properties["criterion"] = str(criterion)
    if name:
        properties["name"] = str(name)
    if extra:
        properties.update(extra)
    feature = {
        "type": "Feature",
        "id": feature_id or str(uuid.uuid4()),
        "geometry": dict(geometry),
        "properties": properties,
    }
    return check_feature(feature)


def rectangle_geometry(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    left, right = sorted((x0, x1))
    top, bottom = sorted((y0, y1))
    ring = [(left, top), (right, top), (right, bottom), (left, bottom)]
    return {"type": "Polygon", "coordinates": [_closed(ring)]}


def ellipse_geometry(
    cx: float, cy: float, rx: float, ry: float, vertices: int = ELLIPSE_VERTICES
) -> dict[str, Any]:
    angles = [2 * math.pi * k / vertices for k in range(vertices)]
    ring = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]
    return {"type": "Polygon", "coordinates": [_closed(ring)]}


def polygon_geometry(points: Sequence[Sequence[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [_closed(points)]}


def point_geometry(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": _point(x, y)}


def rectangle_feature(x0: float, y0: float, x1: float, y1: float, **kw: Any) -> dict[str, Any]:
    return make_feature("rectangle", rectangle_geometry(x0, y0, x1, y1), **kw)


def ellipse_feature(cx: float, cy: float, rx: float, ry: float, **kw: Any) -> dict[str, Any]:
    extra = dict(kw.pop("extra", None) or {})
    rx, ry = abs(float(rx)), abs(float(ry))
    extra["ellipse"] = {"cx": float(cx), "cy": float(cy), "rx": rx, "ry": ry}
    return make_feature("ellipse", ellipse_geometry(cx, cy, rx, ry), extra=extra, **kw)


def polygon_feature(
    points: Sequence[Sequence[float]], *, freehand: bool = False, **kw: Any
) -> dict[str, Any]:
    return make_feature("freehand" if freehand else "polygon", polygon_geometry(points), **kw)


def point_feature(x: float, y: float, **kw: Any) -> dict[str, Any]:
    return make_feature("point", point_geometry(x, y), **kw)


# --------------------------------------------------------------------------- reading


def shape_of(feature: Mapping[str, Any]) -> str:
    shape = (feature.get("properties") or {}).get("shape")
    if shape in SHAPES:
        return str(shape)
    kind = (feature.get("geometry") or {}).get("type")
    if kind in ("Point", "MultiPoint"):
        return "point"
    if kind in ("LineString", "MultiLineString"):
        return "line"
    return "polygon"


def label_of(feature: Mapping[str, Any]) -> str:
    classification = (feature.get("properties") or {}).get("classification") or {}
    return str(classification.get("name") or "")


def color_of(feature: Mapping[str, Any]) -> tuple[int, int, int]:
    classification = (feature.get("properties") or {}).get("classification") or {}
    try:
        r, g, b = _rgb(classification.get("color", DEFAULT_COLOR))
    except AnnotationError:
        return DEFAULT_COLOR
    return (r, g, b)


def criterion_of(feature: Mapping[str, Any]) -> str | None:
    value = (feature.get("properties") or {}).get("criterion")
    return str(value) if value else None


def name_of(feature: Mapping[str, Any]) -> str:
    return str((feature.get("properties") or {}).get("name") or "")


def display_name(feature: Mapping[str, Any]) -> str:
    """What a list shows: the name if any, else the label, else the shape."""
    return name_of(feature) or label_of(feature) or SHAPE_LABELS[shape_of(feature)]


def with_properties(feature: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy with properties changed; ``label``/``color`` go into the classification,
    a value of None removes the property (e.g. ``criterion=None`` unlinks)."""
    copy = json.loads(json.dumps(dict(feature)))
    properties = copy.setdefault("properties", {}) or {}
    copy["properties"] = properties
    classification = dict(properties.get("classification") or {})
    for key, value in changes.items():
        if key == "label":
            classification["name"] = str(value or "")
        elif key == "color":
            classification["color"] = _rgb(value)
        elif value is None:
            properties.pop(key, None)
        else:
            properties[key] = value
    if classification:
        classification.setdefault("color", list(DEFAULT_COLOR))
        properties["classification"] = classification
    return copy


def _rings(geometry: Mapping[str, Any]) -> list[list[list[float]]]:
    """Every polygon as a list of rings (outer first)."""
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        return [coords]
    if kind == "MultiPolygon":
        return list(coords)
    return []


def all_points(geometry: Mapping[str, Any]) -> list[tuple[float, float]]:
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point":
        return [(coords[0], coords[1])]
    if kind in ("MultiPoint", "LineString"):
        return [(p[0], p[1]) for p in coords]
    if kind in ("MultiLineString", "Polygon"):
        return [(p[0], p[1]) for part in coords for p in part]
    if kind == "MultiPolygon":
        return [(p[0], p[1]) for polygon in coords for ring in polygon for p in ring]
    return []


def bounds(feature: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in level-0 pixels."""
    points = all_points(feature.get("geometry") or {})
    if not points:
        return (0.0, 0.0, 0.0, 0.0)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def translated(feature: Mapping[str, Any], dx: float, dy: float) -> dict[str, Any]:
    """A copy moved by (dx, dy) level-0 pixels (the ellipse memory moves with it)."""
    copy = json.loads(json.dumps(dict(feature)))

    def move(value: Any) -> Any:
        if value and isinstance(value[0], int | float):
            return _point(value[0] + dx, value[1] + dy)
        return [move(v) for v in value]

    copy["geometry"]["coordinates"] = move(copy["geometry"]["coordinates"])
    ellipse = (copy.get("properties") or {}).get("ellipse")
    if isinstance(ellipse, dict):
        ellipse["cx"] = float(ellipse["cx"]) + dx
        ellipse["cy"] = float(ellipse["cy"]) + dy
    return copy


def criterion_links(features: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """``"checklist_id.item_id"`` -> the annotations linked to that criterion, in order."""
    links: dict[str, list[Mapping[str, Any]]] = {}
    for feature in features:
        criterion = criterion_of(feature)
        if criterion:
            links.setdefault(criterion, []).append(feature)
    return links


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Measurement:
    """Sizes of one annotation; µm values are None when the pixel size is unknown."""

    shape: str
    width_px: float
    height_px: float
    length_px: float  # perimeter of areas, length of lines, 0 for points
    area_px: float
    points: int
    pixel_size_um: float | None

    def _um(self, value: float) -> float | None:
        return None if not self.pixel_size_um else value * self.pixel_size_um

    @property
    def width_um(self) -> float | None:
        return self._um(self.width_px)

    @property
    def height_um(self) -> float | None:
        return self._um(self.height_px)

    @property
    def length_um(self) -> float | None:
        return self._um(self.length_px)

    @property
    def area_um2(self) -> float | None:
        return None if not self.pixel_size_um else self.area_px * self.pixel_size_um**2

    @property
    def area_mm2(self) -> float | None:
        area = self.area_um2
        return None if area is None else area / 1e6

    def short(self) -> str:
        """The one number a list column has room for: area, else length, else points."""
        if self.shape == "point":
            return "1 point" if self.points == 1 else f"{self.points} points"
        if self.area_px <= 0:
            return _length_text(self.length_um, self.length_px)
        if self.area_mm2 is not None:
            return f"{self.area_mm2:.3g} mm²"
        return f"{self.area_px:,.0f} px²"

    def summary(self) -> str:
        """One short line for a list: area and perimeter, length, or a point count."""
        if self.shape == "point":
            return "1 point" if self.points == 1 else f"{self.points} points"
        if self.area_px <= 0:
            return _length_text(self.length_um, self.length_px)
        if self.pixel_size_um:
            return (
                f"{format_area_mm2(self.area_mm2 or 0.0)}, "
                f"perimeter {_length_text(self.length_um, self.length_px)}"
            )
        return f"{self.area_px:,.0f} px², perimeter {self.length_px:,.0f} px"


def format_area_mm2(area_mm2: float) -> str:
    if area_mm2 >= 0.1:
        return f"{area_mm2:.3g} mm²"
    return f"{area_mm2:.3g} mm² ({area_mm2 * 1e6:,.0f} µm²)"


def _length_text(um: float | None, px: float) -> str:
    if um is None:
        return f"{px:,.0f} px"
    if um >= 1000:
        return f"{um / 1000:.3g} mm"
    return f"{um:.3g} µm"


def _ring_area(ring: Sequence[Sequence[float]]) -> float:
    total = 0.0
    for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2


def _path_length(path: Sequence[Sequence[float]]) -> float:
    return sum(
        math.hypot(x1 - x0, y1 - y0) for (x0, y0), (x1, y1) in zip(path, path[1:], strict=False)
    )


def measure(feature: Mapping[str, Any], pixel_size_um: float | None) -> Measurement:
    """Width, height, perimeter or length, area (holes subtracted) of one annotation."""
    geometry = feature.get("geometry") or {}
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    left, top, right, bottom = bounds(feature)
    length = area = 0.0
    points = 0
    if kind in ("Polygon", "MultiPolygon"):
        for polygon in _rings(geometry):
            for index, ring in enumerate(polygon):
                ring_area = _ring_area(ring)
                area += ring_area if index == 0 else -ring_area
                if index == 0:
                    length += _path_length(ring)
    elif kind == "LineString":
        length = _path_length(coords)
    elif kind == "MultiLineString":
        length = sum(_path_length(part) for part in coords)
    elif kind == "Point":
        points = 1
    elif kind == "MultiPoint":
        points = len(coords)
    size = pixel_size_um if pixel_size_um and pixel_size_um > 0 else None
    return Measurement(
        shape_of(feature), right - left, bottom - top, length, max(area, 0.0), points, size
    )


# --------------------------------------------------------------------------- checking


def _rgb(value: Any) -> list[int]:
    """[r, g, b] from a list/tuple or a packed integer (QuPath writes both; ARGB may be < 0)."""
    if isinstance(value, bool):
        raise AnnotationError(f"colour {value!r} is not a colour")
    if isinstance(value, int):
        packed = value & 0xFFFFFF
        return [(packed >> 16) & 255, (packed >> 8) & 255, packed & 255]
    if isinstance(value, list | tuple) and len(value) in (3, 4):
        try:
            channels = [int(round(float(v))) for v in value[:3]]
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"colour {value!r} is not three numbers") from exc
        return [min(255, max(0, c)) for c in channels]
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return _rgb(int(value[1:], 16))
        except ValueError as exc:
            raise AnnotationError(f"colour {value!r} is not a colour") from exc
    raise AnnotationError(f"colour {value!r} is not a colour (use [r, g, b])")


def _check_position(value: Any) -> list[float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
        or not all(math.isfinite(v) for v in value[:2])
    ):
        raise AnnotationError(f"coordinate {value!r} is not a pair of finite numbers")
    return [float(value[0]), float(value[1])]


def _check_list(value: Any, what: str, minimum: int = 1) -> list[Any]:
    if not isinstance(value, list | tuple) or len(value) < minimum:
        raise AnnotationError(f"{what} needs at least {minimum} position(s)")
    return list(value)


def _check_ring(value: Any) -> list[list[float]]:
    ring = [_check_position(p) for p in _check_list(value, "a polygon ring", 3)]
    if ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    if len(ring) < 4:
        raise AnnotationError("a polygon ring needs at least 3 distinct corners")
    return ring


def _check_geometry(geometry: Any) -> dict[str, Any]:
    if not isinstance(geometry, Mapping):
        raise AnnotationError("a feature has no geometry")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind not in GEOMETRY_TYPES:
        raise AnnotationError(
            f"geometry type {kind!r} is not supported (use {', '.join(GEOMETRY_TYPES)})"
        )
    if kind == "Point":
        checked: Any = _check_position(coords)
    elif kind == "MultiPoint":
        checked = [_check_position(p) for p in _check_list(coords, "a MultiPoint")]
    elif kind == "LineString":
        checked = [_check_position(p) for p in _check_list(coords, "a line", 2)]
    elif kind == "MultiLineString":
        checked = [
            [_check_position(p) for p in _check_list(part, "a line", 2)]
            for part in _check_list(coords, "a MultiLineString")
        ]
    elif kind == "Polygon":
        checked = [_check_ring(r) for r in _check_list(coords, "a polygon")]
    else:
        checked = [
            [_check_ring(r) for r in _check_list(polygon, "a polygon")]
            for polygon in _check_list(coords, "a MultiPolygon")
        ]
    return {"type": kind, "coordinates": checked}


def check_feature(feature: Any) -> dict[str, Any]:
    """The feature normalised (closed rings, [r, g, b] colour, a shape, a string id).

    Raises :class:`AnnotationError` with the reason when it cannot be an annotation.
    """
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise AnnotationError("an entry is not a GeoJSON Feature")
    geometry = _check_geometry(feature.get("geometry"))
    properties = feature.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise AnnotationError("a feature's properties are not a JSON object")
    properties = json.loads(json.dumps(dict(properties), allow_nan=False))
    object_type = properties.get("objectType", "annotation")
    if object_type not in OBJECT_TYPES:
        raise AnnotationError(f"objectType {object_type!r} is not a QuPath object type")
    properties["objectType"] = object_type
    classification = properties.get("classification")
    if classification is not None:
        if isinstance(classification, str):  # very old QuPath: just the class name
            classification = {"name": classification}
        if not isinstance(classification, Mapping):
            raise AnnotationError("a feature's classification is not a JSON object")
        classification = dict(classification)
        if "colorRGB" in classification and "color" not in classification:
            classification["color"] = classification.pop("colorRGB")
        classification["name"] = str(classification.get("name") or "")
        classification["color"] = _rgb(
            classification.get("color", properties.get("color", list(DEFAULT_COLOR)))
        )
        properties["classification"] = classification
    elif "color" in properties:  # an unclassified QuPath object with its own colour
        properties["classification"] = {"name": "", "color": _rgb(properties["color"])}
    shape = properties.get("shape")
    if shape not in SHAPES or not _shape_fits(shape, geometry["type"]):
        properties["shape"] = shape_of({"geometry": geometry, "properties": {}})
    if properties["shape"] == "ellipse":
        ellipse = properties.get("ellipse")
        if not (
            isinstance(ellipse, Mapping)
            and all(isinstance(ellipse.get(k), int | float) for k in ("cx", "cy", "rx", "ry"))
        ):
            properties["shape"] = "polygon"
            properties.pop("ellipse", None)
    criterion = properties.get("criterion")
    if criterion is not None and not isinstance(criterion, str):
        raise AnnotationError("a feature's criterion is not text")
    feature_id = feature.get("id")
    if feature_id is None or (isinstance(feature_id, str) and not feature_id.strip()):
        feature_id = str(uuid.uuid4())
    return {
        "type": "Feature",
        "id": str(feature_id),
        "geometry": geometry,
        "properties": properties,
    }


def _shape_fits(shape: str, geometry_type: str) -> bool:
    if shape == "point":
        return geometry_type in ("Point", "MultiPoint")
    if shape == "line":
        return geometry_type in ("LineString", "MultiLineString")
    if shape in ("rectangle", "ellipse"):
        return geometry_type == "Polygon"
    return geometry_type in ("Polygon", "MultiPolygon")


# --------------------------------------------------------------------------- files


def feature_collection(features: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection QuPath opens (File > Import objects, or drag and drop)."""
    return {"type": "FeatureCollection", "features": [check_feature(f) for f in features]}


def export_geojson(path: str | Path, features: Iterable[Mapping[str, Any]]) -> Path:
    """Write the annotations as GeoJSON (atomically: a failed write leaves no half file)."""
    target = Path(path)
    text = json.dumps(feature_collection(features), indent=2, ensure_ascii=False)
    try:
        atomic_write(target, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AnnotationError(f"{target.name} cannot be written: {reason}") from exc
    return target


def parse_geojson(text: str | bytes, source: str = "the annotation file") -> list[dict[str, Any]]:
    """Features from GeoJSON text: a FeatureCollection, one Feature, or a list of Features."""
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AnnotationError(f"{source} is not GeoJSON: not valid JSON ({exc})") from exc
    if isinstance(document, Mapping) and document.get("type") == "FeatureCollection":
        entries = document.get("features")
        if not isinstance(entries, list):
            raise AnnotationError(f"{source} is not GeoJSON: its FeatureCollection has no features")
    elif isinstance(document, Mapping) and document.get("type") == "Feature":
        entries = [document]
    elif isinstance(document, list):
        entries = document
    elif isinstance(document, Mapping) and document.get("type") in GEOMETRY_TYPES:
        entries = [{"type": "Feature", "geometry": document, "properties": {}}]
    else:
        raise AnnotationError(
            f"{source} is not GeoJSON: expected a FeatureCollection, a Feature or a list of them"
        )
    if len(entries) > MAX_IMPORT_FEATURES:
        raise AnnotationError(
            f"{source} has {len(entries):,} objects; "
            f"at most {MAX_IMPORT_FEATURES:,} can be imported"
        )
    features = []
    for number, entry in enumerate(entries, start=1):
        try:
            features.append(check_feature(entry))
        except AnnotationError as exc:
            raise AnnotationError(f"{source}: object {number}: {exc}") from exc
    return features


def import_geojson(path: str | Path) -> list[dict[str, Any]]:
    """Read a GeoJSON annotation file (ours or QuPath's); one-line error when it is not."""
    source = Path(path)
    try:
        size = source.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise AnnotationError(
                f"{source.name} is {size / 1e6:.0f} MB; annotation files over "
                f"{MAX_IMPORT_BYTES // 1_000_000} MB are not imported"
            )
        data = source.read_bytes()
    except FileNotFoundError as exc:
        raise AnnotationError(f"{source.name} cannot be opened: the file does not exist") from exc
    except OSError as exc:
        raise AnnotationError(f"{source.name} cannot be read: {exc.strerror or exc}") from exc
    return parse_geojson(data, source.name)
