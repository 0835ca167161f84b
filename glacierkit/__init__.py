"""glacierkit: glacier mapping from Landsat and Sentinel-2, NDSI and Deep U-Net.

The folders follow the pipeline (README: Architecture)::

    data/ -> io/ -> bands, labels, indices, prep -> ndsi/    (the NDSI baseline)
                                                 -> unet/    (train, predict, write)
                                                 -> evaluate/ (compare, other regions,
                                                               change through time)
                                   pipeline/ runs the notebooks, batches and the CLI

``glacierkit.stac`` (STAC search and load, :mod:`glacierkit.io.stac`) and
``glacierkit.change`` (glacier change through time, :mod:`glacierkit.evaluate.change`) are
the modules of those names in ``io/`` and ``evaluate/``.

The most used functions are re-exported here: :func:`open_scene`, :func:`sweep`,
:func:`learn_threshold`, :class:`TrainConfig`, :func:`fit`, :func:`predict_scene`,
:func:`predict_to_files`, :func:`compare_methods`, :func:`cross_region` and
:class:`GlacierKitError`. Nothing is imported before it is used, so ``import glacierkit``
stays fast and TensorFlow loads only with the U-Net.
"""

from __future__ import annotations

from ._util import lazy_exports
from .console import configure_logging, quiet_tensorflow
from .exceptions import GlacierKitError

# Before anything can import TensorFlow: no C++ start-up chatter, one line per warning
# (README: a quiet console; glacierkit.console says how).
quiet_tensorflow()
configure_logging()

__version__ = "0.1.0"

_EXPORTS = {
    # subpackages and modules, in pipeline order
    "data": ".data",
    "io": ".io",
    "stac": ".io.stac",  # the name for it: glacierkit.stac is glacierkit.io.stac
    "bands": ".bands",
    "labels": ".labels",
    "indices": ".indices",
    "prep": ".prep",
    "metrics": ".metrics",
    "ndsi": ".ndsi",
    "unet": ".unet",
    "vectorize": ".vectorize",
    "evaluate": ".evaluate",
    "change": ".evaluate.change",  # glacierkit.change is glacierkit.evaluate.change
    "plot": ".plot",
    "qgis": ".qgis",
    "staging": ".staging",
    "pipeline": ".pipeline",
    "exceptions": ".exceptions",
    "console": ".console",
    # the curated names
    "NODATA": "._util",
    "slug": "._util",
    "open_scene": ".io.scene",
    "sweep": ".ndsi.threshold",
    "TrainConfig": ".unet.config",
    "fit": ".unet.train",
    "predict_scene": ".unet.predict",
    "compare_methods": ".evaluate.compare",
    "cross_region": ".evaluate.regions",
}

__all__ = ["GlacierKitError", "__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
