"""Accuracy from confusion counts: the paper's MA, FA, OA and kappa, plus IoU and F1.

Everything is computed from the four counts, so scenes can be pooled by adding counts
(:meth:`Counts.__add__`) before scoring. Definitions (the paper's):

- missed alarm ``MA = FN / (TP + FN)``
- false alarm ``FA = FP / (TP + FP)``
- overall accuracy ``OA = (TP + TN) / N``
- Cohen's kappa ``KC = (OA - PRE) / (1 - PRE)`` with
  ``PRE = ((TP + FP)(TP + FN) + (FN + TN)(FP + TN)) / N**2``
- ``precision = 1 - FA``, ``recall = 1 - MA``, ``F1``, ``IoU = TP / (TP + FP + FN)``.

Degenerate cases give NaN with a reason (:func:`scores` returns them under ``"reasons"``),
never a ZeroDivisionError.

Examples
--------
>>> c = Counts(tp=80, fp=5, fn=20, tn=895)
>>> round(scores(c)["MA"], 3), round(scores(c)["FA"], 4)
(0.2, 0.0588)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ._util import NODATA
from .labels import known

__all__ = ["Counts", "confusion", "scores", "score_arrays", "table", "METRICS", "ERROR_CODES", "error_classes"]

#: Metric names in the order tables show them.
METRICS = ("MA", "FA", "OA", "KC", "precision", "recall", "F1", "IoU")


@dataclass(frozen=True)
class Counts:
    """Confusion counts of a binary glacier map against a reference."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                      self.tn + other.tn)

    def as_dict(self) -> dict[str, int]:
        return {k.upper(): v for k, v in asdict(self).items()}


def confusion(pred, ref, valid=None) -> Counts:
    """Count TP, FP, FN, TN of a prediction against a reference.

    Parameters
    ----------
    pred, ref
        Arrays (numpy, xarray or dask) of the same shape: glacier where > 0 (booleans or
        0/1). NaN in either, and reference pixels equal to
        :data:`glacierkit.NODATA` (255, unknown), are excluded.
    valid
        Optional boolean mask; only True pixels count.
    """
    p = np.asarray(getattr(pred, "values", pred))
    r = np.asarray(getattr(ref, "values", ref))
    if p.shape != r.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from reference shape {r.shape}.")
    ok = np.ones(p.shape, dtype=bool)
    if p.dtype.kind == "f":
        ok &= ~np.isnan(p)
    if r.dtype != bool:
        ok &= r != NODATA  # unknown (partial outlines, no data)
    if r.dtype.kind == "f":
        ok &= ~np.isnan(r)
    if valid is not None:
        ok &= np.asarray(getattr(valid, "values", valid), dtype=bool)
    with np.errstate(invalid="ignore"):
        pg = (p > 0) & ok
        rg = (r > 0) & ok
    tp = int(np.count_nonzero(pg & rg))
    fp = int(np.count_nonzero(pg)) - tp
    fn = int(np.count_nonzero(rg)) - tp
    tn = int(np.count_nonzero(ok)) - tp - fp - fn
    return Counts(tp, fp, fn, tn)


def _div(num, den):
    num = np.asarray(num, dtype="float64")
    den = np.asarray(den, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def score_arrays(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Vectorised :func:`scores`: arrays of counts in, arrays of metrics out (NaN if undefined)."""
    tp, fp, fn, tn = (np.asarray(v, dtype="float64") for v in (tp, fp, fn, tn))
    n = tp + fp + fn + tn
    ma = _div(fn, tp + fn)
    fa = _div(fp, tp + fp)
    oa = _div(tp + tn, n)
    pre = _div((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), n * n)
    kc = _div(oa - pre, 1.0 - pre)
    kc = np.where(np.isclose(pre, 1.0), np.nan, kc)
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    iou = _div(tp, tp + fp + fn)
    return {"MA": ma, "FA": fa, "OA": oa, "KC": kc, "precision": precision,
            "recall": recall, "F1": f1, "IoU": iou, "PRE": pre}


def scores(counts: Counts) -> dict:
    """All metrics of one set of counts, with ``"reasons"`` for those that are NaN."""
    arr = score_arrays(counts.tp, counts.fp, counts.fn, counts.tn)
    out: dict = {k: float(v) for k, v in arr.items()}
    reasons = {}
    if counts.n == 0:
        reasons.update({k: "no valid pixel" for k in METRICS})
    else:
        if counts.tp + counts.fn == 0:
            for k in ("MA", "recall"):
                reasons[k] = "no glacier in the reference"
        if counts.tp + counts.fp == 0:
            for k in ("FA", "precision"):
                reasons[k] = "no glacier predicted"
        if counts.tp + counts.fp + counts.fn == 0:
            reasons["F1"] = reasons["IoU"] = "no glacier in reference or prediction"
        if np.isnan(out["KC"]):
            reasons["KC"] = "chance agreement is 1 (one class only)"
    out["reasons"] = reasons
    return out


def table(rows: dict[str, Counts], pooled: str | None = "pooled") -> pd.DataFrame:
    """A tidy table: one row per named set of counts, plus a pooled row from summed counts."""
    records = []
    items = list(rows.items())
    if pooled and len(items) > 1:
        total = items[0][1]
        for _, c in items[1:]:
            total = total + c
        items.append((pooled, total))
    for name, c in items:
        s = scores(c)
        records.append({"name": name, **c.as_dict(), **{k: s[k] for k in METRICS}})
    return pd.DataFrame.from_records(records)


#: Codes of :func:`error_classes`, in the order of :data:`ERROR_COLOURS`.
ERROR_CODES = {"TN": 0, "TP": 1, "FP": 2, "FN": 3}


def error_classes(prediction, labels) -> np.ndarray:
    """Per-pixel error class codes: 0 TN, 1 TP, 2 FP, 3 FN, 255 no data.

    ``prediction`` is boolean or float (glacier where ``> 0``; NaN is no data, e.g. a NaN
    index); ``labels`` is the reference (glacier where ``> 0``, NaN no data).
    """
    p = np.asarray(getattr(prediction, "values", prediction))
    r = np.asarray(getattr(labels, "values", labels))
    if p.shape != r.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from labels shape {r.shape}.")
    with np.errstate(invalid="ignore"):
        pg, rg = p > 0, r > 0
    codes = np.where(pg, np.where(rg, 1, 2), np.where(rg, 3, 0)).astype("uint8")
    bad = ~known(r)  # NaN or NODATA (unknown) in the reference
    if p.dtype.kind == "f":
        bad |= np.isnan(p)
    codes[bad] = NODATA
    return codes
