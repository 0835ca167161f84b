"""Glacier outlines from a mask, and how they compare with reference outlines (RGI/GLIMS).

* :func:`mask_to_polygons` turns a glacier mask (or a probability and a threshold) into
  polygons along pixel edges (``rasterio.features.shapes``), drops small ones, optionally
  simplifies them, and gives each its area in km².
* :func:`write_outlines` writes them to a GeoPackage atomically, CRS kept, so QGIS opens it.
* :func:`compare_outlines` compares a predicted mask with reference outlines on the mask's
  grid: total glacier area and its difference in %, per reference glacier (by ``RGIId``) the
  reference area, the mapped area inside the outline and in its neighbourhood, and the
  distance between predicted and reference glacier boundaries in metres (in the spirit of
  the mean distance error of CaFFe).

Areas are counted in pixels (pixel-centre rasterization, as for the training labels), so a
reference outline and a perfect prediction give the same area exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from ._util import NODATA
from .exceptions import GlacierKitError, MissingCRSError, NoOverlapError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["mask_to_polygons", "write_outlines", "compare_outlines", "boundary_distances", "OutlineComparison"]



def _glacier_and_valid(mask, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean glacier and valid arrays from a 0/1 mask (255 nodata), bool, or probability."""
    values = np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask)
    if values.ndim != 2:
        raise GlacierKitError(f"Expected a (y, x) mask; got shape {values.shape}.")
    if values.dtype.kind == "b":
        return values, np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        valid = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            return valid & (values > threshold), valid
    valid = values != NODATA
    return valid & (values != 0), valid


def _crs_and_transform(da: xr.DataArray):
    crs = da.rio.crs
    if crs is None:
        raise MissingCRSError(
            "The mask has no CRS, so outlines cannot be placed. Set it with "
            "mask.rio.write_crs('EPSG:xxxx')."
        )
    return crs, da.rio.transform()


def _metres_per_unit(crs) -> float:
    from rasterio.crs import CRS

    rcrs = CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    if rcrs.is_geographic:
        return float("nan")
    return float(rcrs.linear_units_factor[1])


def mask_to_polygons(
    mask: xr.DataArray,
    *,
    threshold: float = 0.5,
    min_area_km2: float = 0.0,
    simplify_m: float | None = None,
    connectivity: int = 4,
):
    """Polygons of the glacier pixels of a mask, with their area in km².

    Parameters
    ----------
    mask
        ``(y, x)`` DataArray with a CRS: a 0/1 mask (``uint8`` with 255 nodata, or bool),
        or a float probability/mask with NaN nodata (glacier where ``> threshold``).
    threshold
        For float inputs: values above it are glacier.
    min_area_km2
        Drop polygons smaller than this (their area before simplification).
    simplify_m
        If given, simplify the outlines with this tolerance (metres for projected CRSs),
        topology preserved. Pixel staircases become straight lines; areas change slightly
        and ``area_km2`` is that of the simplified polygon.
    connectivity
        4 (default: pixels touching only at a corner are separate glaciers, polygons are
        always valid) or 8.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``id`` (1 = largest), ``area_km2`` and ``geometry`` (polygons with holes for
        nunataks), in the mask's CRS, largest first.
    """
    import geopandas as gpd
    from rasterio import features
    from shapely.geometry import shape

    if connectivity not in (4, 8):
        raise ParameterError(f"connectivity={connectivity}; use 4 or 8.")
    if min_area_km2 < 0 or (simplify_m is not None and simplify_m < 0):
        raise ParameterError("min_area_km2 and simplify_m must not be negative.")
    crs, transform = _crs_and_transform(mask)
    glacier, _ = _glacier_and_valid(mask, threshold)
    geoms = [shape(g) for g, _ in features.shapes(glacier.astype("uint8"), mask=glacier,
                                                  connectivity=connectivity,
                                                  transform=transform)]
    gdf = gpd.GeoDataFrame({"geometry": geoms}, geometry="geometry", crs=crs)
    gdf["area_km2"] = _area_km2(gdf)
    gdf = gdf[gdf["area_km2"] >= min_area_km2]
    if simplify_m:
        gdf = gdf.assign(geometry=gdf.geometry.simplify(simplify_m, preserve_topology=True))
        gdf["area_km2"] = _area_km2(gdf)
    gdf = gdf.sort_values("area_km2", ascending=False, kind="stable").reset_index(drop=True)
    gdf.insert(0, "id", np.arange(1, len(gdf) + 1, dtype="int64"))
    log.info("%d outlines, %.3f km2 in total", len(gdf), float(gdf["area_km2"].sum()))
    return gdf[["id", "area_km2", "geometry"]]


def _area_km2(gdf) -> np.ndarray:
    if gdf.empty:
        return np.zeros(0)
    factor = _metres_per_unit(gdf.crs)
    if np.isnan(factor):  # geographic: measure in the local UTM zone
        return gdf.to_crs(gdf.estimate_utm_crs()).area.to_numpy() / 1e6
    return gdf.area.to_numpy() * factor**2 / 1e6


def write_outlines(gdf, path: str | os.PathLike, layer: str = "glaciers") -> Path:
    """Write outlines to a GeoPackage atomically (the file appears only when complete)."""
    from ._util import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise ParameterError(f"Outlines are written as GeoPackage; give a .gpkg path, not {path}.")
    if gdf.crs is None:
        raise MissingCRSError("The outlines have no CRS; set it with gdf.set_crs(...).")
    with atomic_path(path) as tmp:
        gpkg = tmp.with_name(tmp.name + ".gpkg")  # GDAL wants the .gpkg extension
        try:
            gdf.to_file(gpkg, driver="GPKG", layer=layer,
                        geometry_type="Polygon" if gdf.empty else None)
            os.replace(gpkg, tmp)
        finally:
            for side in (gpkg, *gpkg.parent.glob(gpkg.name + "-*")):
                side.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- comparison
class OutlineComparison(NamedTuple):
    """What :func:`compare_outlines` returns."""

    #: Scene totals: areas, area difference in %, boundary distances in metres.
    summary: dict
    #: One row per reference glacier in the scene (see :func:`compare_outlines`).
    glaciers: pd.DataFrame


def _boundary(mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Glacier pixels with a 4-neighbour that is valid non-glacier (not the scene edge,
    not nodata)."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, border_value=1)
    near_nodata = ndimage.binary_dilation(~valid) if not valid.all() else np.zeros_like(mask)
    return mask & ~inner & ~near_nodata


def _distance_to(target: np.ndarray, sampling: tuple[float, float]) -> np.ndarray | None:
    from scipy import ndimage

    if not target.any():
        return None
    return ndimage.distance_transform_edt(~target, sampling=sampling)


def boundary_distances(predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray,
                       resolution: tuple[float, float]) -> dict[str, float]:
    """Distances between glacier boundaries, from boundary pixel centres, in map units.

    ``mean`` is symmetric (CaFFe-style): the average over the boundary pixels of both masks
    of the distance to the nearest boundary pixel of the other. ``pred_to_ref`` and
    ``ref_to_pred`` are the one-way means; ``median`` is over both directions. A perfect
    prediction gives 0; NaN when either mask has no boundary.
    """
    pb, rb = _boundary(predicted, valid), _boundary(reference, valid)
    d_to_ref, d_to_pred = _distance_to(rb, resolution), _distance_to(pb, resolution)
    nan = float("nan")
    if d_to_ref is None or d_to_pred is None:
        return {"mean": nan, "median": nan, "pred_to_ref": nan, "ref_to_pred": nan}
    a, b = d_to_ref[pb], d_to_pred[rb]
    both = np.concatenate([a, b])
    return {"mean": float(both.mean()), "median": float(np.median(both)),
            "pred_to_ref": float(a.mean()), "ref_to_pred": float(b.mean())}


def _nearest_owner(labels: np.ndarray, sampling: tuple[float, float],
                   max_distance: float) -> np.ndarray:
    """Label of the nearest reference glacier for every pixel within ``max_distance``."""
    from scipy import ndimage

    owner = labels.copy()
    if max_distance <= 0 or not labels.any():
        return owner
    pad_y = int(np.ceil(max_distance / sampling[0])) + 1
    pad_x = int(np.ceil(max_distance / sampling[1])) + 1
    ys, xs = np.nonzero(labels.any(axis=1))[0], np.nonzero(labels.any(axis=0))[0]
    y0, y1 = max(ys[0] - pad_y, 0), min(ys[-1] + pad_y + 1, labels.shape[0])
    x0, x1 = max(xs[0] - pad_x, 0), min(xs[-1] + pad_x + 1, labels.shape[1])
    crop = labels[y0:y1, x0:x1]
    dist, (iy, ix) = ndimage.distance_transform_edt(crop == 0, sampling=sampling,
                                                    return_indices=True)
    near = np.where(dist <= max_distance, crop[iy, ix], 0)
    owner[y0:y1, x0:x1] = near
    return owner


def compare_outlines(
    predicted,
    reference,
    *,
    like: xr.DataArray | None = None,
    threshold: float = 0.5,
    id_column: str = "RGIId",
    neighbourhood_m: float = 100.0,
    valid: xr.DataArray | np.ndarray | None = None,
) -> OutlineComparison:
    """Compare a predicted glacier mask with reference outlines, in total and per glacier.

    Parameters
    ----------
    predicted
        ``(y, x)`` mask DataArray (0/1 with 255 nodata, bool, or a probability with NaN
        nodata and ``threshold``), or predicted polygons (a GeoDataFrame, burned onto
        ``like``'s grid).
    reference
        Reference outlines: a path, a sample name (``"alps-s2"``) or a GeoDataFrame, any
        CRS. Only outlines that intersect the scene count, clipped to it.
    like
        The grid for polygon predictions (a scene or mask DataArray).
    threshold
        For probability inputs: glacier where ``> threshold``.
    id_column
        The glacier id column (``RGIId`` for RGI). Without it, rows are numbered.
    neighbourhood_m
        Predicted glacier pixels outside every outline but within this distance of one are
        attributed to the nearest glacier (``mapped_km2``), so an advance or a shifted
        outline counts; 0 counts only the pixels inside.
    valid
        Optional boolean ``(y, x)`` layer of usable pixels (e.g. not cloud); nodata of the
        mask is always excluded. Invalid pixels count for neither side.

    Returns
    -------
    OutlineComparison
        ``summary``: ``reference_area_km2``, ``mapped_area_km2`` (all predicted glacier in
        the scene), ``area_difference_pct`` (100 (mapped - reference) / reference),
        ``mapped_in_reference_km2``, ``n_glaciers``, ``n_complete``, ``mean_distance_m``,
        ``median_distance_m``, ``pred_to_ref_distance_m``, ``ref_to_pred_distance_m``,
        ``pixel_area_m2``. ``glaciers``: one row per reference glacier with the id,
        ``ref_area_km2``, ``mapped_inside_km2`` (predicted glacier inside the outline),
        ``mapped_km2`` (inside plus the neighbourhood pixels nearest to this glacier),
        ``area_difference_pct`` (``mapped_km2`` vs ``ref_area_km2``), ``inside_fraction``
        (``mapped_inside / ref_area``), ``boundary_distance_m`` (mean distance from this
        glacier's reference boundary to the nearest predicted boundary) and ``complete``
        (the outline lies wholly in the scene).
    """
    from rasterio import features
    from shapely.geometry import box

    from .labels import read_outlines

    if not isinstance(predicted, xr.DataArray):
        if like is None:
            raise ParameterError("Predicted polygons need like= (a DataArray giving the grid).")
        crs, transform = _crs_and_transform(like)
        burn = features.rasterize(((g, 1) for g in predicted.to_crs(crs).geometry),
                                  out_shape=(like.sizes["y"], like.sizes["x"]),
                                  transform=transform, fill=0, dtype="uint8")
        grid = like
        pred, ok = burn.astype(bool), np.ones(burn.shape, dtype=bool)
    else:
        grid = predicted
        crs, transform = _crs_and_transform(predicted)
        pred, ok = _glacier_and_valid(predicted, threshold)
    if valid is not None:
        ok = ok & np.asarray(getattr(valid, "values", valid), dtype=bool)
    pred = pred & ok
    factor = _metres_per_unit(crs)
    if np.isnan(factor):
        raise GlacierKitError(
            f"The mask is in a geographic CRS ({crs}); areas and distances need a projected "
            "one. Reproject it, e.g. mask.rio.reproject(mask.rio.estimate_utm_crs())."
        )
    res = (abs(transform.e) * factor, abs(transform.a) * factor)
    px_km2 = abs(transform.a * transform.e - transform.b * transform.d) * factor**2 / 1e6

    gdf = read_outlines(reference).to_crs(crs)
    scene_box = box(*grid.rio.bounds())
    hits = gdf[gdf.intersects(scene_box)].reset_index(drop=True)
    if hits.empty:
        raise NoOverlapError(
            f"None of the {len(gdf)} reference outlines overlaps the scene "
            f"{tuple(round(b, 1) for b in grid.rio.bounds())} ({crs})."
        )
    shape = pred.shape
    labels = features.rasterize(((g, i + 1) for i, g in enumerate(hits.geometry)),
                                out_shape=shape, transform=transform, fill=0, dtype="int32")
    ids = (hits[id_column].astype(str).to_numpy() if id_column in hits.columns
           else np.array([str(i + 1) for i in range(len(hits))]))
    n = len(hits)
    ref = (labels > 0) & ok
    ref_px = np.bincount(labels[ok], minlength=n + 1)
    inside_px = np.bincount(labels[pred], minlength=n + 1)
    owner = _nearest_owner(labels, res, neighbourhood_m)
    mapped_px = np.bincount(owner[pred], minlength=n + 1)
    rb = _boundary(ref, ok)
    pb = _boundary(pred, ok)
    d_to_pred = _distance_to(pb, res)
    if d_to_pred is not None:
        dist_sum = np.bincount(labels[rb], weights=d_to_pred[rb], minlength=n + 1)
    else:
        dist_sum = np.full(n + 1, np.nan)
    dist_n = np.bincount(labels[rb], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame({
            id_column: ids,
            "ref_area_km2": ref_px[1:] * px_km2,
            "mapped_inside_km2": inside_px[1:] * px_km2,
            "mapped_km2": mapped_px[1:] * px_km2,
            "area_difference_pct": 100.0 * (mapped_px[1:] - ref_px[1:]) / ref_px[1:],
            "inside_fraction": inside_px[1:] / ref_px[1:],
            "boundary_distance_m": np.where(dist_n[1:] > 0, dist_sum[1:] / dist_n[1:], np.nan),
            "complete": hits.geometry.within(scene_box).to_numpy(),
        })
    table = table[ref_px[1:] > 0].sort_values("ref_area_km2", ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    ref_total = int(ref.sum())
    mapped_total = int(pred.sum())
    dist = boundary_distances(pred, ref, ok, res)
    summary = {
        "reference_area_km2": ref_total * px_km2,
        "mapped_area_km2": mapped_total * px_km2,
        "area_difference_pct": (100.0 * (mapped_total - ref_total) / ref_total
                                if ref_total else float("nan")),
        "mapped_in_reference_km2": int((pred & ref).sum()) * px_km2,
        "n_glaciers": int(len(table)),
        "n_complete": int(table["complete"].sum()),
        "mean_distance_m": dist["mean"],
        "median_distance_m": dist["median"],
        "pred_to_ref_distance_m": dist["pred_to_ref"],
        "ref_to_pred_distance_m": dist["ref_to_pred"],
        "pixel_area_m2": px_km2 * 1e6,
    }
    return OutlineComparison(summary, table)
