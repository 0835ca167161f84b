"""Reading raster files: one file, its scaling, its sensor, and the bands as a scene.

The building blocks of :func:`glacierkit.open_scene`: :func:`open_raster` opens one file
read-only (I/O errors become clear ones), :func:`dn_scaling` says how integer DNs become
reflectance (the product's table, an explicit scale/offset, or a refusal that names the
fix), :func:`guess_sensor` / :func:`pick_sensor` read the sensor from names and metadata
(checking a given ``sensor=`` against them), and :func:`stack_bands` assembles one-band
layers into a ``(band, y, x)`` scene with band names, roles and wavelengths.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from ..bands import ROLES, Sensor, get_sensor, normalize_band_name
from ..exceptions import (
    BandCountError,
    CorruptFileError,
    DataNotFoundError,
    ParameterError,
    ReflectanceRangeError,
)
from .archive import is_vsi
from .sentinel2 import s2_baseline

log = logging.getLogger(__name__)

__all__ = ["open_raster", "UNKNOWN_BASELINE", "guess_sensor_from_bands"]

#: Pixels above which open_scene opens lazily with dask chunks when ``chunks`` is None.
LAZY_PIXELS = 64_000_000
DEFAULT_CHUNKS = {"band": 1, "y": 2048, "x": 2048}

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".vrt", ".img"}

# glacierkit checks the georeference of every file it opens (has_georef): a missing one is
# rebuilt from the MTL or the sample registry, or is an error that says so. Rasterio's
# warning about it would come again at every lazy read of the file (in Dask's threads,
# where catch_warnings cannot reach), so it is ignored for the whole process.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio")


# --------------------------------------------------------------------------- low level
@contextmanager
def quiet_georef():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def open_raster(path: str | os.PathLike, chunks=None, band: int | None = None) -> xr.DataArray:
    """Open one raster file read-only with rioxarray, turning I/O errors into clear ones.

    Values are returned as stored (no scaling, nodata not masked). ``path`` may be a file
    in a tar archive (:class:`glacierkit.io.archive.ArchiveMember`, read with ``/vsitar/``).
    """
    path = path if is_vsi(path) else Path(path)
    if not path.exists():
        raise DataNotFoundError(f"Raster file not found: {path}. Check the path.")
    try:
        with quiet_georef():
            da = rioxarray.open_rasterio(os.fspath(path), chunks=chunks, masked=False, lock=False
                                         if chunks else None, cache=False)
    except RasterioIOError as exc:
        raise CorruptFileError(
            f"Cannot read {path} as a raster ({exc}). The file may be corrupt, truncated or "
            "not a raster: download it again or re-export it as a GeoTIFF."
        ) from exc
    if isinstance(da, list):  # subdatasets
        raise CorruptFileError(f"{path} holds several subdatasets; open one of them directly.")
    if band is not None:
        if band < 1 or band > da.sizes["band"]:
            raise BandCountError(
                f"{path} has {da.sizes['band']} band(s); band {band} was asked for."
            )
        da = da.isel(band=[band - 1])
    return da


def has_georef(da: xr.DataArray) -> bool:
    try:
        transform = da.rio.transform()
    except Exception:
        return False
    return da.rio.crs is not None and transform != Affine.identity()


def apply_georef(da: xr.DataArray, crs: str, upper_left: tuple[float, float],
                  resolution: float) -> xr.DataArray:
    ny, nx = da.sizes["y"], da.sizes["x"]
    x0, y0 = upper_left
    da = da.assign_coords(
        x=x0 + resolution * (np.arange(nx) + 0.5),
        y=y0 - resolution * (np.arange(ny) + 0.5),
    )
    da = da.rio.write_crs(crs)
    return da.rio.write_transform(Affine(resolution, 0, x0, 0, -resolution, y0))


def name_crs(da: xr.DataArray, crs: str, path) -> xr.DataArray:
    """Replace a CRS that equals ``crs`` but lacks its code (a bare WKT) by ``crs`` itself."""
    from pyproj import CRS

    want = CRS.from_user_input(crs)
    have = CRS.from_user_input(da.rio.crs.to_wkt())
    if have.to_epsg(min_confidence=20) != want.to_epsg():
        raise CorruptFileError(
            f"{path} has the CRS {have.name!r}, not {crs} as registered for this sample. The "
            "cached file is wrong; delete it so it is downloaded again."
        )
    return da.rio.write_crs(crs)


def scale_dn(da: xr.DataArray, scale: float, offset: float, nodata) -> xr.DataArray:
    """DN -> float32 reflectance, with nodata (and the file's fill) as NaN."""
    fill = da.rio.nodata if hasattr(da, "rio") else None
    out = da.astype("float32")
    bad = None
    for value in {v for v in (nodata, fill) if v is not None and not _isnan(v)}:
        bad = (da == value) if bad is None else (bad | (da == value))
    if scale != 1.0 or offset != 0.0:
        out = out * np.float32(scale) + np.float32(offset)
    if bad is not None:
        out = out.where(~bad)
    out.attrs = {}
    out.encoding = {}
    return out.astype("float32")


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def auto_chunks(chunks, shape: tuple[int, ...]):
    if chunks is False:
        return None
    if chunks is None:
        return DEFAULT_CHUNKS if math.prod(shape) > LAZY_PIXELS else None
    return chunks


def peek_shape(path: Path) -> tuple[int, int, int]:
    try:
        with quiet_georef(), rasterio.open(path) as src:
            return src.count, src.height, src.width
    except RasterioIOError as exc:
        raise CorruptFileError(
            f"Cannot read {path} as a raster ({exc}). The file may be corrupt or truncated."
        ) from exc


# --------------------------------------------------------------------------- assembling
def stack_bands(layers: list[xr.DataArray], names: list[str], sensor: Sensor | None,
           attrs: dict) -> xr.DataArray:
    ref = layers[0]
    for name, layer in zip(names, layers, strict=True):
        if layer.sizes["y"] != ref.sizes["y"] or layer.sizes["x"] != ref.sizes["x"]:
            raise BandCountError(
                f"Band {name} has shape {layer.sizes['y']}x{layer.sizes['x']} but "
                f"{names[0]} has {ref.sizes['y']}x{ref.sizes['x']}. Resample the bands to one "
                "grid first (e.g. with rioxarray's reproject_match)."
            )
    da = xr.concat([layer.squeeze("band", drop=True) for layer in layers], dim="band",
                   coords="minimal", compat="override", join="override")
    roles = sensor.roles_of(names) if sensor is not None else [
        n if n in ROLES else "" for n in names]
    coords = {"band": names, "role": ("band", roles)}
    if sensor is not None:
        coords["wavelength"] = ("band", [sensor.wavelength(n) for n in names])
    da = da.assign_coords(coords)
    crs = ref.rio.crs
    if crs is not None:
        da = da.rio.write_crs(crs)
        da = da.rio.write_transform(ref.rio.transform())
    da.attrs = {k: v for k, v in attrs.items() if v is not None}
    da.name = "reflectance"
    return da


def check_dtype(dtype, source) -> None:
    if np.dtype(dtype).kind not in "uif":
        raise ReflectanceRangeError(
            f"{source} holds {np.dtype(dtype)} values (complex or not numeric); reflectance "
            "is real numbers. Export the bands as integers or floats."
        )


# --------------------------------------------------------------------------- sources
#: ``processing_baseline`` of a Sentinel-2 scene whose files do not say it.
UNKNOWN_BASELINE = "unknown"


def guess_sensor_from_bands(names) -> str | None:
    """``"sentinel2"`` for band names only Sentinel-2 uses: ``B8A``, or zero-padded names
    such as ``B01``/``B02`` (Landsat numbers its bands ``B1``...``B11``); else None."""
    upper = {str(n).strip().upper() for n in names if n}
    if "B8A" in upper or any(re.fullmatch(r"B0\d", n) for n in upper):
        return "sentinel2"
    return None


def guess_sensor(text: str) -> str | None:
    t = text.upper()
    for pattern, sid in ((r"\bLC0?8|LANDSAT_8|(^|_)LC08_", "landsat8"),
                         (r"\bLC0?9|LANDSAT_9|(^|_)LC09_", "landsat9"),
                         (r"\bLE0?7|LANDSAT_7|(^|_)LE07_", "landsat7"),
                         (r"\bS2[ABC]_|SENTINEL[-_ ]?2|_MSIL[12]", "sentinel2")):
        if re.search(pattern, t):
            return sid
    return None


def _stem(path: Path) -> str:
    name = path.name
    suffix = path.suffix.lower()
    return name[: -len(suffix)] if suffix in RASTER_SUFFIXES else name.split(".")[0]


def band_from_filename(path: Path, sensor: Sensor) -> str | None:
    """The band a one-band file holds, from its name.

    Any ``_``/``-``/``.``-separated token ``B3``, ``B03``, ``SR_B3`` or ``B8A`` counts
    (``LC08_..._SR_B3.TIF``, HLS ``HLS.L30.T11UMT.2020229T183513.v2.0.B03.tif``,
    ``athabasca_2020229_B03_L30.tif``, ``athabasca_B03_20200911.tif``); else a bare
    trailing number (``.../Aletsch/3.jp2``).
    """
    stem = _stem(path)
    hits = {normalize_band_name(t, sensor.band_names)
            for t in re.split(r"[_\-.]", stem) if re.fullmatch(r"B\d{1,2}A?", t, re.IGNORECASE)}
    hits.discard(None)
    if len(hits) == 1:
        return hits.pop()
    if hits:
        return None  # several band-like tokens: ambiguous
    m = re.search(r"(?:^|[_\-.])(\d{1,2}A?)$", stem)
    return normalize_band_name(m.group(1), sensor.band_names) if m else None


def guess_hls(text: str) -> str | None:
    """``landsat8``/``sentinel2`` for HLS-style names (``L30``/``S30`` tokens), else None."""
    tokens = {t.upper() for t in re.split(r"[_\-./\\ ]", text)}
    if "L30" in tokens:
        return "landsat8"
    if "S30" in tokens:
        return "sentinel2"
    return None


def pick_sensor(given, evidence: Sequence[tuple[str, str | None]], source) -> str | None:
    """The sensor id: ``given`` (checked against the file's own evidence) or the first
    evidence. ``evidence`` is ``[(where, sensor id or None), ...]``."""
    found = [(where, get_sensor(sid).id) for where, sid in evidence if sid and sid != "generic"]
    if given is None or given == "":
        return found[0][1] if found else None
    sid = get_sensor(given).id
    for where, other in found:
        if other != sid:
            raise ParameterError(
                f"sensor={given!r} contradicts {where} of {source}, which says {other!r}; the "
                "band roles would be wrong (e.g. Landsat 7's B2 is green, Landsat 8's is "
                f"blue). Leave sensor out (it is read from the file) or pass sensor={other!r} "
                "(--sensor on the command line)."
            )
    return sid


def dn_scaling(sensor: Sensor | None, product, dtype, source, rad: Mapping | None,
                text: str = "", tags: Mapping[str, str] | None = None) -> tuple[dict, dict]:
    """How integer DNs of ``source`` become reflectance: ``(scaling, extra attrs)``.

    An explicit ``scale``/``offset`` wins. Otherwise the sensor's product table is used,
    with the Sentinel-2 baseline offset when the baseline is known. Integers without a
    sensor, and 8-bit values (a display stretch, never reflectance products), are refused
    with the way to pass the scaling.
    """
    rad = rad or {}
    if rad.get("scale") is not None or rad.get("offset") is not None:
        scale = 1.0 if rad.get("scale") is None else float(rad["scale"])
        return {"scale": scale, "offset": float(rad.get("offset") or 0.0), "nodata": None}, {
            "scaling": f"DN * {scale} + {float(rad.get('offset') or 0.0)} (given)"}
    how = ("Pass sensor= (landsat8, landsat9, landsat7, sentinel2: its product's DN scaling) "
           "or scale= and offset= (reflectance = DN * scale + offset, e.g. scale=0.0001 for "
           "Sentinel-2, scale=2.75e-05 and offset=-0.2 for Landsat Collection 2 L2); on the "
           "command line --sensor or --scale/--offset.")
    if sensor is None:
        raise ReflectanceRangeError(
            f"{source} holds integers ({dtype}) and does not say which sensor or scaling they "
            f"come from (a typical Earth Engine export), so they cannot be read as "
            f"reflectance. {how}"
        )
    level = (product or sensor.default_product).lower()
    if np.dtype(dtype).itemsize == 1 and level != "display":
        raise ReflectanceRangeError(
            f"{source} holds 8-bit values ({dtype}): a display stretch, not {sensor.name} "
            f"{level} reflectance (those are 16-bit). Export the reflectance bands, or, to use "
            "the stretch anyway, pass scale=1/255 (--scale 0.00392157)"
            + (", or product='display'." if "display" in sensor.products else ".")
        )
    attrs = {}
    baseline = None
    if level in sensor.products and "offset_from_baseline" in sensor.products[level]:
        baseline = s2_baseline(rad.get("baseline"), text, tags or {}, source)
        # unknown: the data decide (glacierkit.io.level.detect_offset, in open_scene)
        attrs["processing_baseline"] = baseline or UNKNOWN_BASELINE
    return sensor.scaling(product, baseline), attrs


def no_radiometry(rad: Mapping, what: str) -> None:
    given = {k: v for k, v in rad.items() if v is not None}
    if given:
        raise ParameterError(
            f"{', '.join(f'{k}={v!r}' for k, v in given.items())} cannot be used with {what}: "
            "its metadata give the scaling. Leave them out."
        )
