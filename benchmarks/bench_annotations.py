"""Annotation import, undo and list refresh for a QuPath-sized file; prints JSON.

    PYTHONPATH=. QT_QPA_PLATFORM=offscreen python benchmarks/bench_annotations.py [N]

Each QuPath object is a 12-vertex polygon; the numbers are wall-clock seconds on the GUI
thread: parse + validate the file, store + draw (one transaction), rebuild the panel,
undo (one transaction), and a single drawn rectangle (one transaction with fsync).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from rcm_viewer.cases import CaseStore
    from rcm_viewer.cases import annotations as geo
    from rcm_viewer.ui.annotation_panel import AnnotationPanel
    from rcm_viewer.ui.annotations import AnnotationLayer
    from rcm_viewer.ui.mosaic_view import MosaicView

    folder = Path(tempfile.mkdtemp())
    features = []
    for k in range(count):
        cx, cy = 200 + (k % 40) * 400, 200 + (k // 40) * 400
        ring = [[cx + 60 * math.cos(a / 2), cy + 40 * math.sin(a / 2)] for a in range(12)]
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "id": f"00000000-0000-0000-0000-{k:012d}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                },
            }
        )
    path = folder / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    store = CaseStore(folder / "cases.sqlite3")
    case = store.create_case("P", user="bench")
    view = MosaicView()
    layer = AnnotationLayer(view, store)
    panel = AnnotationPanel(layer)
    layer.set_case(case.case_id, 0.5)
    result: dict[str, object] = {"objects": count}
    t = time.perf_counter()
    parsed = geo.import_geojson(path)
    result["parse_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    layer.import_features(parsed)
    result["import_store_draw_list_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    panel.refresh()
    result["list_refresh_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    layer.undo_stack.undo()
    result["undo_import_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    layer.add_feature(geo.rectangle_feature(0, 0, 100, 50))
    result["one_rectangle_s"] = round(time.perf_counter() - t, 4)
    store.close()
    print(json.dumps(result))
    del app


if __name__ == "__main__":
    main()
