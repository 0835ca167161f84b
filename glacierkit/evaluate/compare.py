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

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._util import NDSI_LEARNED, NDSI_ORACLE, UNET, write_json
from ..metrics import METRICS, Counts, confusion, score_arrays, scores

__all__ = ["UNET", "NDSI_LEARNED", "NDSI_ORACLE", "score_methods", "binary_map", "MethodScores", "PAPER_TABLE", "Comparison", "compare_methods", "predict_unlabelled", "SceneResult", "block_counts", "bootstrap_ci", "area_error", "evaluate_scene", "comparison_table", "table4", "surface_classes", "failure_table", "error_map", "save_results"]

#: The paper's reported numbers (Landsat 8 OLI, its own test area), in %, for reference only:
#: they are not comparable with scores on other scenes and labels.
PAPER_TABLE = pd.DataFrame.from_records([
    {"method": "paper: Deep U-Net", "MA": 19.49, "FA": 6.02, "OA": 97.27, "KC": 85.22},
    {"method": "paper: NDSI (threshold 0.1)", "MA": np.nan, "FA": np.nan, "OA": 95.84,
     "KC": 79.39},
])


def _binary(a) -> np.ndarray:
    """0/1 float array with NaN kept (input: bool, 0/1 or probabilities already thresholded);
    unknown labels (:data:`glacierkit.NODATA`) become NaN."""
    from ..labels import reference

    return reference(a)


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

    - ``water``: NDWI (green/nir) > 0.2, swir1 < 0.05 and nir < 0.1 (open water; McFeeters
      1996; the NIR limit keeps out bare glacier ice, whose NDWI is also above 0.2);
    - ``shadow``: mean of blue, green, red, nir < 0.12 (cast shadow on any surface);
    - ``cloud``: blue > 0.25 and swir1 > 0.25 (clouds are bright in SWIR, snow is not);
    - ``debris``: labelled glacier with NDSI < 0.2 that is not shadow (debris-covered ice).

    These are rules of thumb for diagnosis, not products; the thresholds are documented
    here and not tuned on any scene.
    """
    from ..bands import select_bands
    from ..indices import ndsi, ndwi

    def band(role):
        return np.asarray(select_bands(scene, (role,)).values[0], dtype="float32")

    with np.errstate(invalid="ignore"):
        vis = (band("blue") + band("green") + band("red") + band("nir")) / 4
        water = ((np.asarray(ndwi(scene).values) > 0.2) & (band("swir1") < 0.05)
                 & (band("nir") < 0.1))
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
    """Categorical map: 0 TN, 1 TP, 2 FP, 3 FN, NaN where either is missing.

    The codes of :func:`glacierkit.metrics.error_classes`, as a georeferenced float layer.
    """
    from .._util import NODATA
    from ..metrics import error_classes

    codes = error_classes(_binary(pred), _binary(labels))
    out = np.where(codes == NODATA, np.nan, codes).astype("float32")
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
    from .._util import atomic_path

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
        "pooled": {r["method"]: {k: v for k, v in r.items() if k not in ("scene", "method")}
                   for r in pooled.to_dict("records")},
        "per_scene": comparison[comparison["scene"] != "pooled"].to_dict("records"),
    }
    return write_json(out / "metrics.json", doc)


@dataclass
class Comparison:
    """Everything :func:`compare_methods` computed (tables, thresholds and maps)."""

    comparison: pd.DataFrame
    table4: pd.DataFrame
    failures: pd.DataFrame
    areas: pd.DataFrame
    glaciers: pd.DataFrame
    thresholds: dict
    maps: dict = field(repr=False)
    provenance: dict = field(default_factory=dict)


def binary_map(values, threshold: float) -> np.ndarray:
    """``values > threshold`` as 0/1 float32 with NaN kept, compared in the values' own
    dtype (the rule of :mod:`glacierkit.ndsi.threshold`)."""
    v = np.asarray(getattr(values, "values", values))
    t = v.dtype.type(threshold) if v.dtype.kind == "f" else threshold
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(v), np.nan, v > t).astype("float32")


@dataclass
class MethodScores:
    """The three methods on one scene (:func:`score_methods`)."""

    results: list[SceneResult]  # one per method, all on the same pixels
    maps: dict[str, np.ndarray]  # method -> 0/1 float32 map, NaN where not scored
    thresholds: dict[str, float]  # method -> the threshold it used
    reference: np.ndarray  # 0/1 float32 labels, NaN where unknown or not scored


def score_methods(scene: str, probability, index, labels, *, unet_threshold: float,
                  ndsi_threshold: float, grid=None, metric: str = "KC",
                  block: int = 32) -> MethodScores:
    """The one scoring loop of the comparisons: the U-Net, NDSI at the threshold learned on
    the training scenes, and NDSI at the scene's own best threshold (an oracle, picked on
    the labels it is scored on: an upper bound, not a result), all on the same pixels.

    :func:`compare_methods` (the test scenes) and :func:`glacierkit.evaluate.cross_region`
    (another region) both score through it. ``probability``, ``index`` and ``labels``
    share one grid; labels hold 1, 0 and :data:`~glacierkit.NODATA` (or NaN) for unknown.
    """
    from ..ndsi.threshold import best_threshold, fine_grid, sweep

    grid = fine_grid() if grid is None else np.asarray(grid, dtype="float64")
    t_oracle = best_threshold(sweep(index, labels, grid), metric)
    thresholds = {UNET: float(unet_threshold), NDSI_LEARNED: float(ndsi_threshold),
                  NDSI_ORACLE: float(t_oracle)}
    maps = {UNET: binary_map(probability, unet_threshold),
            NDSI_LEARNED: binary_map(index, ndsi_threshold),
            NDSI_ORACLE: binary_map(index, t_oracle)}
    results = evaluate_scene(scene, labels, maps, block=block,
                             info={m: {"threshold": t} for m, t in thresholds.items()})
    ref = _binary(labels)
    common = np.isfinite(ref)
    for m in maps.values():
        common &= np.isfinite(m)
    maps = {m: np.where(common, v, np.nan).astype("float32") for m, v in maps.items()}
    return MethodScores(results, maps, thresholds, np.where(common, ref, np.nan))


def _on_scene(values: np.ndarray, scene: xr.DataArray) -> xr.DataArray:
    """A ``(y, x)`` array on the scene's grid (coordinates, CRS and transform)."""
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": scene["y"], "x": scene["x"]})
    return da.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())


def _obscured_share(scene, labels, reference) -> float:
    """The share of a test scene's glacier area without a valid value (cloud, shadow,
    cirrus or no data), for metrics.json: as recorded when its cloud mask was applied
    against the outlines, else over the reference outlines. The labels come last: they are
    nodata wherever the scene is, so glacier pixels under a cloud are not in them."""
    from ..io.clouds import obscured_glacier_fraction

    recorded = scene.attrs.get("obscured_glacier_fraction")
    if recorded is not None and np.isfinite(float(recorded)):
        return float(recorded)
    if reference is not None and len(reference):
        return obscured_glacier_fraction(scene, reference)
    return obscured_glacier_fraction(scene, labels)


def compare_methods(
    output_dir: str | os.PathLike,
    model: str | os.PathLike,
    test_scenes: Sequence[str],
    train_scenes: Sequence[str],
    *,
    metric: str = "KC",
    grid=None,
    unet_threshold: float | None = None,
    tta: bool = False,
    overlap: float | None = None,
    n_boot: int = 1000,
    block: int = 32,
    write: bool = True,
) -> Comparison:
    """The U-Net against NDSI on the test scenes, as notebook 05 shows it.

    For each test scene: the U-Net probability (written as COGs under
    ``<output_dir>/predictions/<scene>/`` with its outlines as a GeoPackage), NDSI at the
    threshold learned on ``train_scenes`` (from notebook 03's ``ndsi/threshold.json`` when
    present, else learned now with the same rule), and NDSI at the scene's own best
    threshold (an oracle: an upper bound, not a result). All three are scored on the same
    pixels; pooled metrics come from summed counts, with block-bootstrap 95% CIs.
    ``metrics.json`` and ``comparison.csv`` (plus ``table4.csv``, ``failures.csv``,
    ``areas.csv`` and ``glacier_areas.csv``) go to ``output_dir``.
    """
    from tqdm.auto import tqdm

    from .._util import slug
    from ..indices import ndsi
    from ..io.clouds import cloud_summary
    from ..ndsi.threshold import fine_grid, learned_threshold
    from ..prep import ensure_prepared, load_prepared, scene_outlines
    from ..unet.artifact import load_model
    from ..unet.output import write_prediction
    from ..unet.predict import predict_scene
    from ..vectorize import compare_outlines, mask_to_polygons

    output_dir = Path(output_dir)
    overlap_train = set(test_scenes) & set(train_scenes)
    if overlap_train:
        from ..exceptions import ParameterError

        raise ParameterError(
            f"Scenes {sorted(overlap_train)} are both train and test scenes; a comparison on "
            "them would be tuned on its own test data."
        )
    grid = fine_grid() if grid is None else np.asarray(grid, dtype="float64")
    learned = learned_threshold(output_dir, train_scenes, metric, grid)
    t_learned = float(learned["threshold"])
    loaded = load_model(model) if not isinstance(model, tuple) else model
    sidecar = loaded[1]
    if unet_threshold is None:
        unet_threshold = float(sidecar.get("architecture", {}).get("threshold", 0.5))
    ensure_prepared(output_dir, test_scenes)
    results, failures, areas, glaciers, maps, oracles, guards = [], [], [], [], {}, {}, {}
    clouds = {}
    for s in tqdm(list(test_scenes), desc="test scenes", unit="scene"):
        scene, labels = load_prepared(output_dir, s)
        if labels is None:
            from ..exceptions import DataNotFoundError

            raise DataNotFoundError(f"Test scene {s!r} has no labels; it cannot be scored.")
        prob = predict_scene(loaded, scene, tta=tta, overlap=overlap, progress=False)
        guards[s] = prob.attrs.get("guard")
        index = ndsi(scene)
        scored = score_methods(s, prob, index, labels, unet_threshold=unet_threshold,
                               ndsi_threshold=t_learned, grid=grid, metric=metric, block=block)
        oracles[s] = scored.thresholds[NDSI_ORACLE]
        preds = {m: binary_map(v, scored.thresholds[m]) for m, v in
                 ((UNET, prob), (NDSI_LEARNED, index), (NDSI_ORACLE, index))}
        results += scored.results
        failures.append(failure_table(s, surface_classes(scene, labels), labels, preds))
        reference = scene_outlines(s, like=scene)
        clouds[s] = {**cloud_summary(scene.attrs),
                     "obscured_glacier_fraction": _obscured_share(scene, labels, reference)}
        if reference is not None and len(reference):
            for method in (UNET, NDSI_LEARNED):
                cmp = compare_outlines(_on_scene(preds[method], scene), reference, like=scene)
                areas.append({"scene": s, "method": method, **cmp.summary})
                glaciers.append(cmp.glaciers.assign(scene=s, method=method))
        polygons = mask_to_polygons(prob, threshold=unet_threshold, min_area_km2=0.01)
        if write:
            write_prediction(prob, output_dir / "predictions" / slug(s),
                             threshold=unet_threshold, outlines=polygons)
        maps[s] = {"scene": scene, "labels": labels, "probability": prob, "ndsi": index,
                   "reference": reference, "outlines": polygons}
    comparison = comparison_table(results, n_boot=n_boot)
    t4 = table4(comparison)
    thresholds = {"ndsi_learned": t_learned, "ndsi_learned_on": learned.get("learned_on"),
                  "ndsi_learned_source": learned.get("source"), "ndsi_oracle": oracles,
                  "unet": unet_threshold, "metric": metric}
    provenance = {
        "model": str(model) if not isinstance(model, tuple) else "in-memory model",
        "model_sidecar": {k: v for k, v in sidecar.items() if k != "inputs"},
        "model_inputs": sidecar["inputs"].to_dict(),
        "test_scenes": list(test_scenes),
        "train_scenes": list(train_scenes),
        "thresholds": thresholds,
        "tta": tta,
        "overlap": overlap,
        "bootstrap": {"n_boot": n_boot, "block_px": block, "level": 0.95},
        "domain_shift_guard": guards,
        # per test scene: the cloud mask applied (if any) and the share of the labelled
        # glacier area without a valid value (cloud, shadow, cirrus or no data)
        "clouds": clouds,
    }
    result = Comparison(
        comparison=comparison, table4=t4, failures=pd.concat(failures, ignore_index=True),
        areas=pd.DataFrame(areas),
        glaciers=pd.concat(glaciers, ignore_index=True) if glaciers else pd.DataFrame(),
        thresholds=thresholds, maps=maps, provenance=provenance)
    if write:
        save_results(output_dir, comparison, provenance,
                     {"table4": t4, "failures": result.failures, "areas": result.areas,
                      "glacier_areas": result.glaciers})
    return result


def predict_unlabelled(output_dir: str | os.PathLike, model, scenes: Sequence[str], *,
                       threshold: float | None = None, tta: bool = False,
                       overlap: float | None = None) -> dict[str, xr.DataArray]:
    """Predict scenes without labels (e.g. MerDeGlace); write COGs and outlines."""
    from .._util import slug
    from ..prep import ensure_prepared, load_prepared
    from ..unet.artifact import load_model
    from ..unet.output import write_prediction
    from ..unet.predict import predict_scene

    loaded = load_model(model) if not isinstance(model, tuple) else model
    if threshold is None:
        threshold = float(loaded[1].get("architecture", {}).get("threshold", 0.5))
    ensure_prepared(output_dir, scenes)
    out = {}
    for s in scenes:
        scene, _ = load_prepared(output_dir, s)
        prob = predict_scene(loaded, scene, tta=tta, overlap=overlap, progress=False)
        write_prediction(prob, Path(output_dir) / "predictions" / slug(s), threshold=threshold,
                         outlines=True)
        out[s] = prob
    return out
