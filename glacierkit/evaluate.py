"""Side-by-side evaluation of glacier maps: per scene, pooled, with block-bootstrap CIs.

Methods are compared on the same pixels of the same (test) scenes. Metrics are pooled
from summed confusion counts, and 95% confidence intervals come from a *spatial block
bootstrap*: each scene is cut into square blocks, blocks are resampled with replacement
(within each scene, the same draws for every method, so differences are paired), and the
pooled metrics are recomputed for every draw. Pixel-level bootstraps would be far too
narrow, since neighbouring pixels are not independent.

The result table follows the paper's Table 4 (MA, FA, OA, KC in %), with IoU, F1 and
area error added, and the paper's own numbers can be shown alongside for reference.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .metrics import METRICS, Counts, confusion, score_arrays, scores

log = logging.getLogger(__name__)

__all__ = ["PAPER_TABLE", "SceneResult", "block_counts", "bootstrap_ci", "area_error",
           "evaluate_scene", "comparison_table", "table4", "surface_classes",
           "failure_table", "error_map", "save_results"]

#: The paper's reported numbers (Landsat 8 OLI, its own test area), in %, for reference only:
#: they are not comparable with scores on other scenes and labels.
PAPER_TABLE = pd.DataFrame.from_records([
    {"method": "paper: Deep U-Net", "MA": 19.49, "FA": 6.02, "OA": 97.27, "KC": 85.22},
    {"method": "paper: NDSI (threshold 0.1)", "MA": np.nan, "FA": np.nan, "OA": 95.84,
     "KC": 79.39},
])


def _binary(a) -> np.ndarray:
    """0/1 float array with NaN kept (input: bool, 0/1 or probabilities already thresholded)."""
    v = np.asarray(getattr(a, "values", a))
    if v.dtype.kind == "f":
        return v.astype("float32")
    return v.astype("float32")


def block_counts(pred, ref, block: int = 32) -> np.ndarray:
    """Confusion counts per square block: array ``(n_blocks, 4)`` of TP, FP, FN, TN.

    NaN in ``pred`` or ``ref`` is excluded. Partial blocks at the edges are kept.
    """
    p, r = _binary(pred), _binary(ref)
    if p.shape != r.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from reference {r.shape}.")
    ok = np.isfinite(p) & np.isfinite(r)
    pg = ok & (np.nan_to_num(p) > 0)
    rg = ok & (np.nan_to_num(r) > 0)
    h, w = p.shape
    by, bx = -(-h // block), -(-w // block)
    rows = np.minimum(np.arange(h) // block, by - 1)
    cols = np.minimum(np.arange(w) // block, bx - 1)
    ids = (rows[:, None] * bx + cols[None, :]).ravel()
    n = by * bx

    def count(mask):
        return np.bincount(ids, weights=mask.ravel().astype("float64"), minlength=n)

    tp = count(pg & rg)
    fp = count(pg & ~rg)
    fn = count(~pg & rg)
    tn = count(ok & ~pg & ~rg)
    out = np.stack([tp, fp, fn, tn], axis=1)
    return out[out.sum(axis=1) > 0]


def bootstrap_ci(blocks: Mapping[str, Sequence[np.ndarray]], n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Pooled-metric confidence intervals by a stratified, paired spatial block bootstrap.

    Parameters
    ----------
    blocks
        ``{method: [block_counts of scene 1, block_counts of scene 2, ...]}``; every method
        must list the same scenes in the same order, cut into the same blocks.
    n_boot
        Number of bootstrap draws.

    Returns
    -------
    pandas.DataFrame
        One row per method with ``<metric>_lo`` and ``<metric>_hi`` columns.
    """
    rng = np.random.default_rng(seed)
    methods = list(blocks)
    n_scenes = len(blocks[methods[0]])
    draws = []
    for s in range(n_scenes):
        nb = len(blocks[methods[0]][s])
        for m in methods:
            if len(blocks[m][s]) != nb:
                raise ValueError("Every method must be cut into the same blocks.")
        draws.append(rng.integers(0, nb, size=(n_boot, nb)))
    alpha = (1 - level) / 2
    records = []
    for m in methods:
        total = np.zeros((n_boot, 4))
        for s in range(n_scenes):
            total += blocks[m][s][draws[s]].sum(axis=1)
        sc = score_arrays(*total.T)
        rec = {"method": m}
        for k in METRICS:
            vals = sc[k][np.isfinite(sc[k])]
            lo, hi = (np.quantile(vals, [alpha, 1 - alpha]) if vals.size else (np.nan, np.nan))
            rec[f"{k}_lo"], rec[f"{k}_hi"] = float(lo), float(hi)
        records.append(rec)
    return pd.DataFrame.from_records(records)


def area_error(counts: Counts) -> float:
    """Relative glacier-area error in %: ``(predicted - reference) / reference * 100``."""
    ref = counts.tp + counts.fn
    return float("nan") if ref == 0 else 100.0 * ((counts.tp + counts.fp) - ref) / ref


@dataclass
class SceneResult:
    """One method on one scene: counts, block counts and what was used."""

    scene: str
    method: str
    counts: Counts
    blocks: np.ndarray = field(repr=False)
    info: dict = field(default_factory=dict)


def evaluate_scene(scene: str, labels, predictions: Mapping[str, object], block: int = 32,
                   info: Mapping[str, Mapping] | None = None) -> list[SceneResult]:
    """Score several binary maps of one scene against its labels (NaN excluded everywhere).

    Pixels that are NaN in *any* prediction are excluded for *all* methods, so every method
    is scored on the same pixels.
    """
    ref = _binary(labels)
    common = np.isfinite(ref)
    for pred in predictions.values():
        common &= np.isfinite(_binary(pred))
    ref = np.where(common, ref, np.nan)
    out = []
    for method, pred in predictions.items():
        p = np.where(common, _binary(pred), np.nan)
        out.append(SceneResult(scene, method, confusion(p, ref), block_counts(p, ref, block),
                               dict((info or {}).get(method, {}))))
    return out


def comparison_table(results: Sequence[SceneResult], n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Tidy table: one row per (scene, method) plus pooled rows with 95% CIs.

    Metric values are fractions (0-1); :func:`table4` formats them in %.
    """
    records = []
    for r in results:
        s = scores(r.counts)
        records.append({"scene": r.scene, "method": r.method, **r.counts.as_dict(),
                        **{k: s[k] for k in METRICS}, "area_error_pct": area_error(r.counts),
                        **{f"{k}_note": v for k, v in s["reasons"].items()}})
    methods = list(dict.fromkeys(r.method for r in results))
    scenes = list(dict.fromkeys(r.scene for r in results))
    by = {(r.method, r.scene): r for r in results}
    blocks = {m: [by[(m, s)].blocks for s in scenes] for m in methods}
    ci = bootstrap_ci(blocks, n_boot=n_boot, seed=seed).set_index("method")
    for m in methods:
        total = Counts(0, 0, 0, 0)
        for s in scenes:
            total = total + by[(m, s)].counts
        sc = scores(total)
        records.append({"scene": "pooled", "method": m, **total.as_dict(),
                        **{k: sc[k] for k in METRICS}, "area_error_pct": area_error(total),
                        **ci.loc[m].to_dict()})
    return pd.DataFrame.from_records(records)


def table4(comparison: pd.DataFrame, with_paper: bool = True) -> pd.DataFrame:
    """The pooled rows in the paper's Table 4 layout (in %), with 95% CIs as text."""
    pooled = comparison[comparison["scene"] == "pooled"]
    rows = []
    for _, r in pooled.iterrows():
        row = {"method": r["method"]}
        for k in ("MA", "FA", "OA", "KC", "IoU", "F1"):
            row[k] = round(100 * r[k], 2)
            if f"{k}_lo" in r and np.isfinite(r.get(f"{k}_lo", np.nan)):
                row[f"{k} 95% CI"] = f"{100 * r[f'{k}_lo']:.1f}–{100 * r[f'{k}_hi']:.1f}"
        row["area error %"] = round(r["area_error_pct"], 1)
        rows.append(row)
    out = pd.DataFrame(rows)
    if with_paper:
        out = pd.concat([out, PAPER_TABLE], ignore_index=True)
    return out


def surface_classes(scene: xr.DataArray, labels=None) -> dict[str, np.ndarray]:
    """Heuristic masks of the surfaces where glacier mapping usually fails.

    - ``water``: NDWI (green/nir) > 0.2 and swir1 < 0.05 (open water; McFeeters 1996);
    - ``shadow``: mean of blue, green, red, nir < 0.12 (cast shadow on any surface);
    - ``cloud``: blue > 0.25 and swir1 > 0.25 (clouds are bright in SWIR, snow is not);
    - ``debris``: labelled glacier with NDSI < 0.2 that is not shadow (debris-covered ice).

    These are rules of thumb for diagnosis, not products; the thresholds are documented
    here and not tuned on any scene.
    """
    from .bands import select_bands
    from .indices import ndsi, ndwi

    def band(role):
        return np.asarray(select_bands(scene, (role,)).values[0], dtype="float32")

    with np.errstate(invalid="ignore"):
        vis = (band("blue") + band("green") + band("red") + band("nir")) / 4
        water = (np.asarray(ndwi(scene).values) > 0.2) & (band("swir1") < 0.05)
        shadow = vis < 0.12
        cloud = (band("blue") > 0.25) & (band("swir1") > 0.25)
        out = {"water": water, "shadow": shadow & ~water, "cloud": cloud}
        if labels is not None:
            lab = np.nan_to_num(_binary(labels)) > 0
            out["debris"] = lab & (np.asarray(ndsi(scene).values) < 0.2) & ~shadow
    return out


def failure_table(scene_name: str, classes: Mapping[str, np.ndarray], labels,
                  predictions: Mapping[str, object]) -> pd.DataFrame:
    """Per surface class and method: pixels, false positives and false negatives (in %)."""
    ref = _binary(labels)
    rows = []
    for cls, mask in classes.items():
        for method, pred in predictions.items():
            p = _binary(pred)
            ok = mask & np.isfinite(p) & np.isfinite(ref)
            n = int(ok.sum())
            fp = int((ok & (p > 0) & (ref == 0)).sum())
            fn = int((ok & (p == 0) & (ref > 0)).sum())
            rows.append({"scene": scene_name, "surface": cls, "method": method, "pixels": n,
                         "FP": fp, "FN": fn,
                         "FP % of class": round(100 * fp / n, 1) if n else np.nan,
                         "FN % of class": round(100 * fn / n, 1) if n else np.nan})
    return pd.DataFrame(rows)


def error_map(pred, labels) -> xr.DataArray:
    """Categorical map: 0 TN, 1 TP, 2 FP, 3 FN, NaN where either is missing."""
    p, r = _binary(pred), _binary(labels)
    out = np.full(p.shape, np.nan, dtype="float32")
    ok = np.isfinite(p) & np.isfinite(r)
    pg, rg = np.nan_to_num(p) > 0, np.nan_to_num(r) > 0
    out[ok & ~pg & ~rg] = 0
    out[ok & pg & rg] = 1
    out[ok & pg & ~rg] = 2
    out[ok & ~pg & rg] = 3
    like = labels if isinstance(labels, xr.DataArray) else None
    if like is None:
        return xr.DataArray(out, dims=("y", "x"), name="errors")
    res = xr.DataArray(out, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                       name="errors", attrs={"flag_values": "0 TN, 1 TP, 2 FP, 3 FN"})
    return res.rio.write_crs(like.rio.crs) if like.rio.crs is not None else res


def save_results(output_dir: str | os.PathLike, comparison: pd.DataFrame,
                 provenance: Mapping[str, object], extra_tables: Mapping[str, pd.DataFrame]
                 | None = None) -> Path:
    """Write ``metrics.json`` and ``comparison.csv`` (and extra CSVs) atomically.

    ``provenance`` should name the model (and its sidecar), the thresholds and the scenes.
    """
    from .io import atomic_path

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "comparison.csv") as tmp:
        comparison.to_csv(tmp, index=False)
    for name, table in (extra_tables or {}).items():
        with atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    pooled = comparison[comparison["scene"] == "pooled"]
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "provenance": dict(provenance),
        "pooled": {r["method"]: {k: (None if pd.isna(v) else v) for k, v in r.items()
                                 if k not in ("scene", "method")}
                   for r in pooled.to_dict("records")},
        "per_scene": [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                      for r in comparison[comparison["scene"] != "pooled"].to_dict("records")],
    }
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=_json_default))
    return out / "metrics.json"


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return str(v)
