"""rcm-viewer: a reader-assist viewer for reflectance confocal microscopy mosaics."""

__version__ = "0.1.0"
