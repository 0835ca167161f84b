"""Adapting a model to a new region, measured: fine-tune on one part, score on the other.

:func:`adapt` splits a region (the sample has Athabasca) into two column blocks with a gap,
fine-tunes the model on one (its recipe: :meth:`glacierkit.unet.TrainConfig.from_pretrained`,
a small learning rate), trains the same recipe from scratch on the same tiles, and scores
both, the model as it is and NDSI at the learned threshold on the other block.
``python -m tools.adapt`` runs it; the README's "Map a new region" shows the numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._util import NDSI_LEARNED, NODATA
from ..data.regions import Region, get_region, on_grid, region_labels, region_scenes
from ..exceptions import ParameterError

__all__ = ["Adaptation", "adapt"]


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
    - the model fine-tuned with :func:`glacierkit.unet.fit` (``init_model=``): its own
      inputs and normalization, ``learning_rate``, ``epochs``, tiles of ``patch_size`` with a
      blocked validation block inside the adapted part (which picks the epoch);
    - the same recipe trained from scratch on the same pixels (``scratch_epochs``, learning
      rate 1e-3; one network, also when the pretrained model is an ensemble);
    - NDSI at the threshold learned on the training scenes.

    Pixels outside the partial outline that are not clear rock are unknown (255): they count
    in neither the loss nor the scores.
    """
    import time

    from ..indices import ndsi
    from ..metrics import Counts, confusion, scores
    from ..unet.config import TrainConfig
    from ..unet.predict import predict_scene
    from ..unet.train import fit

    reg = get_region(region)
    out = Path(output_dir)
    path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    if path is None:
        raise ParameterError("adapt() needs the path of a saved model (.keras with sidecar).")
    scenes = region_scenes(reg)
    labels = region_labels(reg, mask, scenes=scenes)
    in_adapt, in_score = _split_columns(scenes[reg.grid], side, fraction, gap)
    pairs = {}
    known = labels.copy(data=np.where(labels.values == NODATA, np.nan,
                                      labels.values).astype("float32"))
    known.attrs = {}
    known = known.rio.write_nodata(np.nan)
    for name, scene in scenes.items():
        lab = on_grid(known, scene)
        keep = in_adapt(scene["x"].values)
        pairs[name] = (scene.isel(x=np.flatnonzero(keep)), lab.isel(x=np.flatnonzero(keep)))
    common = {"patch_size": patch_size, "stride": patch_size // 4, "val_gap": gap,
              "val_fraction": 0.2, "batch_size": 8, "seed": seed, "lr_schedule": "cosine",
              # most of a partially labelled tile is unknown: keep tiles with 10 % known
              "max_nan_fraction": 0.9}
    # fine-tuned: the model's recipe, a small learning rate, no augmentation beyond flips
    tuned_cfg = TrainConfig.from_pretrained(path, **common, epochs=epochs,
                                            learning_rate=learning_rate, photometric=0.0,
                                            resolutions=[], lakes=0.0, shadows=0.0)
    # from scratch: the model's whole recipe on the same tiles
    scratch_cfg = TrainConfig.from_pretrained(path, **common, epochs=scratch_epochs)
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
    lab[lab == NODATA] = np.nan
    lab[:, ~score_cols] = np.nan
    rows, totals = [], {}
    for name, scene in scenes.items():
        calls = {}
        for method, mpath in models.items():
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = predict_scene(str(mpath), scene, progress=False, guard=False)
            calls[method] = np.asarray(on_grid(p.rio.write_crs(scene.rio.crs), like).values)
        index = np.asarray(on_grid(ndsi(scene), like).values)
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
    from ..io.write import write_table

    write_table(result.table, out / "adapt_scores.csv")
    write_table(result.pooled, out / "adapt_pooled.csv")
    return result
