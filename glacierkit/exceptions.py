"""One exception family for glacierkit.

Every error names the offending value and says how to fix it. Catch
:class:`GlacierKitError` to handle them all.
"""

from __future__ import annotations

__all__ = ["GlacierKitError", "DataNotFoundError", "ChecksumError", "UnknownSensorError", "UnknownBandError", "BandCountError", "MissingCRSError", "NotGeoreferencedError", "NoOverlapError", "AllNodataError", "CorruptFileError", "ParameterError", "OutputError", "OutputExistsError", "ReflectanceRangeError", "OutlineGeometryError", "UnsupportedGridError", "LeakySplitWarning", "DomainShiftWarning", "ObscuredWarning", "StepFailed", "KernelNotFoundError"]


class GlacierKitError(Exception):
    """Base class of every error glacierkit raises on purpose."""


class DataNotFoundError(GlacierKitError, FileNotFoundError):
    """A file, sample dataset or scene could not be found."""


class ChecksumError(DataNotFoundError):
    """A file's sha256 does not match the pinned checksum (so the pinned file is not
    available: a :class:`DataNotFoundError` too)."""


class UnknownSensorError(GlacierKitError, KeyError):
    """A sensor id that glacierkit has no table for."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class UnknownBandError(GlacierKitError, KeyError):
    """A band name or role that the sensor or scene does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BandCountError(GlacierKitError, ValueError):
    """A raster has a different number of bands than expected."""


class MissingCRSError(GlacierKitError, ValueError):
    """A raster or vector has no coordinate reference system."""


class NotGeoreferencedError(MissingCRSError):
    """A raster (such as a bare JPEG2000 crop) has no georeference at all."""


class NoOverlapError(GlacierKitError, ValueError):
    """Outlines (or another layer) do not overlap the scene."""


class AllNodataError(GlacierKitError, ValueError):
    """A scene or layer holds no valid pixel."""


class CorruptFileError(GlacierKitError, OSError):
    """A file exists but cannot be read (corrupt, truncated or not a raster)."""


class ParameterError(GlacierKitError, ValueError):
    """A configuration or notebook parameter is unknown or has a bad value."""


class OutputError(GlacierKitError, OSError):
    """An output folder or file cannot be written (a file in the way, read-only, full)."""


class OutputExistsError(OutputError, FileExistsError):
    """The outputs of an earlier run are in the way (pass ``--force`` to replace them)."""


class ReflectanceRangeError(GlacierKitError, ValueError):
    """Pixel values that cannot be reflectance (e.g. unscaled digital numbers)."""


class OutlineGeometryError(GlacierKitError, ValueError):
    """Outlines that are not polygons (points, lines) or cannot be repaired."""


class UnsupportedGridError(GlacierKitError, ValueError):
    """A raster grid glacierkit cannot work on (rotated or sheared geotransforms)."""


class LeakySplitWarning(UserWarning):
    """The random tile split puts correlated (even identical) pixels in both sets."""


class DomainShiftWarning(UserWarning):
    """The scene lies outside what the model was trained on."""


class ObscuredWarning(UserWarning):
    """More of the glacier area than the set share is hidden by clouds, their shadows or
    missing data (:data:`glacierkit.io.clouds.OBSCURED_LIMIT`)."""


class StepFailed(GlacierKitError):
    """A notebook of the pipeline raised an error."""


class KernelNotFoundError(GlacierKitError, LookupError):
    """The ``glacierkit`` Jupyter kernel is not registered in this environment."""
