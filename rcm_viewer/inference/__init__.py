"""The classifier: model bundles, whole-mosaic inference, class activation maps.

Importing this package does not import torch: the window shows before torch loads
(shared/DESIGN.md). Manifests, bundles (reading and verifying), ``Prediction`` and the
batch row formats are torch-free; ``classify_mosaic``, ``explain_region``,
``classify_paths`` and ``save_bundle`` import torch on first use, through the lazy
attributes below.

    from rcm_viewer.inference import classify_mosaic, default_bundle_dir, load_bundle

    bundle = load_bundle(default_bundle_dir())
    with open_mosaic("lesion.tif") as mosaic:
        prediction = classify_mosaic(mosaic, bundle, progress=print)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rcm_viewer.errors import InferenceError, ModelBundleError
from rcm_viewer.inference.batch import (
    ClassificationRow,
    classify_paths,
    format_table,
    row_columns,
    write_rows,
)
from rcm_viewer.inference.bundle import (
    BundleEntry,
    ModelBundle,
    default_bundle_dir,
    list_bundles,
    load_bundle,
    read_manifest,
    render_model_card,
    save_bundle,
)
from rcm_viewer.inference.manifest import (
    AGGREGATION_RULES,
    ARCHITECTURES,
    SCHEMA_VERSION,
    ModelManifest,
)
from rcm_viewer.inference.prediction import (
    STATUS_NO_TISSUE,
    STATUS_OK,
    ClassificationCancelled,
    Prediction,
    RegionExplanation,
)
from rcm_viewer.lazy import lazy_getattr

if TYPE_CHECKING:
    from rcm_viewer.inference.engine import CAM_METHODS, classify_mosaic, explain_region

#: name -> submodule that defines it; imported (with torch) on first access.
_LAZY = {
    "classify_mosaic": "rcm_viewer.inference.engine",
    "explain_region": "rcm_viewer.inference.engine",
    "CAM_METHODS": "rcm_viewer.inference.engine",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "AGGREGATION_RULES",
    "ARCHITECTURES",
    "CAM_METHODS",
    "SCHEMA_VERSION",
    "STATUS_NO_TISSUE",
    "STATUS_OK",
    "BundleEntry",
    "ClassificationCancelled",
    "ClassificationRow",
    "InferenceError",
    "ModelBundle",
    "ModelBundleError",
    "ModelManifest",
    "Prediction",
    "RegionExplanation",
    "classify_mosaic",
    "classify_paths",
    "default_bundle_dir",
    "explain_region",
    "format_table",
    "list_bundles",
    "load_bundle",
    "read_manifest",
    "render_model_card",
    "row_columns",
    "save_bundle",
    "write_rows",
]
