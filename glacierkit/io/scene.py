"""Opening a scene: one function for every source, and the checks every scene passes.

:func:`open_scene` is the single way into glacierkit. Whatever the source (a Landsat
Collection 2 product folder, its ``_MTL.txt`` or its ``.tar``/``.tar.gz`` as downloaded, a
multi-band GeoTIFF, a set of one-band
files, or a sample name), it returns an ``xarray.DataArray`` with dims
``("band", "y", "x")`` of float32 reflectance, a ``band`` coordinate of band names, a
``role`` coordinate (``blue``, ``green``, ``nir``, ``swir1`` ...), NaN for nodata, the CRS
and transform, and attrs ``sensor``, ``product``, ``date`` and ``scene_id``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioIOError

from ..bands import ROLES, get_sensor, select_bands
from ..data import samples as _data
from ..exceptions import (
    AllNodataError,
    BandCountError,
    CorruptFileError,
    DataNotFoundError,
    GlacierKitError,
    MissingCRSError,
    NotGeoreferencedError,
    ReflectanceRangeError,
    UnknownSensorError,
    UnsupportedGridError,
)
from .archive import archive_mtl, is_archive
from .clouds import with_clouds
from .landsat import open_product
from .level import (
    LEVELS,
    check_level,
    detect_level,
    detect_offset,
    guess_product,
    path_reflectance,
    product_level,
)
from .raster import (
    RASTER_SUFFIXES,
    UNKNOWN_BASELINE,
    apply_georef,
    auto_chunks,
    band_from_filename,
    check_dtype,
    dn_scaling,
    guess_hls,
    guess_sensor,
    guess_sensor_from_bands,
    has_georef,
    name_crs,
    no_radiometry,
    open_raster,
    peek_shape,
    pick_sensor,
    quiet_georef,
    scale_dn,
    stack_bands,
)
from .stac import is_item

log = logging.getLogger(__name__)

__all__ = ["open_scene", "check_grid"]


def _load(da: xr.DataArray, path) -> xr.DataArray:
    try:
        return da.load()
    except (RasterioIOError, rasterio.errors.RasterioError) as exc:
        raise CorruptFileError(
            f"Cannot read the pixels of {path} ({exc}). The file is corrupt or truncated: "
            "download or export it again."
        ) from exc


def _finish(da: xr.DataArray, bands: Sequence[str] | None, source,
            level: str | None = None) -> xr.DataArray:
    if da.rio.crs is None:
        raise MissingCRSError(
            f"The scene {source} has no CRS. Set it with scene.rio.write_crs('EPSG:xxxx') and "
            "pass the DataArray, or re-export the file as a georeferenced GeoTIFF."
        )
    _check_grid_and_names(da, source)
    if not da.chunks:
        da = _load(da, source)  # once, turning read errors of truncated files into clear ones
    da = _mask_invalid(da)
    kept = select_bands(da, bands) if bands is not None else da
    if not kept.chunks:
        if not bool(np.isfinite(kept.values).any()):
            raise AllNodataError(
                f"The scene {source} holds no valid pixel: every value is nodata/NaN, infinite "
                "or zero in every band. Check the file, the bands and the nodata value."
            )
    _check_range(kept, source)  # unscaled DNs first: their fix is another
    da = _settle_offset(da, source)
    da = _settle_level(da, level)
    return select_bands(da, bands) if bands is not None else da


def _settle_offset(da: xr.DataArray, source) -> xr.DataArray:
    """Find an offset nobody stated (:func:`glacierkit.io.level.detect_offset`): remove the
    +1000 DN of Sentinel-2 baseline 04.00 from Sentinel-2 DNs whose baseline is unknown,
    refuse any other scene that has it. Scenes whose scaling or baseline is stated, and
    scenes already checked, are left alone."""
    baseline = da.attrs.get("processing_baseline")
    roles = set(str(r) for r in da["role"].values) if "role" in da.coords else set()
    if "offset_check" in da.attrs or "(given)" in str(da.attrs.get("scaling", "")) or \
            baseline not in (None, UNKNOWN_BASELINE) or da.attrs.get("product") == "display" \
            or not ({"swir1", "swir2"} & roles and {"blue", "green"} & roles):
        return da  # stated, checked, a display stretch, or no SWIR to judge by
    present, reason = detect_offset(da)
    if not present:
        return da.assign_attrs(offset_check="no offset in the data")
    if baseline == UNKNOWN_BASELINE:
        log.warning(
            "%s: %s, as when the +1000 DN of Sentinel-2 processing baseline 04.00 (products "
            "from 25 January 2022 on) was left in; it is removed (reflectance - 0.1). Pass "
            "baseline='04.00' (--baseline 04.00) to say so, or baseline='03.01' if the scene "
            "predates it.", source, reason)
        out = (da - np.float32(0.1)).astype("float32")
        out.attrs = {**da.attrs, "processing_baseline": "04.00 (detected from the data)",
                     "offset_check": f"-0.1 removed: {reason}"}
        return out
    raise ReflectanceRangeError(
        f"{source}: {reason}: every band is too bright, as if an offset of about +0.1 (the "
        "+1000 DN of Sentinel-2 processing baseline 04.00) had not been removed; a glacier "
        "scene has snow, ice, water or shadow darker than that. Pass the offset: "
        "baseline='04.00' (--baseline 04.00) for Sentinel-2 from 2022 on, or offset=-0.1 "
        "(--offset -0.1); if the scene really holds no dark pixel, offset=0 (--offset 0)."
    )


def _settle_level(da: xr.DataArray, level: str | None) -> xr.DataArray:
    """Record the processing level (:mod:`glacierkit.io.level`): ``level=`` if given, else
    what the metadata said (``attrs["level"]``), else the data; for top-of-atmosphere
    scenes also the dark-object estimate of the path reflectance, from the whole scene."""
    attrs = {}
    if level is not None:
        attrs = {"level": level, "level_from": f"given (level={level!r})"}
    elif da.attrs.get("level") not in LEVELS and product_level(da.attrs.get("product")) \
            and not da.attrs.get("product_assumed"):
        attrs = _stated_level(da.attrs["product"], "the scene's 'product' attribute")
    elif da.attrs.get("level") not in LEVELS:
        found, why = detect_level(da)
        attrs = {"level": found or "unknown", "level_from": why}
    if (attrs.get("level") or da.attrs.get("level")) == "toa" and \
            "path_reflectance" not in da.attrs:
        path = path_reflectance(da)
        attrs["path_reflectance"] = ",".join(f"{r}:{v:.4f}" for r, v in path.items())
    return da.assign_attrs(attrs) if attrs else da


def _given(rad: Mapping | None) -> bool:
    """The user gave ``scale=`` or ``offset=``."""
    return bool(rad) and (rad.get("scale") is not None or rad.get("offset") is not None)


def _stated_level(product, stated_by: str) -> dict:
    """``level`` and ``level_from`` attrs for a product the metadata or the user stated."""
    level = product_level(product)
    return {"level": level, "level_from": stated_by} if level else {}


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
    if above + below <= OUT_OF_RANGE_FRACTION:  # the two together: values, not reflectance
        return
    if above >= below:
        raise ReflectanceRangeError(
            f"{above:.0%} of the pixels of {source} are above {hi} (largest "
            f"{float(valid.max()):.6g}), but reflectance lies between 0 and about 1.5: these "
            f"look like unscaled digital numbers. {how}"
        )
    raise ReflectanceRangeError(
        f"{below:.0%} of the pixels of {source} are below {lo} (smallest "
        f"{float(valid.min()):.6g}); reflectance is not negative beyond rounding. The "
        f"scaling or the nodata value is wrong. {how}"
    )


def _open_sample(name: str, sensor_id, chunks, product) -> xr.DataArray:
    if name == "landsat8-l2sp":
        folder = _data.fetch_product("landsat8-l2sp")
        mtl = next(folder.glob("*_MTL.txt"))
        return open_product(mtl, sensor_id, chunks, product)
    entry = _data.get_scene(name)
    sensor = get_sensor(pick_sensor(sensor_id, [("the sample registry", entry.sensor)], name))
    scaling = sensor.scaling(product or entry.product)  # samples predate baseline 04.00
    layers, names = [], []
    for band, rel in entry.files.items():
        path = _data.fetch(rel)
        index = int(rel.split("#", 1)[1]) if "#" in rel else None
        layer = open_raster(path, chunks=chunks or None, band=index)
        if entry.crs is not None and not has_georef(layer):
            layer = apply_georef(layer, entry.crs, entry.upper_left, entry.resolution)
        elif entry.crs is not None and layer.rio.crs is not None:
            layer = name_crs(layer, entry.crs, path)
        layers.append(scale_dn(layer, scaling["scale"], scaling["offset"], scaling.get("nodata")))
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
             "split": entry.split, **entry.notes,
             **_stated_level(product or entry.product,
                             f"product={product!r}" if product else "the sample registry")}
    return stack_bands(layers, names, sensor, attrs)


def _open_files(paths: Sequence[Path] | Mapping[str, Path], sensor_id, chunks, product,
                band_names, rad: Mapping | None = None) -> xr.DataArray:
    if isinstance(paths, Mapping):
        items = [(str(k), Path(v)) for k, v in paths.items()]
    else:
        items = [(None, Path(p)) for p in paths]
    names_text = " ".join(p.name for _, p in items)
    hls = guess_hls(names_text)
    # HLS L30 comes from Landsat 8 and 9: a default, not evidence against sensor=
    sid = pick_sensor(sensor_id, [("the file names", guess_sensor(names_text))],
                       [str(p) for _, p in items]) or hls
    stated = _stated_level(product, f"product={product!r}") if product else {}
    if hls is not None and product is None:
        product = "hls"  # int16 x 10000 with -9999 fill, whatever the sensor
        stated = _stated_level(product, "HLS file names (surface reflectance)")
    if product is None and (named := guess_product(names_text)):
        product, stated = named, _stated_level(named, f"the file names ({named})")
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
            band = band_from_filename(path, sensor)
            if band is None:
                raise BandCountError(
                    f"Cannot tell which {sensor.name} band {path.name} is. Pass a dict "
                    f"{{band_name: path}} or band_names=[...]; valid bands: {sensor.band_names}."
                )
        names.append(sensor.normalize(band))
        files.append(path)
    order = sorted(range(len(names)), key=lambda i: sensor.band_names.index(names[i]))
    names, files = [names[i] for i in order], [files[i] for i in order]  # table order
    count, height, width = peek_shape(files[0])
    use_chunks = auto_chunks(chunks, (len(files), height, width))
    layers, extra = [], {}
    text = " ".join(str(p) for p in files)
    for path in files:
        layer = open_raster(path, chunks=use_chunks)
        if layer.sizes["band"] != 1:
            raise BandCountError(
                f"{path} has {layer.sizes['band']} bands; a set of files must be one band each. "
                "Open a multi-band file on its own."
            )
        check_dtype(layer.dtype, path)
        if not np.issubdtype(layer.dtype, np.floating):
            scaling, extra = dn_scaling(sensor, product, layer.dtype, path, rad, text)
            layer = scale_dn(layer, scaling["scale"], scaling["offset"], scaling.get("nodata"))
        elif _given(rad):
            layer = scale_dn(layer, float(rad.get("scale") or 1.0),
                             float(rad.get("offset") or 0.0), None)
            extra = {"scaling": f"DN * {rad.get('scale') or 1.0} + {rad.get('offset') or 0.0} "
                                "(given)"}
        else:
            layer = scale_dn(layer, 1.0, 0.0, None)
        layers.append(layer)
    return stack_bands(layers, names, sensor, {"sensor": sensor.id, "product": product or
                                          sensor.default_product, "scene_id": files[0].stem,
                                          "source": str(files[0].parent), **extra, **stated,
                                          **_assumed(product)})


def _open_multiband(path: Path, sensor_id, chunks, product, band_names,
                    rad: Mapping | None = None) -> xr.DataArray:
    with quiet_georef():
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
    names = list(band_names) if band_names is not None else descriptions
    sid = pick_sensor(sensor_id, [("its 'sensor' tag", tags.get("sensor")),
                                   ("its file name", guess_sensor(path.name)),
                                   ("its band names", guess_sensor_from_bands(names))], path)
    sensor = get_sensor(sid) if sid else None
    stated = _level_from_tags(tags, path, product)
    if product is None and stated.get("product"):
        product = stated["product"]
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
    check_dtype(dtype, path)
    use_chunks = auto_chunks(chunks, (count, height, width))
    raw = open_raster(path, chunks=use_chunks)
    is_float = np.issubdtype(np.dtype(dtype), np.floating)
    extra = {}
    if is_float and _given(rad):
        scaled = scale_dn(raw, float(rad.get("scale") or 1.0), float(rad.get("offset") or 0.0),
                          None)
        extra = {"scaling": f"DN * {rad.get('scale') or 1.0} + {rad.get('offset') or 0.0} "
                            "(given)"}
    elif is_float:
        scaled = scale_dn(raw, 1.0, 0.0, None)
    else:
        scaling, extra = dn_scaling(sensor, product, dtype, path, rad, str(path), tags)
        scaled = scale_dn(raw, scaling["scale"], scaling["offset"], scaling.get("nodata"))
        if scaling["offset"] != 0.0:  # raw zeros in every band are fill, not -offset
            scaled = scaled.where(~(raw == 0).all("band"))
    layers = [scaled.isel(band=[i]) for i in range(count)]
    attrs = {**extra, "sensor": sensor.id if sensor else "generic",
             "product": tags.get("product") or product or (sensor.default_product if sensor
                                                           else None),
             "date": tags.get("date"), "scene_id": tags.get("scene_id", path.stem),
             "source": str(path), **{k: v for k, v in stated.items() if k != "product"},
             **_assumed(tags.get("product") or product)}
    return stack_bands(layers, names, sensor, attrs)


def _assumed(product) -> dict:
    """``product_assumed`` when nothing stated the product and the sensor's default was used
    (for the DN scaling only): such a product says nothing about the processing level, which
    is then judged from the data. A Sentinel-2 L1C export without tags is not "L2A"."""
    return {} if product else {"product_assumed": "the sensor's default; nothing stated it"}


#: File tags that may name a product or processing level.
_LEVEL_TAGS = ("PROCESSING_LEVEL", "PRODUCT_TYPE", "PRODUCT_ID", "PRODUCT_URI", "PRODUCT",
               "LEVEL")


def _level_from_tags(tags: Mapping[str, str], path: Path, product) -> dict:
    """What the user, the file's tags or its name say about the product and level:
    ``{"product", "level", "level_from"}`` (empty when nothing says)."""
    if product:
        return {"product": product, **_stated_level(product, f"product={product!r}")}
    level = check_level(tags["level"]) if tags.get("level") in LEVELS else None
    if level:  # glacierkit's own files (prepared scenes) and exports that say it
        return {"level": level, "level_from": "the file's 'level' tag",
                **({"path_reflectance": tags["path_reflectance"]}
                   if tags.get("path_reflectance") else {})}
    for key, value in tags.items():
        if key.upper() in _LEVEL_TAGS and (named := guess_product(str(value))):
            return {"product": named, **_stated_level(named, f"the file's {key} tag")}
    if named := guess_product(path.name):
        return {"product": named, **_stated_level(named, f"the file name ({named})")}
    return {}


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
    level: str | None = None,
    clouds=True,
) -> xr.DataArray:
    """Open a scene as float32 reflectance with bands known by role.

    Parameters
    ----------
    source
        One of: a sample name (``"alps-s2/aletsch"``, ``"everest-l7"``,
        ``"landsat8-l2sp"``; see :func:`glacierkit.data.scene_names`); a Landsat Collection 2
        product folder, its ``_MTL.txt``, or the product's ``.tar``/``.tar.gz`` as
        EarthExplorer delivers it (read in place, not unpacked); a multi-band GeoTIFF whose band descriptions
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
        neither the product name (``_N0400_``) nor the file's metadata says. When nothing
        says, the data decide: a Sentinel-2 scene with fewer than 1 % of its pixels darker
        than 0.07 in every band has the offset, which is then removed with a warning
        (:func:`glacierkit.io.level.detect_offset`); any other scene like that is refused.
    level
        ``"surface"`` (surface reflectance) or ``"toa"`` (top-of-atmosphere), when the
        metadata do not say it or say it wrongly. Default: the product's metadata (MTL
        ``PROCESSING_LEVEL``, ``MSIL1C``/``MSIL2A`` names, HLS, file tags), else the data
        (:func:`glacierkit.io.level.detect_level`). Recorded in ``attrs["level"]`` and
        ``attrs["level_from"]``; for top-of-atmosphere scenes ``attrs["path_reflectance"]``
        holds the dark-object estimate that prediction subtracts
        (:func:`glacierkit.io.level.to_surface`).
    clouds
        ``True`` (default): make cloud, cloud-shadow and cirrus pixels NaN with the
        product's own cloud layer when it has one (a Landsat product's ``QA_PIXEL``; a STAC
        item's ``qa_pixel`` or ``scl`` asset); ``False``: keep them; or a ``QA_PIXEL``/``SCL``
        layer (path or DataArray) to mask with (:mod:`glacierkit.io.clouds`).

    A source that is a STAC item (an ``http(s)://`` URL or a local item ``.json``) is loaded
    with :func:`glacierkit.io.stac.open_item`.

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
    level = check_level(level)
    if isinstance(source, xr.DataArray):
        da = source
        if "band" not in da.dims:
            raise BandCountError(f"A scene needs a 'band' dimension; this one has {da.dims}.")
        return with_clouds(_finish(da, bands, da.attrs.get("scene_id", "DataArray"), level),
                           clouds, None)
    if isinstance(source, (list, tuple, Mapping)):
        da = _open_files(source, sensor, chunks, product, band_names, rad)
        return with_clouds(_finish(da, bands, da.attrs["source"], level), clouds, None)
    text = str(source)
    if is_item(text):
        from .stac import open_item

        no_radiometry(rad, f"the STAC item {text}")
        return _finish(open_item(text, bands=bands, chunks=chunks, clouds=clouds), None, text,
                       level)
    if not Path(text).exists() and (text.lower() in _data.SCENES or text == "landsat8-l2sp"):
        no_radiometry(rad, f"the sample {text!r}")
        da = _open_sample(text.lower(), sensor, chunks, product)
        return with_clouds(_finish(da, bands, text, level), clouds, None)
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
            rasters = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
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
            no_radiometry(rad, f"the Landsat product {path}")
            da = open_product(mtls[0], sensor, chunks, product)
    elif path.name.upper().endswith("_MTL.TXT"):
        no_radiometry(rad, f"the Landsat product {path}")
        da = open_product(path, sensor, chunks, product)
    elif is_archive(path):  # a product as downloaded (.tar, .tar.gz), read in place
        no_radiometry(rad, f"the Landsat product {path}")
        da = open_product(archive_mtl(path), sensor, chunks, product)
    elif path.suffix.lower() in RASTER_SUFFIXES:
        if path.suffix.lower() == ".jp2" and not has_georef(open_raster(path)):
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
            "JPEG2000 file, a Landsat product folder, its _MTL.txt, or the product's .tar or "
            ".tar.gz as downloaded."
        )
    if da.rio.crs is None:
        raise MissingCRSError(
            f"{path} has no CRS. Set it with scene.rio.write_crs('EPSG:xxxx') or re-export the "
            "file as a georeferenced GeoTIFF."
        )
    return with_clouds(_finish(da, bands, path, level), clouds, path)


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
