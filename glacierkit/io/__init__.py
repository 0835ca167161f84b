"""Scenes in, rasters out.

- :mod:`~glacierkit.io.scene`: :func:`open_scene`, the single way into glacierkit, and the
  checks every scene passes (grid, band names, reflectance range, nodata).
- :mod:`~glacierkit.io.raster`: reading one raster file, DN scaling, sensor guessing.
- :mod:`~glacierkit.io.landsat`: Landsat Collection 2 products (MTL, scaling, QA_PIXEL).
- :mod:`~glacierkit.io.archive`: products as downloaded (``.tar``, ``.tar.gz``), read in place.
- :mod:`~glacierkit.io.sentinel2`: Sentinel-2 product specifics (processing baseline).
- :mod:`~glacierkit.io.write`: cloud-optimized GeoTIFFs and CSV tables, written atomically.
"""

from .._util import lazy_exports

_EXPORTS = {
    # archive
    "archive": ".archive",
    "ARCHIVE_SUFFIXES": ".archive",
    "is_archive": ".archive",
    "ArchiveMember": ".archive",
    "ArchiveFolder": ".archive",
    "archive_mtl": ".archive",
    "is_vsi": ".archive",
    # landsat
    "landsat": ".landsat",
    "read_mtl": ".landsat",
    "qa_masks": ".landsat",
    "QA_BITS": ".landsat",
    # raster
    "raster": ".raster",
    "open_raster": ".raster",
    # scene
    "scene": ".scene",
    "open_scene": ".scene",
    "check_grid": ".scene",
    # sentinel2
    "sentinel2": ".sentinel2",
    # write
    "write": ".write",
    "write_raster": ".write",
    "write_table": ".write",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
