"""Sample data: the pinned public datasets and the regions built from them.

- :mod:`~glacierkit.data.samples`: the registry of sample scenes, outlines and spectra,
  fetched from a local mirror, the user cache or the pinned public sources (sha256-checked).
- :mod:`~glacierkit.data.regions`: regions with scenes of several dates and a (partial)
  outline, for scoring a model where it was never trained (Athabasca).
- :mod:`~glacierkit.data.mosaic`: synthetic mosaics of labelled pixel spectra.
"""

from .._util import lazy_exports

_EXPORTS = {
    # mosaic
    "mosaic": ".mosaic",
    "spectra_mosaic": ".mosaic",
    # regions
    "regions": ".regions",
    "REGIONS": ".regions",
    "Region": ".regions",
    "region_scenes": ".regions",
    "region_labels": ".regions",
    # samples
    "samples": ".samples",
    "DEFAULT_BASE_URL": ".samples",
    "SampleScene": ".samples",
    "SOURCES": ".samples",
    "SCENES": ".samples",
    "SPLITS": ".samples",
    "fetch": ".samples",
    "fetch_product": ".samples",
    "outlines": ".samples",
    "outlines_path": ".samples",
    "outline_datasets": ".samples",
    "aux_raster": ".samples",
    "spectra": ".samples",
    "SPECTRA_CLASSES": ".samples",
    "VALIDATION_CLASSES": ".samples",
    "scene_names": ".samples",
    "get_scene": ".samples",
    "split": ".samples",
    "registry": ".samples",
    "mirror_dir": ".samples",
    "cache_dir": ".samples",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
