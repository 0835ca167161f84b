"""Glacier change through time: one region mapped on several dates, area per glacier with its
uncertainty, against a dated reference outline.

:func:`glacier_change` maps every scene with the U-Net and with NDSI, and measures, per
glacier (``RGIId``) and date, the glacier area **inside the reference outline** (the glacier's
extent at ``reference_date``; with a retreating glacier the whole of it, with an icefield the
ice drained by the outlined glacier, so neighbouring ice never counts):

- ``area_km2``: the U-Net's glacier pixels (probability above the model's threshold) with
  their pixel-centre area; ``area_ndsi_km2`` the same for NDSI above its threshold;
- ``sigma_buffer_km2``: half the difference between the area of the map grown and shrunk by
  ``buffer_px`` pixels (± 1 pixel on the outline, the usual practice: Granshaw and Fountain
  2006, Paul et al. 2013). Growing and shrinking use the whole map, so where the outline
  only cuts through ice (an ice divide with a neighbour) nothing moves;
- ``sigma_methods_km2``: half the U-Net/NDSI disagreement, ``|A_unet - A_ndsi| / 2``;
- ``sigma_km2``: both, added in quadrature (taken as independent);
- ``obscured_fraction``: the share of the glacier's reference area without a valid value on
  that date (cloud, shadow, cirrus or no data; :mod:`glacierkit.io.clouds`). Above
  :data:`~glacierkit.io.clouds.OBSCURED_LIMIT` the area is a lower bound: flagged and
  warned about on one line.

The reference's own area is that of the polygons, with the same ± ``buffer_px`` buffer
uncertainty on its whole perimeter. ``changes`` then gives, per glacier and date, the change
from the reference (``dA_km2`` with ``sigma_dA_km2``, the two sigmas in quadrature), in % of
the reference, and the rate per year (for dates at least a year apart). A reference date
that is only a year is taken as its middle (2 July), ±0.5 year.

The results are written as CSV (areas and changes, with each glacier's centroid in lon/lat
so QGIS places them) and a GeoPackage (``outlines``: the mapped outlines by date and the
reference, in the scenes' CRS; ``glaciers``: the reference polygons with their change),
atomically. :meth:`GlacierChange.figure` draws the time series and
:meth:`GlacierChange.view` is its interactive (hvplot) version; :func:`outline_figure` maps
the outlines by date.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import DomainShiftWarning, ObscuredWarning, ParameterError

log = logging.getLogger(__name__)

__all__ = ["GlacierChange", "glacier_change", "area_uncertainty", "outline_figure",
           "decimal_year"]

#: Methods compared, as named in the tables.
UNET_COL, NDSI_COL = "area_km2", "area_ndsi_km2"


def decimal_year(date: str) -> tuple[float, float]:
    """``(decimal year, its uncertainty in years)`` of ``YYYY`` (mid-year, ±0.5) or
    ``YYYY-MM-DD`` (±0)."""
    text = str(date).strip()
    try:
        if len(text) == 4 and text.isdigit():
            return int(text) + 0.5, 0.5
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ParameterError(
            f"Date {date!r}: give YYYY-MM-DD, or YYYY when only the year is known."
        ) from None
    start = dt.date(day.year, 1, 1)
    length = (dt.date(day.year + 1, 1, 1) - start).days
    return day.year + (day - start).days / length, 0.0


def area_uncertainty(mask: np.ndarray, zones: np.ndarray, n_zones: int, valid: np.ndarray,
                     buffer_px: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts per zone of ``mask`` and its ± ``buffer_px`` buffer half-width.

    ``mask`` (bool) is grown and shrunk by ``buffer_px`` pixels (4-connected steps, a
    distance of one pixel each) over the whole grid, then counted in each zone
    (``zones``: 0 = none, 1..n); grown pixels count only where ``valid``. Returns
    ``(counts, half_widths)``, each of length ``n_zones + 1`` (index = zone).
    """
    from scipy import ndimage

    counts = np.bincount(zones[mask].ravel(), minlength=n_zones + 1)
    if buffer_px <= 0:
        return counts, np.zeros_like(counts, dtype="float64")
    grown = ndimage.binary_dilation(mask, iterations=buffer_px) & valid
    shrunk = ndimage.binary_erosion(mask, iterations=buffer_px)
    plus = np.bincount(zones[grown].ravel(), minlength=n_zones + 1)
    minus = np.bincount(zones[shrunk].ravel(), minlength=n_zones + 1)
    return counts, (plus - minus) / 2.0


@dataclass
class GlacierChange:
    """What :func:`glacier_change` measured (see the module docstring)."""

    areas: pd.DataFrame  # one row per glacier and date (the reference first)
    changes: pd.DataFrame  # one row per glacier and mapped date: change from the reference
    outlines: object  # GeoDataFrame: the mapped outlines by date, and the reference
    reference: object  # GeoDataFrame: the reference polygons with their glacier ids
    maps: dict = field(repr=False, default_factory=dict)  # date -> scene, probability, masks
    params: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per glacier and date: area ± sigma, change ± sigma and rate, rounded (the
        README's table)."""
        a = self.areas.set_index(["glacier", "date"])
        c = self.changes.set_index(["glacier", "date"])
        out = a[["sensor", "area_km2", "sigma_km2", "area_ndsi_km2", "obscured_fraction"]].join(
            c[["dA_km2", "sigma_dA_km2", "dA_pct", "rate_km2_per_yr", "sigma_rate_km2_per_yr"]])
        return out.reset_index().round(3)

    def write(self, output_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``change_areas.csv``, ``change.csv``, ``change.gpkg`` (layers
        ``outlines`` and ``glaciers``) and ``change.json`` into ``output_dir``, each
        atomically; return their paths."""
        from .._util import write_json
        from ..io.write import write_table

        out = Path(output_dir)
        paths = {"areas": write_table(self.areas, out / "change_areas.csv"),
                 "changes": write_table(self.changes, out / "change.csv"),
                 "gpkg": _write_layers(out / "change.gpkg", {
                     "outlines": self.outlines, "glaciers": self._glacier_layer()})}
        paths["json"] = write_json(out / "change.json", {
            "params": self.params, "areas": self.areas.to_dict("records"),
            "changes": self.changes.to_dict("records")})
        return paths

    def _glacier_layer(self):
        """The reference polygons with the change to the last mapped date."""
        last = self.changes.sort_values("decimal_year").groupby("glacier").tail(1)
        cols = ["glacier", "date", "area_km2", "sigma_km2", "dA_km2", "sigma_dA_km2",
                "dA_pct", "rate_km2_per_yr", "sigma_rate_km2_per_yr"]
        layer = self.reference[["glacier", "geometry"]].merge(
            last[cols].rename(columns={"date": "last_date"}), on="glacier", how="left")
        ref = self.areas[self.areas["kind"] == "reference"][["glacier", "area_km2"]]
        return layer.merge(ref.rename(columns={"area_km2": "reference_area_km2"}),
                           on="glacier", how="left")

    def figure(self, glaciers: Sequence[str] | None = None):
        """The areas through time with their uncertainty (matplotlib): the whole record,
        and the mapped dates alone (the dates of one season are close together)."""
        import matplotlib.pyplot as plt

        areas = self.areas
        names = list(glaciers) if glaciers is not None else list(
            areas.groupby("glacier")["area_km2"].max().sort_values(ascending=False).index[:6])
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, name in enumerate(names):
            t = areas[areas["glacier"] == name]
            mapped, ref = t[t["kind"] == "mapped"], t[t["kind"] == "reference"]
            c = colours[k % len(colours)]
            when = pd.to_datetime(mapped["date"])
            for ax, x in ((axes[0], mapped["decimal_year"]), (axes[1], when)):
                ax.errorbar(x, mapped["area_km2"], yerr=mapped["sigma_km2"], fmt="o", color=c,
                            capsize=3, label=f"{name}: U-Net ± sigma")
                ax.plot(x, mapped["area_ndsi_km2"], "x", color=c, label=f"{name}: NDSI")
            axes[0].errorbar(ref["decimal_year"], ref["area_km2"], yerr=ref["sigma_km2"],
                             xerr=ref["sigma_year"], fmt="s", color=c, mfc="white", capsize=3,
                             label=f"{name}: reference outline")
        axes[0].set_xlabel("year")
        axes[0].set_ylabel("glacier area inside the reference outline (km²)")
        axes[0].set_title("area through time", fontsize=10)
        axes[0].legend(fontsize=7)
        axes[1].set_xlabel("date")
        axes[1].set_title("the mapped dates", fontsize=10)
        axes[1].tick_params(axis="x", labelrotation=30, labelsize=8)
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def view(self):
        """The areas through time, interactive (hvplot/HoloViews; hover for the values)."""
        import holoviews as hv

        from ..plot import hvplot_accessors

        hvplot_accessors()  # .hvplot, keeping the notebook's (inline) BokehJS

        t = self.areas.assign(lower=self.areas["area_km2"] - self.areas["sigma_km2"],
                              upper=self.areas["area_km2"] + self.areas["sigma_km2"])
        points = t.hvplot.scatter(x="decimal_year", y="area_km2", by="glacier",
                                  hover_cols=["date", "sensor", "kind", "sigma_km2",
                                              "area_ndsi_km2", "obscured_fraction"],
                                  size=60, xlabel="year", ylabel="area (km²)")
        bars = hv.ErrorBars(t, kdims="decimal_year", vdims=["area_km2", "sigma_km2"])
        return (bars * points).opts(width=650, height=320, title="glacier area ± sigma")


def _write_layers(path: Path, layers: dict) -> Path:
    """Several layers in one GeoPackage, written under a temporary name and renamed."""
    from .._util import atomic_path

    with atomic_path(path) as tmp:
        gpkg = tmp.with_name(tmp.name + ".gpkg")  # GDAL wants the .gpkg extension
        try:
            for name, gdf in layers.items():
                gdf.to_file(gpkg, driver="GPKG", layer=name)
            os.replace(gpkg, tmp)
        finally:
            for side in (gpkg, *gpkg.parent.glob(gpkg.name + "-*")):
                side.unlink(missing_ok=True)
    return path


def _reference(outlines, id_column: str, crs):
    """The reference polygons in ``crs`` with a ``glacier`` id column (``id_column``, or
    ``outline-1``, ``outline-2`` ... when the outlines have none)."""
    from ..labels import read_outlines

    gdf = read_outlines(outlines).to_crs(crs)
    if id_column in gdf.columns:
        ids = gdf[id_column].astype(str)
    else:
        stem = Path(str(outlines)).stem if isinstance(outlines, (str, os.PathLike)) else "outline"
        ids = pd.Series([f"{stem}-{k + 1}" for k in range(len(gdf))], index=gdf.index)
        log.info("The outlines have no %s column; the glaciers are numbered %s-1 ...",
                 id_column, stem)
    gdf = gdf.assign(glacier=ids.values)
    if gdf["glacier"].duplicated().any():
        gdf = gdf.dissolve("glacier", as_index=False)
    return gdf.reset_index(drop=True)


def _reference_sigma(zones: np.ndarray, ice: np.ndarray, n: int,
                     buffer_px: int) -> np.ndarray:
    """The reference outline's ± ``buffer_px`` buffer half-width in pixels, per zone.

    The polygons are grown outward (the pixels gained go to the zone they touch) and shrunk
    inward by ``buffer_px`` pixels. As for the maps, only edges between ice and no ice move:
    the ice mapped outside the polygons on the first date neither receives growth nor lets
    its neighbours shrink, so an outline segment that cuts through ice (a divide with a
    neighbouring glacier) does not count."""
    from scipy import ndimage

    if buffer_px <= 0:
        return np.zeros(n + 1)
    inside = zones > 0
    extended = inside | (ice & ~inside)
    shrunk = ndimage.binary_erosion(extended, iterations=buffer_px) & inside
    lost = np.bincount(zones[inside & ~shrunk].ravel(), minlength=n + 1)
    grown = ndimage.binary_dilation(extended, iterations=buffer_px) & ~extended
    owner = ndimage.grey_dilation(zones, size=(2 * buffer_px + 1,) * 2)
    gained = np.bincount(owner[grown & (owner > 0)].ravel(), minlength=n + 1)
    return (lost + gained) / 2.0


def glacier_change(
    scenes: Sequence,
    outlines,
    model,
    *,
    ndsi_threshold: float,
    reference_date: str,
    id_column: str = "RGIId",
    threshold: float | None = None,
    buffer_px: int = 1,
    tta: bool = False,
    limit: float | None = None,
    progress: bool = False,
) -> GlacierChange:
    """Map glaciers on several dates and measure their area change (module docstring).

    Parameters
    ----------
    scenes
        Scenes of the region (sample names, files, STAC item URLs or opened DataArrays),
        any dates, sensors and grids; each needs a ``date`` attribute. STAC items are read
        over the outlines only.
    outlines
        The reference outlines (file, sample name or GeoDataFrame): the glaciers at
        ``reference_date``, within which the areas are measured.
    model
        A ``.keras`` path (with its sidecar) or a loaded model pair.
    ndsi_threshold
        NDSI above which a pixel is glacier for the second method (the threshold learned on
        the training scenes).
    reference_date
        Date of the outlines: ``YYYY-MM-DD``, or ``YYYY`` (taken as mid-year, ±0.5 year).
    id_column
        Glacier id column of the outlines (``RGIId``); without it they are numbered.
    threshold
        The U-Net's probability threshold (default: the model's own).
    buffer_px
        The outline buffer for the area uncertainty, in pixels of each scene.
    tta
        Test-time augmentation for the U-Net (8x slower).
    limit
        Obscured share of a glacier's area above which its area is flagged (default
        :data:`~glacierkit.io.clouds.OBSCURED_LIMIT`).

    Returns
    -------
    GlacierChange
    """
    import geopandas as gpd
    from rasterio import features

    from ..indices import ndsi
    from ..io.clouds import OBSCURED_LIMIT, warn_obscured
    from ..io.scene import open_scene
    from ..io.stac import is_item, open_item
    from ..unet.artifact import load_model
    from ..unet.predict import predict_scene
    from ..vectorize import mask_to_polygons

    if not scenes:
        raise ParameterError("No scenes to map: give at least one scene (scenes=[...]).")
    if buffer_px < 0:
        raise ParameterError(f"buffer_px={buffer_px} must not be negative.")
    limit = OBSCURED_LIMIT if limit is None else float(limit)
    ref_year, ref_sigma_year = decimal_year(reference_date)
    loaded = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    t_unet = float(threshold if threshold is not None else
                   loaded[1].get("architecture", {}).get("threshold", 0.5))
    # STAC items are read over the outlines only (an item is a whole tile); the obscured
    # share is warned about per glacier below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObscuredWarning)
        opened = [s if isinstance(s, xr.DataArray) else
                  open_item(str(s), outlines=outlines) if is_item(str(s)) else open_scene(s)
                  for s in scenes]
    crs = opened[0].rio.crs
    reference = _reference(outlines, id_column, crs)
    n = len(reference)
    res0 = abs(float(opened[0].rio.resolution()[0]))
    ref_area = reference.geometry.area.to_numpy() / 1e6
    ref_sigma = None  # from the first date's grid, below
    rows = []
    shapes, maps = [], {}
    for scene in opened:
        date = scene.attrs.get("date")
        if not date:
            raise ParameterError(
                f"The scene {scene.attrs.get('scene_id', '?')} has no date attribute; set "
                "scene.attrs['date'] = 'YYYY-MM-DD'.")
        year, _ = decimal_year(date)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DomainShiftWarning)  # in the table instead
            prob = predict_scene(loaded, scene, tta=tta, progress=progress)
        on_scene = reference.to_crs(scene.rio.crs)
        zones = features.rasterize(((g, k + 1) for k, g in enumerate(on_scene.geometry)),
                                   out_shape=(scene.sizes["y"], scene.sizes["x"]),
                                   transform=scene.rio.transform(), fill=0, dtype="int32")
        values = np.asarray(scene.values)
        valid = np.isfinite(values).all(axis=0) & np.isfinite(prob.values)
        index = np.asarray(ndsi(scene).values)
        with np.errstate(invalid="ignore"):
            unet = valid & (np.asarray(prob.values) > t_unet)
            nd = valid & (index > ndsi_threshold)
        px_km2 = abs(float(np.prod(scene.rio.resolution()))) / 1e6
        c_unet, h_unet = area_uncertainty(unet, zones, n, valid, buffer_px)
        c_nd, _ = area_uncertainty(nd, zones, n, valid, 0)
        total = np.bincount(zones.ravel(), minlength=n + 1)
        unseen = np.bincount(zones[~valid].ravel(), minlength=n + 1)
        if ref_sigma is None:  # the reference's buffer, on the first date's grid
            ref_sigma = _reference_sigma(zones, unet, n, buffer_px) * px_km2
            rows = [{"glacier": g, "date": str(reference_date), "kind": "reference",
                     "sensor": "outline", "decimal_year": ref_year,
                     "sigma_year": ref_sigma_year, "area_km2": a, "sigma_buffer_km2": sr,
                     "sigma_methods_km2": 0.0, "sigma_km2": sr, "area_ndsi_km2": np.nan,
                     "obscured_fraction": 0.0, "pixel_m": res0, "in_training_domain": None,
                     "source": str(outlines)}
                    for g, a, sr in zip(reference["glacier"], ref_area, ref_sigma[1:],
                                        strict=True)] + rows
        guard = prob.attrs.get("guard", {})
        for k, g in enumerate(reference["glacier"], start=1):
            a, a_nd = c_unet[k] * px_km2, c_nd[k] * px_km2
            s_buf, s_m = h_unet[k] * px_km2, abs(a - a_nd) / 2.0
            share = float(unseen[k] / total[k]) if total[k] else float("nan")
            rows.append({"glacier": g, "date": str(date), "kind": "mapped",
                         "sensor": scene.attrs.get("sensor"), "decimal_year": year,
                         "sigma_year": 0.0, "area_km2": a, "sigma_buffer_km2": s_buf,
                         "sigma_methods_km2": s_m, "sigma_km2": math.hypot(s_buf, s_m),
                         "area_ndsi_km2": a_nd, "obscured_fraction": share,
                         "pixel_m": abs(float(scene.rio.resolution()[0])),
                         "in_training_domain": guard.get("in_domain"),
                         "source": str(scene.attrs.get("scene_id", ""))})
            if share > limit:
                with warnings.catch_warnings():
                    warnings.simplefilter("always", ObscuredWarning)
                    warn_obscured(share, f"{g} on {date}", limit)
        polygons = mask_to_polygons(_on(unet & (zones > 0), scene))
        if len(polygons):
            polygons = polygons.to_crs(crs)
            shapes.append(polygons.assign(date=str(date), kind="mapped",
                                          sensor=scene.attrs.get("sensor"), method="U-Net"))
        maps[str(date)] = {"scene": scene, "probability": prob, "unet": unet, "ndsi": nd,
                           "zones": zones}
    areas = pd.DataFrame(rows)
    areas = pd.concat([areas[areas["kind"] == "reference"],
                       areas[areas["kind"] == "mapped"].sort_values(["decimal_year", "glacier"])],
                      ignore_index=True)
    areas["flag"] = np.where(areas["obscured_fraction"] > limit,
                             f"more than {limit:.0%} obscured: a lower bound", "")
    ref_outline = reference[["glacier", "geometry"]].assign(
        date=str(reference_date), kind="reference", sensor="outline", method="reference",
        area_km2=ref_area)
    outlines_gdf = gpd.GeoDataFrame(pd.concat([ref_outline, *shapes], ignore_index=True),
                                    geometry="geometry", crs=crs)
    changes = _changes(areas)
    params = {"reference_date": str(reference_date), "ndsi_threshold": float(ndsi_threshold),
              "unet_threshold": t_unet, "buffer_px": buffer_px, "tta": tta,
              "obscured_limit": limit, "id_column": id_column,
              "model": str(model) if isinstance(model, (str, os.PathLike)) else "in memory",
              "scenes": [str(s.attrs.get("scene_id", "")) for s in opened],
              "sigma": "sqrt(sigma_buffer^2 + sigma_methods^2); sigma_buffer = half the area "
                       f"difference of the map grown and shrunk by {buffer_px} px; "
                       "sigma_methods = |A_unet - A_ndsi| / 2"}
    _add_lonlat(areas, reference)
    _add_lonlat(changes, reference)
    return GlacierChange(areas, changes, outlines_gdf, reference, maps, params)


def _on(values: np.ndarray, scene: xr.DataArray) -> xr.DataArray:
    da = xr.DataArray(values.astype("uint8"), dims=("y", "x"),
                      coords={"y": scene["y"], "x": scene["x"]})
    return da.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())


def _changes(areas: pd.DataFrame) -> pd.DataFrame:
    """Per glacier and mapped date: the change from the reference, ± sigma, and per year."""
    rows = []
    for g, t in areas.groupby("glacier", sort=False):
        ref = t[t["kind"] == "reference"].iloc[0]
        for _, r in t[t["kind"] == "mapped"].iterrows():
            years = r["decimal_year"] - ref["decimal_year"]
            d = r["area_km2"] - ref["area_km2"]
            s = math.hypot(r["sigma_km2"], ref["sigma_km2"])
            yearly = abs(years) >= 1.0
            rows.append({"glacier": g, "date": r["date"], "reference_date": ref["date"],
                         "decimal_year": r["decimal_year"], "years": years,
                         "reference_area_km2": ref["area_km2"], "area_km2": r["area_km2"],
                         "sigma_km2": r["sigma_km2"], "dA_km2": d, "sigma_dA_km2": s,
                         "dA_pct": 100 * d / ref["area_km2"] if ref["area_km2"] else np.nan,
                         "rate_km2_per_yr": d / years if yearly else np.nan,
                         "sigma_rate_km2_per_yr": s / abs(years) if yearly else np.nan,
                         "flag": r["flag"]})
    return pd.DataFrame(rows)


def _add_lonlat(table: pd.DataFrame, reference) -> None:
    """Each glacier's centroid in lon/lat (EPSG:4326), so QGIS can place the CSV rows."""
    cent = reference.set_index("glacier").geometry.centroid.to_crs("EPSG:4326")
    table["lon"] = table["glacier"].map(cent.x).round(6)
    table["lat"] = table["glacier"].map(cent.y).round(6)


def outline_figure(change: GlacierChange, date: str | None = None, ax=None):
    """The outlines by date over the 6-5-2 composite of one mapped date (the last by
    default): the reference dashed, each mapped date in its colour."""
    import matplotlib.pyplot as plt

    from ..plot import show_composite

    dates = list(change.maps)
    date = date or dates[-1]
    scene = change.maps[date]["scene"]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7))
    show_composite(scene, ax=ax, title=f"outlines by date over {date}")
    gdf = change.outlines.to_crs(scene.rio.crs)
    ref = gdf[gdf["kind"] == "reference"]
    ref.boundary.plot(ax=ax, color="magenta", linewidth=1.4, linestyle="--")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = [plt.Line2D([], [], color="magenta", linestyle="--",
                          label=f"reference {ref['date'].iloc[0] if len(ref) else ''}")]
    for k, d in enumerate(dates):
        part = gdf[(gdf["kind"] == "mapped") & (gdf["date"] == d)]
        c = colours[k % len(colours)]
        if len(part):
            part.boundary.plot(ax=ax, color=c, linewidth=0.9)
        handles.append(plt.Line2D([], [], color=c, label=f"U-Net {d}"))
    ax.legend(handles=handles, fontsize=7, loc="lower left")
    return ax.figure
