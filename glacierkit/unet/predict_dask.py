"""Scenes larger than memory: prediction chunk by chunk with dask, equal to the in-memory one.

``open_scene(..., chunks=...)`` gives a dask-backed scene. NDSI and the other indices
(:mod:`glacierkit.indices`) and :func:`glacierkit.labels.rasterize_outlines` are then lazy
already, pixel by pixel or block by block. Prediction needs context around every pixel, so
:func:`predict_scene_dask` uses :func:`dask.array.map_overlap`: each chunk is extended by
the blend margin of its neighbours and predicted on its own.

**Same answer as the in-memory prediction.** The windows of
:func:`glacierkit.unet.predict_scene` form one grid over the whole scene, planned the same
way here (``predict._plan``: window sizes fitted to the scene, the same context and step):
window ``j`` starts at ``j * step - margin`` along each axis and the scene is reflected
beyond its edges. Every chunk predicts exactly the windows of that global grid whose
weighted part (beyond their context) touches it, sums them with the same weights in the
same order (window rows top to bottom, then columns left to right) and divides by the same
accumulated weight. For that:

* chunk edges are put on multiples of the step (the scene is rechunked when they are
  not), and the overlap given to ``map_overlap`` is the farthest any chunk's windows
  reach beyond it (computed from the plan);
* every chunk is at least one window plus one step (a short last chunk joins the one
  before), so the reflected rows at the scene's edges lie inside the edge chunks.

The only possible difference is in the last bits of the network's output: a window is
predicted in a batch with different neighbours than in the in-memory run, and TensorFlow's
CPU kernels may round differently for different batch sizes. The tests allow 1e-6 (they
find the results bit-identical on this machine).

**Cost.** A window whose blending ramp reaches into a chunk is predicted by that chunk and
its neighbour: with chunks of ``c`` pixels and a step ``s`` that is ``((c / s + 1) / (c /
s)) ** 2`` times the windows of the in-memory run (1.78x for chunks of 3 steps, 1.56x for 4
steps). Without a ramp (``overlap = 2 * context / window``, a plain crop) no window is
predicted twice. Memory per task is one chunk plus its margins (features, weights and the
window batch) and the network's activations for one batch.

Where the computation runs is dask's choice: the threaded scheduler by default, or a
``dask.distributed`` cluster when a ``Client`` exists. On a cluster, pass the model as a
path: each worker process loads it once (a Keras model object is not sent over the wire).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr

from ..exceptions import GlacierKitError, ParameterError
from .artifact import Predictor, resolve_model
from .features import normalize
from .predict import forward, probability_array, split_batches, to_model_level
from .rows import check_roles
from .windows import Axis, plan_windows, reflect_index

log = logging.getLogger(__name__)

__all__ = ["predict_scene_dask", "aligned_chunks", "DEFAULT_CHUNK"]

#: Default chunk side (pixels) for scenes that are not dask-backed yet.
DEFAULT_CHUNK = 1024

# One model call at a time per process: TensorFlow already uses every core for one call,
# and Keras' compiled predict function is built lazily (not thread-safe the first time).
_MODEL_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def cached_predictor(path: str, precision: str | None = None) -> Predictor:
    """A model file loaded once per process (loading a Keras model takes seconds)."""
    return resolve_model(path, precision)


class _ModelRef:
    """The model as a task sees it: a path (pickled as the path; loaded once per worker
    process) or an in-memory model (fine with dask's threaded scheduler)."""

    def __init__(self, model, precision: str | None = None):
        if isinstance(model, (str, os.PathLike)):
            self.path: str | None = str(Path(model).expanduser().resolve())
            self.pred = cached_predictor(self.path, precision)
            # Workers use the precision decided here, not their own "auto".
            self.precision = self.pred.precision
        else:
            self.path, self.pred = None, resolve_model(model, precision)
            self.precision = self.pred.precision

    def get(self) -> Predictor:
        if self.path is not None:
            return cached_predictor(self.path, self.precision)
        return self.pred

    def __getstate__(self):
        return {"path": self.path, "precision": self.precision,
                "pred": None if self.path is not None else self.pred}

    def __setstate__(self, state):
        self.path, self.pred = state["path"], state["pred"]
        self.precision = state.get("precision", "float32")


def aligned_chunks(size: int, chunk: int, window: int, step: int,
                   least: int | None = None) -> tuple[int, ...]:
    """Chunk sizes along one axis for :func:`predict_scene_dask`.

    Every chunk but the last is a multiple of ``step`` (so chunk edges sit on the window
    grid) and none is smaller than ``least`` (default ``window + step``; so the reflection
    at the scene's edges stays inside the edge chunks); a short remainder joins the last
    full chunk.
    """
    least = window + step if least is None else int(least)
    c = int(math.ceil(max(least, round(chunk / step) * step) / step) * step)
    n, rest = divmod(size, c)
    if n == 0:
        return (size,)
    sizes = [c] * n
    if rest >= least:
        sizes.append(rest)
    elif rest:
        sizes[-1] += rest
    return tuple(sizes)


def _chunk_request(chunks, scene: xr.DataArray | None) -> tuple[int, int]:
    if chunks is None:
        if scene is not None and scene.chunks is not None:
            sizes = scene.chunksizes
            return int(sizes["y"][0]), int(sizes["x"][0])
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks), int(chunks))
    elif isinstance(chunks, dict):
        chunks = (chunks.get("y", DEFAULT_CHUNK), chunks.get("x", DEFAULT_CHUNK))
    try:
        cy, cx = (int(c) for c in chunks)
    except (TypeError, ValueError):
        raise ParameterError(
            f"chunks={chunks!r}: give an int, (rows, cols) or {{'y': rows, 'x': cols}}."
        ) from None
    if cy < 1 or cx < 1:
        raise ParameterError(f"chunks={chunks!r} must be positive pixel counts.")
    return cy, cx


def _open_lazy(scene, chunk: tuple[int, int]) -> xr.DataArray:
    from ..io.scene import open_scene

    if isinstance(scene, xr.DataArray):
        return open_scene(scene)
    return open_scene(scene, chunks={"band": 1, "y": chunk[0], "x": chunk[1]})


def _starts(sizes: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(int)


def _window_range(ax: Axis, c0: int, c1: int) -> tuple[int, int]:
    """The first and last window whose weighted part (beyond its context) meets
    ``[c0, c1)``. The first window's part reaches back to the scene's first pixel and the
    last window's on to its last: where the scene's edges are reflected by less than the
    context, the pixels next to them come from those windows' context alone."""
    j0 = min(ax.count - 1, max(0, (c0 - ax.start - ax.window + ax.context) // ax.step + 1))
    j1 = max(0, min(ax.count - 1, (c1 - ax.start - ax.context - 1) // ax.step))
    return j0, j1


def _halo(ax: Axis, sizes: tuple[int, ...]) -> int:
    """How far beyond its chunk the windows of any chunk reach (the map_overlap depth)."""
    starts = _starts(sizes)
    reach = 0
    for i in range(len(sizes)):
        c0, c1 = int(starts[i]), int(starts[i + 1])
        j0, j1 = _window_range(ax, c0, c1)
        if i > 0:
            reach = max(reach, c0 - (ax.start + j0 * ax.step))
        if i < len(sizes) - 1:
            reach = max(reach, ax.start + j1 * ax.step + ax.window - c1)
    return reach


def _predict_block(block: np.ndarray, *, model: _ModelRef, n_bands: int, axes: tuple,
                   reach: tuple[int, int], grid, batch_size: int, tta: bool,
                   block_id=None) -> np.ndarray:
    """Predict one chunk from its overlapped block of raw features ``(C, rows, cols)``.

    Returns ``(1 or 2, chunk rows, chunk cols)``: probability (and TTA agreement).
    """
    pred = model.get()
    spans, local = [], []
    for a, (ax, sizes) in enumerate(zip(axes, grid, strict=True)):
        i = block_id[a + 1]
        starts = _starts(sizes)
        c0, c1 = int(starts[i]), int(starts[i + 1])
        lo = reach[a] if i > 0 else 0  # boundary="none": no overlap beyond the scene's edges
        hi = reach[a] if i < len(sizes) - 1 else 0
        if block.shape[a + 1] != c1 - c0 + lo + hi:
            raise GlacierKitError(
                f"Internal error: the overlapped block is {block.shape[a + 1]} px along axis "
                f"{a}, expected {c1 - c0 + lo + hi}."
            )
        j0, j1 = _window_range(ax, c0, c1)
        s0 = ax.start + j0 * ax.step  # scene position of the first window's first pixel
        span = (j1 - j0) * ax.step + ax.window
        idx = reflect_index(np.arange(s0, s0 + span), ax.size) - (c0 - lo)  # rows of this block
        if idx.min() < 0 or idx.max() >= block.shape[a + 1]:
            raise GlacierKitError(
                "Internal error: a window reaches beyond its chunk's overlap "
                f"(axis {a}, chunk {c0}:{c1}). Use larger chunks."
            )
        spans.append((c0, c1, j0, j1, s0, span))
        local.append(idx)
    ay, ax_ = axes
    (y0, y1, jy0, jy1, sy0, spy), (x0, x1, jx0, jx1, sx0, spx) = spans
    raw = block[:, local[0]][:, :, local[1]]  # (C, spy, spx) on the windows' own grid
    feats = np.ascontiguousarray(np.moveaxis(normalize(raw, pred.spec, axis=0), 0, -1))
    del raw
    taper2 = np.outer(ay.taper(), ax_.taper())
    wy, wx = ay.window, ax_.window
    acc = np.zeros((spy, spx), dtype="float32")
    acc_c = np.zeros_like(acc) if tta else None
    ks = list(range(jx1 - jx0 + 1))
    for j in range(jy1 - jy0 + 1):
        rows = slice(j * ay.step, j * ay.step + wy)
        for a, b in split_batches(len(ks), batch_size):
            x = np.stack([feats[rows, k * ax_.step: k * ax_.step + wx] for k in ks[a:b]])
            with _MODEL_LOCK:
                p, agree = forward(pred, x, tta)
            for i, k in enumerate(ks[a:b]):
                cols = slice(k * ax_.step, k * ax_.step + wx)
                acc[rows, cols] += p[i] * taper2
                if tta:
                    acc_c[rows, cols] += agree[i] * taper2
    # The chunk's own pixels, normalized by the accumulated weight of the global grid.
    norm_y, norm_x = ay.norm(), ax_.norm()
    norm = norm_y[y0 - ay.start: y1 - ay.start, None] * norm_x[None, x0 - ax_.start:
                                                                x1 - ax_.start]
    sel = (slice(y0 - sy0, y1 - sy0), slice(x0 - sx0, x1 - sx0))
    ry = slice(reach[0] if block_id[1] > 0 else 0, None)
    rx = slice(reach[1] if block_id[2] > 0 else 0, None)
    nodata = np.isnan(block[:n_bands, ry, rx][:, : y1 - y0, : x1 - x0]).any(axis=0)
    out = np.empty((2 if tta else 1, y1 - y0, x1 - x0), dtype="float32")
    out[0] = np.clip(acc[sel] / norm, 0, 1)
    out[0][nodata] = np.nan
    if tta:
        out[1] = np.clip(acc_c[sel] / norm, 0, 1)
        out[1][nodata] = np.nan
    return out


def predict_scene_dask(
    model,
    scene,
    *,
    chunks=None,
    window: int | None = None,
    overlap: float | None = None,
    batch_size: int | None = None,
    tta: bool = False,
    context: int | None = None,
    precision: str | None = None,
    level_correction: bool = True,
) -> xr.DataArray:
    """Glacier probability as a lazy (dask) DataArray, computed chunk by chunk.

    The result equals :func:`glacierkit.unet.predict_scene`'s (see the module
    docstring); nothing is computed until ``.compute()``, ``.values`` or a write.

    Parameters
    ----------
    model
        A ``.keras`` path (with its sidecar; use this on a distributed cluster) or the
        ``(keras_model, sidecar)`` pair.
    scene
        A scene DataArray (dask-backed or not), a file path or a sample name.
    chunks
        Chunk side in pixels: an int, ``(rows, cols)`` or ``{"y": rows, "x": cols}``.
        Default: the scene's own dask chunks, else 1024. Rounded to multiples of the
        window step and to at least one window plus one step (see :func:`aligned_chunks`).
    window, overlap, batch_size, tta, context, precision, level_correction
        As in :func:`glacierkit.unet.predict_scene` (the precision is decided once, here,
        and used by every worker; a top-of-atmosphere scene is brought to the model's level
        lazily, with the path reflectance of the whole scene).

    Returns
    -------
    xarray.DataArray
        Lazy ``(y, x)`` float32 ``glacier_probability`` on the scene's grid (CRS and
        transform kept); with ``tta=True`` a lazy ``confidence`` coordinate.

    Examples
    --------
    >>> scene = open_scene("big_scene.tif", chunks={"y": 2048, "x": 2048})  # doctest: +SKIP
    >>> prob = predict_scene_dask("models/unet.keras", scene)  # doctest: +SKIP
    >>> (prob > 0.5).sum().compute()  # doctest: +SKIP
    """
    import dask.array as dsa
    from dask.base import tokenize

    from .features import feature_stack

    ref = _ModelRef(model, precision)
    pred = ref.get()
    request = _chunk_request(chunks, scene if isinstance(scene, xr.DataArray) else None)
    da = to_model_level(_open_lazy(scene, request), pred.sidecar, level_correction)
    check_roles(da, pred)
    height, width = da.sizes["y"], da.sizes["x"]
    plan = plan_windows(pred, height, width, window=window, overlap=overlap, context=context,
                 batch_size=batch_size)
    ay, ax = plan.ay, plan.ax
    cy = aligned_chunks(height, request[0], ay.window, ay.step)
    cx = aligned_chunks(width, request[1], ax.window, ax.step)
    # No neighbours, no overlap (and dask refuses a depth larger than a lone chunk).
    reach = (_halo(ay, cy) if len(cy) > 1 else 0, _halo(ax, cx) if len(cx) > 1 else 0)
    feats = feature_stack(da, pred.spec).data
    if not isinstance(feats, dsa.Array):
        feats = dsa.from_array(feats, chunks=(-1, cy, cx))
    feats = feats.rechunk((-1, cy, cx))
    n_out = 2 if tta else 1
    out = dsa.map_overlap(
        _predict_block, feats, depth={0: 0, 1: reach[0], 2: reach[1]}, boundary="none",
        trim=False,
        dtype="float32", chunks=((n_out,), cy, cx), meta=np.empty((0, 0, 0), dtype="float32"),
        name="predict-" + tokenize(feats.name, ref.path or id(ref.pred), ay, ax, tta,
                                   plan.batch_size, pred.precision),
        model=ref, n_bands=len(pred.spec.bands), axes=(ay, ax), reach=reach,
        grid=(cy, cx), batch_size=plan.batch_size, tta=tta,
    )
    log.info("Lazy prediction of %dx%d px in %dx%d chunks (windows %dx%d, steps %d/%d, "
             "context %d, overlap depth %d/%d, %s)", height, width, len(cy), len(cx),
             ay.window, ax.window, ay.step, ax.step, plan.context, reach[0], reach[1],
             pred.precision)
    return probability_array(out[0], out[1] if tta else None, da, pred, plan.window,
                             plan.step, plan.overlap, tta, chunks=f"{cy[0]}x{cx[0]}",
                             **plan.attrs(), precision=pred.precision)
