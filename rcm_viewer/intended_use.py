"""The intended-use statement: one text for the window, the reports and the command line.

Worded in the spirit of cleared reader-assist devices (docs: DOMAIN.md, "Reader-assist
conventions"); keep every place that shows a probability pointing here.
"""

from __future__ import annotations

INTENDED_USE = (
    "rcm-viewer is a reader-assist tool for reflectance confocal microscopy. It is not a "
    "diagnostic device. Any classifier output is to be used together with other clinical "
    "information and the clinician's professional judgement; the clinician reviews the full "
    "images. The bundled demonstration model is trained on synthetic images only and is not "
    "for diagnosis."
)

DEMONSTRATION_BANNER = "Demonstration model: trained on synthetic images, not for diagnosis"
