"""Writing rasters and tables: cloud-optimized GeoTIFFs with their CRS, CSV, atomically.

:func:`write_raster` writes a georeferenced layer or scene block by block as a COG with
overviews (QGIS opens it fast), band descriptions, GDAL scale/offset and tags; the file
appears only when complete. :func:`write_table` writes a DataFrame as CSV the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from rasterio._err import CPLE_BaseError

from .._util import atomic_path, write_failure
from ..console import stderr_to_log
from ..exceptions import GlacierKitError, MissingCRSError

log = logging.getLogger(__name__)

__all__ = ["write_raster", "write_table"]


def write_table(table, path: str | os.PathLike, index: bool = False) -> Path:
    """Write a DataFrame as CSV atomically (folders created); return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=index)
    return path


def write_raster(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    dtype: str | None = None,
    nodata: float | int | None = None,
    cog: bool = True,
    tags: Mapping[str, object] | None = None,
    descriptions: Sequence[str] | None = None,
    compress: str = "DEFLATE",
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    resampling: str = "NEAREST",
) -> Path:
    """Write a georeferenced raster atomically (a cloud-optimized GeoTIFF by default).

    The file appears only when complete: it is written under a temporary name, converted
    to a COG with overviews (so QGIS opens it fast), then renamed. Band descriptions default
    to the ``band`` coordinate, so :func:`open_scene` can read the file back by band name.
    NaN is written as ``nodata`` (NaN for floats unless given). ``scales``/``offsets`` (one
    per band) are stored as GDAL's unscaling metadata (``value * scale + offset``);
    ``resampling`` is the overview resampling (``NEAREST`` for classes, ``AVERAGE`` for
    continuous values).

    A write that fails (a full disk, a read-only folder ...) raises one
    :class:`~glacierkit.exceptions.OutputError` that names the folder, its free space and
    the space the file needs; GDAL's own messages go to the log, not the terminal.
    """
    path = Path(path)
    if da.rio.crs is None:
        raise MissingCRSError(
            f"Refusing to write {path} without a CRS. Set it with da.rio.write_crs('EPSG:xxxx')."
        )
    out = da if "band" in da.dims else da.expand_dims(band=[1])
    out = out.transpose("band", "y", "x")
    dtype = np.dtype(dtype or out.dtype)
    if nodata is None and np.issubdtype(dtype, np.floating):
        nodata = np.nan
    if descriptions is None:
        descriptions = [str(b) for b in out["band"].values] if "band" in da.dims else None
    if np.issubdtype(dtype, np.integer) and np.issubdtype(out.dtype, np.floating):
        fill = 0 if nodata is None else nodata
        out = out.fillna(fill)
    out = out.astype(dtype, copy=False)  # no copy of a full scene already in its dtype
    out = out.rio.write_nodata(nodata, encoded=False) if nodata is not None else out
    out.attrs = {}
    out.encoding = {}
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    # Up to: the tiled GeoTIFF and the COG with its overviews (a third more), uncompressed.
    needed = int(out.size * dtype.itemsize * (1 + 4 / 3)) + 65536
    try:
        with atomic_path(path) as final_tmp, stderr_to_log(log):  # GDAL's own error prints
            _write(out, final_tmp, dtype, nodata, cog, all_tags, descriptions, compress,
                   scales, offsets, resampling)
    except GlacierKitError:
        raise
    except (rasterio.errors.RasterioError, CPLE_BaseError, OSError) as exc:
        text = " ".join(str(exc).split()).lower()
        full = any(w in text for w in ("no space", "write error", "seek error", "write failed"))
        raise write_failure(path, exc, needed=needed, full=full or None) from exc
    return path


def _write(out, final_tmp: Path, dtype, nodata, cog, all_tags, descriptions, compress, scales,
           offsets, resampling) -> None:
    """Write ``out`` to ``final_tmp``: a tiled GeoTIFF, converted to a COG."""
    from rasterio.shutil import copy as rio_copy

    tmp_gtiff = final_tmp.with_name(final_tmp.name + ".gtiff")
    try:
        predictor = 3 if np.issubdtype(dtype, np.floating) else 2
        out.rio.to_raster(tmp_gtiff, driver="GTiff", tiled=True, blockxsize=256,
                          blockysize=256, compress=compress, predictor=predictor,
                          interleave="band", BIGTIFF="IF_SAFER", tags=all_tags,
                          windowed=True)  # block by block: no full-size copy
        with rasterio.open(tmp_gtiff, "r+") as dst:
            if descriptions is not None:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, str(d))
            if scales is not None:
                dst.scales = tuple(float(v) for v in scales)
            if offsets is not None:
                dst.offsets = tuple(float(v) for v in offsets)
        if cog:
            rio_copy(tmp_gtiff, final_tmp, driver="COG", COMPRESS=compress,
                     PREDICTOR="YES", OVERVIEWS="AUTO", BLOCKSIZE=512, BIGTIFF="IF_SAFER",
                     RESAMPLING=resampling)
        else:
            os.replace(tmp_gtiff, final_tmp)
    finally:
        if tmp_gtiff.exists():
            tmp_gtiff.unlink()
