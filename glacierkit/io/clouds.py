"""Clouds and their shadows: decoded from the product's own layer, made nodata.

Glacier maps go wrong under clouds: a cloud is bright in the visible and in SWIR, its shadow
dark everywhere, so NDSI and the U-Net call either whatever they resemble. glacierkit does
not guess: it reads the cloud layer that comes with the product and makes every obscured
pixel nodata (NaN) in every band, so it is nodata in every output (probability, mask,
confidence, outlines, areas).

- **Landsat Collection 2** ``QA_PIXEL`` (:func:`glacierkit.io.qa_masks`): cloud, dilated
  cloud, cirrus and cloud shadow (bits 3, 1, 2, 4).
- **Sentinel-2 L2A** ``SCL`` (scene classification, :data:`SCL_CLASSES`): cloud shadow (3),
  cloud of medium and high probability (8, 9) and thin cirrus (10). Snow (11) is kept: it
  is what glaciers look like.

:func:`mask_clouds` applies a layer to a scene (on its grid, nearest neighbour) and records
what it did in the scene's attrs, which every prediction writes into its GeoTIFF tags:
``cloud_mask`` (which classes), ``cloud_layer`` (where they came from), ``obscured_fraction``
(of the pixels with data) and, given glacier outlines, ``obscured_glacier_fraction``: the
share of the glacier outline area that is obscured or has no data. Above
:data:`OBSCURED_LIMIT` it warns on one line (:class:`~glacierkit.exceptions.ObscuredWarning`).
:func:`obscured_glacier_fraction` gives the same share for any scene and outlines or labels.

Both masks are known to call some bright snow cloud (and SCL some cloud snow): over
glaciers the obscured share is an upper bound rather than an exact figure.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from ..exceptions import DataNotFoundError, ObscuredWarning, ParameterError
from .level import LEVEL_ATTRS

log = logging.getLogger(__name__)

__all__ = ["SCL_CLASSES", "OBSCURING", "OBSCURED_LIMIT", "CLOUD_ATTRS", "CARRIED_ATTRS", "scl_masks",
           "obscured", "mask_clouds", "obscured_glacier_fraction", "cloud_kind", "warn_obscured",
           "cloud_layer_of", "cloud_summary", "with_clouds"]

#: Sentinel-2 L2A scene classification (SCL) values.
SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area",  # topographic and cast shadow ("cast shadows" from baseline 04.00)
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}

#: What counts as obscured, per kind of cloud layer (QA_PIXEL bit names, SCL values).
OBSCURING: dict[str, tuple] = {
    "qa_pixel": ("cloud", "dilated_cloud", "cirrus", "cloud_shadow"),
    "scl": (3, 8, 9, 10),
}

_DESCRIPTIONS = {
    "qa_pixel": "Landsat QA_PIXEL: cloud, dilated cloud, cirrus, cloud shadow",
    "scl": "Sentinel-2 SCL: cloud shadow (3), cloud medium/high probability (8, 9), "
           "thin cirrus (10)",
}

#: The share of the glacier area that may be obscured before a map says so.
OBSCURED_LIMIT = 0.2

#: Scene attributes that describe the cloud mask (they go into the prediction's tags).
CLOUD_ATTRS = ("cloud_mask", "cloud_layer", "obscured_fraction", "obscured_glacier_fraction")
#: Scene attributes a prediction carries into its attrs and GeoTIFF tags besides sensor,
#: date and scene id: the processing level (:data:`glacierkit.io.level.LEVEL_ATTRS`), where
#: a STAC scene came from, and the clouds.
CARRIED_ATTRS = (*LEVEL_ATTRS, "stac_collection", "source", *CLOUD_ATTRS)


def cloud_kind(layer, kind: str | None = None) -> str:
    """``"qa_pixel"`` or ``"scl"``: ``kind`` itself, else read from the layer's name, its
    ``cloud_kind`` attribute or its file name."""
    if kind is not None:
        if kind not in OBSCURING:
            raise ParameterError(
                f"kind={kind!r} is not a cloud layer glacierkit decodes; use one of "
                f"{sorted(OBSCURING)} (Landsat QA_PIXEL or Sentinel-2 SCL)."
            )
        return kind
    texts = []
    if isinstance(layer, xr.DataArray):
        texts += [str(layer.attrs.get("cloud_kind", "")), str(layer.name or "")]
        texts.append(str(layer.attrs.get("long_name", "")))
    else:
        texts.append(Path(str(layer)).name)
    text = " ".join(texts).upper()
    if "QA_PIXEL" in text:
        return "qa_pixel"
    if "SCL" in text:
        return "scl"
    raise ParameterError(
        f"Cannot tell whether the cloud layer {_describe(layer)} is a Landsat QA_PIXEL band or "
        "a Sentinel-2 SCL layer (its name says neither). Pass kind='qa_pixel' or kind='scl' "
        "(--cloud-kind on the command line)."
    )


def _describe(layer) -> str:
    if isinstance(layer, xr.DataArray):
        return str(layer.attrs.get("cloud_layer") or layer.name or "(a DataArray)")
    return str(layer)


def scl_masks(scl, classes=None) -> xr.Dataset:
    """Decode a Sentinel-2 L2A ``SCL`` layer into one boolean layer per class.

    Parameters
    ----------
    scl
        A DataArray (``(y, x)`` or ``(1, y, x)``) or a path of the SCL raster.
    classes
        Class names of :data:`SCL_CLASSES` to decode (default: all).

    Returns
    -------
    xarray.Dataset
        One boolean variable per class on the SCL grid, CRS kept. Works lazily on dask.
    """
    da = _one_band(scl)
    if not np.issubdtype(da.dtype, np.integer):
        raise ParameterError(
            f"SCL must hold integer class values 0-11; got {da.dtype}. Pass the raw SCL layer, "
            "not a scaled or resampled one."
        )
    names = list(classes) if classes is not None else list(SCL_CLASSES.values())
    codes = {v: k for k, v in SCL_CLASSES.items()}
    unknown = [n for n in names if n not in codes]
    if unknown:
        raise ParameterError(f"Unknown SCL classes {unknown}. Valid: {list(codes)}.")
    out = xr.Dataset({n: da == codes[n] for n in names})
    if da.rio.crs is not None:
        out = out.rio.write_crs(da.rio.crs)
    out.attrs["source"] = "Sentinel-2 L2A scene classification (SCL)"
    return out


def _one_band(layer) -> xr.DataArray:
    from .raster import open_raster

    if not isinstance(layer, xr.DataArray):
        path = Path(str(layer))
        if not path.exists() and not str(layer).startswith(("http://", "https://", "/vsi")):
            raise DataNotFoundError(
                f"Cloud layer not found: {path}. Give the product's QA_PIXEL or SCL file.")
        layer = open_raster(layer, chunks={"band": 1, "y": 2048, "x": 2048})
        layer.attrs["cloud_layer"] = str(path)
    if "band" in layer.dims:
        if layer.sizes["band"] != 1:
            raise ParameterError(
                f"A cloud layer has one band; {_describe(layer)} has {layer.sizes['band']}."
            )
        layer = layer.squeeze("band", drop=True)
    return layer


def obscured(layer, kind: str | None = None) -> tuple[xr.DataArray, xr.DataArray]:
    """Where a cloud layer says cloud, cloud shadow or cirrus, and where it has data.

    Parameters
    ----------
    layer
        A Landsat ``QA_PIXEL`` or Sentinel-2 ``SCL`` layer (DataArray or path).
    kind
        ``"qa_pixel"`` or ``"scl"`` (default: from the layer's name, see :func:`cloud_kind`).

    Returns
    -------
    (obscured, has_data)
        Two boolean ``(y, x)`` DataArrays on the layer's grid: obscured pixels (the classes
        of :data:`OBSCURING`) and pixels the layer covers (not QA fill, not SCL 0).
    """
    from .landsat import qa_masks

    kind = cloud_kind(layer, kind)
    da = _one_band(layer)
    if kind == "qa_pixel":
        bits = qa_masks(da, layers=("fill", *OBSCURING["qa_pixel"]))
        hit = bits[OBSCURING["qa_pixel"][0]]
        for name in OBSCURING["qa_pixel"][1:]:
            hit = hit | bits[name]
        has_data = ~bits["fill"]
    else:
        if not np.issubdtype(da.dtype, np.integer):
            raise ParameterError(
                f"SCL must hold integer class values 0-11; got {da.dtype}. Pass the raw SCL "
                "layer, not a scaled or resampled one."
            )
        hit = da.isin(list(OBSCURING["scl"]))
        has_data = da != 0
    return hit.rename("obscured"), has_data.rename("has_data")


def _on_grid(layer: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """``layer`` on ``like``'s grid (nearest neighbour; as it is when the grids agree). A
    layer without georeference of the scene's exact shape is taken to be on its grid (as
    the band files of a Landsat product whose georeference comes from the MTL)."""
    from rasterio.enums import Resampling

    same_shape = layer.sizes["y"] == like.sizes["y"] and layer.sizes["x"] == like.sizes["x"]
    if same_shape and layer.rio.crs is None:
        return layer.assign_coords(x=like["x"], y=like["y"])
    if layer.rio.crs is not None and like.rio.crs is not None and layer.rio.crs == like.rio.crs:
        left, bottom, right, top = like.rio.bounds()
        pad = 2 * max(abs(layer.rio.resolution()[0]), abs(like.rio.resolution()[0]))
        try:  # read only the part over the scene (a full-scene QA_PIXEL for a crop)
            layer = layer.rio.clip_box(left - pad, bottom - pad, right + pad, top + pad)
        except Exception:  # noqa: BLE001 - rioxarray's NoDataInBounds and kin: reproject
            pass
        same_shape = layer.sizes["y"] == like.sizes["y"] and layer.sizes["x"] == like.sizes["x"]
    same = same_shape and np.allclose(tuple(layer.rio.transform())[:6],
                                      tuple(like.rio.transform())[:6])
    if same:
        return layer.assign_coords(x=like["x"], y=like["y"])
    if layer.rio.crs is None:
        raise ParameterError(
            f"The cloud layer {_describe(layer)} has no CRS and is not on the scene's grid, so "
            "it cannot be placed on it. Give the product's georeferenced QA_PIXEL/SCL file."
        )
    out = layer.rio.reproject_match(like, resampling=Resampling.nearest)
    return out.assign_coords(x=like["x"], y=like["y"])


def _glacier_pixels(outlines, like: xr.DataArray) -> np.ndarray:
    from ..labels import rasterize_outlines

    if isinstance(outlines, xr.DataArray):
        values = np.asarray(outlines.values)
        return (values == 1) if values.dtype.kind != "f" else (values > 0.5)
    return np.asarray(rasterize_outlines(outlines, like=like, chunks=False).values) == 1


def obscured_glacier_fraction(scene: xr.DataArray, outlines) -> float:
    """The share of the glacier area that a map of ``scene`` cannot see.

    Glacier pixels (``outlines``: outlines, a sample outline name, or ``(y, x)`` labels with
    1 = glacier on the scene's grid) where the scene has no valid value in some band: cloud,
    cloud shadow or cirrus once :func:`mask_clouds` has run, or no data in the image. NaN
    when no outline pixel lies on the scene.
    """
    glacier = _glacier_pixels(outlines, scene)
    n = int(glacier.sum())
    if n == 0:
        return float("nan")
    bad = ~np.isfinite(np.asarray(scene.values)).all(axis=0)
    return float((bad & glacier).sum() / n)


def mask_clouds(
    scene: xr.DataArray,
    layer,
    *,
    kind: str | None = None,
    outlines=None,
    limit: float = OBSCURED_LIMIT,
) -> xr.DataArray:
    """Make cloud, cloud-shadow and cirrus pixels nodata (NaN) in every band of a scene.

    Parameters
    ----------
    scene
        A scene from :func:`glacierkit.io.open_scene` (numpy- or dask-backed). It is not
        modified; a masked copy is returned (lazy for a lazy scene).
    layer
        The product's Landsat ``QA_PIXEL`` band or Sentinel-2 ``SCL`` layer: a DataArray or
        a path, on any grid (put on the scene's by nearest neighbour).
    kind
        ``"qa_pixel"`` or ``"scl"`` (default: from the layer's name).
    outlines
        Glacier outlines (or labels on the scene's grid) whose obscured share to record
        (``obscured_glacier_fraction``) and check against ``limit``.
    limit
        Above this obscured share of the glacier area, warn
        (:class:`~glacierkit.exceptions.ObscuredWarning`, one line).

    Returns
    -------
    xarray.DataArray
        The scene with obscured pixels NaN and attrs ``cloud_mask``, ``cloud_layer``,
        ``obscured_fraction`` (of the pixels the layer covers) and, with ``outlines``,
        ``obscured_glacier_fraction`` (of the glacier pixels: obscured or without data).

    Examples
    --------
    >>> scene = open_scene("LC08_L2SP_.../")                                 # doctest: +SKIP
    >>> clear = mask_clouds(scene, ".../LC08_L2SP_..._QA_PIXEL.TIF", outlines="rgi.shp")
    """
    kind = cloud_kind(layer, kind)
    source = layer.attrs.get("cloud_layer") if isinstance(layer, xr.DataArray) else str(layer)
    hit, has_data = obscured(layer, kind)
    hit = _on_grid(hit.astype("uint8"), scene) > 0
    has_data = _on_grid(has_data.astype("uint8"), scene) > 0
    hit = hit.drop_vars([c for c in hit.coords if c not in ("y", "x")])
    hit_np = np.asarray(hit.values)
    data_np = np.asarray(has_data.values)
    covered = int(data_np.sum())
    fraction = float((hit_np & data_np).sum() / covered) if covered else float("nan")
    keep = hit.copy(data=~hit_np)  # computed once: the layer is read only here
    if scene.chunks:
        keep = keep.chunk({"y": scene.chunks[scene.dims.index("y")],
                           "x": scene.chunks[scene.dims.index("x")]})
    out = scene.where(keep)
    out = out.astype(scene.dtype, copy=False)
    out.attrs = {**scene.attrs, "cloud_mask": _DESCRIPTIONS[kind],
                 "obscured_fraction": round(fraction, 4)}
    if source:
        out.attrs["cloud_layer"] = str(source)
    out.name = scene.name
    if scene.rio.crs is not None:
        out = out.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())
    log.info("Cloud mask (%s): %.1f%% of the pixels obscured", kind, 100 * fraction)
    if outlines is not None:
        glacier = _glacier_pixels(outlines, scene)
        n = int(glacier.sum())
        share = float(((hit_np | ~data_np) & glacier).sum() / n) if n else float("nan")
        out.attrs["obscured_glacier_fraction"] = round(share, 4)
        warn_obscured(share, out.attrs.get("scene_id", "the scene"), limit)
    return out


def warn_obscured(share: float, what, limit: float = OBSCURED_LIMIT) -> str | None:
    """Warn on one line (:class:`~glacierkit.exceptions.ObscuredWarning`) when more than
    ``limit`` of the glacier area is obscured; return the message (None when below)."""
    if not np.isfinite(share) or share <= limit:
        return None
    message = (f"{share:.0%} of the glacier area of {what} is obscured (cloud, cloud shadow, "
               f"cirrus or no data; limit {limit:.0%}): those pixels are nodata in the map, "
               "so its glacier area is a lower bound. Pick a clearer date (glacierkit search "
               "ranks them).")
    warnings.warn(ObscuredWarning(message), stacklevel=3)
    return message


def cloud_layer_of(source: str | os.PathLike) -> tuple[Path, str] | None:
    """The ``QA_PIXEL`` file beside a Landsat product (a folder or its ``_MTL.txt``), as
    ``(path, "qa_pixel")``; None when there is none."""
    path = Path(source)
    if path.is_dir():
        folder = path
    elif path.name.upper().endswith("_MTL.TXT"):
        folder = path.parent
    else:
        return None
    hits = sorted(p for p in folder.iterdir()
                  if p.name.upper().endswith(("_QA_PIXEL.TIF", "_QA_PIXEL.TIFF")))
    return (hits[0], "qa_pixel") if hits else None


def cloud_summary(attrs: Mapping) -> dict:
    """The cloud attributes of a scene or probability (``cloud_mask`` "none" without one)."""
    out = {k: attrs[k] for k in CLOUD_ATTRS if k in attrs}
    out.setdefault("cloud_mask", "none (no cloud layer)")
    return out


def with_clouds(scene: xr.DataArray, clouds, source) -> xr.DataArray:
    """What :func:`glacierkit.io.open_scene` does with its ``clouds`` argument: ``True``
    masks with the product's own layer when it has one (a Landsat product's
    ``QA_PIXEL``), ``False`` leaves the scene as it is, a layer (path or DataArray) masks
    with that layer."""
    if clouds is False or clouds is None:
        return scene
    if clouds is True:
        found = None
        if isinstance(source, (str, os.PathLike)) and Path(source).exists():
            found = cloud_layer_of(source)
        if found is None:
            return scene
        clouds = found[0]
    return mask_clouds(scene, clouds)
