"""Open scenes as reflectance, decode QA bands, write GeoTIFFs atomically.

:func:`open_scene` is the single way into glacierkit. Whatever the source (a Landsat
Collection 2 product folder or its ``_MTL.txt``, a multi-band GeoTIFF, a set of one-band
files, or a sample name), it returns an ``xarray.DataArray`` with dims
``("band", "y", "x")`` of float32 reflectance, a ``band`` coordinate of band names, a
``role`` coordinate (``blue``, ``green``, ``nir``, ``swir1`` ...), NaN for nodata, the CRS
and transform, and attrs ``sensor``, ``product``, ``date`` and ``scene_id``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from . import data as _data
from .bands import ROLES, Sensor, get_sensor, normalize_band_name, select_bands
from .exceptions import (
    AllNodataError,
    BandCountError,
    CorruptFileError,
    DataNotFoundError,
    GlacierKitError,
    MissingCRSError,
    NotGeoreferencedError,
    ParameterError,
    ReflectanceRangeError,
    UnknownSensorError,
    UnsupportedGridError,
)

log = logging.getLogger(__name__)

__all__ = [
    "open_scene",
    "open_raster",
    "read_mtl",
    "qa_masks",
    "QA_BITS",
    "write_raster",
    "atomic_path",
    "write_table",
    "check_grid",
]

#: Pixels above which open_scene opens lazily with dask chunks when ``chunks`` is None.
LAZY_PIXELS = 64_000_000
DEFAULT_CHUNKS = {"band": 1, "y": 2048, "x": 2048}

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

_RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".vrt", ".img"}


# --------------------------------------------------------------------------- MTL files
def read_mtl(path: str | os.PathLike) -> dict[str, dict[str, object]]:
    """Parse a Landsat ``_MTL.txt`` file into ``{group: {key: value}}``.

    Numbers become floats or ints; quoted strings lose their quotes. Groups are flattened
    to their innermost name (``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS`` ...).
    """
    path = Path(path)
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


# --------------------------------------------------------------------------- low level
@contextmanager
def _quiet_georef():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def open_raster(path: str | os.PathLike, chunks=None, band: int | None = None) -> xr.DataArray:
    """Open one raster file read-only with rioxarray, turning I/O errors into clear ones.

    Values are returned as stored (no scaling, nodata not masked).
    """
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"Raster file not found: {path}. Check the path.")
    try:
        with _quiet_georef():
            da = rioxarray.open_rasterio(path, chunks=chunks, masked=False, lock=False
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


def _has_georef(da: xr.DataArray) -> bool:
    try:
        transform = da.rio.transform()
    except Exception:
        return False
    return da.rio.crs is not None and transform != Affine.identity()


def _apply_georef(da: xr.DataArray, crs: str, upper_left: tuple[float, float],
                  resolution: float) -> xr.DataArray:
    ny, nx = da.sizes["y"], da.sizes["x"]
    x0, y0 = upper_left
    da = da.assign_coords(
        x=x0 + resolution * (np.arange(nx) + 0.5),
        y=y0 - resolution * (np.arange(ny) + 0.5),
    )
    da = da.rio.write_crs(crs)
    return da.rio.write_transform(Affine(resolution, 0, x0, 0, -resolution, y0))


def _name_crs(da: xr.DataArray, crs: str, path) -> xr.DataArray:
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


def _load(da: xr.DataArray, path) -> xr.DataArray:
    try:
        return da.load()
    except (RasterioIOError, rasterio.errors.RasterioError) as exc:
        raise CorruptFileError(
            f"Cannot read the pixels of {path} ({exc}). The file is corrupt or truncated: "
            "download or export it again."
        ) from exc


def _scale(da: xr.DataArray, scale: float, offset: float, nodata) -> xr.DataArray:
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


def _auto_chunks(chunks, shape: tuple[int, ...]):
    if chunks is False:
        return None
    if chunks is None:
        return DEFAULT_CHUNKS if math.prod(shape) > LAZY_PIXELS else None
    return chunks


def _peek_shape(path: Path) -> tuple[int, int, int]:
    try:
        with _quiet_georef(), rasterio.open(path) as src:
            return src.count, src.height, src.width
    except RasterioIOError as exc:
        raise CorruptFileError(
            f"Cannot read {path} as a raster ({exc}). The file may be corrupt or truncated."
        ) from exc


# --------------------------------------------------------------------------- assembling
def _stack(layers: list[xr.DataArray], names: list[str], sensor: Sensor | None,
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


def _finish(da: xr.DataArray, bands: Sequence[str] | None, source) -> xr.DataArray:
    if da.rio.crs is None:
        raise MissingCRSError(
            f"The scene {source} has no CRS. Set it with scene.rio.write_crs('EPSG:xxxx') and "
            "pass the DataArray, or re-export the file as a georeferenced GeoTIFF."
        )
    _check_grid_and_names(da, source)
    if not da.chunks:
        da = _load(da, source)  # once, turning read errors of truncated files into clear ones
    da = _mask_invalid(da)
    if bands is not None:
        da = select_bands(da, bands)
    if not da.chunks:
        if not bool(np.isfinite(da.values).any()):
            raise AllNodataError(
                f"The scene {source} holds no valid pixel: every value is nodata/NaN, infinite "
                "or zero in every band. Check the file, the bands and the nodata value."
            )
    _check_range(da, source)
    return da


def _check_grid_and_names(da: xr.DataArray, source) -> None:
    """Refuse grids glacierkit would place wrongly, and ambiguous band names."""
    try:
        t = da.rio.transform()
    except Exception:  # rioxarray cannot even compute one from the coordinates
        t = None
    if t is None or t == Affine.identity():
        raise NotGeoreferencedError(
            f"The scene {source} has a CRS but no georeference (no geotransform: pixel "
            "coordinates only), so its outputs would land at the origin of the CRS. Re-export "
            "it as a georeferenced GeoTIFF, or set the grid with scene.rio.write_transform(...)."
        )
    if t.b != 0 or t.d != 0:
        raise UnsupportedGridError(
            f"The scene {source} is on a rotated or sheared grid (geotransform {tuple(t)[:6]}); "
            "glacierkit works on north-up grids. Warp it first, e.g. gdalwarp -t_srs "
            "EPSG:<utm zone> in.tif out.tif."
        )
    if "band" in da.dims:
        names = [str(b) for b in da["band"].values]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise BandCountError(
                f"The scene {source} has bands named {twice} twice (bands {names}), so "
                "glacierkit cannot tell which is which. Give every band its own name "
                "(band_names=[...], --band-names on the command line)."
            )


def _check_dtype(dtype, source) -> None:
    if np.dtype(dtype).kind not in "uif":
        raise ReflectanceRangeError(
            f"{source} holds {np.dtype(dtype)} values (complex or not numeric); reflectance "
            "is real numbers. Export the bands as integers or floats."
        )


def _mask_invalid(da: xr.DataArray) -> xr.DataArray:
    """Nodata is NaN: besides the file's nodata value, every value that is not finite
    (±inf) and every pixel that is exactly zero in all bands (the fill of most exports).
    The input is never modified; a copy is made only when there is something to mask."""
    if "band" not in da.dims or not np.issubdtype(da.dtype, np.floating):
        return da
    if da.chunks:
        bad = (~np.isfinite(da)) | (da == 0).all("band")
        return da.where(~bad)
    values = da.values
    zero = (values == 0).all(axis=da.dims.index("band"))
    inf = np.isinf(values)
    if not zero.any() and not inf.any():
        return da
    bad = inf | np.expand_dims(zero, da.dims.index("band"))
    return da.copy(data=np.where(bad, np.float32(np.nan), values).astype(da.dtype))


#: Reflectance lies in about [-0.2, 1.6]; far outside means unscaled DNs or a wrong scale.
REFLECTANCE_RANGE = (-0.5, 2.0)
#: The fraction of valid pixels that may lie outside :data:`REFLECTANCE_RANGE`
#: (saturated pixels, hot spots).
OUT_OF_RANGE_FRACTION = 0.01


def _range_sample(da: xr.DataArray) -> np.ndarray:
    """Values to check the range on: at most about a million per band (a strided view in
    memory; for a lazy scene a 256 x 256 window at its centre, so little is read)."""
    ny, nx = da.sizes["y"], da.sizes["x"]
    if da.chunks:
        cy, cx, h = ny // 2, nx // 2, 128
        da = da.isel(y=slice(max(cy - h, 0), cy + h), x=slice(max(cx - h, 0), cx + h))
        return np.asarray(da.values)
    step = max(1, int(math.sqrt(ny * nx / 1_000_000)))
    return np.asarray(da.values)[..., ::step, ::step]


def _check_range(da: xr.DataArray, source) -> None:
    """Refuse values that cannot be reflectance (unscaled DNs, a wrong scale or offset):
    better an error naming the fix than a confident map of nonsense."""
    try:
        sample = _range_sample(da)
    except (RasterioIOError, rasterio.errors.RasterioError) as exc:
        raise CorruptFileError(
            f"Cannot read the pixels of {source} ({exc}). The file is corrupt or truncated: "
            "download or export it again."
        ) from exc
    valid = sample[np.isfinite(sample)]
    if valid.size == 0:
        return
    lo, hi = REFLECTANCE_RANGE
    above, below = float(np.mean(valid > hi)), float(np.mean(valid < lo))
    how = ("Pass the scaling: sensor= for a product of a known sensor (its DN scaling), or "
           "scale= and offset= (reflectance = DN * scale + offset; e.g. scale=0.0001 for "
           "Sentinel-2 DNs, scale=2.75e-05 and offset=-0.2 for Landsat Collection 2 L2; "
           "on the command line --sensor, --scale, --offset).")
    if above > OUT_OF_RANGE_FRACTION:
        raise ReflectanceRangeError(
            f"{above:.0%} of the pixels of {source} are above {hi} (largest "
            f"{float(valid.max()):.6g}), but reflectance lies between 0 and about 1.5: these "
            f"look like unscaled digital numbers. {how}"
        )
    if below > OUT_OF_RANGE_FRACTION:
        raise ReflectanceRangeError(
            f"{below:.0%} of the pixels of {source} are below {lo} (smallest "
            f"{float(valid.min()):.6g}); reflectance is not negative beyond rounding. The "
            f"scaling or the nodata value is wrong. {how}"
        )


# --------------------------------------------------------------------------- sources
def _guess_sensor(text: str) -> str | None:
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
    return name[: -len(suffix)] if suffix in _RASTER_SUFFIXES else name.split(".")[0]


def _band_from_filename(path: Path, sensor: Sensor) -> str | None:
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


def _guess_hls(text: str) -> str | None:
    """``landsat8``/``sentinel2`` for HLS-style names (``L30``/``S30`` tokens), else None."""
    tokens = {t.upper() for t in re.split(r"[_\-./\\ ]", text)}
    if "L30" in tokens:
        return "landsat8"
    if "S30" in tokens:
        return "sentinel2"
    return None


def _pick_sensor(given, evidence: Sequence[tuple[str, str | None]], source) -> str | None:
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


_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})(?=[_.]|$)")


def _s2_baseline(given, text: str, tags: Mapping[str, str], source) -> str | None:
    """The Sentinel-2 processing baseline (``"04.00"``) from ``baseline=``, the file's
    metadata or the product name (``..._N0400_...``); ``None`` when nothing says."""
    if given is not None:
        if not re.fullmatch(r"\d{1,2}\.\d{2}", str(given).strip()):
            raise ParameterError(
                f"baseline={given!r}: give the Sentinel-2 processing baseline as NN.NN, e.g. "
                "'04.00' (the product name's N0400) or '02.14'."
            )
        return str(given).strip()
    for key, value in tags.items():
        k = key.upper()
        if k in ("PROCESSING_BASELINE", "BASELINE"):
            m = re.search(r"(\d{1,2})\.?(\d{2})", str(value))
            if m:
                return f"{int(m.group(1)):02d}.{m.group(2)}"
        if k.startswith(("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")):
            try:  # the offset itself: -1000 from baseline 04.00 on
                return "04.00" if float(value) <= -1000 else "00.00"
            except ValueError:
                pass
    m = _BASELINE_RE.search(text.upper())
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return None


def _dn_scaling(sensor: Sensor | None, product, dtype, source, rad: Mapping | None,
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
        baseline = _s2_baseline(rad.get("baseline"), text, tags or {}, source)
        if baseline is None:
            log.warning(
                "The Sentinel-2 processing baseline of %s is unknown: assuming before 04.00 "
                "(no -1000 DN offset). Products processed with baseline 04.00 or later (from "
                "25 January 2022, product names with N0400 and up) need baseline='04.00' "
                "(--baseline 04.00), else reflectance is 0.1 too high.", source)
        attrs["processing_baseline"] = baseline or "unknown (read as before 04.00)"
    return sensor.scaling(product, baseline), attrs


def _open_landsat_product(mtl_path: Path, sensor_id, chunks, product) -> xr.DataArray:
    mtl = read_mtl(mtl_path)
    folder = mtl_path.parent
    contents = mtl.get("PRODUCT_CONTENTS", {})
    attrs_grp = mtl.get("IMAGE_ATTRIBUTES", {})
    sid = _pick_sensor(sensor_id, [
        ("the MTL's SPACECRAFT_ID", _guess_sensor(str(attrs_grp.get("SPACECRAFT_ID", "")))),
        ("the MTL's product id", _guess_sensor(str(contents.get("LANDSAT_PRODUCT_ID", "")))),
        ("the MTL file name", _guess_sensor(mtl_path.name))], mtl_path)
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
            if f.suffix.upper() in (".TIF", ".TIFF") and (b := _band_from_filename(f, sensor)):
                files[b] = f
    if not files:
        raise DataNotFoundError(
            f"No band files found next to {mtl_path}. The product folder must hold the band "
            "GeoTIFFs listed in the MTL (…_SR_B3.TIF and so on)."
        )
    order = [b for b in sensor.band_names if b in files]
    sun_elev = float(attrs_grp.get("SUN_ELEVATION", 90.0))
    layers = []
    first_shape = _peek_shape(files[order[0]])
    use_chunks = _auto_chunks(chunks, (len(order),) + first_shape[1:])
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
        layers.append(_scale(layer, scale, offset, nodata=0))
    da = _stack(
        layers, order, sensor,
        {
            "sensor": sensor.id,
            "product": prod,
            "date": str(attrs_grp.get("DATE_ACQUIRED", "")) or None,
            "scene_id": str(contents.get("LANDSAT_PRODUCT_ID", mtl_path.stem.replace("_MTL", ""))),
            "source": str(folder),
            "sun_elevation": sun_elev,
        },
    )
    if not _has_georef(layers[0]):
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
    da = _apply_georef(da, crs, (ulx, uly), res)
    da.attrs["georeference"] = "from MTL corners"
    return da


def _open_sample(name: str, sensor_id, chunks, product) -> xr.DataArray:
    if name == "landsat8-l2sp":
        folder = _data.fetch_product("landsat8-l2sp")
        mtl = next(folder.glob("*_MTL.txt"))
        return _open_landsat_product(mtl, sensor_id, chunks, product)
    entry = _data.get_scene(name)
    sensor = get_sensor(_pick_sensor(sensor_id, [("the sample registry", entry.sensor)], name))
    scaling = sensor.scaling(product or entry.product)  # samples predate baseline 04.00
    layers, names = [], []
    for band, rel in entry.files.items():
        path = _data.fetch(rel)
        index = int(rel.split("#", 1)[1]) if "#" in rel else None
        layer = open_raster(path, chunks=chunks or None, band=index)
        if entry.crs is not None and not _has_georef(layer):
            layer = _apply_georef(layer, entry.crs, entry.upper_left, entry.resolution)
        elif entry.crs is not None and layer.rio.crs is not None:
            layer = _name_crs(layer, entry.crs, path)
        layers.append(_scale(layer, scaling["scale"], scaling["offset"], scaling.get("nodata")))
        names.append(sensor.normalize(band))
    order = sorted(range(len(names)), key=lambda i: sensor.band_names.index(names[i]))
    layers = [layers[i] for i in order]
    names = [names[i] for i in order]
    if entry.shape is not None and (layers[0].sizes["y"], layers[0].sizes["x"]) != entry.shape:
        raise CorruptFileError(
            f"Sample {name}: expected {entry.shape[0]}x{entry.shape[1]} pixels, got "
            f"{layers[0].sizes['y']}x{layers[0].sizes['x']}. The cached file is wrong; delete it."
        )
    attrs = {"sensor": sensor.id, "product": product or entry.product, "date": entry.date,
             "scene_id": entry.name, "source": "glacierkit sample " + entry.name,
             "split": entry.split, **entry.notes}
    return _stack(layers, names, sensor, attrs)


def _open_files(paths: Sequence[Path] | Mapping[str, Path], sensor_id, chunks, product,
                band_names, rad: Mapping | None = None) -> xr.DataArray:
    if isinstance(paths, Mapping):
        items = [(str(k), Path(v)) for k, v in paths.items()]
    else:
        items = [(None, Path(p)) for p in paths]
    names_text = " ".join(p.name for _, p in items)
    hls = _guess_hls(names_text)
    # HLS L30 comes from Landsat 8 and 9: a default, not evidence against sensor=
    sid = _pick_sensor(sensor_id, [("the file names", _guess_sensor(names_text))],
                       [str(p) for _, p in items]) or hls
    if hls is not None and product is None:
        product = "hls"  # int16 x 10000 with -9999 fill, whatever the sensor
    if sid is None:
        raise UnknownSensorError(
            f"Cannot tell the sensor of {[str(p) for _, p in items]}; pass sensor= (--sensor "
            "on the command line: landsat8, landsat9, landsat7, sentinel2)."
        )
    sensor = get_sensor(sid)
    if band_names is not None:
        if len(band_names) != len(items):
            raise BandCountError(
                f"{len(band_names)} band names given for {len(items)} files; give one per file."
            )
        items = [(b, p) for b, (_, p) in zip(band_names, items, strict=True)]
    names, files = [], []
    for band, path in items:
        if band is None:
            band = _band_from_filename(path, sensor)
            if band is None:
                raise BandCountError(
                    f"Cannot tell which {sensor.name} band {path.name} is. Pass a dict "
                    f"{{band_name: path}} or band_names=[...]; valid bands: {sensor.band_names}."
                )
        names.append(sensor.normalize(band))
        files.append(path)
    order = sorted(range(len(names)), key=lambda i: sensor.band_names.index(names[i]))
    names, files = [names[i] for i in order], [files[i] for i in order]  # table order
    count, height, width = _peek_shape(files[0])
    use_chunks = _auto_chunks(chunks, (len(files), height, width))
    layers, extra = [], {}
    text = " ".join(str(p) for p in files)
    for path in files:
        layer = open_raster(path, chunks=use_chunks)
        if layer.sizes["band"] != 1:
            raise BandCountError(
                f"{path} has {layer.sizes['band']} bands; a set of files must be one band each. "
                "Open a multi-band file on its own."
            )
        _check_dtype(layer.dtype, path)
        if not np.issubdtype(layer.dtype, np.floating):
            scaling, extra = _dn_scaling(sensor, product, layer.dtype, path, rad, text)
            layer = _scale(layer, scaling["scale"], scaling["offset"], scaling.get("nodata"))
        elif rad and rad.get("scale") is not None:
            layer = _scale(layer, float(rad["scale"]), float(rad.get("offset") or 0.0), None)
        else:
            layer = _scale(layer, 1.0, 0.0, None)
        layers.append(layer)
    return _stack(layers, names, sensor, {"sensor": sensor.id, "product": product or
                                          sensor.default_product, "scene_id": files[0].stem,
                                          "source": str(files[0].parent), **extra})


def _open_multiband(path: Path, sensor_id, chunks, product, band_names,
                    rad: Mapping | None = None) -> xr.DataArray:
    with _quiet_georef():
        try:
            with rasterio.open(path) as src:
                descriptions = list(src.descriptions)
                tags = src.tags()
                count, height, width = src.count, src.height, src.width
                dtype = src.dtypes[0]
        except RasterioIOError as exc:
            raise CorruptFileError(
                f"Cannot read {path} as a raster ({exc}). The file may be corrupt, truncated or "
                "not a raster: download it again or re-export it."
            ) from exc
    sid = _pick_sensor(sensor_id, [("its 'sensor' tag", tags.get("sensor")),
                                   ("its file name", _guess_sensor(path.name))], path)
    sensor = get_sensor(sid) if sid else None
    names = list(band_names) if band_names is not None else descriptions
    if band_names is not None and len(band_names) != count:
        raise BandCountError(
            f"{path} has {count} bands but {len(band_names)} band names were given "
            f"({list(band_names)}). Give exactly one name per band (band_names= or "
            "--band-names)."
        )
    if any(n is None or n == "" for n in names):
        raise BandCountError(
            f"{path} has {count} band(s) without descriptions, so glacierkit cannot tell which "
            "is which. Pass band_names=[...] (--band-names on the command line): band names "
            f"such as 'B3' with sensor= (--sensor), or roles such as {list(ROLES)}."
        )
    if sensor is None and not all(n in ROLES for n in names):
        raise UnknownSensorError(
            f"Cannot tell the sensor of {path} (bands {names}). Pass sensor= (--sensor on the "
            "command line: landsat8, landsat9, landsat7, sentinel2), or name the bands by role."
        )
    if sensor is not None and all(n in ROLES for n in names):
        names = [sensor.band_for_role(n) for n in names]
    elif sensor is not None:
        names = [sensor.normalize(n) for n in names]
    _check_dtype(dtype, path)
    use_chunks = _auto_chunks(chunks, (count, height, width))
    raw = open_raster(path, chunks=use_chunks)
    is_float = np.issubdtype(np.dtype(dtype), np.floating)
    extra = {}
    if is_float and rad and rad.get("scale") is not None:
        scaled = _scale(raw, float(rad["scale"]), float(rad.get("offset") or 0.0), None)
    elif is_float:
        scaled = _scale(raw, 1.0, 0.0, None)
    else:
        scaling, extra = _dn_scaling(sensor, product, dtype, path, rad, str(path), tags)
        scaled = _scale(raw, scaling["scale"], scaling["offset"], scaling.get("nodata"))
        if scaling["offset"] != 0.0:  # raw zeros in every band are fill, not -offset
            scaled = scaled.where(~(raw == 0).all("band"))
    layers = [scaled.isel(band=[i]) for i in range(count)]
    attrs = {**extra, "sensor": sensor.id if sensor else "generic",
             "product": tags.get("product") or product or (sensor.default_product if sensor
                                                           else None),
             "date": tags.get("date"), "scene_id": tags.get("scene_id", path.stem),
             "source": str(path)}
    return _stack(layers, names, sensor, attrs)


def _read_errors_are_clear(func):
    """Turn GDAL read errors met anywhere while opening (a file truncated in its data,
    a damaged tile) into one :class:`CorruptFileError` naming the source."""

    @functools.wraps(func)
    def wrapper(source, *args, **kwargs):
        try:
            return func(source, *args, **kwargs)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            raise CorruptFileError(
                f"Cannot read the pixels of {source} ({' '.join(str(exc).split())}). The file "
                "is corrupt or truncated: download or export it again."
            ) from exc

    return wrapper


@_read_errors_are_clear
def open_scene(
    source,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    *,
    chunks=None,
    product: str | None = None,
    band_names: Sequence[str] | None = None,
    scale: float | None = None,
    offset: float | None = None,
    baseline: str | None = None,
) -> xr.DataArray:
    """Open a scene as float32 reflectance with bands known by role.

    Parameters
    ----------
    source
        One of: a sample name (``"alps-s2/aletsch"``, ``"everest-l7"``,
        ``"landsat8-l2sp"``; see :func:`glacierkit.data.scene_names`); a Landsat Collection 2
        product folder or its ``_MTL.txt``; a multi-band GeoTIFF whose band descriptions
        name the bands (``B3`` ... or roles); a list of one-band files (band names from the
        file names) or a dict ``{band: path}``; or a DataArray (checked and returned).
    sensor
        ``landsat8``, ``landsat9``, ``landsat7`` or ``sentinel2``. Guessed from product ids
        and file names when omitted.
    bands
        Roles or band names to keep, in order, e.g. ``("swir1", "nir", "blue")``.
    chunks
        Dask chunks. ``None`` opens lazily (2048-pixel chunks) only scenes over 64 Mpx;
        ``False`` always loads; a dict or int is passed to rioxarray.
    product
        Product level for scaling (``l2sp``, ``l1``, ``l2a``, ``l1c``, ``display``).
    band_names
        Names for the bands of a multi-band file without descriptions (or for a list of
        files whose names do not tell).
    scale, offset
        ``reflectance = DN * scale + offset`` for files whose scaling glacierkit cannot
        know (integer GeoTIFFs without a sensor, such as Earth Engine exports); overrides
        the sensor's product scaling. Not for Landsat product folders (the MTL says).
    baseline
        Sentinel-2 processing baseline (``"04.00"``: DN = 10000 reflectance + 1000) when
        neither the product name (``_N0400_``) nor the file's metadata says.

    Values that cannot be reflectance (more than 1% of the pixels above 2 or below -0.5)
    are refused with :class:`~glacierkit.exceptions.ReflectanceRangeError`. Nodata is NaN:
    the file's nodata value, non-finite values and pixels that are zero in every band.

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` float32 reflectance, NaN for nodata, with ``band``, ``role`` and
        ``wavelength`` coordinates, CRS and transform, and attrs ``sensor``, ``product``,
        ``date``, ``scene_id``.

    Examples
    --------
    >>> scene = open_scene("alps-s2/aletsch", bands=("swir1", "nir", "blue"))  # doctest: +SKIP
    >>> list(scene.role.values)  # doctest: +SKIP
    ['swir1', 'nir', 'blue']
    """
    rad = {"scale": scale, "offset": offset, "baseline": baseline}
    if isinstance(source, xr.DataArray):
        da = source
        if "band" not in da.dims:
            raise BandCountError(f"A scene needs a 'band' dimension; this one has {da.dims}.")
        return _finish(da, bands, da.attrs.get("scene_id", "DataArray"))
    if isinstance(source, (list, tuple, Mapping)):
        da = _open_files(source, sensor, chunks, product, band_names, rad)
        return _finish(da, bands, da.attrs["source"])
    text = str(source)
    if not Path(text).exists() and (text.lower() in _data.SCENES or text == "landsat8-l2sp"):
        _no_radiometry(rad, f"the sample {text!r}")
        da = _open_sample(text.lower(), sensor, chunks, product)
        return _finish(da, bands, text)
    path = Path(text).expanduser()
    if not path.exists():
        if "/" not in text.strip("/") or text.split("/")[0] in {s.split("/")[0] for s in
                                                                 _data.SCENES}:
            raise DataNotFoundError(
                f"{text!r} is neither a file nor a sample scene. Sample scenes: "
                f"{_data.scene_names()}."
            )
        raise DataNotFoundError(f"Scene not found: {path}. Check the path.")
    if path.is_dir():
        mtls = sorted(path.glob("*_MTL.txt"))
        if not mtls:
            rasters = sorted(p for p in path.iterdir() if p.suffix.lower() in _RASTER_SUFFIXES)
            if not rasters:
                raise DataNotFoundError(
                    f"{path} holds no _MTL.txt and no raster files. Give a Landsat product "
                    "folder, a GeoTIFF or a list of band files."
                )
            da = _open_files(rasters, sensor, chunks, product, band_names, rad)
            if str(da.attrs.get("sensor", "")).startswith("landsat"):
                if da.rio.crs is None:
                    raise NotGeoreferencedError(
                        f"{path} holds Landsat band files but no _MTL.txt, and the bands carry "
                        "no georeference of their own. Put the product's _MTL.txt back beside "
                        "them (it gives the grid and the scaling), or open the original "
                        "product folder."
                    )
                log.warning("%s has no _MTL.txt: the default %s scaling of %s is used.", path,
                            da.attrs.get("product"), da.attrs.get("sensor"))
        else:
            _no_radiometry(rad, f"the Landsat product {path}")
            da = _open_landsat_product(mtls[0], sensor, chunks, product)
    elif path.name.upper().endswith("_MTL.TXT"):
        _no_radiometry(rad, f"the Landsat product {path}")
        da = _open_landsat_product(path, sensor, chunks, product)
    elif path.suffix.lower() in _RASTER_SUFFIXES:
        if path.suffix.lower() == ".jp2" and not _has_georef(open_raster(path)):
            raise NotGeoreferencedError(
                f"{path} is a JPEG2000 file without georeference and no sample registry entry "
                "covers it. Open it with glacierkit and set the grid with "
                "scene.rio.write_crs(...) and scene.rio.write_transform(...), or export it as "
                "a georeferenced GeoTIFF."
            )
        da = _open_multiband(path, sensor, chunks, product, band_names, rad)
    else:
        raise DataNotFoundError(
            f"Do not know how to open {path} (suffix {path.suffix!r}). Give a GeoTIFF, a "
            "JPEG2000 file, a Landsat product folder or its _MTL.txt."
        )
    if da.rio.crs is None:
        raise MissingCRSError(
            f"{path} has no CRS. Set it with scene.rio.write_crs('EPSG:xxxx') or re-export the "
            "file as a georeferenced GeoTIFF."
        )
    return _finish(da, bands, path)


def _no_radiometry(rad: Mapping, what: str) -> None:
    given = {k: v for k, v in rad.items() if v is not None}
    if given:
        raise ParameterError(
            f"{', '.join(f'{k}={v!r}' for k, v in given.items())} cannot be used with {what}: "
            "its metadata give the scaling. Leave them out."
        )


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
        count, h, w = _peek_shape(path)
        qa_pixel = open_raster(path, chunks=_auto_chunks(None, (count, h, w)))
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


# --------------------------------------------------------------------------- writing
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files: give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    """
    from rasterio.shutil import copy as rio_copy

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
    with atomic_path(path) as final_tmp:
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
    return path


def check_grid(a: xr.DataArray, b: xr.DataArray, what: str = "layer") -> None:
    """Raise if ``b`` is not on exactly the grid (shape, transform, CRS) of ``a``."""
    same = (
        a.sizes["y"] == b.sizes["y"]
        and a.sizes["x"] == b.sizes["x"]
        and a.rio.crs == b.rio.crs
        and np.allclose(tuple(a.rio.transform())[:6], tuple(b.rio.transform())[:6])
    )
    if not same:
        raise GlacierKitError(
            f"The {what} is not on the scene's grid: {b.sizes['y']}x{b.sizes['x']} "
            f"{b.rio.crs} {tuple(b.rio.transform())[:6]} vs {a.sizes['y']}x{a.sizes['x']} "
            f"{a.rio.crs} {tuple(a.rio.transform())[:6]}. Align it with "
            "glacierkit.labels.align_raster(layer, like=scene)."
        )
