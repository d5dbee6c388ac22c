"""Training and evaluation: the published method (tiled), its baseline, metrics, export.

Importing this package does not import torch (``rcm-viewer --help`` and the GUI stay
light); ``train``, ``TrainingConfig`` and ``evaluate`` load it on first use.

    from rcm_viewer.training import TrainingConfig, train
    train(TrainingConfig(data_dir=Path("DATA"), out_dir=Path("models/clinic-resnet34")))
"""

from __future__ import annotations

from rcm_viewer.errors import TrainingError
from rcm_viewer.lazy import lazy_getattr
from rcm_viewer.training.data import (
    DataSet,
    MosaicRecord,
    load_split,
    parse_split_fractions,
    scan_data_dir,
    split_dataset,
)
from rcm_viewer.training.metrics import classification_metrics, wilson_interval

_LAZY = {
    "TrainingConfig": "rcm_viewer.training.trainer",
    "TrainingResult": "rcm_viewer.training.trainer",
    "train": "rcm_viewer.training.trainer",
    "fit_temperature": "rcm_viewer.training.trainer",
    "evaluate": "rcm_viewer.training.evaluation",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "DataSet",
    "MosaicRecord",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "classification_metrics",
    "evaluate",
    "fit_temperature",
    "load_split",
    "parse_split_fractions",
    "scan_data_dir",
    "split_dataset",
    "train",
    "wilson_interval",
]
