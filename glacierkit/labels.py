"""Glacier labels on a scene's exact grid.

Outlines (RGI, GLIMS or your own; shapefile, GeoPackage, GeoJSON or a GeoDataFrame in any
CRS) are reprojected to the scene's CRS and burned into a ``uint8`` mask (1 = glacier).

**Which pixels count as glacier.** By default a pixel is glacier when its *centre* lies in
an outline (``all_touched=False``, rasterio's default). This is unbiased for area: pixels
cut by the outline are as often in as out. ``all_touched=True`` marks every pixel the
outline touches and inflates glacier area by about half a pixel all round (on the Alps
sample, Aletsch goes from 0.635 to 0.662 glacier fraction).

**Unknown pixels.** Labels hold 1 (glacier), 0 (not glacier) and :data:`NODATA` = 255
(unknown: no data, or outside a partial outline where the truth is not known). In memory,
float labels may use NaN for the same. Every consumer (training tiles and loss, metrics,
threshold sweeps, the slider, error maps) counts an unknown pixel in no class;
:func:`reference` gives the common float form. :func:`partial_outline_labels` builds such
labels from an outline that covers only part of the ice (e.g. Athabasca's).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr

from ._util import NODATA
from .exceptions import (
    DataNotFoundError,
    GlacierKitError,
    MissingCRSError,
    NoOverlapError,
    OutlineGeometryError,
)

log = logging.getLogger(__name__)

__all__ = ["read_outlines", "rasterize_outlines", "align_raster", "glacier_fraction", "reference", "known", "partial_outline_labels", "PARTIAL_MASKS"]



def known(labels) -> np.ndarray:
    """Boolean mask of pixels whose label is known (not NaN, not :data:`NODATA`)."""
    values = np.asarray(getattr(labels, "values", labels))
    ok = values != NODATA
    if values.dtype.kind == "f":
        ok &= ~np.isnan(values)
    return ok


def reference(labels) -> np.ndarray:
    """Labels as float32: 1 glacier, 0 not glacier, NaN unknown (NaN or :data:`NODATA`)."""
    values = np.asarray(getattr(labels, "values", labels))
    out = (values > 0).astype("float32") if values.dtype != bool else values.astype("float32")
    out[~known(values)] = np.nan
    return out


def read_outlines(outlines, ids: Iterable[str] | None = None, id_column: str = "RGIId"):
    """Read outlines (path, sample dataset name or GeoDataFrame), optionally a subset.

    Parameters
    ----------
    outlines
        A path to a vector file, a sample dataset name (``"alps-s2"``, ``"everest-l7"``,
        ``"athabasca"`` ...; :func:`glacierkit.data.outline_datasets`), or a GeoDataFrame.
    ids
        Keep only these glacier ids (values of ``id_column``).
    id_column
        The id column, ``RGIId`` for RGI outlines.
    """
    import geopandas as gpd

    from .data import samples as _data

    if isinstance(outlines, gpd.GeoDataFrame):
        gdf = outlines
    elif isinstance(outlines, (str, os.PathLike)) and not Path(outlines).exists() and str(
            outlines) in _data.outline_datasets():
        gdf = _data.outlines(str(outlines))
    else:
        path = Path(outlines)
        if not path.exists():
            raise DataNotFoundError(
                f"Outline file not found: {path}. Give a shapefile, GeoPackage or GeoJSON path, "
                f"a GeoDataFrame, or a sample name {_data.outline_datasets()}."
            )
        try:
            gdf = gpd.read_file(path)
        except Exception as exc:
            raise GlacierKitError(f"Cannot read outlines from {path}: {exc}") from exc
    if gdf.crs is None:
        raise MissingCRSError(
            "The outlines have no CRS. Set it with gdf.set_crs('EPSG:4326') (RGI outlines are "
            "in EPSG:4326) or fix the file's .prj."
        )
    if ids is not None:
        ids = list(ids)
        if id_column not in gdf.columns:
            raise GlacierKitError(
                f"The outlines have no column {id_column!r} to pick ids from. Columns: "
                f"{list(gdf.columns)}."
            )
        missing = sorted(set(ids) - set(gdf[id_column]))
        if missing:
            raise GlacierKitError(f"Glacier ids not in the outlines: {missing[:10]}.")
        gdf = gdf[gdf[id_column].isin(ids)]
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    return _polygons_only(gdf, id_column)


_POLYGONAL = ("Polygon", "MultiPolygon")


def _polygonal_part(geom):
    """The polygons of a geometry (of a GeometryCollection: its polygon members)."""
    import shapely

    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in _POLYGONAL:
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in geom.geoms if g.geom_type in _POLYGONAL and not g.is_empty]
        return shapely.union_all(parts) if parts else None
    return None


def _polygons_only(gdf, id_column: str = "RGIId"):
    """Outlines are polygons: refuse points and lines (they would be burned as glacier),
    repair invalid polygons with ``make_valid`` and say so. Returns a new GeoDataFrame."""
    import geopandas as gpd
    import shapely

    if gdf.empty:
        return gdf

    def names(mask) -> str:
        ids = gdf.loc[mask, id_column] if id_column in gdf.columns else gdf.index[mask]
        shown = [str(v) for v in list(ids)[:5]]
        return ", ".join(shown) + (" ..." if int(mask.sum()) > 5 else "")

    kinds = gdf.geom_type
    collections = (kinds == "GeometryCollection").to_numpy()
    geoms = gdf.geometry.to_numpy().copy()
    for i in np.flatnonzero(collections):
        geoms[i] = _polygonal_part(geoms[i])
    not_polygons = np.array([g is None or g.geom_type not in _POLYGONAL for g in geoms])
    if not_polygons.any():
        counts = kinds[not_polygons].value_counts()
        what = ", ".join(f"{n} {k}" for k, n in counts.items())
        raise OutlineGeometryError(
            f"{int(not_polygons.sum())} of the {len(gdf)} outlines are not polygons ({what}; "
            f"e.g. {names(not_polygons)}). Glacier outlines must be polygons: points and lines "
            "would be burned as glacier. Remove those features, or buffer them into polygons "
            "(gdf.buffer(metres)) if that is what they mean."
        )
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        repaired = [_polygonal_part(shapely.make_valid(g)) for g in geoms[invalid]]
        log.warning(
            "%d of the %d outlines are invalid polygons (e.g. self-intersecting: %s); repaired "
            "with shapely.make_valid. Check them in a GIS if the glacier areas matter.",
            int(invalid.sum()), len(gdf), names(invalid))
        for i, g in zip(np.flatnonzero(invalid), repaired, strict=True):
            geoms[i] = g
    keep = np.array([g is not None and not g.is_empty for g in geoms])
    if not keep.all():
        log.warning("%d invalid outlines had no area left after the repair and are dropped "
                    "(%s).", int((~keep).sum()), names(~keep))
    out = gdf.copy()
    out[gdf.geometry.name] = gpd.GeoSeries(list(geoms), index=gdf.index, crs=gdf.crs)
    out.attrs = {**gdf.attrs, "repaired": int(invalid.sum())}
    return out[keep]


def rasterize_outlines(
    outlines,
    like: xr.DataArray,
    *,
    all_touched: bool = False,
    ids: Iterable[str] | None = None,
    id_column: str = "RGIId",
    chunks=None,
) -> xr.DataArray:
    """Burn glacier outlines into a ``uint8`` mask on the exact grid of ``like``.

    Parameters
    ----------
    outlines
        Path, sample name or GeoDataFrame (any CRS; reprojected to the scene's).
    like
        The scene (or any DataArray with ``y``/``x`` and a CRS) giving the grid.
    all_touched
        ``False`` (default): a pixel is glacier when its centre is inside an outline.
        ``True``: any pixel an outline touches (biased high by about half a pixel per edge).
    ids, id_column
        Keep only some glaciers, e.g. ``ids=["RGI50-11.01450"]``.
    chunks
        Rasterize lazily with dask in blocks of this size (an int or ``(rows, cols)``);
        by default lazily exactly when ``like`` is dask-backed, with its chunks.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` uint8, 1 for glacier and 0 elsewhere, with the scene's coordinates and CRS,
        named ``glacier``.

    Raises
    ------
    NoOverlapError
        When no outline intersects the scene.
    """
    from rasterio import features
    from shapely.geometry import box

    crs = like.rio.crs
    if crs is None:
        raise MissingCRSError(
            "The scene has no CRS, so outlines cannot be placed on it. Set it with "
            "scene.rio.write_crs('EPSG:xxxx')."
        )
    gdf = _to_crs(read_outlines(outlines, ids=ids, id_column=id_column), crs)
    bounds = like.rio.bounds()
    scene_box = box(*bounds)
    hits = gdf[gdf.intersects(scene_box)]
    if hits.empty:
        gb = gdf.total_bounds
        raise NoOverlapError(
            f"None of the {len(gdf)} outlines overlaps the scene. Scene bounds in {crs}: "
            f"{tuple(round(b, 1) for b in bounds)}; outline bounds: "
            f"{tuple(round(float(b), 1) for b in gb)}. Check that the outlines and the scene "
            "cover the same area and that both CRSs are right."
        )
    shape = (like.sizes["y"], like.sizes["x"])
    transform = like.rio.transform()
    geoms = list(hits.geometry)
    if chunks is None and like.chunks:
        chunks = (like.chunks[like.dims.index("y")], like.chunks[like.dims.index("x")])
    if chunks:
        mask = _rasterize_lazy(geoms, shape, transform, all_touched, chunks)
    else:
        mask = features.rasterize(((geom, 1) for geom in geoms), out_shape=shape,
                                  transform=transform, fill=0, all_touched=all_touched,
                                  dtype="uint8")
    out = xr.DataArray(mask, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                       name="glacier",
                       attrs={"all_touched": int(all_touched), "n_outlines": len(hits),
                              "long_name": "glacier (1) / not glacier (0)"})
    out = out.rio.write_crs(crs).rio.write_transform(transform)
    log.info("Rasterized %d outlines%s", len(hits), " (lazily)" if chunks else "")
    return out


def _to_crs(gdf, crs):
    """Reproject outlines; refuse those that have no place in ``crs``."""
    source = gdf.crs
    try:
        out = gdf.to_crs(crs)
    except Exception as exc:  # pyproj errors
        raise GlacierKitError(
            f"Cannot reproject the outlines from {source} to the scene's {crs} ({exc}). Check "
            "the outlines' CRS (.prj / gdf.crs)."
        ) from exc
    bounds = out.geometry.bounds.to_numpy()
    bad = ~np.isfinite(bounds).all(axis=1)
    if bad.any():
        raise GlacierKitError(
            f"{int(bad.sum())} of the {len(out)} outlines have no place in the scene's {crs}: "
            f"their coordinates are outside the valid range of {source} (e.g. latitudes beyond "
            "90 degrees). Check the outlines' CRS (.prj / gdf.crs)."
        )
    return out


def _rasterize_lazy(geoms, shape, transform, all_touched, chunks):
    """Rasterize chunk by chunk with dask: each block burns only the outlines it meets.

    Every block uses the full grid's transform shifted to its corner, so the result is
    identical to rasterizing the whole grid at once.
    """
    import dask.array as dsa
    from affine import Affine
    from rasterio import features
    from shapely import STRtree
    from shapely.geometry import box

    tree = STRtree(geoms)

    def burn(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        t = transform @ Affine.translation(c0, r0)
        x0, y0 = t @ (0, 0)
        x1, y1 = t @ (c1 - c0, r1 - r0)
        idx = tree.query(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        if len(idx) == 0:
            return np.zeros((r1 - r0, c1 - c0), dtype="uint8")
        return features.rasterize(((geoms[i], 1) for i in sorted(idx)), out_shape=(r1 - r0, c1 - c0),
                                  transform=t, fill=0, all_touched=all_touched, dtype="uint8")

    if isinstance(chunks, int):
        chunks = (chunks, chunks)
    return dsa.map_blocks(burn, chunks=dsa.core.normalize_chunks(chunks, shape), dtype="uint8",
                          meta=np.zeros((0, 0), dtype="uint8"))


def align_raster(raster, like: xr.DataArray) -> xr.DataArray:
    """Put a raster label (path or DataArray) on the grid of ``like`` (nearest neighbour)."""
    from rasterio.enums import Resampling

    from .io.raster import open_raster

    da = open_raster(raster) if not isinstance(raster, xr.DataArray) else raster
    if da.rio.crs is None:
        raise MissingCRSError("The label raster has no CRS. Set it with rio.write_crs(...).")
    out = da.rio.reproject_match(like, resampling=Resampling.nearest)
    if "band" in out.dims and out.sizes["band"] == 1:
        out = out.squeeze("band", drop=True)
    return out.assign_coords(x=like["x"], y=like["y"])


def glacier_fraction(labels: xr.DataArray, valid: xr.DataArray | None = None) -> float:
    """Fraction of valid pixels labelled glacier."""
    values = np.asarray(labels.values)
    ok = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    if valid is not None:
        ok &= np.asarray(valid.values, dtype=bool)
    n = int(ok.sum())
    return float((values[ok] > 0).sum() / n) if n else float("nan")


#: Masks :func:`partial_outline_labels` can build, by name.
PARTIAL_MASKS = {
    "known-truth": "1 inside the outline; 0 outside where the index is below clear_below on "
                   "every date (clearly not snow or ice); unknown elsewhere",
    "inside": "1 inside the outline, unknown elsewhere (scores misses only)",
    "outline": "1 inside, 0 everywhere outside (treats unlabelled ice as not glacier: biased)",
}


def partial_outline_labels(outlines, like: xr.DataArray, scenes=(), *,
                           mask: str = "known-truth", clear_below: float = 0.2,
                           all_touched: bool = False) -> xr.DataArray:
    """Labels from an outline that covers only part of the ice in the scene.

    With a partial outline (one glacier of an icefield, say), "outside" does not mean "not
    glacier". The ``known-truth`` mask keeps only pixels whose truth is known: glacier
    inside the outline, and outside it only pixels that are clearly not snow or ice on
    every date: NDSI below ``clear_below`` in every one of ``scenes``. Everything else is
    :data:`NODATA`. This mask favours NDSI (NDSI cannot make a false alarm on it by
    construction), so report a method's false-alarm rate on its ``0`` pixels beside kappa.

    Parameters
    ----------
    outlines
        The partial outline (path, sample name or GeoDataFrame).
    like
        The grid of the labels.
    scenes
        Scenes of the same area (any grids; put on ``like``'s by nearest neighbour) whose
        NDSI decides "clearly not snow or ice". A pixel with no data on any date is unknown.
    mask
        ``"known-truth"`` (default), ``"inside"`` or ``"outline"`` (see :data:`PARTIAL_MASKS`).
    clear_below
        NDSI below which a pixel is clearly not snow or ice.
    all_touched
        Passed to :func:`rasterize_outlines`.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` uint8: 1, 0 or :data:`NODATA`, on ``like``'s grid, named ``glacier``.
    """
    from rasterio.enums import Resampling

    from .exceptions import ParameterError
    from .indices import ndsi

    if mask not in PARTIAL_MASKS:
        raise ParameterError(f"Unknown mask {mask!r}. Valid: {sorted(PARTIAL_MASKS)}.")
    inside = rasterize_outlines(outlines, like=like, all_touched=all_touched)
    values = np.where(inside.values > 0, 1, NODATA).astype("uint8")
    if mask == "outline":
        values[:] = (inside.values > 0).astype("uint8")
    elif mask == "known-truth":
        if not scenes:
            raise ParameterError(
                "mask='known-truth' needs the scenes whose NDSI marks clear rock (scenes=[...])."
            )
        clear = np.ones(values.shape, dtype=bool)
        for scene in scenes:
            index = ndsi(scene)
            if index.shape != like.shape[-2:] or not np.allclose(
                    index.rio.transform()[:6], like.rio.transform()[:6]):
                index = index.rio.reproject_match(like, resampling=Resampling.nearest)
            with np.errstate(invalid="ignore"):
                clear &= np.asarray(index.values) < clear_below  # NaN: not clear
        values[(inside.values == 0) & clear] = 0
    out = xr.DataArray(values, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                       name="glacier",
                       attrs={"mask": mask, "clear_below": clear_below,
                              "long_name": "glacier (1) / not glacier (0) / unknown (255)",
                              "_FillValue": NODATA})
    return out.rio.write_crs(like.rio.crs).rio.write_transform(like.rio.transform())
