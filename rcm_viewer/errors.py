"""Error types every room raises.

Each room raises its own subclass of :class:`RcmError` with a message a
clinician can read (file name + reason, one line). The CLI prints the message
on one line and exits non-zero; the GUI shows it in a dialog. Tracebacks go to
the log file only.
"""


class RcmError(Exception):
    """Base class for every error meant to be shown to a user."""


class SyntheticError(RcmError):
    """Bad parameters for the synthetic mosaic generator."""


class CaseStoreError(RcmError):
    """The case store cannot open, read or save a case (or a checklist definition is invalid)."""


class MosaicError(RcmError):
    """A mosaic file cannot be opened or read (missing, damaged, unsupported...).

    The message is one line that names the file and the reason, e.g.
    ``"lesion_07.tif is truncated: tile 12 of 64 lies beyond the end of the file"``.
    ``path`` keeps the full path for logs and dialogs that want it.
    """

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class TrainingError(RcmError):
    """Training or evaluation cannot start or go on (data too small, one class, bad split...).

    Raised before any training when the data cannot give a meaningful model, so a clinic
    learns in seconds, not after an hour, that a class folder is nearly empty.
    """


class InferenceError(RcmError):
    """The classifier cannot run on this input (pixel size unknown, no model, bad device...)."""


class ModelBundleError(InferenceError):
    """A model bundle is missing, incomplete, modified after export or not readable.

    The message is one line that names the file, e.g.
    ``"weights.pt in models/rcm-resnet34 does not match its checksum: the file was changed"``.
    """


class ReportError(RcmError):
    """A report cannot be made or written (no such case, unwritable output path...)."""
