"""Open scenes as reflectance, decode QA bands, write GeoTIFFs atomically.

:func:`open_scene` is the single way into glacierkit. Whatever the source (a Landsat
Collection 2 product folder or its ``_MTL.txt``, a multi-band GeoTIFF, a set of one-band
files, or a sample name), it returns an ``xarray.DataArray`` with dims
``("band", "y", "x")`` of float32 reflectance, a ``band`` coordinate of band names, a
``role`` coordinate (``blue``, ``green``, ``nir``, ``swir1`` ...), NaN for nodata, the CRS
and transform, and attrs ``sensor``, ``product``, ``date`` and ``scene_id``.
"""

from __future__ import annotations

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
    UnknownSensorError,
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
    if bands is not None:
        da = select_bands(da, bands)
    if not da.chunks:
        if not bool(np.isfinite(da.values).any()):
            raise AllNodataError(
                f"The scene {source} holds no valid pixel: every value is nodata/NaN. Check the "
                "file, the bands and the nodata value."
            )
    return da


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


def _open_landsat_product(mtl_path: Path, sensor_id, chunks, product) -> xr.DataArray:
    mtl = read_mtl(mtl_path)
    folder = mtl_path.parent
    contents = mtl.get("PRODUCT_CONTENTS", {})
    attrs_grp = mtl.get("IMAGE_ATTRIBUTES", {})
    sid = sensor_id or _guess_sensor(str(attrs_grp.get("SPACECRAFT_ID", ""))) or _guess_sensor(
        mtl_path.name)
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
    sensor = get_sensor(entry.sensor)
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
                band_names) -> xr.DataArray:
    if isinstance(paths, Mapping):
        items = [(str(k), Path(v)) for k, v in paths.items()]
    else:
        items = [(None, Path(p)) for p in paths]
    names_text = " ".join(p.name for _, p in items)
    hls = _guess_hls(names_text)
    sid = sensor_id or _guess_sensor(names_text) or hls
    if hls is not None and product is None:
        product = "hls"  # int16 x 10000 with -9999 fill, whatever the sensor
    if sid is None:
        raise UnknownSensorError(
            f"Cannot tell the sensor of {[str(p) for _, p in items]}; pass sensor= (one of "
            "landsat8, landsat9, landsat7, sentinel2)."
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
    scaling = sensor.scaling(product)
    layers = []
    for path in files:
        layer = open_raster(path, chunks=use_chunks)
        if layer.sizes["band"] != 1:
            raise BandCountError(
                f"{path} has {layer.sizes['band']} bands; a set of files must be one band each. "
                "Open a multi-band file on its own."
            )
        if not np.issubdtype(layer.dtype, np.floating):
            layer = _scale(layer, scaling["scale"], scaling["offset"], scaling.get("nodata"))
        else:
            layer = _scale(layer, 1.0, 0.0, None)
        layers.append(layer)
    return _stack(layers, names, sensor, {"sensor": sensor.id, "product": product or
                                          sensor.default_product, "scene_id": files[0].stem,
                                          "source": str(files[0].parent)})


def _open_multiband(path: Path, sensor_id, chunks, product, band_names) -> xr.DataArray:
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
    sid = sensor_id or tags.get("sensor") or _guess_sensor(path.name)
    sensor = get_sensor(sid) if sid and sid != "generic" else None
    names = list(band_names) if band_names is not None else descriptions
    if band_names is not None and len(band_names) != count:
        raise BandCountError(
            f"{path} has {count} bands but {len(band_names)} band names were given "
            f"({list(band_names)}). Give exactly one name per band."
        )
    if any(n is None or n == "" for n in names):
        raise BandCountError(
            f"{path} has {count} band(s) without descriptions, so glacierkit cannot tell which "
            "is which. Pass band_names=[...] (band names such as 'B3' with sensor=, or roles "
            f"such as {list(ROLES)})."
        )
    if sensor is None and not all(n in ROLES for n in names):
        raise UnknownSensorError(
            f"Cannot tell the sensor of {path} (bands {names}). Pass sensor= (landsat8, "
            "landsat9, landsat7, sentinel2), or name the bands by role."
        )
    if sensor is not None and all(n in ROLES for n in names):
        names = [sensor.band_for_role(n) for n in names]
    elif sensor is not None:
        names = [sensor.normalize(n) for n in names]
    use_chunks = _auto_chunks(chunks, (count, height, width))
    raw = open_raster(path, chunks=use_chunks)
    is_float = np.issubdtype(np.dtype(dtype), np.floating)
    if is_float:
        scaled = _scale(raw, 1.0, 0.0, None)
    else:
        scaling = sensor.scaling(product) if sensor is not None else {"scale": 1.0, "offset": 0.0,
                                                                       "nodata": None}
        scaled = _scale(raw, scaling["scale"], scaling["offset"], scaling.get("nodata"))
    layers = [scaled.isel(band=[i]) for i in range(count)]
    attrs = {"sensor": sensor.id if sensor else "generic",
             "product": tags.get("product") or product or (sensor.default_product if sensor
                                                           else None),
             "date": tags.get("date"), "scene_id": tags.get("scene_id", path.stem),
             "source": str(path)}
    return _stack(layers, names, sensor, attrs)


def open_scene(
    source,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    *,
    chunks=None,
    product: str | None = None,
    band_names: Sequence[str] | None = None,
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
    if isinstance(source, xr.DataArray):
        da = source
        if "band" not in da.dims:
            raise BandCountError(f"A scene needs a 'band' dimension; this one has {da.dims}.")
        return _finish(da, bands, da.attrs.get("scene_id", "DataArray"))
    if isinstance(source, (list, tuple, Mapping)):
        da = _open_files(source, sensor, chunks, product, band_names)
        return _finish(da, bands, da.attrs["source"])
    text = str(source)
    if not Path(text).exists() and (text.lower() in _data.SCENES or text == "landsat8-l2sp"):
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
            da = _open_files(rasters, sensor, chunks, product, band_names)
        else:
            da = _open_landsat_product(mtls[0], sensor, chunks, product)
    elif path.name.upper().endswith("_MTL.TXT"):
        da = _open_landsat_product(path, sensor, chunks, product)
    elif path.suffix.lower() in _RASTER_SUFFIXES:
        if path.suffix.lower() == ".jp2" and not _has_georef(open_raster(path)):
            raise NotGeoreferencedError(
                f"{path} is a JPEG2000 file without georeference and no sample registry entry "
                "covers it. Open it with glacierkit and set the grid with "
                "scene.rio.write_crs(...) and scene.rio.write_transform(...), or export it as "
                "a georeferenced GeoTIFF."
            )
        da = _open_multiband(path, sensor, chunks, product, band_names)
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
    out = out.astype(dtype)
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
                              interleave="band", BIGTIFF="IF_SAFER", tags=all_tags)
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
