"""Landsat Collection 2 products: the MTL file, scaling, georeference and QA bands.

:func:`read_mtl` parses ``_MTL.txt``; :func:`open_product` opens a product folder as
reflectance (Level-2 surface reflectance ×2.75e-5 − 0.2, Level-1 top-of-atmosphere
reflectance from the MTL's REFLECTANCE_MULT/ADD with the sun-elevation correction), and
rebuilds the grid from the MTL corners when the band files carry none. :func:`qa_masks`
decodes ``QA_PIXEL`` into cloud, shadow, snow, water ... layers.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..bands import get_sensor
from ..exceptions import (
    BandCountError,
    CorruptFileError,
    DataNotFoundError,
    GlacierKitError,
    NotGeoreferencedError,
    UnknownSensorError,
)
from .archive import ArchiveMember
from .level import product_level
from .raster import (
    apply_georef,
    auto_chunks,
    band_from_filename,
    guess_sensor,
    has_georef,
    open_raster,
    peek_shape,
    pick_sensor,
    scale_dn,
    stack_bands,
)

log = logging.getLogger(__name__)

__all__ = ["read_mtl", "qa_masks", "QA_BITS"]

#: Landsat Collection 2 QA_PIXEL bits.
QA_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}


# --------------------------------------------------------------------------- MTL files
def read_mtl(path: str | os.PathLike) -> dict[str, dict[str, object]]:
    """Parse a Landsat ``_MTL.txt`` file into ``{group: {key: value}}``.

    Numbers become floats or ints; quoted strings lose their quotes. Groups are flattened
    to their innermost name (``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS`` ...). ``path`` may be
    the MTL in a tar archive (:func:`glacierkit.io.archive.archive_mtl`).
    """
    path = path if isinstance(path, ArchiveMember) else Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"MTL file not found: {path}. Give the product's _MTL.txt path.")
    groups: dict[str, dict[str, object]] = {}
    stack: list[str] = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line == "END":
            continue
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if key == "GROUP":
            stack.append(value)
            groups.setdefault(value, {})
        elif key == "END_GROUP":
            if stack:
                stack.pop()
        elif stack:
            groups[stack[-1]][key] = _mtl_value(value)
    if "PRODUCT_CONTENTS" not in groups and "PRODUCT_METADATA" not in groups:
        raise CorruptFileError(
            f"{path} is not a Landsat Collection 2 MTL file (no PRODUCT_CONTENTS group)."
        )
    return groups


def _mtl_value(value: str) -> object:
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    try:
        return int(value) if re.fullmatch(r"[+-]?\d+", value) else float(value)
    except ValueError:
        return value


def _mtl_find(mtl: Mapping[str, Mapping[str, object]], group: str, key: str, default=None):
    return mtl.get(group, {}).get(key, default)


def open_product(mtl_path: Path, sensor_id, chunks, product) -> xr.DataArray:
    mtl = read_mtl(mtl_path)
    folder = mtl_path.parent
    contents = mtl.get("PRODUCT_CONTENTS", {})
    attrs_grp = mtl.get("IMAGE_ATTRIBUTES", {})
    sid = pick_sensor(sensor_id, [
        ("the MTL's SPACECRAFT_ID", guess_sensor(str(attrs_grp.get("SPACECRAFT_ID", "")))),
        ("the MTL's product id", guess_sensor(str(contents.get("LANDSAT_PRODUCT_ID", "")))),
        ("the MTL file name", guess_sensor(mtl_path.name))], mtl_path)
    if sid is None:
        raise UnknownSensorError(
            f"Cannot tell the sensor of {mtl_path}; pass sensor='landsat8' (or landsat9/landsat7)."
        )
    sensor = get_sensor(sid)
    level = str(contents.get("PROCESSING_LEVEL", ""))
    prod = product or ("l2sp" if level.startswith("L2") else "l1")
    files: dict[str, Path] = {}
    for key, fname in contents.items():
        m = re.fullmatch(r"FILE_NAME_BAND_(\d+)", key)
        if m and (folder / str(fname)).is_file():
            files[sensor.normalize(m.group(1))] = folder / str(fname)
    if not files:  # MTL without file names: look for the usual patterns
        for f in sorted(folder.iterdir()):
            if f.suffix.upper() in (".TIF", ".TIFF") and (b := band_from_filename(f, sensor)):
                files[b] = f
    if not files:
        raise DataNotFoundError(
            f"No band files found next to {mtl_path}. The product folder must hold the band "
            "GeoTIFFs listed in the MTL (…_SR_B3.TIF and so on)."
        )
    order = [b for b in sensor.band_names if b in files]
    sun_elev = float(attrs_grp.get("SUN_ELEVATION", 90.0))
    layers = []
    first_shape = peek_shape(files[order[0]])
    use_chunks = auto_chunks(chunks, (len(order),) + first_shape[1:])
    for band in order:
        num = re.sub(r"\D", "", band)
        if prod == "l2sp":
            grp = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"
            scale = _mtl_find(mtl, grp, f"REFLECTANCE_MULT_BAND_{num}")
            offset = _mtl_find(mtl, grp, f"REFLECTANCE_ADD_BAND_{num}")
            defaults = sensor.scaling("l2sp")
            scale = float(defaults["scale"] if scale is None else scale)
            offset = float(defaults["offset"] if offset is None else offset)
        else:
            grp = "LEVEL1_RADIOMETRIC_RESCALING"
            scale = _mtl_find(mtl, grp, f"REFLECTANCE_MULT_BAND_{num}")
            offset = _mtl_find(mtl, grp, f"REFLECTANCE_ADD_BAND_{num}")
            if scale is None or offset is None:
                raise CorruptFileError(
                    f"{mtl_path} has no {grp} REFLECTANCE_MULT/ADD for band {num}; cannot convert "
                    "the Level-1 DNs to reflectance."
                )
            # Top-of-atmosphere reflectance with the sun-elevation correction.
            s = math.sin(math.radians(sun_elev))
            scale, offset = float(scale) / s, float(offset) / s
        layer = open_raster(files[band], chunks=use_chunks)
        layers.append(scale_dn(layer, scale, offset, nodata=0))
    da = stack_bands(
        layers, order, sensor,
        {
            "sensor": sensor.id,
            "product": prod,
            "date": str(attrs_grp.get("DATE_ACQUIRED", "")) or None,
            "scene_id": str(contents.get("LANDSAT_PRODUCT_ID", mtl_path.stem.replace("_MTL", ""))),
            "source": str(folder),
            "sun_elevation": sun_elev,
            "level": product_level(prod),
            "level_from": (f"the MTL's PROCESSING_LEVEL {level}" if level and not product
                           else f"product={product!r}" if product else "the product's MTL"),
        },
    )
    if not has_georef(layers[0]):
        da = _georef_from_mtl(da, mtl, mtl_path)
    return da


def _georef_from_mtl(da: xr.DataArray, mtl, mtl_path: Path) -> xr.DataArray:
    proj = mtl.get("PROJECTION_ATTRIBUTES", {})
    if str(proj.get("MAP_PROJECTION", "")) != "UTM" or "UTM_ZONE" not in proj:
        raise NotGeoreferencedError(
            f"The band files next to {mtl_path} carry no georeference and the MTL's projection "
            f"({proj.get('MAP_PROJECTION')!r}) is not UTM, so it cannot be rebuilt. Use the "
            "original, georeferenced band files."
        )
    res = float(proj.get("GRID_CELL_SIZE_REFLECTIVE", 30.0))
    lines = int(proj.get("REFLECTIVE_LINES", da.sizes["y"]))
    samples = int(proj.get("REFLECTIVE_SAMPLES", da.sizes["x"]))
    if (lines, samples) != (da.sizes["y"], da.sizes["x"]):
        raise NotGeoreferencedError(
            f"The band files next to {mtl_path} carry no georeference and their size "
            f"{da.sizes['y']}x{da.sizes['x']} differs from the MTL's {lines}x{samples}."
        )
    # MTL corners are pixel centres; Landsat uses northern UTM zones (negative y in the south).
    ulx = float(proj["CORNER_UL_PROJECTION_X_PRODUCT"]) - res / 2
    uly = float(proj["CORNER_UL_PROJECTION_Y_PRODUCT"]) + res / 2
    crs = f"EPSG:{32600 + int(proj['UTM_ZONE'])}"
    log.info("Georeference of %s rebuilt from the MTL: %s, UL (%s, %s)", mtl_path, crs, ulx, uly)
    da = apply_georef(da, crs, (ulx, uly), res)
    da.attrs["georeference"] = "from MTL corners"
    return da


# --------------------------------------------------------------------------- QA bands
def qa_masks(qa_pixel, layers: Sequence[str] | None = None) -> xr.Dataset:
    """Decode a Landsat Collection 2 ``QA_PIXEL`` band into boolean layers.

    Parameters
    ----------
    qa_pixel
        A DataArray of the QA_PIXEL band (``(y, x)`` or ``(1, y, x)``) or a path to it.
    layers
        Names to decode (default: all of :data:`QA_BITS`: fill, dilated_cloud, cirrus,
        cloud, cloud_shadow, snow, clear, water).

    Returns
    -------
    xarray.Dataset
        One boolean variable per layer on the QA grid, CRS kept. Works lazily on dask.
    """
    if not isinstance(qa_pixel, xr.DataArray):
        path = Path(qa_pixel)
        count, h, w = peek_shape(path)
        qa_pixel = open_raster(path, chunks=auto_chunks(None, (count, h, w)))
    da = qa_pixel
    if "band" in da.dims:
        if da.sizes["band"] != 1:
            raise BandCountError(f"QA_PIXEL must have one band; this has {da.sizes['band']}.")
        da = da.squeeze("band", drop=True)
    if not np.issubdtype(da.dtype, np.integer):
        raise ParameterErrorForQA(da.dtype)
    names = list(layers) if layers is not None else list(QA_BITS)
    unknown = [n for n in names if n not in QA_BITS]
    if unknown:
        raise GlacierKitError(f"Unknown QA layers {unknown}. Valid: {list(QA_BITS)}.")
    out = xr.Dataset({n: ((da >> QA_BITS[n]) & 1).astype(bool) for n in names})
    crs = da.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs)
    out.attrs["source"] = "Landsat Collection 2 QA_PIXEL"
    return out


def ParameterErrorForQA(dtype) -> GlacierKitError:  # noqa: N802 - small factory
    return GlacierKitError(
        f"QA_PIXEL must hold integers (uint16 bit flags); got {dtype}. Pass the raw QA band, "
        "not a scaled or masked one."
    )
