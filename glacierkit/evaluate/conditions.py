"""A benchmark across the conditions of users' scenes, judged by the worst one.

A model that wins on the scenes it was chosen on can still fail on a user's scene: another
processing level, an offset nobody stated, another pixel size. :func:`benchmark` rebuilds
those conditions from the data we have and scores the model next to NDSI on every one:

- scenes: the validation blocks of the Alps training scenes (Aletsch, Fiescher; never the
  test scenes) and the three Athabasca dates (known-truth mask,
  :func:`glacierkit.labels.partial_outline_labels`);
- conditions (:data:`CONDITIONS`): surface reflectance as it is; top-of-atmosphere
  versions (:func:`simulate_toa`, clear to hazy, with the per-band path reflectance and
  transmittance ranges of :data:`glacierkit.io.level.ATMOSPHERE` and a random spectral
  shape); the +1000 DN offset of Sentinel-2 baseline 04.00 left in an integer export that
  does not state it (surface reflectance and top-of-atmosphere); 10, 20 and 30 m pixels;
- methods: the model, NDSI at the threshold learned on the training scenes, and NDSI at
  each scene's own best threshold (an oracle), all through the one scoring loop
  (:func:`glacierkit.evaluate.score_methods`).

Every simulated scene goes through :func:`glacierkit.io.open_scene` as a user's file would
(the top-of-atmosphere ones without metadata, the offset ones as a GeoTIFF with
Sentinel-2 band names and nothing else), so the level and offset detection and the
correction before prediction are part of what is measured. ``summary`` pools the scenes
of each condition and gives the model's KC margin over NDSI at the learned threshold; a
recipe is chosen by its **worst** condition (:func:`worst`), not its mean.

:func:`spectral_check` adds the labelled pixel spectra of US glaciers
(:func:`glacierkit.data.spectra`): rock, water and shadowed surfaces, at surface
reflectance (Landsat 8/9, Sentinel-2) and at top of atmosphere (Sentinel-2), as mosaics.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._util import NDSI_LEARNED, NDSI_ORACLE, NODATA, UNET
from ..exceptions import ParameterError

log = logging.getLogger(__name__)

__all__ = ["Condition", "CONDITIONS", "BENCHMARK_SCENES", "Benchmark", "benchmark",
           "simulate_toa", "condition_scene", "benchmark_scenes", "spectral_check", "worst",
           "MARGIN", "get_conditions"]

#: The margin the model may lose to NDSI at the learned threshold on any condition.
MARGIN = 0.02


@dataclass(frozen=True)
class Condition:
    """How a benchmark scene is changed before it is opened: ``haze`` (None: surface
    reflectance; 0 clear to 1 hazy: top-of-atmosphere, :func:`simulate_toa`), ``offset``
    (written as Sentinel-2 DNs with the +1000 of baseline 04.00 and nothing that says so),
    ``resolution`` (metres; None: the scene's own); ``correct=False`` predicts without the
    level correction, as when a file states the wrong level or its level is not found."""

    name: str
    haze: float | None = None
    offset: bool = False
    resolution: float | None = None
    description: str = ""
    correct: bool = True  # False: predicted without the level correction

    @property
    def kind(self) -> str:
        if self.offset:
            return "offset"
        if self.haze is not None:
            return "toa"
        return "resolution" if self.resolution else "surface"


#: The benchmark's conditions.
CONDITIONS: tuple[Condition, ...] = (
    Condition("surface reflectance", description="the scene as it is"),
    Condition("toa clear", haze=0.1, description="top of atmosphere, clear (AOD ~0.1)"),
    Condition("toa moderate", haze=0.5, description="top of atmosphere, moderate aerosol"),
    Condition("toa hazy", haze=0.9, description="top of atmosphere, hazy (AOD ~0.4)"),
    Condition("toa hazy, uncorrected", haze=0.9, correct=False,
              description="top of atmosphere, hazy, and no correction: a wrong level"),
    Condition("offset", offset=True,
              description="Sentinel-2 DNs with the unstated +1000 of baseline 04.00"),
    Condition("toa moderate + offset", haze=0.5, offset=True,
              description="Sentinel-2 L1C DNs with the unstated +1000 of baseline 04.00"),
    Condition("10 m", resolution=10.0, description="resampled to 10 m"),
    Condition("20 m", resolution=20.0, description="resampled to 20 m"),
    Condition("30 m", resolution=30.0, description="resampled to 30 m"),
)

#: The benchmark's scenes: the validation blocks of the Alps training scenes and the
#: Athabasca dates. Never the Alps test scenes.
BENCHMARK_SCENES = ("alps-s2/aletsch", "alps-s2/fiescher", "athabasca/l8-2020-08-16",
                    "athabasca/s2-2020-09-09", "athabasca/s2-2020-09-11")


def get_conditions(names: Sequence[str | Condition]) -> list[Condition]:
    """The :data:`CONDITIONS` named in ``names`` (a :class:`Condition` passes as it is);
    an unknown name raises :class:`ParameterError` listing the known ones."""
    known = {c.name: c for c in CONDITIONS}
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        if isinstance(n, Condition):
            out.append(n)
        elif n in known:
            out.append(known[n])
        else:
            raise ParameterError(
                f"Unknown benchmark condition {n!r}; the conditions are {list(known)} "
                "(notebook 05's conditions parameter, or [] to skip them).")
    return out


def simulate_toa(scene: xr.DataArray, haze: float, seed: int = 0,
                 shape_jitter: float = 0.15) -> xr.DataArray:
    """A top-of-atmosphere version of a surface-reflectance scene:
    ``toa = T_b * surface + P_b`` per band.

    ``P_b`` and ``T_b`` are taken at ``haze`` (0 clear, 1 hazy) within the ranges of
    :data:`glacierkit.io.level.ATMOSPHERE`, and each band's path reflectance is then scaled
    by a random factor ``1 +- shape_jitter`` (seeded), so the spectral shape of the haze is
    not the one the correction assumes. Bands without a known role are kept. The level,
    the product and the path reflectance are dropped from the attrs, as in a file that
    does not say them.
    """
    from ..io.level import ATMOSPHERE

    if not 0 <= haze <= 1:
        raise ParameterError(f"haze={haze} must be in [0, 1] (0 clear, 1 hazy).")
    rng = np.random.default_rng(seed)
    roles = [str(r) for r in scene["role"].values]
    path, trans = np.zeros(len(roles), "float32"), np.ones(len(roles), "float32")
    for i, role in enumerate(roles):
        if role in ATMOSPHERE:
            plo, phi, tlo, thi = ATMOSPHERE[role]
            path[i] = (plo + haze * (phi - plo)) * (1 + shape_jitter * rng.uniform(-1, 1))
            trans[i] = thi - haze * (thi - tlo)
    band = scene["band"].values
    out = (scene * xr.DataArray(trans, dims="band", coords={"band": band})
           + xr.DataArray(path, dims="band", coords={"band": band})).astype("float32")
    drop = {"level", "level_from", "path_reflectance", "product", "processing_baseline",
            "offset_check", "level_correction", "corrected_from", "correction"}
    out.attrs = {k: v for k, v in scene.attrs.items() if k not in drop}
    out.attrs["simulated"] = f"top of atmosphere, haze {haze:g}, seed {seed}"
    return out.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())


def _as_offset_file(scene: xr.DataArray, folder: Path) -> Path:
    """``scene`` written as a Sentinel-2 integer GeoTIFF with the +1000 DN of baseline
    04.00, its bands named B02 ... B12 and no tag that says sensor, product or baseline:
    an export as users download them."""
    from ..bands import get_sensor
    from ..io.write import write_raster

    s2 = get_sensor("sentinel2")
    roles = [str(r) for r in scene["role"].values]
    keep = [i for i, r in enumerate(roles) if r in s2.roles]
    sub = scene.isel(band=keep)
    dn = np.clip(np.rint(np.nan_to_num(sub.values, nan=-1.0) * 10_000) + 1000, 1, 65535)
    dn[np.broadcast_to(~np.isfinite(sub.values).all(axis=0), dn.shape)] = 0  # nodata
    names = [s2.band_for_role(roles[i]) for i in keep]
    da = sub.copy(data=dn.astype("uint16")).assign_coords(band=names)
    path = folder / f"{scene.attrs.get('scene_id', 'scene').replace('/', '_')}_dn.tif"
    return write_raster(da, path, dtype="uint16", nodata=0, descriptions=names, cog=False)


def _resample(scene: xr.DataArray, labels: xr.DataArray, resolution: float):
    from rasterio.enums import Resampling

    res = abs(scene.rio.resolution()[0])
    if abs(res - resolution) < 1e-6:
        return scene, labels
    method = Resampling.average if resolution > res else Resampling.bilinear
    out = scene.rio.reproject(scene.rio.crs, resolution=resolution, resampling=method)
    out = out.where(np.isfinite(out))
    lab = labels.rio.write_nodata(NODATA).rio.reproject_match(out, resampling=Resampling.nearest)
    out.attrs = {**scene.attrs, "resampled": f"{res:g} m -> {resolution:g} m"}
    return out.astype("float32"), lab


def benchmark_scenes(names: Sequence[str] = BENCHMARK_SCENES
                     ) -> dict[str, tuple[xr.DataArray, xr.DataArray]]:
    """``{name: (scene, labels)}``: surface reflectance and labels (1, 0,
    :data:`~glacierkit.NODATA` unknown) on each scene's own grid. Alps scenes are cut to the
    validation block of the training split (``TrainConfig`` defaults: the bottom 20 % of
    the rows), which no model saw in training; Athabasca dates are whole, labelled with
    the known-truth mask."""
    from ..data.regions import get_region, on_grid, region_labels, region_scenes
    from ..io.scene import open_scene
    from ..labels import rasterize_outlines
    from ..unet.config import TrainConfig
    from ..unet.tiles import blocked_regions

    cfg = TrainConfig()
    out = {}
    athabasca = [n for n in names if n.startswith("athabasca/")]
    if athabasca:
        reg = get_region("athabasca")
        scenes = region_scenes(reg)
        labels = region_labels(reg, "known-truth", scenes=scenes)
        for n in athabasca:
            lab = on_grid(labels.astype("float32"), scenes[n]).fillna(NODATA).astype("uint8")
            out[n] = (scenes[n], lab.rio.write_crs(scenes[n].rio.crs))
    for n in names:
        if n in out:
            continue
        if n.startswith("athabasca/"):
            continue
        scene = open_scene(n)
        if scene.attrs.get("split") == "test":
            raise ParameterError(f"{n!r} is a test scene: the benchmark never uses those.")
        lab = rasterize_outlines(n.split("/")[0], like=scene).astype("uint8")
        box = blocked_regions(scene.sizes["y"], scene.sizes["x"], cfg.patch_size,
                              cfg.val_fraction, cfg.val_gap, cfg.val_side, n)["validation"]
        rows, cols = box.slices()
        out[n] = (scene.isel(y=rows, x=cols), lab.isel(y=rows, x=cols))
    return {n: out[n] for n in names}


def condition_scene(scene: xr.DataArray, labels: xr.DataArray, condition: Condition,
                    folder: str | os.PathLike, seed: int = 0):
    """``(scene, labels)`` under ``condition``, the scene opened by
    :func:`glacierkit.io.open_scene` as a user's file would be; None when the condition
    does not apply (the offset of Sentinel-2 on a Landsat scene)."""
    from ..io.scene import open_scene

    if condition.resolution:
        scene, labels = _resample(scene, labels, condition.resolution)
        if scene.attrs.get("resampled") is None:
            return None  # the scene's own resolution: the surface condition already
    if condition.haze is not None:
        scene = simulate_toa(scene, condition.haze, seed)
    if condition.offset:
        if scene.attrs.get("sensor") != "sentinel2":
            return None
        path = _as_offset_file(scene, Path(folder))
        opened = open_scene(path)
    else:
        opened = open_scene(scene)
    return opened, labels


@dataclass
class Benchmark:
    """What :func:`benchmark` measured."""

    table: pd.DataFrame  # per condition, scene and method
    summary: pd.DataFrame  # per condition, pooled over its scenes
    levels: pd.DataFrame  # per condition and scene: what the loader found and did
    spectra: pd.DataFrame = field(default_factory=pd.DataFrame)

    def worst(self, kinds: Sequence[str] = ("toa", "offset", "resolution", "surface")) -> dict:
        return worst(self.summary, kinds)


def worst(summary: pd.DataFrame, kinds: Sequence[str] = ("toa", "offset", "resolution",
                                                         "surface")) -> dict:
    """The worst condition of ``kinds``: its name and the model's KC margin over NDSI at
    the learned threshold (the number a recipe is chosen by)."""
    rows = summary[summary["kind"].isin(kinds)]
    row = rows.loc[rows["margin"].idxmin()]
    return {"condition": row["condition"], "margin": float(row["margin"]),
            "passes": bool((rows["margin"] >= -MARGIN).all())}


def benchmark(model, *, ndsi_threshold: float, conditions: Sequence[Condition] = CONDITIONS,
              scenes: Sequence[str] = BENCHMARK_SCENES, grid=None, seed: int = 0,
              spectra: bool = True, output_dir: str | os.PathLike | None = None,
              **predict_kwargs) -> Benchmark:
    """Score ``model`` and NDSI on every scene under every condition (module docstring).

    Parameters
    ----------
    model
        A ``.keras`` path (sidecar beside it) or a predictor.
    ndsi_threshold
        NDSI threshold learned on the training scenes (notebook 03's).
    conditions, scenes
        What to measure (default: all of :data:`CONDITIONS` on :data:`BENCHMARK_SCENES`);
        conditions by name or as :class:`Condition`.
    grid
        Thresholds for the NDSI oracle (default 0 to 0.7 by 0.01).
    seed
        Seeds the spectral shape of the simulated haze.
    spectra
        Add :func:`spectral_check` (the US glacier spectra).
    output_dir
        Write ``conditions.csv``, ``conditions_summary.csv``, ``conditions_levels.csv`` and
        ``conditions_spectra.csv`` there.
    predict_kwargs
        For :func:`glacierkit.unet.predict_scene` (``window``, ``overlap``, ``precision``).
    """
    from ..indices import ndsi
    from ..io.write import write_table
    from ..metrics import Counts, scores
    from ..unet.artifact import resolve_model
    from ..unet.predict import predict_scene
    from .compare import score_methods

    conditions = get_conditions(conditions)
    pred = resolve_model(model, predict_kwargs.pop("precision", None))
    t_model = float(pred.sidecar.get("architecture", {}).get("threshold", 0.5))
    base = benchmark_scenes(scenes)
    rows, levels = [], []
    with tempfile.TemporaryDirectory(prefix="gk-conditions-") as tmp:
        for c_i, cond in enumerate(conditions):
            for s_i, (name, (scene, labels)) in enumerate(base.items()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    got = condition_scene(scene, labels, cond, tmp, seed=seed + 97 * s_i)
                    if got is None:
                        continue
                    sc, lab = got
                    kwargs = {**predict_kwargs}
                    if not cond.correct:
                        kwargs["level_correction"] = False
                    prob = predict_scene(pred, sc, progress=False, **kwargs)
                index = ndsi(sc)
                scored = score_methods(name, prob, index, lab, unet_threshold=t_model,
                                       ndsi_threshold=ndsi_threshold, grid=grid)
                levels.append({"condition": cond.name, "scene": name,
                               "level": sc.attrs.get("level"),
                               "level_from": sc.attrs.get("level_from"),
                               "offset": sc.attrs.get("offset_check"),
                               "correction": prob.attrs.get("level_correction"),
                               "in_domain": (prob.attrs.get("guard") or {}).get("in_domain")})
                for r in scored.results:
                    s = scores(r.counts)
                    rows.append({"condition": cond.name, "kind": cond.kind, "scene": name,
                                 "method": r.method, "threshold": scored.thresholds[r.method],
                                 **r.counts.as_dict(),
                                 **{k: s[k] for k in ("MA", "FA", "OA", "KC", "IoU")}})
            log.info("condition %d/%d (%s) done", c_i + 1, len(conditions), cond.name)
    table = pd.DataFrame(rows)
    summary = []
    for cond in conditions:
        t = table[table["condition"] == cond.name]
        if t.empty:
            continue
        kc = {}
        for method in (UNET, NDSI_LEARNED, NDSI_ORACLE):
            m = t[t["method"] == method]
            total = Counts(*(int(m[k].sum()) for k in ("TP", "FP", "FN", "TN")))
            kc[method] = float(scores(total)["KC"])
        per_scene = t.pivot_table(index="scene", columns="method", values="KC")
        summary.append({"condition": cond.name, "kind": cond.kind, "scenes": len(per_scene),
                        "model_KC": kc[UNET], "ndsi_KC": kc[NDSI_LEARNED],
                        "oracle_KC": kc[NDSI_ORACLE], "margin": kc[UNET] - kc[NDSI_LEARNED],
                        "worst_scene_margin": float((per_scene[UNET]
                                                     - per_scene[NDSI_LEARNED]).min()),
                        "passes": bool(kc[UNET] >= kc[NDSI_LEARNED] - MARGIN)})
    result = Benchmark(table, pd.DataFrame(summary), pd.DataFrame(levels))
    if spectra:
        result.spectra = spectral_check(pred, ndsi_threshold)
    if output_dir is not None:
        out = Path(output_dir)
        write_table(result.table, out / "conditions.csv")
        write_table(result.summary, out / "conditions_summary.csv")
        write_table(result.levels, out / "conditions_levels.csv")
        if not result.spectra.empty:
            write_table(result.spectra, out / "conditions_spectra.csv")
    return result


#: Sentinel-2 B11/B12 of the US glacier spectra at surface reflectance (median of the five
#: surfaces 1.00-1.13): the TOA file's B11 is damaged, and path reflectance is negligible in
#: the SWIR, so its SWIR1 is taken as this times its B12.
SWIR1_FROM_SWIR2 = 1.08


def spectral_check(model, ndsi_threshold: float, seed: int = 0) -> pd.DataFrame:
    """Share of each surface of the US glacier spectra that the model and NDSI at the
    learned threshold call glacier, per product: Landsat 8/9 and Sentinel-2 surface
    reflectance, and Sentinel-2 top of atmosphere (its SWIR1 from :data:`SWIR1_FROM_SWIR2`;
    opened without a level, so the data decide it, and corrected before prediction).
    Rock and water should stay near 0 %."""
    from ..data import samples
    from .regions import spectral_sense

    tables = []
    for product, sensor, level in (("landsat", "landsat8", "surface"),
                                   ("sentinel2-sr", "sentinel2", "surface"),
                                   ("sentinel2-toa", "sentinel2", None)):
        table = samples.spectra(product)
        if "swir1" not in table:
            table = table.assign(swir1=SWIR1_FROM_SWIR2 * table["swir2"])
        tables.append(spectral_sense(model, table, ndsi_threshold, level, seed=seed,
                                     sensor=sensor).assign(product=product))
    out = pd.concat(tables, ignore_index=True)
    return out[["product", "level", "surface", "pixels", "model: % glacier",
                "NDSI: % glacier"]]
