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

__all__ = ["extent", "show_composite", "show_labels", "save_figure", "ERROR_COLOURS"]

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
