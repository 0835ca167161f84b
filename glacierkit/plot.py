"""Static figures (matplotlib) that work headless; interactive views live in the notebooks.

Every map is drawn in map coordinates (metres of the scene's CRS), so outlines, labels
and predictions overlay exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .bands import PAPER_BANDS, composite

__all__ = ["extent", "show_composite", "show_labels", "save_figure", "ERROR_COLOURS",
           "show_split", "show_patches", "show_dihedral", "show_history"]

#: Colours for error maps: true negative, true positive, false positive, false negative.
ERROR_COLOURS = {"TN": "#f2f2f2", "TP": "#4a90d9", "FP": "#e8542f", "FN": "#f5c518"}


def extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` of a raster, for ``imshow(extent=...)``."""
    left, bottom, right, top = da.rio.bounds()
    return left, right, bottom, top


def show_composite(scene: xr.DataArray, roles: Sequence[str] = PAPER_BANDS, *, ax=None,
                   labels: xr.DataArray | None = None, outlines=None, title: str | None = None,
                   stretch=(2, 98)):
    """Draw an RGB composite with optional label contour and outline polygons."""
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
        gdf = outlines.to_crs(scene.rio.crs)
        gdf.boundary.plot(ax=ax, color="magenta", linewidth=0.7)
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


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a figure atomically (PNG by suffix)."""
    from .io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
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
    validation block (red, hatched) of one scene of a :class:`~glacierkit.patches.Patches`."""
    from .patches import Box

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

    from .patches import dihedral

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


def show_history(history, best_epoch: int | None = None):
    """Learning curves from ``training_log.csv``: loss, accuracy, validation IoU and kappa."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    e = history["epoch"] + 1
    panels = [("loss", [("loss", "training"), ("val_loss", "validation")]),
              ("accuracy", [("accuracy", "training"), ("val_accuracy", "validation (OA)")]),
              ("validation IoU and kappa", [("val_iou", "IoU"), ("val_kc", "KC")])]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for col, label in series:
            if col in history:
                ax.plot(e, history[col], marker=".", label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", linestyle=":", label="best (val accuracy)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
    """An interactive leafmap map: the scene's composite plus vector layers.

    ``layers`` maps a layer name to a GeoDataFrame (reference outlines, predicted outlines
    ...), drawn in distinct colours. The composite is embedded as a PNG overlay (decimated to
    about ``max_pixels``), so no tile server is needed; the basemap needs the internet.
    """
    import ipyleaflet
    import leafmap
    from pyproj import Transformer

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
    colours = ["#ff00ff", "#ffd400", "#00e5ff", "#ff5a1f"]
    for i, (name, gdf) in enumerate((layers or {}).items()):
        if gdf is None or not len(gdf):
            continue
        style = {"color": colours[i % len(colours)], "weight": 1.5, "fillOpacity": 0.0}
        m.add_gdf(gdf.to_crs("EPSG:4326")[["geometry"]], layer_name=name, style=style,
                  zoom_to_layer=False, info_mode=None)
    m.fit_bounds([[south, west], [north, east]])
    return m
