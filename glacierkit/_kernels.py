"""Compiled (numba) per-class histogram kernels behind :mod:`glacierkit.ndsi.threshold`.

Private module. Each kernel makes **one pass** over the pixels and counts, per class
(0 other, 1 glacier), how many pixels fall in each interval between sorted thresholds
``t``: bin ``j`` holds the pixels with exactly ``j`` thresholds strictly below their value,
that is ``t[j-1] < v <= t[j]`` (bin 0: ``v <= t[0]``, bin ``k``: ``v > t[k-1]``). A pixel
is then glacier at threshold ``t[i]`` exactly when its bin is greater than ``i``. Labels
are 1 (glacier) or 0 (other); a pixel with any other label (NaN, the 255 "unknown" code,
or anything else) or a NaN index is not counted.

Two implementations, equal count for count:

- **fast** (float32 index on a regular grid, the common case): for each chunk of pixels
  a branch-free loop in 16 float32 SIMD lanes computes the index (for the ``nd``
  kernels), reads the label, guesses the bin from ``(v - t0) / step`` in float32 and
  corrects it by one step after comparing ``v`` with the two neighbouring thresholds,
  which it recomputes as ``float32(t0 + j * step)`` in float64. The grid is only used
  when that formula reproduces every threshold bit for bit (checked with the same compiled
  code), and when the guess cannot be off by more than one bin (grid spacing far above
  float32 resolution, at most 65,536 thresholds). A second, unrolled scalar loop scatters
  the class-and-bin codes into 4 interleaved histograms (to avoid store-to-load stalls on
  runs of equal codes).
- **general** (any thresholds or index dtype): a binary search per pixel.

The ``nd`` kernels compute the normalized difference ``(a - b) / (a + b)`` inside the same
pass, bit for bit as :func:`glacierkit.indices.normalized_difference` (float32 bands:
float32 arithmetic, as NumPy; float64 bands: float64, then the cast to float32; a zero or
NaN denominator gives NaN, which is skipped; values outside [-1, 1], which only negative
reflectance gives, are clipped to -1 or 1), so NDSI is never stored.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["hist_index", "hist_nd", "nd_values", "n_threads", "grid_of", "grid_thresholds"]

_CHUNK = 2048  # pixels per vectorised chunk (bin codes fit in L1)
_SUB = 4  # interleaved sub-histograms
_MAX_GRID = 1 << 16  # more thresholds than this: the general kernel (keeps the guess exact)
_OPTS = {"cache": True, "nogil": True, "error_model": "numpy"}


# --------------------------------------------------------------------------- helpers
@numba.njit(inline="always", **_OPTS)
def _nd_value(x, y, f32):
    # Float32 bands: float32 arithmetic, each operation correctly rounded (IEEE), which is
    # what NumPy computes. Float64 bands are computed in float64 and only the quotient is
    # rounded, as normalized_difference(...).astype("float32") does.
    # Then clipped to [-1, 1] (a negative band puts the ratio outside; the U-Net's rule),
    # NaN kept (comparisons with NaN are false).
    if f32:
        s = x + y
        d = x - y
        bad = not (s != 0)  # zero or NaN denominator: NaN index
        s = s if not bad else np.float32(1.0)
        v = d / s
    else:
        s = np.float64(x + y)
        d = np.float64(x - y)
        bad = not (s != 0)
        s = s if not bad else 1.0
        v = np.float32(d / s)
    v = np.float32(1.0) if v > np.float32(1.0) else v
    v = np.float32(-1.0) if v < np.float32(-1.0) else v
    return v, bad


@numba.njit(inline="always", **_OPTS)
def _label_class(lab):
    """``(counted, glacier)``: 1 is glacier, 0 is other; any other value (NaN, the 255
    "unknown" code, 2, -1, 0.5 ...) is not counted."""
    return (lab == 0) | (lab == 1), lab == 1


@numba.njit(inline="always", **_OPTS)
def _grid_bin(v, t0, step, t0f, invf, kf):
    """Bin of a float32 ``v`` on the grid ``float32(t0 + j * step)``, ``j < k``, as a float.

    Branch-free and in float32 lanes: the guess ``(v - t0) / step + 1`` (clamped to
    ``[0, k]``, NaN to 0) is within one bin of the answer (:func:`grid_of` only accepts
    grids for which it is), and is corrected by comparing ``v`` with its two neighbouring
    thresholds, recomputed exactly as :func:`grid_thresholds` does (in float64).
    """
    q = (v - t0f) * invf + np.float32(1.0)
    q = q if q > np.float32(0.0) else np.float32(0.0)  # also maps NaN to 0
    q = q if q < kf else kf
    jf = np.float32(np.trunc(q))
    jd = np.float64(jf)
    below = np.float32(t0 + (jd - 1.0) * step)
    above = np.float32(t0 + jd * step)
    down = (jf > np.float32(0.0)) & (v <= below)
    up = (jf < kf) & (v > above)
    return jf - (np.float32(1.0) if down else np.float32(0.0)) + \
        (np.float32(1.0) if up else np.float32(0.0))


@numba.njit(**_OPTS)
def grid_thresholds(t0, step, k):
    """``float32(t0 + j * step)`` for ``j < k``, computed as the fast kernels do."""
    out = np.empty(k, dtype=np.float32)
    for j in range(k):
        out[j] = np.float32(t0 + np.float64(j) * step)
    return out


# --------------------------------------------------------------------------- fast kernels
@numba.njit(inline="always", **_OPTS)
def _fast_block(a, b, nd, f32, labels, has_labels, t0, step, k, start, stop, out, codes):
    m = k + 1
    t0f = np.float32(t0)
    invf = np.float32(1.0 / step)
    kf = np.float32(k)
    mf = np.float32(m)
    skip = np.float32(2 * m)  # the code of pixels that are not counted
    # The 4 interleaved sub-histograms (to avoid store-to-load stalls on runs of equal
    # codes), as separate views so the scatter loop needs no index arithmetic.
    h0 = out[0: 3 * m]
    h1 = out[3 * m: 6 * m]
    h2 = out[6 * m: 9 * m]
    h3 = out[9 * m: 12 * m]
    for c0 in range(start, stop, _CHUNK):
        c1 = min(stop, c0 + _CHUNK)
        nn = c1 - c0
        # Slices indexed from 0 let LLVM drop the negative-index handling and vectorise.
        xa = a[c0:c1]
        xb = b[c0:c1] if nd else b
        xl = labels[c0:c1] if has_labels else labels
        for i in range(nn):  # vectorised: no branch, no gather, float32 lanes
            if nd:
                v, bad = _nd_value(xa[i], xb[i], f32)
            else:
                v = xa[i]
                bad = False
            if has_labels:
                counted, glacier = _label_class(xl[i])
            else:
                counted, glacier = True, False
            code = _grid_bin(v, t0, step, t0f, invf, kf) + (mf if glacier else np.float32(0.0))
            keep = counted & (not bad) & (v == v)
            codes[i] = np.uint32(code if keep else skip)
        q4 = nn - (nn & 3)
        for i in range(0, q4, 4):
            h0[codes[i]] += 1
            h1[codes[i + 1]] += 1
            h2[codes[i + 2]] += 1
            h3[codes[i + 3]] += 1
        for i in range(q4, nn):
            h0[codes[i]] += 1


@numba.njit(**_OPTS)
def _fast(a, b, nd, f32, labels, has_labels, t0, step, k):
    m = k + 1
    out = np.zeros(_SUB * 3 * m, dtype=np.int64)
    codes = np.empty(_CHUNK, dtype=np.uint32)
    _fast_block(a, b, nd, f32, labels, has_labels, t0, step, k, 0, a.size, out, codes)
    return out.reshape((_SUB, 3, m)).sum(axis=0)[:2].copy()


@numba.njit(**_OPTS)
def _nd_array(a, b, f32, out):
    for i in range(a.size):  # vectorised
        v, bad = _nd_value(a[i], b[i], f32)
        out[i] = np.float32(np.nan) if bad else v


def nd_values(a: np.ndarray, b: np.ndarray, parallel: bool = True) -> np.ndarray:
    """``float32((a - b) / (a + b))`` clipped to [-1, 1], with NaN for zero or NaN
    denominators, in one pass.

    Bit for bit what ``indices.normalized_difference`` computes with xarray for float32
    bands, with one allocation instead of five.
    """
    shape = np.broadcast_shapes(a.shape, b.shape)
    fa = np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)
    fb = np.ascontiguousarray(np.broadcast_to(b, shape)).reshape(-1)
    f32 = fa.dtype == np.float32 and fb.dtype == np.float32
    if not f32:
        fa, fb = fa.astype("float64", copy=False), fb.astype("float64", copy=False)
    out = np.empty(fa.size, dtype=np.float32)
    threads = n_threads(fa.size, parallel)
    bounds = np.linspace(0, fa.size, threads + 1).astype(int)

    def part(start: int, stop: int) -> None:
        _nd_array(fa[start:stop], fb[start:stop], f32, out[start:stop])

    if threads == 1:
        part(0, fa.size)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, bounds[:-1], bounds[1:]))
    return out.reshape(shape)


# --------------------------------------------------------------------------- general kernels
@numba.njit(inline="always", **_OPTS)
def _count_below(t, v):
    """The number of thresholds ``< v`` (binary search; ``t`` sorted)."""
    lo = 0
    hi = t.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(inline="always", **_OPTS)
def _general_block(a, b, nd, f32, labels, has_labels, t, start, stop, out):
    for i in range(start, stop):
        if nd:
            v, bad = _nd_value(a[i], b[i], f32)
            if bad:
                continue
        else:
            v = a[i]
        if v != v:
            continue
        c = 0
        if has_labels:
            counted, glacier = _label_class(labels[i])
            if not counted:
                continue
            c = 1 if glacier else 0
        out[c, _count_below(t, v)] += 1


@numba.njit(**_OPTS)
def _general(a, b, nd, f32, labels, has_labels, t):
    out = np.zeros((2, t.size + 1), dtype=np.int64)
    _general_block(a, b, nd, f32, labels, has_labels, t, 0, a.size, out)
    return out


# --------------------------------------------------------------------------- dispatch
def n_threads(n: int, parallel: bool) -> int:
    """How many threads share ``n`` pixels (the kernels release the GIL)."""
    if not parallel or n < 2_000_000:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cpus or 1))


def grid_of(t: np.ndarray, source: np.ndarray | None = None) -> tuple[float, float] | None:
    """``(t0, step)`` with ``float32(t0 + j * step) == t[j]`` for all ``j``, or None.

    ``t`` are sorted unique float32 thresholds, ``source`` the float64 values they were
    rounded from (tried first). The grid must also be far coarser than float32 resolution,
    so that the kernel's guess is never more than one bin off.
    """
    k = t.size
    if t.dtype != np.float32 or k < 2 or k > _MAX_GRID:
        return None
    candidates = []
    if source is not None and source.size == k:
        candidates.append((float(source[0]), (float(source[-1]) - float(source[0])) / (k - 1)))
    candidates.append((float(t[0]), (float(t[-1]) - float(t[0])) / (k - 1)))
    spacing = float(np.max(np.abs(t.astype("float64"))) + 1.0) * 2.0 ** -20
    for t0, step in candidates:
        if not (step > spacing and np.isfinite(t0) and np.isfinite(step)):
            continue
        if np.array_equal(grid_thresholds(t0, step, k), t):
            return t0, step
    return None


def _labels_arg(labels: np.ndarray | None, n: int):
    if labels is None:
        return np.zeros(1, dtype=np.uint8), False
    flat = labels.reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    if flat.size != n:
        raise ValueError("labels and index differ in size")
    return flat, True


def _run(a, b, nd, f32, labels, t, source, parallel):
    lab, has = _labels_arg(labels, a.size)
    grid = grid_of(t, source) if (f32 or nd) else None

    def part(start: int, stop: int) -> np.ndarray:
        pa, pb = a[start:stop], (b[start:stop] if nd else b)
        pl = lab[start:stop] if has else lab
        if grid is not None:
            t0, step = grid
            return _fast(pa, pb, nd, f32, pl, has, t0, step, t.size)
        return _general(pa, pb, nd, f32, pl, has, t)

    threads = n_threads(a.size, parallel)
    if threads == 1:
        return part(0, a.size)
    bounds = np.linspace(0, a.size, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(part, bounds[:-1], bounds[1:]))
    return np.sum(parts, axis=0)


def hist_index(values: np.ndarray, labels: np.ndarray | None, t: np.ndarray,
               source: np.ndarray | None = None, parallel: bool = True) -> np.ndarray:
    """``(2, k + 1)`` int64 class counts of an index on sorted unique thresholds ``t``.

    ``t`` must have the dtype of ``values`` (float32 or float64); ``source`` optionally
    gives the float64 values the thresholds were rounded from.
    """
    flat = values.reshape(-1)
    f32 = flat.dtype == np.float32
    return _run(flat, flat[:1], False, f32, labels, t, source, parallel)


def hist_nd(a: np.ndarray, b: np.ndarray, labels: np.ndarray | None, t: np.ndarray,
            source: np.ndarray | None = None, parallel: bool = True) -> np.ndarray:
    """Like :func:`hist_index` for the float32 index ``(a - b) / (a + b)`` computed on the fly."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    f32 = fa.dtype == np.float32 and fb.dtype == np.float32
    if not f32:
        fa, fb = fa.astype("float64", copy=False), fb.astype("float64", copy=False)
    return _run(fa, fb, True, f32, labels, t, source, parallel)
