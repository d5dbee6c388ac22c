"""Real cases for report tests: a small synthetic TIFF, a real SQLite store, an AI result.

A module of its own (not conftest.py), at tests/ like rcm_test_helpers: tests/reports and
tests/ui import it by a name no other folder uses.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcm_viewer.cases import AIResult, CaseStore, Heatmap, file_sha256

READER = "Dr Ada Reader"
PSEUDONYM = "PSEUDO-4711"
SITE = "left shoulder"


@dataclass
class CaseFixture:
    store: CaseStore
    case_id: str
    mosaic: Path
    folder: Path


def write_mosaic(path: Path, width: int = 1024, height: int = 768) -> Path:
    """A real tiled, pyramidal OME-TIFF written by the synthetic generator (0.75 µm/px)."""
    from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic, write_tiff

    return write_tiff(
        SyntheticMosaic(MosaicSpec("melanoma", width, height, seed=3)), path, tile=256
    )


_CACHE: dict[str, Path] = {}


def _cached_mosaic() -> Path:
    """One synthetic TIFF per test session (rendering it takes a second on 2 cores)."""
    if "mosaic" not in _CACHE:
        folder = Path(tempfile.mkdtemp(prefix="rcm-report-tests-"))
        atexit.register(shutil.rmtree, folder, True)
        _CACHE["mosaic"] = write_mosaic(folder / "lesion.tif")
    return _CACHE["mosaic"]


def ai_result(width: int, height: int, synthetic: bool = True) -> AIResult:
    yy, xx = np.mgrid[0:24, 0:32]
    hot = np.exp(-(((xx - 8) / 5.0) ** 2 + ((yy - 6) / 4.0) ** 2))
    planes = np.stack([hot, 1 - hot, np.full_like(hot, 0.2)])
    heatmap = Heatmap.from_float(planes, ("melanoma", "bcc", "naevus"), (height, width), (0.0, 1.0))
    return AIResult.from_probabilities(
        "rcm-demo-resnet",
        "1.2",
        "ab" * 32,
        {"melanoma": 0.71, "bcc": 0.19, "naevus": 0.10},
        heatmap=heatmap,
        flags=("synthetic_model",) if synthetic else (),
    )


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> list[list[float]]:
    ring = [
        [cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n)]
        for k in range(n)
    ]
    return ring + [ring[0]]


FEATURES = [
    {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[100, 100], [340, 100], [340, 260], [100, 260], [100, 100]]],
        },
        "properties": {
            "objectType": "annotation",
            "shape": "rectangle",
            "classification": {"name": "Pagetoid cells", "color": [255, 60, 60]},
            "criterion": "melanoma_score.roundish_pagetoid_cells",
            "name": "cluster near the centre",
        },
    },
    {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ellipse(700, 500, 90, 60)]},
        "properties": {
            "objectType": "annotation",
            "shape": "ellipse",
            "classification": {"name": "Atypical basal cells", "color": [60, 200, 255]},
        },
    },
    {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[500, 120], [620, 200], [760, 180]]},
        "properties": {
            "objectType": "annotation",
            "shape": "freehand",
            "classification": {"name": "Junction", "color": [80, 255, 80]},
        },
    },
    {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [300, 600]},
        "properties": {
            "objectType": "annotation",
            "shape": "point",
            "classification": {"name": "Dendritic cell", "color": [255, 220, 0]},
        },
    },
]


def make_case(
    folder: Path,
    *,
    commit: bool = True,
    with_ai: bool = True,
    notes: str = "Irregular honeycomb at the periphery.",
    synthetic: bool = True,
    annotate: bool = True,
) -> CaseFixture:
    folder.mkdir(parents=True, exist_ok=True)
    mosaic = folder / "lesion.tif"
    if not mosaic.exists():
        shutil.copyfile(_cached_mosaic(), mosaic)
    store = CaseStore(folder / "cases.sqlite")
    case = store.create_case(
        PSEUDONYM,
        user=READER,
        mosaic_path=mosaic,
        mosaic_sha256=file_sha256(mosaic),
        pixel_size_um=0.75,
        lesion_site=SITE,
    )
    cid = case.case_id
    for item, value in (
        ("non_edged_papillae", "present"),
        ("atypical_basal_cells", "present"),
        ("roundish_pagetoid_cells", "absent"),
    ):
        store.set_answer(cid, None, "melanoma_score", item, value, user=READER)
    store.update_assessment_fields(
        cid,
        None,
        READER,
        diagnosis="melanoma",
        confidence=3,
        management="excision_biopsy",
        notes=notes,
    )
    if annotate:
        for feature in FEATURES:
            store.add_roi(cid, feature, READER)
    if with_ai:
        store.save_ai_result(cid, ai_result(1024, 768, synthetic), READER)
    if commit:
        store.commit_initial_assessment(cid, READER)
        store.set_answer(
            cid, None, "melanoma_score", "roundish_pagetoid_cells", "present", user=READER
        )
        store.update_assessment_fields(cid, None, READER, confidence=4)
    return CaseFixture(store, cid, mosaic, folder)
