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
>>> res = gk.regions.cross_region("models/unet_alps_s2.keras", ndsi_threshold=0.39)
>>> res.table[["scene", "method", "KC", "rock_FA"]]                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .exceptions import ParameterError
from .labels import IGNORE, PARTIAL_MASKS, partial_outline_labels

log = logging.getLogger(__name__)

__all__ = ["REGIONS", "Region", "CrossRegion", "Adaptation", "adapt", "region_scenes",
           "region_labels", "cross_region",
           "passes", "spectra_mosaic", "spectral_sense", "UNET", "NDSI_LEARNED",
           "NDSI_ORACLE", "ROCK_FA_LIMIT"]

UNET = "Deep U-Net"
NDSI_LEARNED = "NDSI, threshold learned on train"
NDSI_ORACLE = "NDSI, per-scene oracle (upper bound)"
#: The most clear rock a usable glacier map may call glacier on the known-truth mask.
ROCK_FA_LIMIT = 0.05


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


def _region(region: str | Region) -> Region:
    if isinstance(region, Region):
        return region
    if region not in REGIONS:
        raise ParameterError(f"Unknown region {region!r}. Known regions: {sorted(REGIONS)}.")
    return REGIONS[region]


def region_scenes(region: str | Region = "athabasca") -> dict[str, xr.DataArray]:
    """The region's scenes (opened with :func:`glacierkit.io.open_scene`), by name."""
    from .io import open_scene

    return {s: open_scene(s) for s in _region(region).scenes}


def region_labels(region: str | Region = "athabasca", mask: str = "known-truth",
                  clear_below: float = 0.2, scenes: Mapping[str, xr.DataArray] | None = None
                  ) -> xr.DataArray:
    """The region's labels on its reference grid (uint8 1 / 0 / 255 unknown).

    ``mask`` is one of :data:`glacierkit.labels.PARTIAL_MASKS` (``known-truth`` by default:
    see the module docstring).
    """
    reg = _region(region)
    scenes = dict(scenes) if scenes is not None else region_scenes(reg)
    return partial_outline_labels(reg.outlines, scenes[reg.grid], list(scenes.values()),
                                  mask=mask, clear_below=clear_below)


def _on_grid(da: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """``da`` on ``like``'s grid (nearest neighbour; a no-op when the grids are equal)."""
    from rasterio.enums import Resampling

    same = da.shape[-2:] == like.shape[-2:] and np.allclose(
        tuple(da.rio.transform())[:6], tuple(like.rio.transform())[:6])
    if same:
        return da
    out = da.rio.reproject_match(like, resampling=Resampling.nearest)
    return out.assign_coords(x=like["x"], y=like["y"])


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
    from .bands import select_bands
    from .indices import ndsi, ndwi

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
            "outside, unlabelled, NDSI >= 0.4 (icefield, snow)": (labels == IGNORE) & (nd >= 0.4),
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
    overlap: float = 0.5,
    output_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> CrossRegion:
    """Score a model and NDSI on every date of another region (see the module docstring).

    Parameters
    ----------
    model
        A ``.keras`` path (with its sidecar) or the pair from
        :func:`glacierkit.features.load_model`.
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
        Passed to :func:`glacierkit.predict.predict_scene`.
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
    from .features import load_model
    from .indices import ndsi
    from .io import write_table
    from .metrics import confusion, scores
    from .plot import error_classes
    from .predict import predict_scene, write_prediction
    from .prep import slug
    from .threshold import best_threshold, fine_grid, sweep

    if mask not in PARTIAL_MASKS:
        raise ParameterError(f"Unknown mask {mask!r}. Valid: {sorted(PARTIAL_MASKS)}.")
    reg = _region(region)
    loaded = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    sidecar = loaded[1]
    t_model = float(sidecar.get("architecture", {}).get("threshold", 0.5))
    grid = fine_grid() if grid is None else np.asarray(grid, dtype="float64")
    scenes = region_scenes(reg)
    labels = region_labels(reg, mask, clear_below, scenes)
    like = scenes[reg.grid]
    lab = np.asarray(labels.values)
    ref = np.where(lab == IGNORE, np.nan, lab).astype("float32")
    rows, surf_rows, maps, oracles, guards = [], [], {}, {}, {}
    for name, scene in scenes.items():
        prob = predict_scene(loaded, scene, tta=tta, overlap=overlap, progress=progress)
        guards[name] = dict(prob.attrs.get("guard", {}))
        index = ndsi(scene)
        prob_g = _on_grid(prob.rio.write_crs(scene.rio.crs), like)
        index_g = _on_grid(index, like)
        scene_g = _on_grid(scene, like)
        t_oracle = best_threshold(sweep(index_g, labels, grid), "KC")
        oracles[name] = t_oracle
        p, v = np.asarray(prob_g.values), np.asarray(index_g.values)
        common = np.isfinite(p) & np.isfinite(v) & np.isfinite(ref)
        with np.errstate(invalid="ignore"):
            preds = {UNET: (p > t_model, t_model), NDSI_LEARNED: (v > ndsi_threshold,
                                                                   ndsi_threshold),
                     NDSI_ORACLE: (v > t_oracle, t_oracle)}
        errors = {}
        classes = _surfaces(scene_g, lab)
        for method, (called, thr) in preds.items():
            c = confusion(called, ref, valid=common)
            sc = scores(c)
            rock = common & (ref == 0)
            rock_fa = float((called & rock).sum() / rock.sum()) if rock.any() else float("nan")
            rows.append({"region": reg.name, "scene": name, "sensor": scene.attrs.get("sensor"),
                         "date": scene.attrs.get("date"), "method": method,
                         "threshold": round(float(thr), 4), **c.as_dict(),
                         **{k: sc[k] for k in ("MA", "FA", "OA", "KC", "IoU")},
                         "rock_FA": rock_fa, "rock_FA_ok": bool(rock_fa <= ROCK_FA_LIMIT),
                         "mask": mask})
            ok_any = np.isfinite(p) & np.isfinite(v)
            for surface, m in classes.items():
                m = m & ok_any
                n = int(m.sum())
                surf_rows.append({"scene": name, "surface": surface, "method": method,
                                  "pixels": n,
                                  "% called glacier": round(100 * float((called & m).sum()) / n,
                                                            1) if n else np.nan})
            errors[method] = error_classes(np.where(common, called, np.nan), ref)
        maps[name] = {"probability": prob_g, "ndsi": index_g, "scene": scene_g,
                      "errors": errors}
        if output_dir is not None:
            write_prediction(prob, Path(output_dir) / slug(name), threshold=t_model)
    table = pd.DataFrame(rows)
    surfaces = pd.DataFrame(surf_rows)
    if output_dir is not None:
        import json

        from .io import atomic_path

        write_table(table, Path(output_dir) / "cross_region.csv")
        write_table(surfaces, Path(output_dir) / "cross_region_surfaces.csv")
        doc = {"region": reg.name, "description": reg.description, "mask": mask,
               "mask_rule": PARTIAL_MASKS[mask], "clear_below": clear_below,
               "model": str(model) if isinstance(model, (str, os.PathLike)) else "in memory",
               "thresholds": {"ndsi_learned": ndsi_threshold, "ndsi_oracle": oracles,
                              "model": t_model},
               "passes": passes(table).to_dict("records"),
               "scores": table.to_dict("records"), "domain_shift_guard": guards}
        with atomic_path(Path(output_dir) / "cross_region.json") as tmp:
            tmp.write_text(json.dumps(doc, indent=2, default=_json))
    return CrossRegion(table, surfaces, labels, maps,
                       {"ndsi_learned": ndsi_threshold, "ndsi_oracle": oracles,
                        "model": t_model, "mask": mask, "clear_below": clear_below}, guards)


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


def _json(v):
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    if isinstance(v, np.floating):
        return float(v)
    return str(v)


# --------------------------------------------------------------------------- adapting a model
@dataclass
class Adaptation:
    """What :func:`adapt` measured: scores on the held-out part, and the run times."""

    table: pd.DataFrame  # one row per (scene, method) on the scored part
    pooled: pd.DataFrame  # one row per method, all dates pooled
    seconds: dict
    models: dict  # method -> model path
    split: dict


def _split_columns(like: xr.DataArray, side: str, fraction: float, gap: int):
    """x bounds (in CRS units) of the adapted part and of the scored part."""
    x = like["x"].values
    n = x.size
    n_score = int(round(fraction * n))
    if side == "east":
        score_lo, adapt_hi = x[n - n_score], x[max(n - n_score - gap, 1) - 1]
        return (lambda xs: xs <= adapt_hi), (lambda xs: xs >= score_lo)
    if side == "west":
        score_hi, adapt_lo = x[n_score - 1], x[min(n_score + gap, n - 1)]
        return (lambda xs: xs >= adapt_lo), (lambda xs: xs <= score_hi)
    raise ParameterError(f"side must be 'east' or 'west'; got {side!r}.")


def adapt(
    model,
    region: str | Region = "athabasca",
    output_dir: str | os.PathLike = "runs/adapt",
    *,
    ndsi_threshold: float,
    side: str = "east",
    fraction: float = 0.45,
    gap: int = 16,
    mask: str = "known-truth",
    epochs: int = 20,
    learning_rate: float = 1e-4,
    scratch_epochs: int = 40,
    patch_size: int = 64,
    seed: int = 42,
) -> Adaptation:
    """Fine-tune a pretrained model on one part of a region and score it on the other part.

    The region's labels (``mask``, see :func:`region_labels`) are split by columns: the
    ``fraction`` of the scene on ``side`` (``"east"`` or ``"west"``) is scored, the rest
    (minus ``gap`` pixels) is what the model is adapted on, all dates together. Compared
    on the scored part, every date:

    - the pretrained model as it is;
    - the model fine-tuned with :func:`glacierkit.train.fit` (``init_model=``): its own
      inputs and normalization, ``learning_rate``, ``epochs``, tiles of ``patch_size`` with a
      blocked validation block inside the adapted part (which picks the epoch);
    - the same recipe trained from scratch on the same pixels (``scratch_epochs``, learning
      rate 1e-3; one network, also when the pretrained model is an ensemble);
    - NDSI at the threshold learned on the training scenes.

    Pixels outside the partial outline that are not clear rock are unknown (255): they count
    in neither the loss nor the scores.
    """
    import time

    from .features import load_model
    from .indices import ndsi
    from .metrics import Counts, confusion, scores
    from .predict import predict_scene
    from .train import TrainConfig, fit

    reg = _region(region)
    out = Path(output_dir)
    path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    if path is None:
        raise ParameterError("adapt() needs the path of a saved model (.keras with sidecar).")
    _, sidecar = load_model(path)
    spec = sidecar["inputs"]
    base = TrainConfig.from_dict(sidecar["config"]) if "config" in sidecar else TrainConfig()
    scenes = region_scenes(reg)
    labels = region_labels(reg, mask, scenes=scenes)
    in_adapt, in_score = _split_columns(scenes[reg.grid], side, fraction, gap)
    pairs = {}
    known = labels.copy(data=np.where(labels.values == IGNORE, np.nan,
                                      labels.values).astype("float32"))
    known.attrs = {}
    known = known.rio.write_nodata(np.nan)
    for name, scene in scenes.items():
        lab = _on_grid(known, scene)
        keep = in_adapt(scene["x"].values)
        pairs[name] = (scene.isel(x=np.flatnonzero(keep)), lab.isel(x=np.flatnonzero(keep)))
    common = {"bands": spec.bands, "extra": spec.extra, "normalization": spec.normalization,
              "patch_size": patch_size, "stride": patch_size // 4, "val_gap": gap,
              "val_fraction": 0.2, "batch_size": 8, "seed": seed, "lr_schedule": "cosine",
              # most of a partially labelled tile is unknown: keep tiles with 10 % known
              "max_nan_fraction": 0.9}
    tuned_cfg = TrainConfig(**common, epochs=epochs, learning_rate=learning_rate,
                            preset=base.preset, depth=base.depth, base_filters=base.base_filters,
                            prior=base.prior)
    scratch_cfg = TrainConfig(**common, epochs=scratch_epochs, preset=base.preset,
                              depth=base.depth, base_filters=base.base_filters,
                              photometric=base.photometric, resolutions=base.resolutions,
                              lakes=base.lakes, shadows=base.shadows,
                              prior=base.prior, prior_slope=base.prior_slope,
                              residual_l2=base.residual_l2, dropout=base.dropout)
    seconds = {}
    t0 = time.perf_counter()
    tuned = fit(tuned_cfg, pairs, out / "fine_tuned", init_model=path, verbose=0, resume=False)
    seconds["fine-tuning"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    scratch = fit(scratch_cfg, pairs, out / "from_scratch", verbose=0, resume=False)
    seconds["from scratch"] = round(time.perf_counter() - t0, 1)
    models = {"pretrained": path, "fine-tuned": tuned.model_path,
              "from scratch": scratch.model_path}
    like = scenes[reg.grid]
    score_cols = in_score(like["x"].values)
    lab = np.asarray(labels.values).astype("float32")
    lab[lab == IGNORE] = np.nan
    lab[:, ~score_cols] = np.nan
    rows, totals = [], {}
    for name, scene in scenes.items():
        calls = {}
        for method, mpath in models.items():
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = predict_scene(str(mpath), scene, progress=False, guard=False)
            calls[method] = np.asarray(_on_grid(p.rio.write_crs(scene.rio.crs), like).values)
        index = np.asarray(_on_grid(ndsi(scene), like).values)
        ok = np.isfinite(index) & np.all([np.isfinite(v) for v in calls.values()], axis=0)
        with np.errstate(invalid="ignore"):
            preds = {m: v > 0.5 for m, v in calls.items()}
            preds[NDSI_LEARNED] = index > ndsi_threshold
        for method, called in preds.items():
            c = confusion(called, lab, valid=ok)
            totals[method] = totals.get(method, Counts(0, 0, 0, 0)) + c
            sc = scores(c)
            rock = ok & (lab == 0)
            rows.append({"scene": name, "method": method, **c.as_dict(),
                         **{k: sc[k] for k in ("MA", "FA", "OA", "KC", "IoU")},
                         "rock_FA": float((called & rock).sum() / max(rock.sum(), 1))})
    pooled = pd.DataFrame([{"method": m, **c.as_dict(),
                            **{k: scores(c)[k] for k in ("MA", "FA", "OA", "KC", "IoU")}}
                           for m, c in totals.items()])
    split = {"side": side, "fraction": fraction, "gap_px": gap, "mask": mask,
             "scored_pixels": int(np.isfinite(lab).sum())}
    result = Adaptation(pd.DataFrame(rows), pooled, seconds, models, split)
    from .io import write_table

    write_table(result.table, out / "adapt_scores.csv")
    write_table(result.pooled, out / "adapt_pooled.csv")
    return result


# --------------------------------------------------------------------------- spectral sense
def spectra_mosaic(spectra: pd.DataFrame, block: int = 8, blocks: int = 32, seed: int = 0,
                   sensor: str = "landsat8", res: float = 30.0
                   ) -> tuple[xr.DataArray, np.ndarray]:
    """A synthetic scene made of labelled pixel spectra (:func:`glacierkit.data.spectra`).

    ``blocks`` x ``blocks`` squares of ``block`` pixels, each filled with one labelled
    pixel's spectrum (drawn at random, seeded, with every surface about equally often), on
    a dummy UTM grid. Returns the scene (reflectance by role) and the surface name of every
    pixel. A model's spectral sense: what it calls glacier on each surface of a mosaic.
    """
    from affine import Affine

    from .bands import get_sensor

    roles = [r for r in ("blue", "green", "red", "nir", "swir1", "swir2") if r in spectra]
    rng = np.random.default_rng(seed)
    groups = {k: g for k, g in spectra.dropna(subset=roles).groupby("surface")}
    surfaces = sorted(groups)
    n = blocks * blocks
    pick = rng.integers(0, len(surfaces), n)
    values = np.empty((len(roles), blocks, blocks), dtype="float32")
    kinds = np.empty((blocks, blocks), dtype=object)
    for i in range(n):
        g = groups[surfaces[pick[i]]]
        row = g.iloc[int(rng.integers(0, len(g)))]
        values[:, i // blocks, i % blocks] = [row[r] for r in roles]
        kinds[i // blocks, i % blocks] = surfaces[pick[i]]
    data = np.repeat(np.repeat(values, block, axis=1), block, axis=2)
    kinds = np.repeat(np.repeat(kinds, block, axis=0), block, axis=1)
    s = get_sensor(sensor)
    size = blocks * block
    x0, y0 = 500_000.0, 5_000_000.0
    da = xr.DataArray(
        data, dims=("band", "y", "x"),
        coords={"band": [s.band_for_role(r) for r in roles], "role": ("band", roles),
                "y": y0 - res * (np.arange(size) + 0.5), "x": x0 + res * (np.arange(size) + 0.5)},
        attrs={"sensor": sensor, "scene_id": "spectra mosaic"}, name="reflectance")
    da = da.rio.write_crs("EPSG:32610").rio.write_transform(Affine(res, 0, x0, 0, -res, y0))
    return da, kinds


def spectral_sense(model, spectra: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """Share of each surface's pixels a model calls glacier on a :func:`spectra_mosaic`,
    next to NDSI > 0.4 (a common snow threshold) for reference."""
    import warnings

    from .indices import ndsi
    from .predict import predict_scene

    scene, kinds = spectra_mosaic(spectra, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob = predict_scene(model, scene, progress=False, guard=False).values
    index = np.asarray(ndsi(scene).values)
    rows = []
    for surface in sorted(set(kinds.ravel())):
        m = kinds == surface
        rows.append({"surface": surface, "pixels": int(m.sum()),
                     "model: % glacier": round(100 * float((prob[m] > 0.5).mean()), 1),
                     "NDSI > 0.4: % glacier": round(100 * float((index[m] > 0.4).mean()), 1)})
    return pd.DataFrame(rows)
