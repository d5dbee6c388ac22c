"""Opening RCM mosaics: metadata, pixel size in µm, resolution levels, region reads.

Headless on purpose (numpy, tifffile, Pillow, imagecodecs only): the UI, the batch CLI,
inference and reports all read mosaics through this room.

    with open_mosaic("lesion_07.tif") as mosaic:
        print(mosaic.info.width, mosaic.info.pixel_size_um)
        mosaic.build_levels(preview=show)          # in a worker thread in the UI
        overview = mosaic.read_region(mosaic.level_count - 1, 0, 0, 1024, 1024)
"""

from rcm_viewer.errors import MosaicError
from rcm_viewer.mosaic.model import (
    BUILD_LEVELS_ABOVE_PX,
    DEFAULT_CACHE_BYTES,
    DEFAULT_MEMORY_BUDGET_BYTES,
    MAX_PIXEL_SIZE_UM,
    MIN_PIXEL_SIZE_UM,
    PIXEL_SIZE_SOURCES,
    SMALLEST_LEVEL_PX,
    LevelInfo,
    MosaicInfo,
)
from rcm_viewer.mosaic.mosaic import Mosaic, display_range_of, open_mosaic
from rcm_viewer.mosaic.pixel_size import (
    forget_pixel_size,
    remember_pixel_size,
    remembered_pixel_size,
)

__all__ = [
    "BUILD_LEVELS_ABOVE_PX",
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "MAX_PIXEL_SIZE_UM",
    "MIN_PIXEL_SIZE_UM",
    "PIXEL_SIZE_SOURCES",
    "SMALLEST_LEVEL_PX",
    "LevelInfo",
    "Mosaic",
    "MosaicError",
    "MosaicInfo",
    "display_range_of",
    "forget_pixel_size",
    "open_mosaic",
    "remember_pixel_size",
    "remembered_pixel_size",
]
