"""Procedural RCM-like mosaics with a known class (demo data, tests, demo-model training).

Not patient data: everything here is generated from a seed.
"""

from rcm_viewer.synthetic.generator import (
    GENERATOR_VERSION,
    MosaicSpec,
    SyntheticMosaic,
    mosaic_seed,
    write_dataset,
    write_tiff,
)
from rcm_viewer.synthetic.morphology import CLASS_DISPLAY_NAMES, LESION_CLASSES

__all__ = [
    "CLASS_DISPLAY_NAMES",
    "GENERATOR_VERSION",
    "LESION_CLASSES",
    "MosaicSpec",
    "SyntheticMosaic",
    "mosaic_seed",
    "write_dataset",
    "write_tiff",
]
