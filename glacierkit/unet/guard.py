"""The domain-shift guard: does this scene lie inside what the model has seen?

A model trained on two Alpine crops can be confidently wrong on a scene from another
region, sensor or season, and nothing in its probability map says so. The guard runs with
every prediction (:func:`glacierkit.unet.predict_scene`) and checks two things:

**Inputs against the training distribution.** The model's sidecar stores quantiles of every
input channel over its training tiles (``training_distribution``). For each channel the
guard measures the share of the scene's valid pixels outside the training 0.5-99.5 %
range, widened by a quarter of its 5-95 % range on each side (``outside``), and the
scene's radiometry: the share of pixels with a negative
reflectance in any input band (deep shadow and snow in SWIR in surface-reflectance
products such as HLS, or a wrong offset such as Sentinel-2's baseline-04.00 -1000 applied
twice). Its limit is 2 %, or twice the share the model saw in training when that is larger
(photometric augmentation shows the network negative reflectances).

**Physical sense of the output.** Two things a glacier map should rarely do:

- call glacier where NDSI < 0 (``glacier_on_negative_ndsi``: the share of the pixels
  called glacier): clean ice and snow have NDSI well above 0; only debris-covered ice
  (and rock) does not;
- call non-glacier where the surface is bright snow or ice (``bright_snow_missed``: the
  share of pixels with NDSI > 0.6 and green reflectance > 0.4 called not glacier):
  seasonal snow outside glaciers does this legitimately, so the limit is loose.

Each value is compared with a documented limit (:data:`LIMITS`); every value above its limit
becomes a warning (logged with :mod:`warnings` as :class:`DomainShiftWarning`, stored in the
probability's ``attrs["guard"]``, the GeoTIFF tags and the metrics JSON). The limits were
set on the sample data before the new default model was trained: the Alps test scenes
(same tile and month as the training scenes) stay below all of them, and the Athabasca
scenes exceed the input limits.

A warning does not mean the map is wrong. It means the scene differs from anything the
model was trained on, so check the map, or adapt the model to the region
(:func:`glacierkit.unet.fit` with ``init_model=``; README, "Map a new region").
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import DomainShiftWarning

__all__ = ["LIMITS", "input_report", "output_report", "guard_report", "guard_table", "warn"]

#: Limits above which the guard warns. ``outside``: share of valid pixels outside the
#: training 0.5-99.5 % range, in the worst channel (1 % of the training pixels are).
LIMITS: dict[str, float] = {
    "outside": 0.20,
    "negative_reflectance": 0.02,
    "glacier_on_negative_ndsi": 0.10,
    "bright_snow_missed": 0.50,
}
#: The training range of a channel is its 0.5-99.5 % range widened on each side by this
#: fraction of its 5-95 % range, so that values just past the extremes of two training
#: crops (fresher snow, darker SWIR) do not count as new.
MARGIN = 0.25
#: Sampled pixels per scene (a regular grid) for the input statistics.
MAX_PIXELS = 1_000_000


def _sample(a: np.ndarray, step: int) -> np.ndarray:
    return a[..., ::step, ::step]


def sample_step(shape) -> int:
    return max(1, int(np.ceil(np.sqrt(shape[-2] * shape[-1] / MAX_PIXELS))))


def input_report(scene: xr.DataArray, spec, distribution: Mapping | None) -> dict:
    """Input statistics of a scene against the model's training distribution.

    Parameters
    ----------
    scene
        The scene (``(band, y, x)`` reflectance with roles).
    spec
        The model's :class:`glacierkit.unet.InputSpec`.
    distribution
        The sidecar's ``training_distribution`` (None for models saved before it existed:
        only the radiometry is checked).
    """
    from ..bands import select_bands
    from .features import feature_stack

    step = sample_step(scene.shape)
    sub = scene.isel(y=slice(None, None, step), x=slice(None, None, step))
    refl = np.asarray(select_bands(sub, spec.roles).values, dtype="float32")
    valid = np.isfinite(refl).all(axis=0)
    n = int(valid.sum())
    out: dict = {"pixels_sampled": n}
    if n == 0:
        return out
    out["negative_reflectance"] = float((refl[:, valid] < 0).any(axis=0).mean())
    if distribution:
        feats = np.asarray(feature_stack(sub, spec).values, dtype="float32")
        q = list(distribution["quantiles"])
        lo_i, hi_i = q.index(0.005), q.index(0.995)
        per = {}
        for i, ch in enumerate(spec.channels):
            vals = distribution["values"].get(ch)
            if vals is None:
                continue
            v = feats[i][valid]
            margin = MARGIN * (vals[q.index(0.95)] - vals[q.index(0.05)])
            lo, hi = vals[lo_i] - margin, vals[hi_i] + margin
            per[ch] = {"outside": round(float(((v < lo) | (v > hi)).mean()), 4),
                       "median": round(float(np.median(v)), 4),
                       "training_median": vals[q.index(0.5)]}
        out["channels"] = per
        if per:
            worst = max(per, key=lambda c: per[c]["outside"])
            out["outside"] = per[worst]["outside"]
            out["outside_channel"] = worst
    return out


def output_report(prob: np.ndarray, scene: xr.DataArray, threshold: float = 0.5) -> dict:
    """Physical checks of a probability map against the scene's NDSI and brightness."""
    from ..bands import select_bands
    from ..indices import ndsi

    step = sample_step(scene.shape)
    sub = scene.isel(y=slice(None, None, step), x=slice(None, None, step))
    p = _sample(np.asarray(prob), step)
    nd = np.asarray(ndsi(sub).values)
    green = np.asarray(select_bands(sub, ("green",)).values[0])
    ok = np.isfinite(p) & np.isfinite(nd) & np.isfinite(green)
    called = ok & (p > threshold)
    out: dict = {"called_glacier": round(float(called.sum() / max(ok.sum(), 1)), 4)}
    n_called = int(called.sum())
    out["glacier_on_negative_ndsi"] = (round(float((called & (nd < 0)).sum() / n_called), 4)
                                       if n_called else 0.0)
    bright = ok & (nd > 0.6) & (green > 0.4)
    out["bright_pixels"] = round(float(bright.sum() / max(ok.sum(), 1)), 4)
    out["bright_snow_missed"] = (round(float((bright & ~called).sum() / bright.sum()), 4)
                                 if bright.sum() >= 100 else 0.0)
    return out


def guard_report(prob: np.ndarray, scene: xr.DataArray, spec, sidecar: Mapping,
                 threshold: float = 0.5, limits: Mapping[str, float] | None = None) -> dict:
    """The whole guard: input and output checks, the limits, and the warnings."""
    limits = {**LIMITS, **(limits or {})}
    dist = sidecar.get("training_distribution") or {}
    if "negative_reflectance" not in (limits or {}):
        # A model trained with negative reflectances (photometric augmentation) knows them.
        limits["negative_reflectance"] = max(limits["negative_reflectance"],
                                             2 * float(dist.get("negative_reflectance", 0.0)))
    inputs = input_report(scene, spec, dist)
    outputs = output_report(prob, scene, threshold)
    values = {k: v for k, v in {**inputs, **outputs}.items() if k in limits}
    messages = {
        "outside": "{:.0%} of the pixels lie outside the training range of input '{}' "
                   "(limit {:.0%})",
        "negative_reflectance": "{:.1%} of the pixels have a negative reflectance (limit "
                                "{:.1%}): deep shadow, or a wrong scale/offset",
        "glacier_on_negative_ndsi": "{:.0%} of the pixels called glacier have NDSI < 0 "
                                    "(limit {:.0%}): rock called glacier, or debris-covered ice",
        "bright_snow_missed": "{:.0%} of the bright snow/ice-like pixels are called not "
                              "glacier (limit {:.0%}): seasonal snow, or missed glacier",
    }
    warns = []
    for key, value in values.items():
        if value > limits[key]:
            if key == "outside":
                warns.append(messages[key].format(value, inputs.get("outside_channel"),
                                                  limits[key]))
            else:
                warns.append(messages[key].format(value, limits[key]))
    return {"inputs": inputs, "outputs": outputs, "limits": limits, "warnings": warns,
            "in_domain": not warns}


def warn(report: Mapping, scene_id: str = "the scene") -> None:
    """Emit one :class:`DomainShiftWarning` summarizing a guard report (if it warns)."""
    if report.get("warnings"):
        text = (f"Domain-shift guard: {scene_id} differs from the model's training data: "
                + "; ".join(report["warnings"]) + ". Check the map, or adapt the model to "
                "this region (fit(..., init_model=...)).")
        warnings.warn(text, DomainShiftWarning, stacklevel=3)


def guard_table(reports: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per scene from guard reports (``{scene: prob.attrs["guard"]}``): in the
    training domain or not, the warnings, and the measured shares the limits apply to."""
    rows = {}
    for name, report in reports.items():
        report = report or {}
        inputs, outputs = report.get("inputs", {}), report.get("outputs", {})
        rows[name] = {"in training domain": report.get("in_domain"),
                      "warnings": "; ".join(report.get("warnings", [])) or "none",
                      **{k: inputs.get(k) for k in ("outside", "negative_reflectance")},
                      **{k: outputs.get(k) for k in ("glacier_on_negative_ndsi",
                                                     "bright_snow_missed")}}
    return pd.DataFrame.from_dict(rows, orient="index")
