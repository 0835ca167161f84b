"""Full-scene prediction: seam-free, memory-bounded sliding windows.

:func:`predict_scene` runs a trained model over a whole scene and returns the glacier
probability on the scene's exact grid. How it works:

* **Inputs by role.** The model's sidecar (:class:`glacierkit.unet.InputSpec`) names the
  bands by role and holds the normalization statistics, so a model trained on Sentinel-2
  runs on Landsat 8/9 or 7 as long as the scene has those roles.
* **Large windows, cropped context, a short blend.** A U-Net's output near a window edge
  depends on the zero padding there: for the committed model it moves by up to 0.96 at
  the edge and by less than 0.01 only from about 76 px inside. So every window gives almost
  no weight (:data:`~glacierkit.unet.windows.CONTEXT_WEIGHT`) to ``context`` pixels at
  each edge (by default 0.7 of the model's receptive-field radius, computed from its
  layers, rounded up to the pooling factor: 80 px for the ``cpu`` preset), and
  neighbouring windows overlap by twice the context plus a 16-px sine-squared ramp whose
  weights add up to exactly one (:func:`blend_weights`). Every
  pixel away from the scene's own edges then comes from windows that see it with at least
  ``context`` pixels around it: no seams, and beyond the context of the scene's own edges
  the result does not depend on where the window edges fall (tested by cropping the
  scene). Each window fits in the activation memory of one square window of 640 MB in
  float32, 800 MB in bfloat16 (for the ``cpu`` preset 1168 px and 1792 px square; a window
  may be a rectangle of the same area, as wide as the scene), and the window counts are
  those with the least pixel work
  (:func:`glacierkit.unet.windows.plan_windows`): a full Landsat scene costs 1.21 (bfloat16)
  to 1.36 (float32) window pixels per scene pixel, a 2048-px scene 1.09 to 1.20, a scene
  of up to 1024 px one window of its own size (the former 50% overlap of 256-px windows:
  4.2). ``overlap=0.5, context=0`` is that former Hann blend.
  Window sizes and steps are multiples of the model's pooling factor, so every window sees
  the scene with the same pooling phase.
* **Any size.** The windows start at the scene's first pixel and reach just past its
  last; what lies beyond the scene is its reflection. The scene's own edges are seen
  through the network's zero padding, as a single window sees a scene, plus whatever
  reflection the windows' rounding leaves free (up to the context, in whole pooling steps:
  :mod:`glacierkit.unet.windows` has the measurement). Scenes smaller than a window get
  one window just large enough.
* **One compiled forward pass.** The network (for an ensemble, each member in turn) runs
  through one graph traced once for any window shape
  (:class:`glacierkit.unet.forward.CompiledForward`), not once per shape and member.
* **Precision.** ``precision="bfloat16"`` computes in bfloat16 with float32 outputs;
  ``"auto"`` (the default) does so on CPUs with native bfloat16, where it was measured to
  be faster with the same scores (:mod:`glacierkit.unet.precision`).
* **NaN stays NaN.** A pixel where any of the model's input bands is NaN is NaN in the
  output. (The model sees normalized NaN as 0, the training mean.)
* **Memory-bounded.** The scene is read in blocks of rows (a path is opened lazily with
  dask, so only the rows in use are in memory; a background thread reads the next rows
  while the network works), windows are cut from one strip of rows at a time, and
  finished rows leave the blending buffer as soon as no later window touches them. A full
  Landsat scene (7,700 x 7,800, 7 bands) needs about 1.9 GB beyond the model at the peak
  (``bench/predict.py``, the committed three-member model in bfloat16): the output (240 MB in float32), the row blocks of two strips,
  one strip of windows and the network's activations for one window (in bfloat16 the
  strips and blocks are stored in bfloat16, which the network rounds its inputs to).
* **Test-time augmentation.** ``tta=True`` averages the 8 flips/rotations of every window
  and adds a ``confidence`` layer: the fraction of the 8 that agree with the averaged
  decision (probability > 0.5), blended like the probability. 1 means all 8 agree.

The window plan is :mod:`glacierkit.unet.windows`, the streaming :mod:`glacierkit.unet.rows`;
:func:`glacierkit.unet.predict_to_files` (:mod:`glacierkit.unet.output`) predicts and writes
the files, as ``glacierkit predict MODEL SCENE OUTDIR`` does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import rasterio
import xarray as xr

from ..exceptions import (
    AllNodataError,
    GlacierKitError,
)
from ..io.clouds import CARRIED_ATTRS
from .artifact import Predictor, resolve_model
from .rows import (
    BLOCK_ROWS,
    GuardSample,
    Rows,
    band_indices,
    check_roles,
    open_streaming,
    release_memory,
    rows_per_block,
)
from .windows import Axis, Plan, plan_windows, reflect_index

log = logging.getLogger(__name__)

__all__ = ["predict_scene", "to_model_level"]

#: GDAL block cache (MB) while a scene file streams through (GDAL's default is 5% of RAM).
GDAL_CACHE_MB = 128


def _to_probability(y: np.ndarray, kind: str) -> np.ndarray:
    y = np.asarray(y, dtype="float32")
    if y.ndim == 4:
        if y.shape[-1] == 1:
            y = y[..., 0]
        elif y.shape[-1] == 2:
            if kind == "logits":  # two-class logits: softmax of the glacier class
                return (1.0 / (1.0 + np.exp(y[..., 0] - y[..., 1]))).astype("float32")
            return y[..., 1]
        else:
            raise GlacierKitError(
                f"The model outputs {y.shape[-1]} channels; glacierkit expects 1 (glacier "
                "probability or logit) or 2 (background, glacier)."
            )
    if kind == "logits":
        y = 1.0 / (1.0 + np.exp(-y))
    return y.astype("float32", copy=False)


def _input_dtype(pred: Predictor):
    """The dtype the windows are assembled in: bfloat16 when the model computes in
    bfloat16 and so rounds its float32 inputs to bfloat16 in its first layers anyway (checked
    once on a random window: the outputs must be identical), which halves the memory of the
    strips and row blocks; float32 otherwise. The check runs eagerly where the model can
    (:meth:`glacierkit.unet.forward.CompiledForward.eager`), so it traces no graph for a
    window shape and input dtype that prediction does not use."""
    if pred.precision != "bfloat16":
        return np.dtype("float32")
    if pred.bf16_inputs is None:
        import ml_dtypes

        m = 4 * pred.multiple if pred.fixed is None else pred.fixed
        x = np.random.default_rng(0).normal(size=(1, m, m, pred.spec.n_channels))
        x = x.astype("float32")
        rounded = x.astype(ml_dtypes.bfloat16)
        eager = getattr(pred.model, "eager", None)
        if eager is not None:
            plain, low = eager(x), eager(rounded)
        else:
            plain, low = [pred.model.predict_on_batch(x)], [pred.model.predict_on_batch(rounded)]
        same = all(np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(plain, low, strict=True))
        pred.bf16_inputs = np.dtype(ml_dtypes.bfloat16) if same else np.dtype("float32")
        if not same:
            log.info("This model does not round its inputs to bfloat16 in its first layers; "
                     "windows are assembled in float32.")
    return pred.bf16_inputs


# --------------------------------------------------------------------------- TTA
def _tta_forward(x: np.ndarray, t: int) -> np.ndarray:
    """Transform ``t`` (0..7) of a batch ``(N, h, w, C)``: optional flip, then ``t % 4`` turns."""
    if t >= 4:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(x, t % 4, axes=(1, 2)))


def _tta_inverse(y: np.ndarray, t: int) -> np.ndarray:
    y = np.rot90(y, -(t % 4), axes=(1, 2))
    if t >= 4:
        y = y[:, :, ::-1]
    return y


def split_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``n`` items in near-equal batches of at most ``batch_size`` (at most 2 distinct sizes,
    so the compiled predict function is not retraced for every leftover)."""
    k = max(1, math.ceil(n / batch_size))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def forward(pred: Predictor, x: np.ndarray, tta: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities ``(N, h, w)`` of a batch of windows ``(N, h, w, C)``; with ``tta`` the
    mean of the 8 flips/rotations and the fraction of them agreeing with its decision."""
    if not tta:
        return _to_probability(pred.model.predict_on_batch(x), pred.output), None
    probs = []
    for t in range(8):
        y = pred.model.predict_on_batch(_tta_forward(x, t))
        probs.append(_tta_inverse(_to_probability(y, pred.output), t))
    probs = np.stack(probs)  # (8, N, h, w)
    p = probs.mean(axis=0)
    agree = ((probs > 0.5) == (p > 0.5)).mean(axis=0, dtype="float32")
    return p, agree


# --------------------------------------------------------------------------- core
def _predict_rows(pred: Predictor, scene: xr.DataArray, plan: Plan, *, tta: bool,
                  block_rows: int, progress: bool, sample: GuardSample | None = None):
    """Yield ``(row0, probability rows, confidence rows or None)`` top to bottom."""
    from tqdm.auto import tqdm

    height, width = scene.sizes["y"], scene.sizes["x"]
    ay, ax = plan.ay, plan.ax
    wy, wx = ay.window, ax.window
    taper2 = np.outer(ay.taper(), ax.taper())
    weighted = np.empty_like(taper2)
    norm_y, norm_x = ay.norm(), ax.norm()
    cols = reflect_index(np.arange(ax.start, ax.start + ax.padded), width)
    inside = slice(ax.margin, ax.margin + width)  # the strip's columns that are the scene's
    dtype = _input_dtype(pred)
    rows_src = Rows(scene, pred.spec, block_rows, sample=sample, dtype=dtype)
    strip = np.empty((wy, ax.padded, pred.spec.n_channels), dtype=dtype)
    acc = np.zeros((wy, ax.padded), dtype="float32")
    acc_c = np.zeros_like(acc) if tta else None
    batches = split_batches(ax.count, plan.batch_size)
    bar = tqdm(total=ay.count * ax.count * (8 if tta else 1), unit="window",
               desc="predict", disable=not progress, leave=False)
    try:
        for j in range(ay.count):
            top = ay.start + j * ay.step  # scene row of the strip's first row
            rows = reflect_index(np.arange(top, top + wy), height)
            rows_src.fill(strip[:, inside], rows)
            # reflected columns beyond the scene's edges, from the strip's own middle
            strip[:, : ax.margin] = strip[:, ax.margin + cols[: ax.margin]]
            strip[:, ax.margin + width:] = strip[:, ax.margin + cols[ax.margin + width:]]
            if j + 1 < ay.count:  # read the next strip's rows while the network works
                following = reflect_index(np.arange(top + ay.step, top + ay.step + wy), height)
                rows_src.forget(int(following.min()))
                rows_src.prefetch(int(following.min()), int(following.max()) + 1)
            else:
                rows_src.forget(height)
            for a, b in batches:
                if b - a == 1:
                    x = strip[None, :, a * ax.step: a * ax.step + wx]
                else:
                    x = np.stack([strip[:, k * ax.step: k * ax.step + wx] for k in range(a, b)])
                p, agree = forward(pred, x, tta)
                bar.update((b - a) * (8 if tta else 1))
                for i, k in enumerate(range(a, b)):
                    sl = slice(k * ax.step, k * ax.step + wx)
                    np.multiply(p[i], taper2, out=weighted)
                    acc[:, sl] += weighted
                    if tta:
                        np.multiply(agree[i], taper2, out=weighted)
                        acc_c[:, sl] += weighted
            last = j == ay.count - 1
            n_final = wy if last else ay.step
            r0, r1 = max(top, 0), min(top + n_final, height)
            if r1 > r0:
                nodata = rows_src.nodata(r0, r1)
                sel = slice(r0 - top, r1 - top)
                norm = norm_y[r0 - ay.start: r1 - ay.start, None] * norm_x[None, inside]
                out = np.clip(acc[sel, inside] / norm, 0, 1)  # float rounding
                out[nodata] = np.nan
                conf = None
                if tta:
                    conf = np.clip(acc_c[sel, inside] / norm, 0, 1)
                    conf[nodata] = np.nan
                rows_src.forget_nodata(r1)
                yield r0, out, conf
            if not last:
                s = ay.step
                acc[:-s] = acc[s:]
                acc[-s:] = 0
                if tta:
                    acc_c[:-s] = acc_c[s:]
                    acc_c[-s:] = 0
    finally:
        bar.close()
        rows_src.close()


def predict_scene(
    model,
    scene,
    *,
    window: int | None = None,
    overlap: float | None = None,
    batch_size: int | None = None,
    tta: bool = False,
    block_rows: int = BLOCK_ROWS,
    progress: bool = True,
    guard: bool = True,
    context: int | None = None,
    precision: str | None = None,
    level_correction: bool = True,
) -> xr.DataArray:
    """Glacier probability over a whole scene, on the scene's exact grid.

    Parameters
    ----------
    model
        Path of a ``.keras`` model (its ``.json`` sidecar beside it), or the
        ``(keras_model, sidecar)`` pair from :func:`glacierkit.unet.load_model` (the
        sidecar may also be an :class:`~glacierkit.unet.InputSpec`).
    scene
        A scene DataArray (numpy- or dask-backed), a file or folder path, or a sample name
        (anything :func:`glacierkit.io.open_scene` opens). It needs the bands the model's
        sidecar names, by role; other bands are ignored. Paths are read lazily, a block of
        rows at a time.
    window
        Largest window size in pixels, a multiple of the model's pooling factor. Default:
        as large as the activation memory allows (:data:`WINDOW_MEMORY`; for the ``cpu``
        preset 1792 px in bfloat16, 1168 px in float32), at least 256 and the training patch
        size; a default window may also be a rectangle of that area. Window sizes and counts
        are chosen for the least pixel work that covers the scene (small scenes get one
        window).
    overlap
        Fraction of a window shared with each neighbour, in ``[0, 1)``. Default (None):
        twice the context plus a 16-px blending ramp, which is all a seam-free result
        needs (about 1.3-1.5x the pixels of a plain tiling on a full scene). 0.5 with
        ``context=0`` is the sine-squared (Hann) blend of earlier versions (4x the pixels);
        0 is a plain tiling with seams.
    batch_size
        Windows per forward pass. Default: about 1 Mpx per batch.
    tta
        Average the 8 flips/rotations (8x the compute) and attach a ``confidence``
        coordinate: the blended fraction of the 8 whose decision (> 0.5) agrees with the
        averaged one, in ``[0, 1]``.
    block_rows
        Rows read at a time from a scene file (the chunk height of a lazily opened file).
        Dask-backed scenes are read by their own y chunks.
    progress
        Show a progress bar (``tqdm.auto``).
    level_correction
        Bring a top-of-atmosphere scene (``attrs["level"]``, from
        :func:`glacierkit.io.open_scene`) to the model's processing level, surface
        reflectance, by dark-object subtraction (:func:`to_model_level`). The output's attrs
        record the scene's ``level``, where it came from and the correction.
    guard
        Run the domain-shift guard (:mod:`glacierkit.unet.guard`): compare the scene's inputs
        with the model's training distribution and check the map's physical sense; warn
        (:class:`glacierkit.exceptions.DomainShiftWarning`) above the documented limits. The
        report is in ``attrs["guard"]`` and goes into the written files' tags.
    context
        Pixels at each window edge that are predicted only as context for the others
        (weight 0). Default: 0.7 of the model's receptive-field radius, rounded up to the
        pooling factor (80 px for the ``cpu`` preset), where the window edge no longer
        changes the output by more than about 0.01. With ``overlap`` given, at most half
        the overlap.
    precision
        ``"float32"``, ``"bfloat16"`` (compute in bfloat16, float32 outputs) or ``"auto"``
        (default: bfloat16 on CPUs with native bfloat16, where it was measured to help;
        see :mod:`glacierkit.unet.precision`).

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 glacier probability in ``[0, 1]`` named ``glacier_probability``,
        NaN where any input band is NaN, with the scene's coordinates, CRS and transform.
        With ``tta=True`` it carries a ``confidence`` coordinate on ``(y, x)``. Its attrs
        record the window plan (``window``, ``step``, ``overlap``, ``context``,
        ``window_shape``, ``n_windows``) and the ``precision``.

    Examples
    --------
    >>> prob = predict_scene("models/unet.keras", "alps-s2/merdeglace")  # doctest: +SKIP
    >>> mask = prob > 0.5  # doctest: +SKIP
    """
    pred = resolve_model(model, precision)
    da = open_streaming(scene, block_rows)
    check_roles(da, pred)
    da = to_model_level(da, pred.sidecar, level_correction)
    height, width = da.sizes["y"], da.sizes["x"]
    plan = plan_windows(pred, height, width, window=window, overlap=overlap, context=context,
                 batch_size=batch_size)
    block = rows_per_block(da, block_rows)
    prob = np.empty((height, width), dtype="float32")
    conf = np.empty((height, width), dtype="float32") if tta else None
    sample = None
    if guard:
        from .guard import sample_step as guard_step

        sample = GuardSample(guard_step(da.shape))
    log.info("Predicting %dx%d px with %d windows of %dx%d px (steps %d/%d, context %d, "
             "%.2fx the pixels, batch %d, %s, tta %s)", height, width, plan.n_windows,
             plan.ay.window, plan.ax.window, plan.ay.step, plan.ax.step, plan.context,
             plan.pixel_factor, plan.batch_size, pred.precision, tta)
    # GDAL's block cache would otherwise grow to 5% of RAM while the file streams through.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        for r0, p, c in _predict_rows(pred, da, plan, tta=tta, block_rows=block,
                                      progress=progress, sample=sample):
            prob[r0: r0 + p.shape[0]] = p
            if tta:
                conf[r0: r0 + c.shape[0]] = c
    release_memory()
    if np.isnan(prob).all():  # as open_scene does for eagerly opened scenes
        raise AllNodataError(
            f"The scene {da.attrs.get('scene_id') or scene!s:.200} holds no valid pixel in "
            f"the model's input bands {list(pred.spec.bands)}: every value is nodata, NaN, "
            "infinite or zero in all bands. Check the file, the bands and the nodata value."
        )
    extra = {}
    if guard:
        from .guard import guard_report, warn

        threshold = float(pred.sidecar.get("architecture", {}).get("threshold", 0.5))
        step = sample.step
        sampled = sample.scene(da.isel(band=band_indices(da, pred.spec, GuardSample.ROLES)))
        report = guard_report(prob[::step, ::step], sampled, pred.spec, pred.sidecar, threshold)
        warn(report, str(da.attrs.get("scene_id", "the scene")))
        extra["guard"] = report
    return probability_array(prob, conf if tta else None, da, pred, plan.window, plan.step,
                             plan.overlap, tta, **plan.attrs(), precision=pred.precision,
                             **extra)


def to_model_level(scene: xr.DataArray, sidecar: Mapping, correct: bool = True
                   ) -> xr.DataArray:
    """The scene in the processing level the model was trained on (its sidecar's
    ``level``; surface reflectance for models that do not say).

    A top-of-atmosphere scene meets a surface-reflectance model through dark-object
    subtraction (:func:`glacierkit.io.level.to_surface`, with the path reflectance
    estimated on the whole scene when it was opened); ``attrs["level_correction"]`` says
    what was done. ``correct=False``, or a scene whose level is unknown, is left as it is
    (the domain-shift guard then reports what differs).
    """
    from ..io.level import to_surface

    model_level = str(sidecar.get("level") or "surface")
    level = scene.attrs.get("level")
    if level == "toa" and model_level == "surface":
        if not correct:
            return scene.assign_attrs(level_correction="none (level_correction=False)")
        out = to_surface(scene)
        out.attrs.update(level="toa", level_correction=(
            "dark-object subtraction to surface reflectance; path reflectance "
            + out.attrs["path_reflectance"]))
        log.info("%s is top-of-atmosphere: %s", scene.attrs.get("scene_id", "the scene"),
                 out.attrs["level_correction"])
        return out
    if level in ("surface", "toa") and level != model_level:
        log.warning("The scene is %s reflectance but the model was trained on %s: no "
                    "correction exists for that direction.", level, model_level)
    return scene.assign_attrs(level_correction="none")


def probability_array(prob, conf, da: xr.DataArray, pred, win: int, step: int, overlap: float,
                      tta: bool, **extra_attrs) -> xr.DataArray:
    """Wrap a probability array (numpy or dask) on the grid of ``da``, CRS and attrs kept."""
    out = xr.DataArray(prob, dims=("y", "x"), coords={"y": da["y"].values, "x": da["x"].values},
                       name="glacier_probability")
    if conf is not None:
        out = out.assign_coords(confidence=(("y", "x"), conf))
    crs = da.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs)
    out = out.rio.write_transform(da.rio.transform())
    ay, ax = Axis(da.sizes["y"], win, step), Axis(da.sizes["x"], win, step)
    out.attrs = {
        **{k: v for k, v in da.attrs.items() if k in ("sensor", "date", "scene_id", "product")
           or k in CARRIED_ATTRS},
        "long_name": "glacier probability",
        "model": pred.name,
        "inputs": ",".join(pred.spec.channels),
        "window": win,
        "step": step,
        "overlap": float(overlap),
        "n_windows": ay.count * ax.count,
        "tta": int(tta),
        **extra_attrs,
    }
    return out
