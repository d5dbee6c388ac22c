"""The classifier: model bundles, whole-mosaic inference, class activation maps.

Importing this package does not import torch: the window shows before torch loads
(shared/DESIGN.md). Manifests, bundles (reading and verifying), ``Prediction``, the
batch row formats and the choice of inference backend are torch-free, and so is
classifying with the OpenVINO backend; the torch backends, ``explain_region``,
``save_bundle`` and ``export_onnx`` import torch on first use.

    from rcm_viewer.inference import classify_mosaic, default_bundle_dir, load_bundle

    bundle = load_bundle(default_bundle_dir())
    with open_mosaic("lesion.tif") as mosaic:
        prediction = classify_mosaic(mosaic, bundle, progress=print)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rcm_viewer.errors import InferenceError, ModelBundleError
from rcm_viewer.inference.backends import (
    BACKEND_CHOICES,
    BACKENDS,
    available_backends,
    load_backend,
    resolve_backend,
)
from rcm_viewer.inference.batch import (
    ClassificationRow,
    FileScan,
    RowWriter,
    classify_paths,
    format_table,
    read_rows,
    row_columns,
    write_rows,
)
from rcm_viewer.inference.bundle import (
    BundleEntry,
    ModelBundle,
    default_bundle_dir,
    export_onnx,
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
    "BACKENDS",
    "BACKEND_CHOICES",
    "CAM_METHODS",
    "SCHEMA_VERSION",
    "STATUS_NO_TISSUE",
    "STATUS_OK",
    "BundleEntry",
    "ClassificationCancelled",
    "ClassificationRow",
    "FileScan",
    "InferenceError",
    "ModelBundle",
    "ModelBundleError",
    "ModelManifest",
    "Prediction",
    "RegionExplanation",
    "RowWriter",
    "available_backends",
    "classify_mosaic",
    "classify_paths",
    "default_bundle_dir",
    "explain_region",
    "export_onnx",
    "format_table",
    "list_bundles",
    "load_backend",
    "load_bundle",
    "read_manifest",
    "read_rows",
    "render_model_card",
    "resolve_backend",
    "row_columns",
    "save_bundle",
    "write_rows",
]
