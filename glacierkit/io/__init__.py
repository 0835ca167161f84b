"""Scenes in, rasters out.

- :mod:`~glacierkit.io.scene`: :func:`open_scene`, the single way into glacierkit, and the
  checks every scene passes (grid, band names, reflectance range, nodata).
- :mod:`~glacierkit.io.raster`: reading one raster file, DN scaling, sensor guessing.
- :mod:`~glacierkit.io.landsat`: Landsat Collection 2 products (MTL, scaling, QA_PIXEL).
- :mod:`~glacierkit.io.archive`: products as downloaded (``.tar``, ``.tar.gz``), read in place.
- :mod:`~glacierkit.io.sentinel2`: Sentinel-2 product specifics (processing baseline).
- :mod:`~glacierkit.io.level`: the processing level (surface reflectance or top of
  atmosphere) from metadata or data, unstated offsets, the dark-object correction.
- :mod:`~glacierkit.io.write`: cloud-optimized GeoTIFFs and CSV tables, written atomically.
- :mod:`~glacierkit.io.clouds`: Landsat QA_PIXEL and Sentinel-2 SCL cloud masks, clouds as
  nodata, the obscured share of the glacier area.
- :mod:`~glacierkit.io.stac`: scenes from a STAC API (search by glacier, ranked by the clouds
  over it; lazy loading by band role). Also ``glacierkit.stac``.
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
    # clouds
    "clouds": ".clouds",
    "SCL_CLASSES": ".clouds",
    "OBSCURING": ".clouds",
    "OBSCURED_LIMIT": ".clouds",
    "CLOUD_ATTRS": ".clouds",
    "CARRIED_ATTRS": ".clouds",
    "scl_masks": ".clouds",
    "obscured": ".clouds",
    "mask_clouds": ".clouds",
    "obscured_glacier_fraction": ".clouds",
    "cloud_kind": ".clouds",
    "warn_obscured": ".clouds",
    "cloud_layer_of": ".clouds",
    "cloud_summary": ".clouds",
    "with_clouds": ".clouds",
    # landsat
    "landsat": ".landsat",
    "read_mtl": ".landsat",
    "qa_masks": ".landsat",
    "QA_BITS": ".landsat",
    # level
    "level": ".level",
    "LEVELS": ".level",
    "PRODUCT_LEVELS": ".level",
    "LEVEL_ATTRS": ".level",
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
    # stac
    "stac": ".stac",
    "EARTH_SEARCH": ".stac",
    "PLANETARY_COMPUTER": ".stac",
    "ENDPOINTS": ".stac",
    "API_ENV": ".stac",
    "DEFAULT_COLLECTIONS": ".stac",
    "ROLE_ASSETS": ".stac",
    "CLOUD_ASSETS": ".stac",
    "SearchResult": ".stac",
    "search": ".stac",
    "get_item": ".stac",
    "open_item": ".stac",
    "item_scene_info": ".stac",
    "is_item": ".stac",
    "query_scenes": ".stac",
    # write
    "write": ".write",
    "write_raster": ".write",
    "write_table": ".write",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
