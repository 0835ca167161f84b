"""Another region: how a model trained in one place maps a region it has never seen.

The Alps test scenes share a tile and a month with the training scenes, so they cannot
show whether a model generalizes. :func:`cross_region` scores a model next to the NDSI
threshold on the scenes of *another* region (the sample has Athabasca Glacier in the
Canadian Rockies: Landsat 8 OLI on 2020-08-16 and Sentinel-2 on 2020-09-09 and
2020-09-11, at 30 m), every date on one reference grid:

- the model (probability > its threshold);
- NDSI at the threshold learned on the training scenes (a fixed rule, as a user would
  carry it to a new region);
- NDSI at each date's own best threshold: an *oracle*, picked on the labels it is scored
  on, so an upper bound for NDSI and not a result.

**Partial labels.** Athabasca's outline covers one glacier and part of the Columbia
Icefield; ice outside it is not labelled. So the default mask is ``"known-truth"``
(:func:`glacierkit.labels.partial_outline_labels`): glacier inside the outline, not glacier
outside it where NDSI < 0.2 on *all* dates (clear rock), unknown elsewhere. That mask
favours NDSI by construction (NDSI cannot call clear rock glacier), so the table reports
each method's **rock false-alarm rate** (the share of the clear-rock pixels it calls
glacier) beside kappa, and the per-surface table shows what each method does with the
bright unlabelled ice outside the outline.

Examples
--------
>>> import glacierkit as gk                                          # doctest: +SKIP
>>> res = gk.evaluate.cross_region("models/unet_alps_s2.keras", ndsi_threshold=0.39)
>>> res.table[["scene", "method", "KC", "rock_FA"]]                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._util import NDSI_LEARNED, NDSI_ORACLE, NODATA, UNET, write_json
from ..data.mosaic import spectra_mosaic
from ..data.regions import Region, get_region, on_grid, region_labels, region_scenes
from ..exceptions import ParameterError
from ..labels import PARTIAL_MASKS

__all__ = ["CrossRegion", "cross_region", "passes", "spectral_sense", "ROCK_FA_LIMIT"]

#: The most clear rock a usable glacier map may call glacier on the known-truth mask.
ROCK_FA_LIMIT = 0.05


@dataclass
class CrossRegion:
    """What :func:`cross_region` computed."""

    table: pd.DataFrame  # one row per (scene, method)
    surfaces: pd.DataFrame  # per scene, surface and method: pixels and % called glacier
    labels: xr.DataArray
    maps: dict = field(repr=False)  # scene -> {"probability", "ndsi", "errors": {method: codes}}
    thresholds: dict = field(default_factory=dict)
    guard: dict = field(default_factory=dict)  # scene -> domain-shift guard report

    def summary(self) -> pd.DataFrame:
        """KC and rock false alarms per method and scene, wide (for the README table)."""
        wide = self.table.pivot(index="method", columns="scene", values=["KC", "rock_FA"])
        return wide.round(3)


def _surfaces(scene: xr.DataArray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Surface classes of the known-truth mask and beyond, on the reference grid."""
    from ..bands import select_bands
    from ..indices import ndsi, ndwi

    nd = np.asarray(ndsi(scene).values)
    wi = np.asarray(ndwi(scene).values)
    swir1 = np.asarray(select_bands(scene, ("swir1",)).values[0])
    nir = np.asarray(select_bands(scene, ("nir",)).values[0])
    inside = labels == 1
    with np.errstate(invalid="ignore"):
        return {
            "inside outline, NDSI >= 0.4 (clean ice and snow)": inside & (nd >= 0.4),
            "inside outline, NDSI < 0.4 (dirty or debris-covered ice, retreated area)":
                inside & (nd < 0.4),
            "clear rock (label 0)": labels == 0,
            "outside, unlabelled, NDSI >= 0.4 (icefield, snow)": (labels == NODATA) & (nd >= 0.4),
            "water (NDWI > 0.2, swir1 < 0.05, nir < 0.1)": (wi > 0.2) & (swir1 < 0.05)
            & (nir < 0.1),
        }


def cross_region(
    model,
    region: str | Region = "athabasca",
    *,
    ndsi_threshold: float,
    mask: str = "known-truth",
    clear_below: float = 0.2,
    grid=None,
    tta: bool = False,
    overlap: float | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> CrossRegion:
    """Score a model and NDSI on every date of another region (see the module docstring).

    Parameters
    ----------
    model
        A ``.keras`` path (with its sidecar) or the pair from
        :func:`glacierkit.unet.load_model`.
    region
        A name of :data:`REGIONS` (``"athabasca"``).
    ndsi_threshold
        The NDSI threshold learned on the training scenes (notebook 03's).
    mask
        Which labels to score on (:data:`glacierkit.labels.PARTIAL_MASKS`).
    clear_below
        NDSI below which an unlabelled pixel counts as clear rock on a date.
    grid
        Thresholds for the per-date NDSI oracle (default 0 to 0.7 by 0.01).
    tta, overlap
        Passed to :func:`glacierkit.unet.predict_scene` (``overlap=None``: its default
        window plan).
    output_dir
        When given, each date's prediction is written there (``<scene>/probability.tif``,
        ``mask.tif``) with the guard's report in the tags, and the tables as
        ``cross_region.csv`` and ``cross_region_surfaces.csv``.

    Returns
    -------
    CrossRegion
        ``table`` has, per (scene, method): the threshold, TP/FP/FN/TN, MA, FA, OA, KC, IoU,
        ``rock_FA`` (share of the clear-rock pixels called glacier) and
        ``rock_FA_ok`` (at most :data:`ROCK_FA_LIMIT`).
    """
    from .._util import slug
    from ..indices import ndsi
    from ..io.write import write_table
    from ..metrics import error_classes, scores
    from ..ndsi.threshold import fine_grid
    from ..unet.artifact import load_model
    from ..unet.output import write_prediction
    from ..unet.predict import predict_scene
    from .compare import score_methods

    if mask not in PARTIAL_MASKS:
        raise ParameterError(f"Unknown mask {mask!r}. Valid: {sorted(PARTIAL_MASKS)}.")
    reg = get_region(region)
    loaded = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    sidecar = loaded[1]
    t_model = float(sidecar.get("architecture", {}).get("threshold", 0.5))
    grid = fine_grid() if grid is None else np.asarray(grid, dtype="float64")
    scenes = region_scenes(reg)
    labels = region_labels(reg, mask, clear_below, scenes)
    like = scenes[reg.grid]
    lab = np.asarray(labels.values)
    rows, surf_rows, maps, oracles, guards = [], [], {}, {}, {}
    for name, scene in scenes.items():
        prob = predict_scene(loaded, scene, tta=tta, overlap=overlap, progress=progress)
        guards[name] = dict(prob.attrs.get("guard", {}))
        index = ndsi(scene)
        prob_g = on_grid(prob.rio.write_crs(scene.rio.crs), like)
        index_g = on_grid(index, like)
        scene_g = on_grid(scene, like)
        scored = score_methods(name, prob_g, index_g, labels, unet_threshold=t_model,
                               ndsi_threshold=ndsi_threshold, grid=grid, metric="KC")
        oracles[name] = scored.thresholds[NDSI_ORACLE]
        ref = scored.reference
        rock = ref == 0  # scored clear rock
        ok_any = np.isfinite(prob_g.values) & np.isfinite(index_g.values)
        errors = {}
        classes = _surfaces(scene_g, lab)
        for result in scored.results:
            method, c = result.method, result.counts
            sc = scores(c)
            called = scored.maps[method] == 1
            rock_fa = float((called & rock).sum() / rock.sum()) if rock.any() else float("nan")
            rows.append({"region": reg.name, "scene": name, "sensor": scene.attrs.get("sensor"),
                         "date": scene.attrs.get("date"), "method": method,
                         "threshold": round(scored.thresholds[method], 4), **c.as_dict(),
                         **{k: sc[k] for k in ("MA", "FA", "OA", "KC", "IoU")},
                         "rock_FA": rock_fa, "rock_FA_ok": bool(rock_fa <= ROCK_FA_LIMIT),
                         "mask": mask})
            # every pixel with both inputs, labelled or not, for the surfaces
            values = prob_g.values if method == UNET else index_g.values
            with np.errstate(invalid="ignore"):
                called_any = ok_any & (values > scored.thresholds[method])
            for surface, m in classes.items():
                m = m & ok_any
                n = int(m.sum())
                surf_rows.append({"scene": name, "surface": surface, "method": method,
                                  "pixels": n,
                                  "% called glacier": round(100 * float((called_any & m).sum())
                                                            / n, 1) if n else np.nan})
            errors[method] = error_classes(scored.maps[method], ref)
        maps[name] = {"probability": prob_g, "ndsi": index_g, "scene": scene_g,
                      "errors": errors}
        if output_dir is not None:
            write_prediction(prob, Path(output_dir) / slug(name), threshold=t_model)
    table = pd.DataFrame(rows)
    surfaces = pd.DataFrame(surf_rows)
    if output_dir is not None:
        write_table(table, Path(output_dir) / "cross_region.csv")
        write_table(surfaces, Path(output_dir) / "cross_region_surfaces.csv")
        doc = {"region": reg.name, "description": reg.description, "mask": mask,
               "mask_rule": PARTIAL_MASKS[mask], "clear_below": clear_below,
               "model": str(model) if isinstance(model, (str, os.PathLike)) else "in memory",
               "thresholds": {"ndsi_learned": ndsi_threshold, "ndsi_oracle": oracles,
                              "unet": t_model},
               "passes": passes(table).to_dict("records"),
               "scores": table.to_dict("records"), "domain_shift_guard": guards}
        write_json(Path(output_dir) / "cross_region.json", doc)
    return CrossRegion(table, surfaces, labels, maps,
                       {"ndsi_learned": ndsi_threshold, "ndsi_oracle": oracles,
                        "unet": t_model, "mask": mask, "clear_below": clear_below}, guards)


def passes(table: pd.DataFrame, margin: float = 0.02) -> pd.DataFrame:
    """Per scene: does the model reach NDSI-learned's KC minus ``margin`` with rock false
    alarms at most :data:`ROCK_FA_LIMIT`? (The issue's bar for a usable default model.)"""
    rows = []
    for scene, t in table.groupby("scene", sort=False):
        m = t[t["method"] == UNET].iloc[0]
        n = t[t["method"] == NDSI_LEARNED].iloc[0]
        rows.append({"scene": scene, "model_KC": m["KC"], "ndsi_KC": n["KC"],
                     "KC_margin": m["KC"] - n["KC"], "model_rock_FA": m["rock_FA"],
                     "passes": bool(m["KC"] >= n["KC"] - margin
                                    and m["rock_FA"] <= ROCK_FA_LIMIT)})
    return pd.DataFrame(rows)


def spectral_sense(model, spectra: pd.DataFrame, ndsi_threshold: float = 0.4,
                   level: str | None = "surface", **kwargs) -> pd.DataFrame:
    """Share of each surface's pixels a model calls glacier on a :func:`spectra_mosaic`,
    next to NDSI above ``ndsi_threshold`` (0.4, a common snow threshold, by default).

    The mosaic is opened like a user's scene (:func:`glacierkit.io.open_scene`) at
    ``level`` (None: the data decide), so a top-of-atmosphere mosaic is corrected before
    prediction as any other scene would be. ``kwargs`` go to :func:`spectra_mosaic`.
    """
    import warnings

    from ..indices import ndsi
    from ..io.scene import open_scene
    from ..unet.predict import predict_scene

    scene, kinds = spectra_mosaic(spectra, **kwargs)
    scene = open_scene(scene, level=level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob = predict_scene(model, scene, progress=False, guard=False).values
    index = np.asarray(ndsi(scene).values)
    rows = []
    for surface in sorted(set(kinds.ravel())):
        m = kinds == surface
        rows.append({"surface": surface, "level": scene.attrs.get("level"),
                     "pixels": int(m.sum()),
                     "model: % glacier": round(100 * float((prob[m] > 0.5).mean()), 1),
                     "NDSI: % glacier": round(100 * float((index[m] > ndsi_threshold)
                                                          .mean()), 1)})
    return pd.DataFrame(rows)
