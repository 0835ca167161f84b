"""Scenes in, rasters out.

- :mod:`~glacierkit.io.scene`: :func:`open_scene`, the single way into glacierkit, and the
  checks every scene passes (grid, band names, reflectance range, nodata).
- :mod:`~glacierkit.io.raster`: reading one raster file, DN scaling, sensor guessing.
- :mod:`~glacierkit.io.landsat`: Landsat Collection 2 products (MTL, scaling, QA_PIXEL).
- :mod:`~glacierkit.io.sentinel2`: Sentinel-2 product specifics (processing baseline).
- :mod:`~glacierkit.io.write`: cloud-optimized GeoTIFFs and CSV tables, written atomically.
"""

from .._util import lazy_exports

_EXPORTS = {
    # landsat
    "landsat": ".landsat",
    "read_mtl": ".landsat",
    "qa_masks": ".landsat",
    "QA_BITS": ".landsat",
    # level
    "level": ".level",
    "LEVELS": ".level",
    "PRODUCT_LEVELS": ".level",
    "ATMOSPHERE": ".level",
    "DARK_SURFACE": ".level",
    "TOA_BLUE_MIN": ".level",
    "OFFSET_MIN": ".level",
    "OFFSET_PERCENTILE": ".level",
    "OFFSET_MIN_PIXELS": ".level",
    "check_level": ".level",
    "product_level": ".level",
    "guess_product": ".level",
    "dark_pixels": ".level",
    "detect_level": ".level",
    "detect_offset": ".level",
    "path_reflectance": ".level",
    "to_surface": ".level",
    # raster
    "raster": ".raster",
    "open_raster": ".raster",
    "UNKNOWN_BASELINE": ".raster",
    "guess_sensor_from_bands": ".raster",
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
