"""Figures: static maps with matplotlib, interactive views with hvplot/HoloViews.

One idiom per kind of figure:

- **maps for the record** (composites, error maps, tiles) are matplotlib figures that
  headless runs save as PNG (:func:`show_composite`, :func:`show_error_map`, ...);
- **views people pan and hover** are hvplot/HoloViews objects (Bokeh in a notebook or an
  HTML report): :func:`map_view` (composite with outlines, hover on each glacier),
  :func:`error_view` (error classes, rasterized with datashader for full scenes),
  :func:`histogram_view`, :func:`sweep_view`, :func:`history_view` and
  :func:`glacier_table_view`. The curve views are also the saved PNGs: :func:`save_figure`
  renders a HoloViews object with HoloViews' matplotlib backend, so a curve is drawn by
  one builder only.

Every map is drawn in map coordinates (metres of the scene's CRS), so outlines, labels
and predictions overlay exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ._util import NODATA
from .bands import PAPER_BANDS, composite
from .metrics import ERROR_CODES, error_classes

__all__ = ["extent", "show_composite", "show_labels", "save_figure", "ERROR_COLOURS", "show_split", "show_patches", "show_dihedral", "leaflet_map", "display_stride", "show_error_map", "show_profiles", "map_view", "error_view", "histogram_view", "sweep_view", "history_view", "glacier_table_view", "methods_error_grid", "grid", "OUTLINE_COLOURS", "outline_colours"]

#: Colours for error maps: true negative, true positive, false positive, false negative.
ERROR_COLOURS = {"TN": "#f2f2f2", "TP": "#4a90d9", "FP": "#e8542f", "FN": "#f5c518"}


def extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` of a raster, for ``imshow(extent=...)``."""
    left, bottom, right, top = da.rio.bounds()
    return left, right, bottom, top


def show_composite(scene: xr.DataArray, roles: Sequence[str] = PAPER_BANDS, *, ax=None,
                   labels: xr.DataArray | None = None, outlines=None, title: str | None = None,
                   stretch=(2, 98)):
    """Draw an RGB composite with optional label contour (yellow) and outline polygons.

    ``outlines`` is a GeoDataFrame (drawn magenta) or ``{layer name: GeoDataFrame}``, drawn
    in the colours of :func:`outline_colours` with a legend (the same colours as
    :func:`map_view`, :func:`error_view` and :func:`leaflet_map`).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    rgb = composite(scene, roles=roles, stretch=stretch)
    ax.imshow(np.nan_to_num(rgb.values, nan=0.0), extent=extent(scene), interpolation="nearest")
    if labels is not None:
        ax.contour(labels["x"].values, labels["y"].values,
                   np.nan_to_num(np.asarray(labels.values, dtype="float32")), levels=[0.5],
                   colors="yellow", linewidths=0.8)
    if outlines is not None:
        from matplotlib.lines import Line2D

        layers = outlines if isinstance(outlines, Mapping) else {"outlines": outlines}
        handles = []
        for name, colour in outline_colours(layers).items():
            gdf = layers[name]
            if gdf is None or not len(gdf):
                continue
            gdf.to_crs(scene.rio.crs).boundary.plot(ax=ax, color=colour, linewidth=0.8)
            handles.append(Line2D([], [], color=colour, linewidth=1.5, label=name))
        if isinstance(outlines, Mapping) and handles:
            ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.85)
        left, right, bottom, top = extent(scene)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
    ax.set_title(title or f"{scene.attrs.get('scene_id', '')}  {'-'.join(roles)}", fontsize=9)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    return ax


def show_labels(labels: xr.DataArray, *, ax=None, title: str | None = None):
    """Draw a 0/1 label (or prediction) map."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(np.asarray(labels.values, dtype="float32"), extent=extent(labels),
              cmap=ListedColormap(["#5b4a3a", "#bfe6ff"]), vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(title or "glacier (light) / other (dark)", fontsize=9)
    ax.tick_params(labelsize=7)
    return ax


def _load_pyplot_backend() -> None:
    """Load pyplot's backend now, outside HoloViews' ``rc_context``.

    In a notebook kernel, pyplot loads its inline backend at the first figure, and that
    switches interactive mode on (``rcParams["interactive"]``). If the first figure is
    HoloViews' matplotlib rendering, the switch happens inside its ``rc_context``, which
    restores interactive mode to off on exit: from then on no matplotlib figure of the
    notebook is shown. Making (and closing) a figure first keeps the switch.
    """
    import matplotlib.pyplot as plt

    if not plt.get_fignums():
        plt.close(plt.figure())


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure or a HoloViews view atomically (PNG by suffix).

    A HoloViews object (for example from :func:`sweep_view`) is drawn with HoloViews'
    matplotlib backend, so headless runs get the same figure as a PNG; that rendering is
    closed afterwards, so a notebook shows the interactive view only. A matplotlib figure
    stays open (the notebook shows it).
    """
    import matplotlib.pyplot as plt

    from ._util import atomic_path

    path = Path(path)
    rendered = not hasattr(fig, "savefig")
    if rendered:  # a HoloViews element, overlay or layout
        import holoviews as hv

        _load_pyplot_backend()
        fig = hv.render(fig, backend="matplotlib")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    if rendered:
        plt.close(fig)
    return path


# --- U-Net training (notebook 04) --------------------------------------------------------------

def _box_patch(scene: xr.DataArray, box, **kwargs):
    """A matplotlib rectangle for a pixel window of ``scene``, in map coordinates."""
    from matplotlib.patches import Rectangle

    t = scene.rio.transform()
    x0, y0 = t * (box.col0, box.row0)
    x1, y1 = t * (box.col1, box.row1)
    return Rectangle((min(x0, x1), min(y0, y1)), abs(x1 - x0), abs(y1 - y0), **kwargs)


def show_split(scene: xr.DataArray, patches, name: str, *, labels: xr.DataArray | None = None,
               ax=None, roles: Sequence[str] = PAPER_BANDS):
    """The composite with the kept training tiles (cyan), dropped tiles (grey) and the
    validation block (red, hatched) of one scene of a :class:`~glacierkit.unet.Patches`."""
    from .unet.tiles import Box

    ax = show_composite(scene, roles=roles, labels=labels, ax=ax, title=name)
    cat = patches.catalogue[patches.catalogue["scene"] == name]
    for row in cat.itertuples():
        box = Box(row.row, row.row + row.size, row.col, row.col + row.size)
        if row.split == "validation":
            ax.add_patch(_box_patch(scene, box, fill=False, edgecolor="red", linewidth=0.8))
        elif row.status == "kept":
            ax.add_patch(_box_patch(scene, box, fill=False, edgecolor="cyan", linewidth=0.4,
                                    alpha=0.6))
        else:
            ax.add_patch(_box_patch(scene, box, fill=False, edgecolor="grey", linewidth=0.6,
                                    linestyle="--"))
    block = patches.regions[name].get("validation")
    if block is not None:
        ax.add_patch(_box_patch(scene, block, fill=False, edgecolor="red", linewidth=1.5,
                                hatch="//"))
    kept = int((cat["status"] == "kept").sum())
    ax.set_title(f"{name}: {kept} training tiles (cyan), validation (red)", fontsize=9)
    return ax


def _tile_rgb(x: np.ndarray) -> np.ndarray:
    """A displayable RGB of a normalized tile's first three channels (2-98 % stretch)."""
    rgb = x[..., :3] if x.shape[-1] >= 3 else np.repeat(x[..., :1], 3, axis=-1)
    lo, hi = np.percentile(rgb, [2, 98])
    return np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)


def show_patches(patches, n: int = 6, seed: int = 0):
    """``n`` random training tiles (first three channels) over their labels."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(patches.n_train, size=min(n, patches.n_train), replace=False))
    fig, axes = plt.subplots(2, len(idx), figsize=(2.2 * len(idx), 4.6), squeeze=False)
    kept = patches.catalogue[patches.catalogue["status"] == "kept"]
    kept = kept[kept["split"] == "train"].reset_index(drop=True)
    for j, i in enumerate(idx):
        axes[0, j].imshow(_tile_rgb(patches.x[i]), interpolation="nearest")
        axes[0, j].contour(patches.y[i], levels=[0.5], colors="yellow", linewidths=0.7)
        row = kept.iloc[i]
        axes[0, j].set_title(f"{row.scene.split('/')[-1]} r{row.row} c{row.col}", fontsize=8)
        axes[1, j].imshow(np.where(patches.w[i] > 0, patches.y[i], np.nan), vmin=0, vmax=1,
                          cmap="Blues", interpolation="nearest")
        axes[1, j].set_title(f"glacier {row.glacier_fraction:.0%}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Training tiles ({'-'.join(patches.spec.channels[:3])}) and labels",
                 fontsize=10)
    fig.tight_layout()
    return fig


def show_dihedral(patches, index: int = 0):
    """One training tile under the 8 flips/rotations that augmentation draws from."""
    import matplotlib.pyplot as plt

    from .unet.augment import dihedral

    fig, axes = plt.subplots(1, 8, figsize=(16, 2.4))
    for k, ax in enumerate(axes):
        ax.imshow(_tile_rgb(np.asarray(dihedral(patches.x[index], k))), interpolation="nearest")
        ax.contour(np.asarray(dihedral(patches.y[index][..., None], k))[..., 0], levels=[0.5],
                   colors="yellow", linewidths=0.7)
        ax.set_title(f"k={k}: {'flip + ' if k >= 4 else ''}{90 * (k % 4)} deg", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _png_data_url(rgb: np.ndarray) -> str:
    import base64
    import io as _io

    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    rgba = np.dstack([np.nan_to_num(rgb, nan=0.0), np.isfinite(rgb).all(axis=-1)])
    plt.imsave(buf, rgba.astype("float32"), format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def leaflet_map(scene: xr.DataArray, layers: dict | None = None,
                roles: Sequence[str] = PAPER_BANDS, max_pixels: int = 1_000_000):
    """An interactive leafmap map: the scene's composite plus vector layers (see
    :func:`_leaflet_map`). leafmap switches off every warning of the process when it is
    imported and in many of its functions (``warnings.filterwarnings("ignore")``), which
    silenced the domain-shift guard in the cells after the map; the process's warning
    filters are restored afterwards."""
    import warnings

    with warnings.catch_warnings():
        return _leaflet_map(scene, layers, roles, max_pixels)


def _leaflet_map(scene: xr.DataArray, layers: dict | None, roles: Sequence[str],
                 max_pixels: int):
    """An interactive leafmap map: the scene's composite plus vector layers.

    ``layers`` maps a layer name to a GeoDataFrame (reference outlines, predicted outlines
    ...), clipped to the scene, drawn in the colours of :func:`outline_colours` (as in the
    static and the HoloViews figures) and named in a legend. The composite is embedded as a PNG overlay
    (decimated to about ``max_pixels``), so no tile server is needed; the basemap needs the
    internet.
    """
    import ipyleaflet
    import leafmap
    from pyproj import Transformer
    from shapely.geometry import box

    stride = max(1, int(np.ceil(np.sqrt(scene.sizes["y"] * scene.sizes["x"] / max_pixels))))
    small = scene.isel(x=slice(None, None, stride), y=slice(None, None, stride))
    rgb = composite(small, roles=roles).values
    left, bottom, right, top = scene.rio.bounds()
    to_ll = Transformer.from_crs(scene.rio.crs, "EPSG:4326", always_xy=True)
    lons, lats = to_ll.transform([left, right, left, right], [bottom, bottom, top, top])
    south, north, west, east = min(lats), max(lats), min(lons), max(lons)
    m = leafmap.Map(center=((south + north) / 2, (west + east) / 2), zoom=12)
    m.add_layer(ipyleaflet.ImageOverlay(url=_png_data_url(rgb), bounds=((south, west),
                                        (north, east)), name="-".join(roles)))
    drawn = {}
    for name, colour in outline_colours(layers or {}).items():
        gdf = layers[name]
        if gdf is None or not len(gdf):
            continue
        gdf = gdf.to_crs(scene.rio.crs) if gdf.crs is not None else gdf
        gdf = gdf.clip(box(left, bottom, right, top))  # the scene's part, as in the other views
        gdf = gdf[~gdf.geometry.is_empty & gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
        if not len(gdf):
            continue
        style = {"color": colour, "weight": 1.5, "fillOpacity": 0.0}
        m.add_gdf(gdf.to_crs("EPSG:4326")[["geometry"]], layer_name=name, style=style,
                  zoom_to_layer=False, info_mode=None)
        drawn[name] = colour
    if drawn:
        m.add_legend(title="Outlines", legend_dict=drawn, position="bottomright")
    m.fit_bounds([[south, west], [north, east]])
    return m


# --------------------------------------------------------------------------- NDSI baseline
def display_stride(shape: tuple[int, int], max_pixels: int) -> int:
    """The smallest stride ``s`` such that ``shape[0]/s * shape[1]/s <= max_pixels``."""
    import math

    from .exceptions import ParameterError

    if max_pixels < 1:
        raise ParameterError(f"max_pixels must be positive; got {max_pixels}.")
    h, w = shape
    s = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    while math.ceil(h / s) * math.ceil(w / s) > max_pixels:
        s += 1
    return s


def _error_cmap():
    from matplotlib.colors import ListedColormap

    return ListedColormap([ERROR_COLOURS[k] for k in ("TN", "TP", "FP", "FN")])


def show_error_map(index: xr.DataArray, labels: xr.DataArray, threshold: float, *, ax=None,
                   title: str | None = None, max_pixels: int = 4_000_000):
    """Map of ``index > threshold`` against the labels: TP, FP, FN coloured, TN light grey.

    Scenes larger than ``max_pixels`` are drawn from every ``s``-th pixel (the legend then
    counts the drawn pixels; exact counts come from :func:`glacierkit.ndsi.sweep`).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    s = display_stride((index.sizes["y"], index.sizes["x"]), max_pixels)
    values = np.asarray(index.data[::s, ::s])
    labels = np.asarray(getattr(labels, "data", labels)[::s, ::s])
    t = values.dtype.type(threshold) if values.dtype.kind == "f" else threshold
    with np.errstate(invalid="ignore"):
        pred = np.where(np.isnan(values), np.nan, values > t)
    codes = error_classes(pred, labels)
    shown = np.ma.masked_equal(codes, NODATA)
    ax.imshow(shown, extent=extent(index), cmap=_error_cmap(), vmin=-0.5, vmax=3.5,
              interpolation="nearest")
    n = {k: int((codes == c).sum()) for k, c in ERROR_CODES.items()}
    note = "" if s == 1 else f" (1 in {s}x{s})"
    ax.legend(handles=[Patch(color=ERROR_COLOURS[k], label=f"{k} {n[k]:,}{note}")
                       for k in ("TP", "FP", "FN", "TN")], loc="lower right", fontsize=7,
              framealpha=0.85)
    ax.set_title(title or f"{index.attrs.get('scene_id', '')}  {index.name or 'index'} > "
                 f"{threshold:g}", fontsize=9)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    return ax


def show_profiles(profiles, *, ax=None, title: str | None = None):
    """Per-class spectral profiles from :func:`glacierkit.ndsi.spectral_profiles`."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    colours = {"glacier": "#4a90d9", "other": "#8c6d4f"}
    for name, part in profiles.groupby("class"):
        part = part.sort_values("wavelength")
        x = part["wavelength"].to_numpy()
        ax.plot(x, part["mean"], "o-", color=colours.get(name), label=f"{name} (mean)")
        ax.fill_between(x, part["q10"], part["q90"], color=colours.get(name), alpha=0.2,
                        label=f"{name} (10-90 %)")
    first = profiles.drop_duplicates("role").sort_values("wavelength")
    for xi, role in zip(first["wavelength"], first["role"], strict=True):
        ax.annotate(role, (xi, 0), textcoords="offset points", xytext=(2, 3), fontsize=6,
                    rotation=90, ha="left", va="bottom")
    ax.set_xlabel("wavelength (µm)")
    ax.set_ylabel("reflectance")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title(title or "", fontsize=9)
    return ax


# ------------------------------------------------------------------ interactive views (hvplot)
#: Colours of outline layers, in order (magenta, cyan, yellow, orange): every figure that
#: draws outlines (:func:`show_composite`, :func:`map_view`, :func:`error_view`,
#: :func:`leaflet_map`) takes them from :func:`outline_colours`.
OUTLINE_COLOURS = ("#ff00ff", "#00e5ff", "#ffd400", "#ff5a1f")


def outline_colours(layers) -> dict[str, str]:
    """``{layer name: colour}`` for outline layers, in order: the first is magenta, the
    second cyan ... (:data:`OUTLINE_COLOURS`), in every kind of figure."""
    return {name: OUTLINE_COLOURS[i % len(OUTLINE_COLOURS)] for i, name in enumerate(layers)}


#: Columns of an outline table shown on hover, when present (RGI names them so).
HOVER_COLUMNS = ("RGIId", "Name", "area_km2", "Area")


_EXTENSION_LOADED = False


def hvplot_accessors() -> None:
    """Register the ``.hvplot`` accessors without hvplot's own notebook extension call.

    Importing ``hvplot.pandas`` or ``hvplot.xarray`` calls ``hv.extension("bokeh")`` each
    time, which in a notebook writes a second BokehJS loader into the cell's output, one
    that fetches Bokeh and Panel from their CDNs (it ignores the ``inline=True`` of the
    notebook's own ``hv.extension`` call). Offline, or behind a proxy, that loader never
    finishes and every HoloViews view after it renders blank. So the import-time call is
    skipped; the extension is loaded once, inline, by :func:`_hv` if the notebook has not.
    """
    import sys

    if "hvplot.pandas" in sys.modules and "hvplot.xarray" in sys.modules:
        return
    import hvplot

    post_patch = hvplot.post_patch
    hvplot.post_patch = lambda *args, **kwargs: None
    try:
        import hvplot.pandas  # noqa: F401
        import hvplot.xarray  # noqa: F401
    finally:
        hvplot.post_patch = post_patch


def _hv():
    """HoloViews with the hvplot accessors registered (``.hvplot`` on xarray and pandas)
    and the Bokeh extension loaded (inline, once; see :func:`hvplot_accessors`)."""
    import holoviews as hv

    global _EXTENSION_LOADED
    hvplot_accessors()
    if not _EXTENSION_LOADED:
        if "bokeh" not in hv.Store.renderers or not getattr(hv.extension, "_loaded", True):
            import hvplot

            hvplot.extension("bokeh", logo=False, inline=True)
        _EXTENSION_LOADED = True
    if "matplotlib" not in hv.Store.renderers:  # options for the PNG rendering; the backend
        current = hv.Store.current_backend      # a notebook displays stays current
        import holoviews.plotting.mpl  # noqa: F401  (registers, without a notebook display)

        hv.Store.set_current_backend(current)
    return hv


def _mpl(view, *options, **kwargs):
    """Set options for the matplotlib rendering (the PNG of :func:`save_figure`) too."""
    return view.opts(*options, backend="matplotlib", **kwargs)


def _mark(x: float, label: str, span: tuple[float, float], colour: str, dash: str = "solid"):
    """A labelled vertical line from ``span[0]`` to ``span[1]`` (shown in the legend)."""
    hv = _hv()
    line = hv.Curve([(x, span[0]), (x, span[1])], label=label).opts(
        color=colour, line_dash=dash, line_width=1.5)
    return _mpl(line, color=colour, linestyle={"solid": "-", "dashed": "--", "dotted": ":"}[dash])


def _outline_layer(outlines, crs, name: str, colour: str, bounds=None):
    """Polygon outlines as a HoloViews Polygons layer (unfilled) with hover columns and a
    legend entry, clipped to ``bounds`` (the scene's) when given; None if nothing is left."""
    hv = _hv()
    gdf = outlines.to_crs(crs) if outlines.crs is not None else outlines
    if bounds is not None:
        from shapely.geometry import box

        gdf = gdf.clip(box(*bounds))
    cols = [c for c in HOVER_COLUMNS if c in gdf.columns]
    parts = []
    for row in gdf.itertuples(index=False):
        geom = row.geometry
        if geom is None or geom.is_empty:
            continue
        for poly in getattr(geom, "geoms", [geom]):
            if poly.geom_type != "Polygon" or poly.is_empty:  # a clip can leave lines, points
                continue
            x, y = poly.exterior.coords.xy
            parts.append({"x": np.asarray(x), "y": np.asarray(y), "layer": name,
                          **{c: getattr(row, c) for c in cols}})
    if not parts:
        return None
    return hv.Polygons(parts, kdims=["x", "y"], vdims=["layer", *cols], label=name).opts(
        fill_alpha=0, line_color=colour, line_width=1.5, tools=["hover"], show_legend=True)


def _scene_axes(view, da: xr.DataArray, scene: str | None):
    """Scope a map view to its scene: its axes span the scene's bounds, and they are
    labelled with the scene, so that in a layout only views of the same scene share (link)
    their axes (HoloViews links the axes of views whose dimensions have the same label).
    ``scene`` defaults to the raster's ``scene_id``, else its bounds."""
    left, bottom, right, top = da.rio.bounds()
    if scene is None:
        scene = da.attrs.get("scene_id") or f"{left:.0f} {bottom:.0f} {right:.0f} {top:.0f}"
    view = view.redim.label(x=f"x ({scene})", y=f"y ({scene})")
    return view.opts(xlim=(left, right), ylim=(bottom, top))


def _with_outlines(base, da: xr.DataArray, outlines):
    """``base`` with the outline layers drawn (clipped to the raster ``da``'s bounds) and a
    legend naming them in their colours (:func:`outline_colours`)."""
    layers = outlines if isinstance(outlines, Mapping) else {"outlines": outlines}
    view = base
    for name, colour in outline_colours(layers).items():
        gdf = layers[name]
        if gdf is not None and len(gdf):
            layer = _outline_layer(gdf, da.rio.crs, name, colour, bounds=da.rio.bounds())
            if layer is not None:
                view = view * layer
    return view.opts(legend_position="bottom") if view is not base else view


def map_view(scene: xr.DataArray, roles: Sequence[str] = PAPER_BANDS, *, outlines=None,
             title: str | None = None, width: int = 420, stretch=(2, 98),
             scene_name: str | None = None):
    """An interactive composite (pan, zoom) with outline layers to hover (RGIId, name, area).

    The composite is rasterized with datashader (``rasterize=True``), so a full scene is
    re-sampled to the screen at every zoom instead of sending every pixel to the browser.

    Parameters
    ----------
    scene
        ``(band, y, x)`` reflectance with band roles.
    roles
        Three band roles for red, green, blue (the paper's 6-5-2 by default).
    outlines
        A GeoDataFrame, or ``{layer name: GeoDataFrame}`` (reference, predicted ...).
    title, width
        Panel title and frame width in pixels.
    scene_name
        In a layout, views of the same scene share their axes (pan one, the others
        follow) and views of other scenes do not (default: the scene's ``scene_id``).
    """
    _hv()
    rgb = composite(scene, roles=roles, stretch=stretch).fillna(0.0)
    view = rgb.hvplot.rgb(x="x", y="y", bands=rgb.dims[-1], rasterize=True, data_aspect=1,
                          frame_width=width, xaxis=None, yaxis=None,
                          title=title or f"{scene.attrs.get('scene_id', '')} {'-'.join(roles)}")
    view = _with_outlines(view, scene, outlines) if outlines is not None else view
    return _scene_axes(view, scene, scene_name)


def error_view(values: xr.DataArray, labels, threshold: float, *, outlines=None,
               title: str | None = None, width: int = 420, scene_name: str | None = None):
    """Interactive error map of ``values > threshold`` against ``labels``: TP, FP, FN, TN.

    The class codes of :func:`error_classes` are rasterized with the ``mode`` aggregator
    (each screen pixel shows the most frequent class beneath it); no-data pixels are
    transparent. ``outlines`` and ``scene_name`` as in :func:`map_view`: in a layout, the
    error maps of one scene share their axes, those of different scenes do not.
    """
    from bokeh.models import FixedTicker

    _hv()
    v = np.asarray(values.data if hasattr(values, "data") else values)
    t = v.dtype.type(threshold) if v.dtype.kind == "f" else threshold
    with np.errstate(invalid="ignore"):
        pred = np.where(np.isnan(v), np.nan, v > t) if v.dtype.kind == "f" else v > t
    codes = error_classes(pred, labels).astype("float32")
    codes[codes == NODATA] = np.nan
    da = xr.DataArray(codes, coords={"y": values["y"], "x": values["x"]}, dims=("y", "x"),
                      name="error")
    order = ("TN", "TP", "FP", "FN")
    view = da.hvplot.image(
        x="x", y="y", rasterize=True, aggregator="mode", cmap=[ERROR_COLOURS[k] for k in order],
        clim=(-0.5, 3.5), data_aspect=1, frame_width=width, xaxis=None, yaxis=None,
        colorbar=True, title=title or f"{values.name or 'index'} > {threshold:g}",
    ).opts(colorbar_opts={"ticker": FixedTicker(ticks=[0, 1, 2, 3]),
                          "major_label_overrides": dict(enumerate(order))})
    view = _with_outlines(view, values, outlines) if outlines is not None else view
    return _scene_axes(view, values, scene_name)


def histogram_view(hist, *, marks: dict[str, float] | None = None, title: str = "",
                   width: int = 420, height: int = 260):
    """An :class:`glacierkit.ndsi.IndexHistogram` split by class (stacked), with the
    smoothed counts, the peaks and valley, and labelled lines (e.g. ``{"Otsu": 0.41}``)."""
    import pandas as pd

    hv = _hv()
    df = pd.DataFrame({"index value": hist.centres, "smoothed": hist.smoothed})
    if hist.glacier is not None:
        df["other (labels)"], df["glacier (labels)"] = hist.other, hist.glacier
        ys = ["other (labels)", "glacier (labels)"]
    else:
        df["all pixels"] = hist.counts
        ys = ["all pixels"]
    layers, base = [], np.zeros(len(df))
    for y, c in zip(ys, ["#8c6d4f", "#4a90d9"], strict=False):  # stacked by hand
        top = base + df[y].to_numpy()
        area = hv.Area((df["index value"], top, base), "index value", ["pixels", "base"],
                       label=y).opts(color=c, alpha=0.8)
        layers.append(_mpl(area, facecolor=c, edgecolor=c, alpha=0.8, show_legend=True))
        base = top
    bars = _mpl(hv.Overlay(layers), hv.opts.Area(color=hv.Cycle(["#8c6d4f", "#4a90d9"])))
    smooth = _mpl(df.hvplot.line(x="index value", y="smoothed", color="black", line_width=1),
                  color="black", linewidth=1)
    view = bars * smooth
    top = float(np.max(hist.counts)) if len(hist.counts) else 1.0
    if np.isfinite(hist.valley):
        view = view * _mark(float(hist.valley), f"valley {hist.valley:.2f}", (0, top), "red",
                            "dashed")
    for (name, value), colour in zip((marks or {}).items(), ("green", "purple", "orange"),
                                     strict=False):
        view = view * _mark(float(value), f"{name} {value:.2f}", (0, top), colour)
    view = _mpl(view, title=title, ylabel="pixels", legend_position="top_left", fig_inches=5)
    return view.opts(title=title, width=width, height=height, legend_position="top_left")


def sweep_view(table, metrics: Sequence[str] = ("MA", "FA", "OA", "KC"), *,
               mark: float | None = None, title: str = "", width: int = 340,
               height: int = 280):
    """Metric curves of a sweep table (one row per threshold) against the threshold.

    ``width`` is the whole panel's, legend included (the legend sits below the curves), so
    three panels fit a notebook's width.
    """
    _hv()
    view = table.hvplot.line(x="threshold", y=list(metrics), ylim=(0, 1), ylabel="metric",
                             xlabel="threshold (glacier where index > threshold)",
                             hover_cols=list(metrics), grid=True, legend="bottom",
                             group_label="metric")
    if mark is not None:
        view = view * _mark(float(mark), f"{mark:g}", (0, 1), "black", "dotted")
    view = _mpl(view, title=title, ylabel="metric", ylim=(0, 1), legend_position="right",
                fig_inches=5)
    return view.opts(title=title, width=width, height=height, legend_position="bottom",
                     legend_cols=len(metrics) + (mark is not None))


def history_view(history, best_epoch: int | None = None, *, width: int = 330,
                 height: int = 250):
    """Learning curves from ``training_log.csv``: loss, accuracy, validation IoU and kappa."""
    hv = _hv()
    df = history.assign(epoch=history["epoch"] + 1)
    panels = [("loss", {"loss": "training", "val_loss": "validation"}),
              ("accuracy", {"accuracy": "training", "val_accuracy": "validation (OA)"}),
              ("validation IoU and kappa", {"val_iou": "IoU", "val_kc": "KC"})]
    plots = []
    for title, series in panels:
        cols = {c: label for c, label in series.items() if c in df}
        if not cols:
            continue
        view = df.rename(columns=cols).hvplot.line(x="epoch", y=list(cols.values()),
                                                   ylabel=title, grid=True, width=width,
                                                   height=height, title=title)
        if best_epoch is not None:
            values = df[list(cols)].to_numpy(dtype=float)
            span = (float(np.nanmin(values)), float(np.nanmax(values)))
            view = view * _mark(best_epoch + 1, "best (val accuracy)", span, "grey", "dotted")
        plots.append(_mpl(view, title=title, ylabel=title, show_grid=True))
    return hv.Layout(plots).cols(3)


def grid(views, cols: int = 3, *, shared_axes: bool = False):
    """Views side by side, ``cols`` per row; each keeps its own axes unless ``shared_axes``
    (both in the notebook and in the PNG of :func:`save_figure`)."""
    hv = _hv()
    layout = hv.Layout(list(views)).cols(cols)
    return _mpl(layout, shared_axes=shared_axes).opts(shared_axes=shared_axes)


#: Pixels per character and per column of :func:`glacier_table_view`'s cells (Bokeh's
#: table font is 12 px; its digits and capitals are at most about 8 px wide).
_TABLE_CHAR_PX, _TABLE_PAD_PX = 8, 18


def _table_widths(table, columns: Sequence[str]) -> dict[str, int]:
    """``{column: pixels}`` wide enough for the header and every value shown in full."""
    widths = {}
    for c in columns:
        values = table[c].astype(str) if len(table) else []
        longest = max([len(str(c)), *(len(v) for v in values)])
        widths[c] = _TABLE_CHAR_PX * longest + _TABLE_PAD_PX
    return widths


def glacier_table_view(glaciers, *, columns: Sequence[str] | None = None, height: int = 300,
                       max_width: int = 1100):
    """A sortable table of per-glacier areas (e.g. ``Comparison.glaciers``).

    Every column is as wide as its header and its longest value (an RGIId is never cut
    off); a table wider than ``max_width`` pixels scrolls sideways.
    """
    _hv()
    cols = list(columns or glaciers.columns)
    shown = glaciers[cols].round(3)
    widths = _table_widths(shown, cols)

    def set_widths(plot, element):
        table = plot.handles["table"]
        for column in table.columns:
            column.width = widths.get(column.field, column.width)

    total = sum(widths.values()) + 30  # and the row-index column
    return shown.hvplot.table(columns=cols, sortable=True, height=height,
                              width=min(max_width, total)).opts(
        fit_columns=False, hooks=[set_widths])


def methods_error_grid(maps: Mapping[str, Mapping], thresholds: Mapping, labels=None, *,
                       row_height: float = 4.3):
    """The error maps of the three compared methods, one row per scene: the 6-5-2 composite
    with the labels, then the U-Net, NDSI at the learned threshold and NDSI at the scene's
    oracle threshold (blue TP, red FP, yellow FN, grey TN).

    ``maps`` and ``thresholds`` are those of :func:`glacierkit.evaluate.compare_methods` or
    :func:`glacierkit.evaluate.cross_region` (per scene ``scene``, ``probability``, ``ndsi``
    and ``labels``, or one ``labels`` for all scenes on one grid).
    """
    import matplotlib.pyplot as plt

    from ._util import NDSI_LEARNED, UNET

    names = list(maps)
    fig, axes = plt.subplots(len(names), 4, figsize=(17, row_height * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        m = maps[name]
        lab = m.get("labels", labels)
        show_composite(m["scene"], labels=lab, ax=axes[r, 0], title=f"{name}: 6-5-2 + labels")
        t_oracle = thresholds["ndsi_oracle"][name]
        for c, (title, values, t) in enumerate([
                (UNET, m["probability"], thresholds["unet"]),
                (f"{NDSI_LEARNED} ({thresholds['ndsi_learned']:g})", m["ndsi"],
                 thresholds["ndsi_learned"]),
                (f"NDSI oracle ({t_oracle:g})", m["ndsi"], t_oracle)]):
            show_error_map(values, lab, t, ax=axes[r, c + 1], title=title)
    fig.tight_layout()
    return fig
