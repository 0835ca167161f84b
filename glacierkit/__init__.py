"""glacierkit: glacier mapping from Landsat and Sentinel-2, NDSI and Deep U-Net.

The light modules are imported here; the TensorFlow-backed ones (``model``, ``train``,
``predict``) load on first use, so ``import glacierkit`` stays fast.
"""

from __future__ import annotations

import importlib

from . import bands, data, exceptions, io, labels
from .exceptions import GlacierKitError

__version__ = "0.1.0"

_LAZY = {"indices", "metrics", "threshold", "patches", "model", "train", "predict",
         "vectorize", "evaluate", "plot", "prep", "run", "cli", "separability", "slider",
         "features", "batch", "chunked", "precision", "layers", "guard", "regions", "staging",
         "qgis", "report"}

__all__ = ["bands", "data", "exceptions", "io", "labels", "GlacierKitError", "__version__",
           *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'glacierkit' has no attribute {name!r}")
