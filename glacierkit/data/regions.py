"""Regions of the sample data: several dates of one place and a (partial) outline.

A :class:`Region` names its scenes, its outlines and the scene whose grid the labels and
the scores use. :func:`region_scenes` opens them, :func:`region_labels` burns the outline
with one of the partial-outline masks (:data:`glacierkit.labels.PARTIAL_MASKS`: unknown
pixels are :data:`~glacierkit.NODATA`), and :func:`on_grid` puts any layer on the region's
grid. The regions are scored by :mod:`glacierkit.evaluate.regions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..exceptions import ParameterError
from ..labels import partial_outline_labels

__all__ = ["REGIONS", "Region", "region_scenes", "region_labels"]


@dataclass(frozen=True)
class Region:
    """A region of the sample data with scenes of several dates and a (partial) outline."""

    name: str
    scenes: tuple[str, ...]
    outlines: str
    grid: str  # the scene whose grid the labels and scores use
    description: str = ""


#: Regions known to :func:`cross_region`, by name.
REGIONS: dict[str, Region] = {
    "athabasca": Region(
        "athabasca",
        ("athabasca/l8-2020-08-16", "athabasca/s2-2020-09-09", "athabasca/s2-2020-09-11"),
        "athabasca", "athabasca/l8-2020-08-16",
        "Athabasca Glacier, Canadian Rockies: Landsat 8 OLI and Sentinel-2 at 30 m, 2020, "
        "with a partial outline (the glacier and part of the Columbia Icefield)"),
}


def get_region(region: str | Region) -> Region:
    if isinstance(region, Region):
        return region
    if region not in REGIONS:
        raise ParameterError(f"Unknown region {region!r}. Known regions: {sorted(REGIONS)}.")
    return REGIONS[region]


def region_scenes(region: str | Region = "athabasca") -> dict[str, xr.DataArray]:
    """The region's scenes (opened with :func:`glacierkit.io.open_scene`), by name."""
    from ..io.scene import open_scene

    return {s: open_scene(s) for s in get_region(region).scenes}


def region_labels(region: str | Region = "athabasca", mask: str = "known-truth",
                  clear_below: float = 0.2, scenes: Mapping[str, xr.DataArray] | None = None
                  ) -> xr.DataArray:
    """The region's labels on its reference grid (uint8 1 / 0 / 255 unknown).

    ``mask`` is one of :data:`glacierkit.labels.PARTIAL_MASKS` (``known-truth`` by default:
    see the module docstring).
    """
    reg = get_region(region)
    scenes = dict(scenes) if scenes is not None else region_scenes(reg)
    return partial_outline_labels(reg.outlines, scenes[reg.grid], list(scenes.values()),
                                  mask=mask, clear_below=clear_below)


def on_grid(da: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """``da`` on ``like``'s grid (nearest neighbour; a no-op when the grids are equal)."""
    from rasterio.enums import Resampling

    same = da.shape[-2:] == like.shape[-2:] and np.allclose(
        tuple(da.rio.transform())[:6], tuple(like.rio.transform())[:6])
    if same:
        return da
    out = da.rio.reproject_match(like, resampling=Resampling.nearest)
    return out.assign_coords(x=like["x"], y=like["y"])
