"""Exact one-pass threshold sweeps, the NDSI histogram, Otsu, and picking a threshold.

The convention everywhere: a pixel is **glacier where the index is strictly greater than
the threshold**. Labels are 1 (glacier) or 0 (not glacier); a pixel whose index is NaN or
whose label is anything else (NaN, the 255 "unknown" code of uint8 label rasters, ...) is
left out of every count.

Thresholds are compared in the index's own precision: for a float32 index (what
:func:`glacierkit.indices.ndsi` returns) each threshold is first rounded to float32, so
threshold ``0.3`` means ``index > np.float32(0.3)``. That is also what NumPy 2 does for
``index > 0.3`` with a Python float. Any other index dtype is compared in float64.

:func:`sweep` makes **one pass over the pixels**: a compiled kernel counts, per class, the
pixels falling between consecutive thresholds, and cumulative sums give TP, FP, FN and TN
for every threshold at once, equal count for count to thresholding the pixels one
threshold at a time. Dask-backed inputs are reduced chunk by chunk (one small histogram
per chunk), so a scene is never loaded whole. :func:`sweep_scene` also computes NDSI on
the fly in the same pass, which costs less than computing the NDSI array alone.

Examples
--------
>>> import numpy as np
>>> index = np.array([0.1, 0.3, 0.5, np.nan], dtype="float32")
>>> labels = np.array([0, 1, 1, 1], dtype="float32")
>>> sweep(index, labels, [0.2, 0.3])[["threshold", "TP", "FP", "FN", "TN"]]
   threshold  TP  FP  FN  TN
0        0.2   2   0   0   1
1        0.3   1   0   1   1
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import _kernels
from .._util import read_json
from ..exceptions import CorruptFileError, DataNotFoundError, ParameterError
from ..metrics import score_arrays

log = logging.getLogger(__name__)

__all__ = ["COLUMNS", "RULE", "LEARNED_FILE", "paper_grid", "fine_grid", "ClassHistogram", "class_histogram", "class_histogram_nd", "sweep", "sweep_scene", "sweep_scenes", "pool", "IndexHistogram", "histogram", "otsu", "histogram_summary", "best_threshold", "learned_vs_oracle", "learn", "learned_threshold", "stack", "water_as_glacier", "save_learned", "load_learned"]

#: The columns of every sweep table, in order.
COLUMNS = ("threshold", "TP", "FP", "FN", "TN", "MA", "FA", "OA", "KC", "IoU", "F1")
#: The decision rule, as written into tables' attrs and ``threshold.json``.
RULE = ("glacier where index > threshold, compared in the index dtype (float32 NDSI: "
        "index > float32(threshold)); NaN index or label excluded")
#: Where notebook 03 writes the threshold learned on the training scenes.
LEARNED_FILE = Path("ndsi") / "threshold.json"
#: Metrics that :func:`best_threshold` can maximise.
MAXIMISE = ("KC", "OA", "IoU", "F1")
#: Normalized-difference indices that :func:`sweep_scene` computes on the fly.
ND_INDICES = {"ndsi": ("green", "swir1"), "ndwi": ("green", "nir")}


# --------------------------------------------------------------------------- grids
def _grid(start: float, stop: float, step: float) -> np.ndarray:
    if not (np.isfinite([start, stop, step]).all() and step > 0 and stop >= start):
        raise ParameterError(
            f"A threshold grid needs finite start <= stop and step > 0; got start={start}, "
            f"stop={stop}, step={step}."
        )
    n = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(n), 10)


def paper_grid() -> np.ndarray:
    """The paper's Table 4 thresholds: 0, 0.1, ..., 0.7."""
    return _grid(0.0, 0.7, 0.1)


def fine_grid(start: float = 0.0, stop: float = 0.7, step: float = 0.01) -> np.ndarray:
    """A fine threshold grid, by default 0.00, 0.01, ..., 0.70 (71 thresholds)."""
    return _grid(start, stop, step)


# --------------------------------------------------------------------------- inputs
def _data(x):
    return x.data if isinstance(x, xr.DataArray) else x


def _is_dask(x) -> bool:
    try:
        import dask

        return dask.is_dask_collection(x)
    except ImportError:  # pragma: no cover
        return False


def _index_dtype(dtype) -> np.dtype:
    return np.dtype("float32") if np.dtype(dtype) == np.float32 else np.dtype("float64")


def _label_ready(arr):
    """Labels as a dtype the kernel takes (bool, ints, float32, float64). The kernel counts
    only labels 0 and 1: unknown pixels (:data:`glacierkit.NODATA`, NaN) and any
    other value count in no class, without a conversion pass."""
    kind = np.dtype(arr.dtype).kind
    if kind in "biu" or np.dtype(arr.dtype) in (np.float32, np.float64):
        return arr
    return arr.astype("float32")


def _thresholds(thresholds, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requested thresholds (float64), sorted unique ones in the index dtype, and the
    float64 values those were rounded from."""
    arr = np.asarray(thresholds if thresholds is not None else fine_grid(), dtype="float64")
    arr = arr.reshape(-1)
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ParameterError(
            f"Thresholds must be a non-empty list of finite numbers; got {list(arr)}. Use "
            "glacierkit.ndsi.fine_grid() or paper_grid()."
        )
    cast = arr.astype(dtype)
    if np.abs(cast).max() >= np.finfo(dtype).max:
        raise ParameterError(
            f"Thresholds must lie strictly inside the {np.dtype(dtype)} range; got {list(arr)}."
        )
    cast[cast == 0] = 0  # -0.0 and 0.0 are the same threshold
    unique, first = np.unique(cast, return_index=True)
    return arr, unique, arr[first]


def _check_shapes(*arrays, names=("index", "labels")) -> None:
    shapes = [tuple(a.shape) for a in arrays if a is not None]
    if len(set(shapes)) > 1:
        raise ParameterError(
            f"The {' and '.join(names[:len(shapes)])} must have the same shape; got "
            f"{shapes}. Put them on one grid first (glacierkit.prep.load_prepared does)."
        )


def _reduce_blocks(func, arrays: list, t: np.ndarray) -> np.ndarray:
    """Sum ``func(*blocks)`` over aligned dask blocks (a scene is never loaded whole)."""
    import dask
    import dask.array as da

    first = da.asarray(arrays[0]) if arrays[0] is not None else None
    aligned = [first] + [None if a is None else da.asarray(a).rechunk(first.chunks)
                         for a in arrays[1:]]
    blocks = [None if a is None else a.to_delayed().ravel() for a in aligned]
    parts = [dask.delayed(func)(*[None if b is None else b[i] for b in blocks])
             for i in range(len(blocks[0]))]
    total = np.zeros((2, t.size + 1), dtype=np.int64)
    for part in dask.compute(*parts):
        total += part
    return total


# --------------------------------------------------------------------------- histogram
@dataclass(frozen=True)
class ClassHistogram:
    """Per-class pixel counts between sorted thresholds; the whole sweep in a small array.

    ``counts[c, j]`` counts the pixels of class ``c`` (0 other, 1 glacier) with exactly
    ``j`` thresholds strictly below their index value. Pool scenes with ``+``.
    """

    thresholds: np.ndarray  # sorted unique, in the index dtype
    counts: np.ndarray  # (2, k + 1) int64

    def __add__(self, other: ClassHistogram) -> ClassHistogram:
        if not np.array_equal(self.thresholds, other.thresholds):
            raise ParameterError("Only histograms on the same thresholds can be pooled.")
        return ClassHistogram(self.thresholds, self.counts + other.counts)

    def confusion(self) -> dict[str, np.ndarray]:
        """TP, FP, FN, TN for each of :attr:`thresholds` (arrays of length ``k``)."""
        other, glacier = self.counts[0], self.counts[1]
        # above[i] = pixels in bins > i: predicted glacier at thresholds[i].
        g_above = np.cumsum(glacier[::-1])[::-1][1:]
        o_above = np.cumsum(other[::-1])[::-1][1:]
        return {"TP": g_above, "FP": o_above, "FN": glacier.sum() - g_above,
                "TN": other.sum() - o_above}

    def table(self, thresholds=None) -> pd.DataFrame:
        """The sweep table for ``thresholds`` (default: all of :attr:`thresholds`)."""
        if thresholds is None:
            requested = self.thresholds.astype("float64")
        else:
            requested = np.asarray(thresholds, dtype="float64").reshape(-1)
        pos = np.searchsorted(self.thresholds, requested.astype(self.thresholds.dtype))
        ok = (pos < self.thresholds.size)
        ok[ok] &= self.thresholds[pos[ok]] == requested[ok].astype(self.thresholds.dtype)
        if not ok.all():
            raise ParameterError(
                f"Thresholds {list(requested[~ok])} are not on this histogram's grid; sweep "
                "them directly with glacierkit.ndsi.sweep."
            )
        conf = {k: v[pos] for k, v in self.confusion().items()}
        return _table(requested, conf)


def _table(thresholds: np.ndarray, conf: Mapping[str, np.ndarray]) -> pd.DataFrame:
    metrics = score_arrays(conf["TP"], conf["FP"], conf["FN"], conf["TN"])
    df = pd.DataFrame({"threshold": np.asarray(thresholds, dtype="float64"),
                       **{k: np.asarray(conf[k], dtype="int64") for k in ("TP", "FP", "FN", "TN")},
                       **{k: metrics[k] for k in ("MA", "FA", "OA", "KC", "IoU", "F1")}})
    df.attrs["rule"] = RULE
    return df[list(COLUMNS)]


def class_histogram(index, labels, thresholds=None, parallel: bool = True) -> ClassHistogram:
    """Count pixels per class between thresholds in one pass (numpy, xarray or dask).

    Parameters
    ----------
    index
        ``(y, x)`` index values (DataArray, numpy or dask array). NaN is excluded.
    labels
        Same shape: 1 glacier, 0 other; any other value (NaN, 255) is excluded. ``None``
        counts every valid pixel as class 0.
    thresholds
        Any finite thresholds (default :func:`fine_grid`).
    parallel
        Use all numba threads for in-memory arrays (dask inputs use one thread per chunk).
    """
    idx, lab = _data(index), _data(labels)
    _check_shapes(idx, lab)
    dtype = _index_dtype(idx.dtype)
    _, t, source = _thresholds(thresholds, dtype)

    def block(values, labs, par=False):
        values = np.asarray(values)
        if values.dtype != dtype:
            values = values.astype(dtype)
        labs = None if labs is None else _label_ready(np.asarray(labs))
        return _kernels.hist_index(values, labs, t, source, parallel=par)

    if _is_dask(idx) or _is_dask(lab):
        counts = _reduce_blocks(block, [idx, lab], t)
    else:
        counts = block(idx, lab, parallel)
    return ClassHistogram(t, counts)


def class_histogram_nd(a, b, labels, thresholds=None, parallel: bool = True) -> ClassHistogram:
    """:func:`class_histogram` of ``(a - b) / (a + b)`` computed inside the same pass.

    The index is computed exactly as ``indices.normalized_difference(a, b)`` cast to
    float32 (zero denominators give NaN and are skipped), without ever storing it.
    """
    da_, db_, lab = _data(a), _data(b), _data(labels)
    _check_shapes(da_, db_, lab, names=("first band", "second band", "labels"))
    _, t, source = _thresholds(thresholds, np.float32)

    def block(x, y, labs, par=False):
        labs = None if labs is None else _label_ready(np.asarray(labs))
        return _kernels.hist_nd(np.asarray(x), np.asarray(y), labs, t, source, parallel=par)

    if _is_dask(da_) or _is_dask(db_) or _is_dask(lab):
        counts = _reduce_blocks(block, [da_, db_, lab], t)
    else:
        counts = block(da_, db_, lab, parallel)
    return ClassHistogram(t, counts)


# --------------------------------------------------------------------------- sweeps
def sweep(index, labels, thresholds=None) -> pd.DataFrame:
    """Confusion counts and metrics for every threshold, in one pass over the pixels.

    Parameters
    ----------
    index
        ``(y, x)`` index, e.g. :func:`glacierkit.indices.ndsi` (numpy, xarray or dask).
    labels
        Reference on the same grid: 1 glacier, 0 other; pixels with any other label
        (NaN, 255 = unknown) are excluded.
    thresholds
        Thresholds in any order (default :func:`fine_grid`: 0 to 0.7 by 0.01).

    Returns
    -------
    pandas.DataFrame
        One row per threshold, in the order given, with columns ``threshold, TP, FP, FN,
        TN, MA, FA, OA, KC, IoU, F1`` (metrics from :func:`glacierkit.metrics.
        score_arrays`; NaN where undefined). Glacier means ``index > threshold``.
    """
    if labels is None:
        raise ParameterError("sweep needs labels; for the index alone use histogram().")
    requested = _thresholds(thresholds, _index_dtype(_data(index).dtype))[0]
    return class_histogram(index, labels, requested).table(requested)


def sweep_scene(scene: xr.DataArray, labels, thresholds=None, index: str = "ndsi"
                ) -> pd.DataFrame:
    """:func:`sweep` of a normalized-difference index computed from ``scene`` on the fly.

    Equal to ``sweep(indices.ndsi(scene), labels, thresholds)`` but one fused pass that
    reads the two bands, computes the index, bins and counts it.

    Parameters
    ----------
    scene
        A ``(band, y, x)`` scene with band roles (see :func:`glacierkit.io.open_scene`).
    index
        ``"ndsi"`` (green, swir1) or ``"ndwi"`` (green, nir).
    """
    from ..indices import role_band

    if index not in ND_INDICES:
        raise ParameterError(f"Unknown index {index!r}. Valid: {sorted(ND_INDICES)}.")
    if labels is None:
        raise ParameterError("sweep_scene needs labels; for the index alone use histogram().")
    first, second = ND_INDICES[index]
    requested = _thresholds(thresholds, np.float32)[0]
    hist = class_histogram_nd(role_band(scene, first), role_band(scene, second), labels, requested)
    return hist.table(requested)


def sweep_scenes(pairs: Mapping[str, tuple], thresholds=None, pooled: str | None = "pooled"
                 ) -> pd.DataFrame:
    """Sweep several scenes: a long table with a ``scene`` column, plus pooled rows.

    ``pairs`` maps a scene name to ``(index, labels)``. The pooled rows add the counts of
    all scenes before computing the metrics.
    """
    return stack({name: sweep(idx, lab, thresholds) for name, (idx, lab) in pairs.items()},
                 pooled=pooled)


def stack(tables: Mapping[str, pd.DataFrame], pooled: str | None = "pooled") -> pd.DataFrame:
    """Sweep tables of several scenes as one long table with a ``scene`` column, plus the
    pooled rows (the scenes' counts added, then the metrics) named ``pooled``."""
    tables = dict(tables)
    if not tables:
        return pd.DataFrame(columns=["scene", *COLUMNS])
    if pooled and len(tables) > 1:
        tables[pooled] = pool(list(tables.values()))
    return pd.concat([t.assign(scene=name) for name, t in tables.items()],
                     ignore_index=True)[["scene", *COLUMNS]]


def pool(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Add the counts of sweep tables on the same thresholds, then recompute the metrics."""
    tables = list(tables)
    if not tables:
        raise ParameterError("pool needs at least one sweep table.")
    ref = tables[0]["threshold"].to_numpy()
    for t in tables[1:]:
        if not np.array_equal(t["threshold"].to_numpy(), ref):
            raise ParameterError("Only sweep tables on the same thresholds can be pooled.")
    conf = {k: sum(t[k].to_numpy(dtype="int64") for t in tables) for k in ("TP", "FP", "FN", "TN")}
    return _table(ref, conf)


# --------------------------------------------------------------------------- NDSI histogram
@dataclass(frozen=True)
class IndexHistogram:
    """A histogram of an index with its two peaks and the valley between them.

    Bins are ``(edges[i], edges[i + 1]]`` (open on the left, like the ``>`` rule), so the
    pixels right of an edge are exactly those called glacier at that threshold.
    ``glacier`` and ``other`` are the per-class counts when labels were given (then
    ``counts`` holds only labelled pixels). ``below``/``above`` count the values outside
    the edges. ``peaks`` and ``valley`` are bin centres (NaN when there are not two peaks).
    """

    edges: np.ndarray
    counts: np.ndarray
    glacier: np.ndarray | None
    other: np.ndarray | None
    below: int
    above: int
    peaks: tuple[float, float]
    valley: float
    smooth: int

    @property
    def centres(self) -> np.ndarray:
        return np.round(0.5 * (self.edges[:-1] + self.edges[1:]), 12)

    @property
    def smoothed(self) -> np.ndarray:
        return _smooth(self.counts, self.smooth)

    def __add__(self, other: IndexHistogram) -> IndexHistogram:
        if not np.array_equal(self.edges, other.edges):
            raise ParameterError("Only histograms with the same edges can be pooled.")

        def add(a, b):
            return None if a is None or b is None else a + b

        return _finish_histogram(self.edges, self.counts + other.counts,
                                 add(self.glacier, other.glacier), add(self.other, other.other),
                                 self.below + other.below, self.above + other.above, self.smooth)


def _smooth(counts: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return counts.astype("float64")
    kernel = np.ones(width) / width
    return np.convolve(counts.astype("float64"), kernel, mode="same")


def _finish_histogram(edges, counts, glacier, other, below, above, smooth) -> IndexHistogram:
    from scipy.signal import find_peaks

    sm = _smooth(counts, smooth)
    centres = np.round(0.5 * (edges[:-1] + edges[1:]), 12)
    peaks, valley = (float("nan"), float("nan")), float("nan")
    if sm.max() > 0:
        found, props = find_peaks(np.concatenate([[0.0], sm, [0.0]]),
                                  prominence=0.02 * sm.max())
        found = found - 1
        if found.size >= 2:
            top = np.sort(found[np.argsort(props["prominences"])[-2:]])
            lo, hi = int(top[0]), int(top[1])
            v = lo + int(np.argmin(sm[lo: hi + 1]))
            peaks, valley = (float(centres[lo]), float(centres[hi])), float(centres[v])
        else:
            log.info("The index histogram has %d peak(s), not two: no valley.", found.size)
    return IndexHistogram(edges, counts, glacier, other, int(below), int(above), peaks, valley,
                          smooth)


def histogram(index, labels=None, bins: int = 200, range: tuple[float, float] = (-1.0, 1.0),
              smooth: int = 5) -> IndexHistogram:
    """The index histogram with its two peaks and the valley between them (as the paper).

    Parameters
    ----------
    index
        ``(y, x)`` index (numpy, xarray or dask); NaN is excluded.
    labels
        Optional reference on the same grid, for per-class counts (NaN-labelled pixels are
        then excluded from every count).
    bins, range
        Bin count and outer edges; the default 200 bins of 0.01 put every edge on the
        :func:`fine_grid`.
    smooth
        Width (bins) of the moving average used to find the peaks and the valley.
    """
    lo, hi = (float(v) for v in range)
    if not (bins >= 2 and np.isfinite([lo, hi]).all() and hi > lo):
        raise ParameterError(f"histogram needs bins >= 2 and range lo < hi; got {bins}, {range}.")
    edges = np.round(np.linspace(lo, hi, int(bins) + 1), 12)
    h = class_histogram(index, labels, edges)
    if h.thresholds.size != edges.size:
        raise ParameterError(f"The bins of {range} are too narrow for the index precision.")
    both = h.counts.sum(axis=0)
    glacier = other = None
    if labels is not None:
        other, glacier = h.counts[0, 1:-1].copy(), h.counts[1, 1:-1].copy()
    return _finish_histogram(edges, both[1:-1].copy(), glacier, other, both[0], both[-1],
                             smooth)


def otsu(index, bins: int = 200, range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """Otsu's automatic threshold, from the same histogram as :func:`histogram`.

    ``index`` may be an index array or an :class:`IndexHistogram`. Returns the bin edge
    that maximises the between-class variance (values outside the range count in the end
    bins; on a plateau of equal variance, the middle one). Only the index is used, never
    labels. NaN if the histogram is empty; a ``ParameterError`` if every value falls in one
    bin (a constant index has no two classes).
    """
    h = index if isinstance(index, IndexHistogram) else histogram(index, None, bins, range)
    counts = h.counts.astype("float64")
    counts[0] += h.below
    counts[-1] += h.above
    total = counts.sum()
    if total == 0:
        return float("nan")
    if np.count_nonzero(counts) < 2:
        where = float(h.centres[int(np.argmax(counts))])
        raise ParameterError(
            f"The index is constant (every value in the bin around {where:.3f}), so Otsu's "
            "method has no two classes to separate. Check the scene's bands and nodata (a "
            "band of zeros gives a constant index)."
        )
    p = counts / total
    c = h.centres
    w0 = np.cumsum(p)[:-1]
    m0 = np.cumsum(p * c)[:-1]
    mu = float(np.sum(p * c))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu * w0 - m0) ** 2 / (w0 * (1.0 - w0))
    between[~np.isfinite(between)] = -1.0
    # Empty bins between the modes make a plateau of equal values: take its middle.
    top = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(h.edges[1:-1][top[top.size // 2]])


def histogram_summary(hists: Mapping[str, IndexHistogram]) -> pd.DataFrame:
    """One row per histogram: its two peaks, the valley and the Otsu threshold."""
    rows = [{"scene": name, "lower_peak": h.peaks[0], "upper_peak": h.peaks[1],
             "valley": h.valley, "otsu": otsu(h), "pixels": int(h.counts.sum())}
            for name, h in hists.items()]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- choosing
def best_threshold(table: pd.DataFrame, metric: str = "KC") -> float:
    """The threshold that maximises ``metric`` in a sweep table (lowest one on ties).

    Run it on the **training** scenes' table (or their :func:`pool`), then apply the
    result to the test scenes; on a test scene's own table it is an oracle.
    """
    if metric not in MAXIMISE:
        raise ParameterError(
            f"Cannot pick a threshold by {metric!r}. Valid metrics: {list(MAXIMISE)} (MA or "
            "FA alone are minimised by the extreme thresholds)."
        )
    ordered = table.sort_values("threshold", kind="stable")
    values = ordered[metric].to_numpy(dtype="float64")
    if {"TP", "FP", "FN", "TN"} <= set(ordered.columns) and len(ordered):
        first = ordered.iloc[0]
        glacier, other = int(first["TP"] + first["FN"]), int(first["FP"] + first["TN"])
        if glacier == 0 or other == 0:
            raise ParameterError(
                f"The labels have one class ({glacier} glacier and {other} other pixels), so "
                "no threshold can be learned from them: every threshold fits them equally "
                "well or equally badly. Use scenes whose labels have both glacier and other "
                "ground."
            )
    if not np.isfinite(values).any():
        raise ParameterError(f"{metric} is NaN at every threshold; the labels have one class.")
    best = int(np.nanargmax(values))
    threshold = float(ordered["threshold"].to_numpy()[best])
    if {"TP", "FP", "FN", "TN"} <= set(ordered.columns):
        row = ordered.iloc[best]
        called = int(row["TP"] + row["FP"])
        total = int(row["TP"] + row["FP"] + row["FN"] + row["TN"])
        if called in (0, total):
            raise ParameterError(
                f"At the best threshold by {metric} ({threshold:g}) {'every' if called else 'no'} "
                f"pixel is called glacier: the index does not separate the classes anywhere "
                f"from {ordered['threshold'].min():g} to {ordered['threshold'].max():g} (a "
                "constant index, e.g. a band of zeros or a wrong band). Check the scene's bands "
                "and nodata, or sweep other thresholds."
            )
    return threshold


def _row_at(table: pd.DataFrame, threshold: float) -> dict:
    match = table[np.isclose(table["threshold"].to_numpy(), threshold, rtol=0, atol=1e-12)]
    return match.iloc[0].to_dict()


def learned_vs_oracle(tables: Mapping[str, pd.DataFrame], train: Sequence[str],
                      test: Sequence[str], metric: str = "KC") -> pd.DataFrame:
    """The threshold learned on the training scenes applied everywhere, next to oracles.

    The learned threshold maximises ``metric`` on the pooled counts of ``train``. Each
    scene (and the pooled test scenes) is scored at it (``kind="learned on train"``), and
    at its own best threshold, which uses that scene's labels (``kind="oracle"``): an upper
    bound for the method, not a result.
    """
    missing = [s for s in [*train, *test] if s not in tables]
    if missing:
        raise ParameterError(f"No sweep table for {missing}; tables exist for {list(tables)}.")
    if not train:
        raise ParameterError("learned_vs_oracle needs at least one training scene.")
    learned = learn(tables, train, metric)["threshold"]
    entries = [(s, "train", tables[s]) for s in train] + [(s, "test", tables[s]) for s in test]
    if len(test) > 1:
        entries.append(("pooled test", "test", pool([tables[s] for s in test])))
    rows = []
    for name, split, table in entries:
        rows.append({"scene": name, "split": split, "kind": "learned on train",
                     **_row_at(table, learned)})
    for name, split, table in entries:
        rows.append({"scene": name, "split": split, "kind": "oracle",
                     **_row_at(table, best_threshold(table, metric))})
    out = pd.DataFrame(rows)[["scene", "split", "kind", *COLUMNS]]
    out = out.astype({k: "int64" for k in ("TP", "FP", "FN", "TN")})
    out.attrs.update({"learned_threshold": learned, "metric": metric, "learned_on": list(train)})
    return out


def water_as_glacier(index, water, threshold: float, labels=None) -> dict[str, int | float]:
    """How many water pixels the index calls glacier (``index > threshold``).

    ``water`` is a boolean water mask on the same grid (for example ``ndwi > 0.3`` or the
    QA_PIXEL water bit). With ``labels``, the water pixels outside the glacier outlines
    (label 0) are also counted separately: those are certain false alarms.
    """
    w = _data(water).astype("float32")
    res = class_histogram(index, w, [threshold]).confusion()
    out: dict[str, int | float] = {"threshold": float(threshold),
                                   "water_pixels": int(res["TP"][0] + res["FN"][0]),
                                   "water_called_glacier": int(res["TP"][0])}
    out["fraction"] = (out["water_called_glacier"] / out["water_pixels"]
                       if out["water_pixels"] else float("nan"))
    if labels is not None:
        lab = _data(labels)
        off = xr.DataArray(lab).where(xr.DataArray(lab) == 0)  # NaN on glacier labels
        w_off = xr.DataArray(w).where(off.notnull())
        res = class_histogram(index, w_off.data, [threshold]).confusion()
        out["water_outside_outlines"] = int(res["TP"][0] + res["FN"][0])
        out["water_outside_outlines_called_glacier"] = int(res["TP"][0])
    return out


# --------------------------------------------------------------------------- learned threshold file
def save_learned(output_dir: str | os.PathLike, threshold: float, metric: str,
                 learned_on: Sequence[str], **info) -> Path:
    """Write ``<output_dir>/ndsi/threshold.json`` atomically (read by later notebooks).

    Keys: ``threshold``, ``metric``, ``learned_on``, ``index``, ``rule``, ``created`` and
    whatever ``info`` adds (for example the grid and the training score).
    """
    from .._util import write_json

    path = Path(output_dir) / LEARNED_FILE
    payload = {"threshold": float(threshold), "metric": metric, "learned_on": list(learned_on),
               "index": info.pop("index", "ndsi"), "rule": RULE,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    return write_json(path, payload)


def learn(tables: Mapping[str, pd.DataFrame], train: Sequence[str], metric: str = "KC",
          output_dir: str | os.PathLike | None = None, **info) -> dict:
    """The rule of notebook 03: the threshold that maximises ``metric`` on the pooled sweep
    tables of the ``train`` scenes (never a test scene).

    Returns the record ``{"threshold", "metric", "learned_on", "train_score", ...info}``;
    with ``output_dir`` it is also saved as ``<output_dir>/ndsi/threshold.json``
    (:func:`save_learned`), where notebook 05 and :func:`learned_threshold` find it.
    """
    missing = [s for s in train if s not in tables]
    if missing or not train:
        raise ParameterError(
            f"learn needs a sweep table for every training scene; missing {missing} of "
            f"{list(train)} (tables exist for {list(tables)})."
        )
    pooled = pool([tables[s] for s in train])
    t = best_threshold(pooled, metric)
    record = {"threshold": t, "metric": metric, "learned_on": list(train),
              "train_score": _row_at(pooled, t)[metric], **info}
    if output_dir is not None:
        save_learned(output_dir, t, metric, list(train),
                     **{k: v for k, v in record.items()
                        if k not in ("threshold", "metric", "learned_on")})
        record = load_learned(output_dir)
    return record


def learned_threshold(output_dir: str | os.PathLike, train: Sequence[str], metric: str = "KC",
                      grid=None) -> dict:
    """The threshold notebook 03 learned in ``output_dir``, or, when it has not run, the
    same rule (:func:`learn`) applied now to the prepared ``train`` scenes and saved.

    The record's ``source`` says which: the file, or "learned now on ...".
    """
    from ..indices import ndsi
    from ..prep import ensure_prepared, load_prepared

    output_dir = Path(output_dir)
    if (output_dir / LEARNED_FILE).is_file():
        return {**load_learned(output_dir), "source": str(output_dir / LEARNED_FILE)}
    grid = fine_grid() if grid is None else np.asarray(grid, dtype="float64")
    ensure_prepared(output_dir, train)
    tables = {}
    for name in train:
        scene, labels = load_prepared(output_dir, name)
        tables[name] = sweep(ndsi(scene), labels, grid)
    record = learn(tables, train, metric, output_dir, grid=[float(g) for g in grid])
    return {**record, "source": "learned now on " + ", ".join(train)}


def load_learned(output_dir: str | os.PathLike) -> dict:
    """Read the threshold that notebook 03 learned on the training scenes."""
    path = Path(output_dir) / LEARNED_FILE
    if not path.is_file():
        raise DataNotFoundError(
            f"No learned NDSI threshold at {path}. Run notebook 03_ndsi_threshold with "
            "this output_dir first."
        )
    try:
        learned = read_json(path)
        float(learned["threshold"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(
            f"The learned threshold file {path} is damaged ({type(exc).__name__}: {exc}). Run "
            "notebook 03_ndsi_threshold with this output_dir again to rewrite it."
        ) from None
    return learned
