"""Full-scene prediction: seam-free, memory-bounded sliding windows, written as COGs.

:func:`predict_scene` runs a trained model over a whole scene and returns the glacier
probability on the scene's exact grid. How it works:

* **Inputs by role.** The model's sidecar (:class:`glacierkit.features.InputSpec`) names the
  bands by role and holds the normalization statistics, so a model trained on Sentinel-2
  runs on Landsat 8/9 or 7 as long as the scene has those roles.
* **Overlapping windows, smooth blending.** Square windows step by
  ``window * (1 - overlap)`` pixels. Each window's prediction is weighted by a separable
  sine-squared (Hann) taper sampled at pixel centres, ``w(t) = sin^2(pi (t + 0.5) / window)``,
  which is never exactly zero, and the weighted sum is divided by the accumulated weight.
  At 50% overlap the tapers of neighbouring windows add up to exactly one, so every pixel is
  a smooth mix of the windows that see it near their centre: there are no seams, and the
  result barely depends on where the window edges fall (tested by cropping the scene).
  Window size and step are multiples of the model's total pooling factor, so every window
  sees the scene with the same pooling phase.
* **Any size.** The scene is reflect-padded by the overlap at every edge (and up to a whole
  number of windows), so edge pixels get context too; scenes smaller than a window work.
* **NaN stays NaN.** A pixel where any of the model's input bands is NaN is NaN in the
  output. (The model sees normalized NaN as 0, the training mean.)
* **Memory-bounded.** The scene is read in blocks of rows (a path is opened lazily with
  dask, so only the rows in use are in memory), windows are cut from one strip of rows at a
  time, and finished rows leave the blending buffer as soon as no later window touches them.
  A full Landsat scene (7,700 x 7,800, 7 bands) needs a few hundred MB beyond the model:
  the output (240 MB in float32), a few row blocks and one strip of windows.
* **Test-time augmentation.** ``tta=True`` averages the 8 flips/rotations of every window
  and adds a ``confidence`` layer: the fraction of the 8 that agree with the averaged
  decision (probability > 0.5), blended like the probability. 1 means all 8 agree.

:func:`write_prediction` writes the probability, the binary mask and (with TTA) the
confidence as cloud-optimized GeoTIFFs with overviews, atomically. :func:`predict_to_file`
does both. The console command is ``glacierkit predict MODEL SCENE OUTDIR``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from rasterio._err import CPLE_BaseError

from .exceptions import (
    AllNodataError,
    CorruptFileError,
    GlacierKitError,
    ParameterError,
    UnknownBandError,
)
from .features import InputSpec, feature_stack, load_model, normalize

log = logging.getLogger(__name__)

__all__ = [
    "predict_scene",
    "predict_to_file",
    "write_prediction",
    "window_weights",
    "PROBABILITY_SCALE",
    "NODATA_UINT8",
]

#: Probability and confidence are stored as ``round(value * 250)`` in uint8 files.
PROBABILITY_SCALE = 250
#: The uint8 nodata value of the probability, mask and confidence files.
NODATA_UINT8 = 255
#: Rows read from a scene file per block (a multiple of common GeoTIFF tile heights).
BLOCK_ROWS = 512
#: GDAL block cache (MB) while a scene file streams through (GDAL's default is 5% of RAM).
GDAL_CACHE_MB = 128
#: The smallest default window; larger than a typical training patch gives more context.
MIN_DEFAULT_WINDOW = 256


# --------------------------------------------------------------------------- model
@dataclass
class _Predictor:
    model: object
    spec: InputSpec
    sidecar: dict
    multiple: int  # window sizes must be multiples of this (the model's pooling factor)
    fixed: int | None  # the model's fixed input size, if any
    output: str  # "sigmoid", "logits" or "softmax"

    @property
    def name(self) -> str:
        return str(self.sidecar.get("name") or self.sidecar.get("path") or "model")


def _walk_layers(layer) -> Iterator:
    for sub in getattr(layer, "layers", []) or []:
        yield sub
        yield from _walk_layers(sub)


def _members(model) -> list:
    """The parallel sub-models of an ensemble (:func:`glacierkit.model.ensemble`), or []."""
    subs = [la for la in getattr(model, "layers", []) or [] if hasattr(la, "layers")
            and getattr(la, "layers", None)]
    return subs if len(subs) > 1 else []


def _pool_factor(model) -> int:
    """2 ** (number of 2x downsampling layers): pooling and strided convolutions (the
    largest of the members for an ensemble, whose members run side by side)."""
    members = _members(model)
    if members:
        return max(_pool_factor(m) for m in members)
    n = 0
    for layer in _walk_layers(model):
        kind = type(layer).__name__
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            n += 1
        elif kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            strides = getattr(layer, "strides", (1, 1))
            if max(strides) > 1:
                n += 1
    return 2 ** min(n, 8)


def _output_kind(model, sidecar: Mapping) -> str:
    declared = sidecar.get("output")
    if declared in ("sigmoid", "logits", "softmax", "probability"):
        return "sigmoid" if declared == "probability" else declared
    last = model.layers[-1] if getattr(model, "layers", None) else None
    act = getattr(getattr(last, "activation", None), "__name__", None)
    if act == "linear":
        return "logits"
    if act == "softmax":
        return "softmax"
    return "sigmoid"


def _resolve_model(model) -> _Predictor:
    """A model path (``.keras`` with its ``.json`` sidecar), or ``(keras_model, sidecar)``.

    The sidecar may be the dict from :func:`glacierkit.features.load_model` or an
    :class:`~glacierkit.features.InputSpec`.
    """
    if isinstance(model, _Predictor):
        return model
    if isinstance(model, (str, os.PathLike)):
        keras_model, sidecar = load_model(model)
        sidecar = {**sidecar, "path": str(model)}
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        keras_model, sidecar = model
        if isinstance(sidecar, InputSpec):
            sidecar = {"inputs": sidecar}
        elif isinstance(sidecar, Mapping):
            sidecar = dict(sidecar)
            if not isinstance(sidecar.get("inputs"), InputSpec):
                if "inputs" not in sidecar:
                    raise GlacierKitError(
                        "The sidecar has no 'inputs' block. Pass the pair returned by "
                        "glacierkit.features.load_model, or (keras_model, InputSpec)."
                    )
                sidecar["inputs"] = InputSpec.from_dict(sidecar["inputs"])
        else:
            raise GlacierKitError(
                f"The second item of the model pair is a {type(sidecar).__name__}; give the "
                "sidecar dict from glacierkit.features.load_model or an InputSpec."
            )
    elif hasattr(model, "predict_on_batch"):
        raise GlacierKitError(
            "A bare Keras model does not say which bands it takes or how to normalize them. "
            "Pass (model, sidecar) from glacierkit.features.load_model, (model, InputSpec), "
            "or the path of a .keras file saved with glacierkit.features.save_model."
        )
    else:
        raise GlacierKitError(
            f"Cannot use {type(model).__name__} as a model. Give the path of a .keras file "
            "(with its .json sidecar beside it) or the (keras_model, sidecar) pair from "
            "glacierkit.features.load_model."
        )
    spec: InputSpec = sidecar["inputs"]
    if not spec.mean:
        raise ParameterError(
            "The model's InputSpec has no normalization statistics (mean/std). Save the "
            "model with the statistics of its training tiles (InputSpec.with_stats)."
        )
    shape = tuple(keras_model.input_shape)
    if shape[-1] is not None and shape[-1] != spec.n_channels:
        raise GlacierKitError(
            f"The model takes {shape[-1]} input channels but its sidecar lists "
            f"{spec.n_channels} ({list(spec.channels)}). The sidecar does not belong to "
            "this model: save them together with glacierkit.features.save_model."
        )
    fixed = shape[1] if len(shape) == 4 and shape[1] is not None else None
    return _Predictor(keras_model, spec, sidecar, _pool_factor(keras_model), fixed,
                      _output_kind(keras_model, sidecar))


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


# --------------------------------------------------------------------------- geometry
def window_weights(window: int) -> np.ndarray:
    """The 1-D blending taper ``sin^2(pi (t + 0.5) / window)``, ``t = 0 .. window - 1``.

    Never zero (the smallest value is ``sin^2(pi / (2 window))``), and at 50% overlap two
    neighbouring tapers sum to exactly 1.
    """
    t = np.arange(window, dtype="float64")
    return (np.sin(np.pi * (t + 0.5) / window) ** 2).astype("float32")


def _fold(index: np.ndarray, size: int) -> np.ndarray:
    """Reflect indices into ``[0, size)`` (numpy's ``reflect`` mode, repeated as needed)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    r = np.mod(index, period)
    return np.where(r >= size, period - r, r)


@dataclass(frozen=True)
class _Axis:
    """Window positions along one axis: window ``j`` covers ``[start + j*step, ... + window)``."""

    size: int
    window: int
    step: int

    @property
    def margin(self) -> int:
        return self.window - self.step

    @property
    def start(self) -> int:
        return -self.margin

    @property
    def count(self) -> int:
        return max(1, math.ceil((self.size + 2 * self.margin - self.window) / self.step) + 1)

    @property
    def padded(self) -> int:
        return (self.count - 1) * self.step + self.window

    def norm(self, taper: np.ndarray) -> np.ndarray:
        """Accumulated taper weight per padded position."""
        acc = np.zeros(self.padded, dtype="float64")
        for j in range(self.count):
            acc[j * self.step: j * self.step + self.window] += taper
        return acc.astype("float32")


def _window_size(window: int | None, pred: _Predictor) -> int:
    m = pred.multiple
    if pred.fixed is not None:
        if window is not None and window != pred.fixed:
            raise ParameterError(
                f"This model takes fixed {pred.fixed}x{pred.fixed} inputs; window={window} "
                f"cannot be used. Leave window unset."
            )
        return pred.fixed
    if window is None:
        window = max(MIN_DEFAULT_WINDOW, pred.spec.patch_size)
        return int(math.ceil(window / m) * m)
    window = int(window)
    if window <= 0 or window % m:
        raise ParameterError(
            f"window={window} must be a positive multiple of {m} (the model downsamples "
            f"{m}x). Try {max(m, round(window / m) * m)}."
        )
    return window


def _step_size(window: int, overlap: float, multiple: int) -> int:
    if not 0 <= overlap < 1:
        raise ParameterError(f"overlap={overlap} must be in [0, 1); 0.5 is the usual choice.")
    step = int(round(window * (1 - overlap) / multiple)) * multiple
    return min(window, max(multiple, step))


# --------------------------------------------------------------------------- reading
def _open(scene, block_rows: int) -> xr.DataArray:
    from .io import open_scene

    if isinstance(scene, xr.DataArray):
        return open_scene(scene)
    path = Path(str(scene)).expanduser()
    if path.exists():
        # A lazily opened file: one dask chunk per block of rows, all columns.
        return open_scene(path, chunks={"band": 1, "y": block_rows, "x": -1})
    return open_scene(scene)


def _check_roles(scene: xr.DataArray, pred: _Predictor) -> None:
    try:
        feature_stack(scene.isel(y=slice(0, 1), x=slice(0, 1)), pred.spec)
    except UnknownBandError as exc:
        names = [str(b) for b in scene["band"].values]
        roles = [str(r) for r in scene["role"].values] if "role" in scene.coords else []
        raise UnknownBandError(
            f"The model needs the bands {list(pred.spec.bands)} and extras "
            f"{list(pred.spec.extra)} by role, but the scene "
            f"({scene.attrs.get('sensor', 'unknown sensor')}) lacks one: {exc} The scene has "
            f"bands {names} with roles {roles}. Open the scene with all the bands the model "
            "needs (open_scene without bands=, or a file that includes them)."
        ) from exc


class _Rows:
    """Normalized features and the nodata mask of a scene, served by rows from a cache.

    Blocks of ``block`` rows are computed once each (aligned to the dask chunks of a
    lazily opened scene) and dropped once no later request needs them.
    """

    def __init__(self, scene: xr.DataArray, spec: InputSpec, block: int):
        self.scene = scene
        self.spec = spec
        self.block = block
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.n_bands = len(spec.bands)

    def _load(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        if b not in self.cache:
            rows = slice(b * self.block, min((b + 1) * self.block, self.scene.sizes["y"]))
            try:
                raw = feature_stack(self.scene.isel(y=rows), self.spec).values  # (C, r, W)
            except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
                source = self.scene.attrs.get("source") or self.scene.attrs.get("scene_id")
                raise CorruptFileError(
                    f"Cannot read rows {rows.start}-{rows.stop} of {source} "
                    f"({' '.join(str(exc).split())}). The file is corrupt or truncated: "
                    "download or export it again."
                ) from exc
            nodata = np.isnan(raw[: self.n_bands]).any(axis=0)
            self.cache[b] = (normalize(raw, self.spec, axis=0), nodata)
        return self.cache[b]

    def get(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(C, hi - lo, W)`` and nodata ``(hi - lo, W)`` of rows ``[lo, hi)``."""
        first, last = lo // self.block, (hi - 1) // self.block
        for b in [k for k in self.cache if k < first]:
            del self.cache[b]
        feats, nods = [], []
        for b in range(first, last + 1):
            f, n = self._load(b)
            a, z = max(lo - b * self.block, 0), min(hi - b * self.block, f.shape[1])
            feats.append(f[:, a:z])
            nods.append(n[a:z])
        if len(feats) == 1:  # views, no copy
            return feats[0], nods[0]
        return np.concatenate(feats, axis=1), np.concatenate(nods, axis=0)


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


def _split(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``n`` items in near-equal batches of at most ``batch_size`` (at most 2 distinct sizes,
    so the compiled predict function is not retraced for every leftover)."""
    k = max(1, math.ceil(n / batch_size))
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _forward(pred: _Predictor, x: np.ndarray, tta: bool) -> tuple[np.ndarray, np.ndarray | None]:
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
def _predict_rows(pred: _Predictor, scene: xr.DataArray, *, window: int, step: int,
                  batch_size: int, tta: bool, block_rows: int, progress: bool):
    """Yield ``(row0, probability rows, confidence rows or None)`` top to bottom."""
    from tqdm.auto import tqdm

    height, width = scene.sizes["y"], scene.sizes["x"]
    ay, ax = _Axis(height, window, step), _Axis(width, window, step)
    taper = window_weights(window)
    taper2 = np.outer(taper, taper)
    norm_y, norm_x = ay.norm(taper), ax.norm(taper)
    cols = _fold(np.arange(ax.start, ax.start + ax.padded), width)
    rows_src = _Rows(scene, pred.spec, block_rows)
    acc = np.zeros((window, ax.padded), dtype="float32")
    acc_c = np.zeros_like(acc) if tta else None
    batches = _split(ax.count, batch_size)
    bar = tqdm(total=ay.count * ax.count * (8 if tta else 1), unit="window",
               desc="predict", disable=not progress, leave=False)
    try:
        for j in range(ay.count):
            top = ay.start + j * step  # scene row of the strip's first row
            rows = _fold(np.arange(top, top + window), height)
            lo, hi = int(rows.min()), int(rows.max()) + 1
            feats, _ = rows_src.get(lo, hi)
            strip = feats[:, rows - lo][:, :, cols]  # (C, window, padded width)
            strip = np.ascontiguousarray(np.moveaxis(strip, 0, -1))  # (window, Wp, C)
            for a, b in batches:
                x = np.stack([strip[:, k * step: k * step + window] for k in range(a, b)])
                p, agree = _forward(pred, x, tta)
                bar.update((b - a) * (8 if tta else 1))
                for i, k in enumerate(range(a, b)):
                    sl = slice(k * step, k * step + window)
                    acc[:, sl] += p[i] * taper2
                    if tta:
                        acc_c[:, sl] += agree[i] * taper2
            last = j == ay.count - 1
            n_final = window if last else step
            r0, r1 = max(top, 0), min(top + n_final, height)
            if r1 > r0:
                _, nodata = rows_src.get(r0, r1)
                sel = slice(r0 - top, r1 - top)
                norm = norm_y[r0 - ay.start: r1 - ay.start, None] * norm_x[None]
                keep = slice(ax.margin, ax.margin + width)
                out = np.clip((acc[sel] / norm)[:, keep], 0, 1)  # float rounding
                out[nodata] = np.nan
                conf = None
                if tta:
                    conf = np.clip((acc_c[sel] / norm)[:, keep], 0, 1)
                    conf[nodata] = np.nan
                yield r0, out, conf
            if not last:
                acc[:-step] = acc[step:]
                acc[-step:] = 0
                if tta:
                    acc_c[:-step] = acc_c[step:]
                    acc_c[-step:] = 0
    finally:
        bar.close()


def predict_scene(
    model,
    scene,
    *,
    window: int | None = None,
    overlap: float = 0.5,
    batch_size: int = 4,
    tta: bool = False,
    block_rows: int = BLOCK_ROWS,
    progress: bool = True,
    guard: bool = True,
) -> xr.DataArray:
    """Glacier probability over a whole scene, on the scene's exact grid.

    Parameters
    ----------
    model
        Path of a ``.keras`` model (its ``.json`` sidecar beside it), or the
        ``(keras_model, sidecar)`` pair from :func:`glacierkit.features.load_model` (the
        sidecar may also be an :class:`~glacierkit.features.InputSpec`).
    scene
        A scene DataArray (numpy- or dask-backed), a file or folder path, or a sample name
        (anything :func:`glacierkit.io.open_scene` opens). It needs the bands the model's
        sidecar names, by role; other bands are ignored. Paths are read lazily, a block of
        rows at a time.
    window
        Window size in pixels, a multiple of the model's pooling factor. Default: the
        training patch size, at least 256.
    overlap
        Fraction by which neighbouring windows overlap, in ``[0, 1)``. 0.5 (default) makes
        the blend seam-free at 4x the windows of a plain tiling; 0 is a plain tiling.
    batch_size
        Windows per forward pass.
    tta
        Average the 8 flips/rotations (8x the compute) and attach a ``confidence``
        coordinate: the blended fraction of the 8 whose decision (> 0.5) agrees with the
        averaged one, in ``[0, 1]``.
    block_rows
        Rows read at a time from a scene file (the chunk height of a lazily opened file).
        Dask-backed scenes are read by their own y chunks.
    progress
        Show a progress bar (``tqdm.auto``).
    guard
        Run the domain-shift guard (:mod:`glacierkit.guard`): compare the scene's inputs
        with the model's training distribution and check the map's physical sense; warn
        (:class:`glacierkit.guard.DomainShiftWarning`) above the documented limits. The
        report is in ``attrs["guard"]`` and goes into the written files' tags.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 glacier probability in ``[0, 1]`` named ``glacier_probability``,
        NaN where any input band is NaN, with the scene's coordinates, CRS and transform.
        With ``tta=True`` it carries a ``confidence`` coordinate on ``(y, x)``.

    Examples
    --------
    >>> prob = predict_scene("models/unet.keras", "alps-s2/merdeglace")  # doctest: +SKIP
    >>> mask = prob > 0.5  # doctest: +SKIP
    """
    pred = _resolve_model(model)
    da = _open(scene, block_rows)
    _check_roles(da, pred)
    if int(batch_size) < 1:
        raise ParameterError(f"batch_size={batch_size} must be at least 1.")
    win = _window_size(window, pred)
    step = _step_size(win, overlap, pred.multiple)
    block = _block_rows(da, block_rows)
    height, width = da.sizes["y"], da.sizes["x"]
    prob = np.empty((height, width), dtype="float32")
    conf = np.empty((height, width), dtype="float32") if tta else None
    ay, ax = _Axis(height, win, step), _Axis(width, win, step)
    log.info("Predicting %dx%d px with %d windows of %d px (step %d, batch %d, tta %s)",
             height, width, ay.count * ax.count, win, step, batch_size, tta)
    # GDAL's block cache would otherwise grow to 5% of RAM while the file streams through.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        for r0, p, c in _predict_rows(pred, da, window=win, step=step,
                                      batch_size=int(batch_size), tta=tta, block_rows=block,
                                      progress=progress):
            prob[r0: r0 + p.shape[0]] = p
            if tta:
                conf[r0: r0 + c.shape[0]] = c
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
        report = guard_report(prob, da, pred.spec, pred.sidecar, threshold)
        warn(report, str(da.attrs.get("scene_id", "the scene")))
        extra["guard"] = report
    return probability_array(prob, conf if tta else None, da, pred, win, step, overlap, tta,
                             **extra)


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
    ay, ax = _Axis(da.sizes["y"], win, step), _Axis(da.sizes["x"], win, step)
    out.attrs = {
        **{k: v for k, v in da.attrs.items() if k in ("sensor", "date", "scene_id", "product")},
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


def _block_rows(da: xr.DataArray, block_rows: int) -> int:
    if da.chunks is not None:
        ychunks = da.chunksizes.get("y", ())
        if ychunks:
            if ychunks[0] > 4 * block_rows:
                log.warning(
                    "The scene's dask chunks are %d rows high: each is read whole, which "
                    "needs more memory. Rechunk to about %d rows (scene.chunk(y=%d)) or pass "
                    "the file path.", ychunks[0], block_rows, block_rows)
            return int(ychunks[0])
    return int(block_rows)


# --------------------------------------------------------------------------- writing
def _encode_unit(values: np.ndarray, rows: int = 1024) -> np.ndarray:
    """[0, 1] floats -> uint8 ``round(v * 250)``; NaN -> 255 (by blocks of rows, to keep
    the temporaries small on full scenes)."""
    out = np.empty(values.shape, dtype="uint8")
    for r in range(0, values.shape[0], rows):
        v = values[r: r + rows]
        enc = np.rint(np.clip(np.nan_to_num(v, nan=0.0), 0, 1) * PROBABILITY_SCALE)
        enc[~np.isfinite(v)] = NODATA_UINT8
        out[r: r + rows] = enc
    return out


def _encode_mask(values: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``p > threshold``, 0 elsewhere, 255 where NaN."""
    out = (values > threshold).astype("uint8")
    out[np.isnan(values)] = NODATA_UINT8
    return out


def _like(values: np.ndarray, grid: xr.DataArray, name: str) -> xr.DataArray:
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": grid["y"].values,
                                                       "x": grid["x"].values}, name=name)
    return da.rio.write_crs(grid.rio.crs).rio.write_transform(grid.rio.transform())


def write_prediction(
    prob: xr.DataArray,
    output_dir: str | os.PathLike,
    *,
    threshold: float = 0.5,
    prefix: str = "",
    probability_dtype: str = "uint8",
    confidence: xr.DataArray | None = None,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Write a prediction as cloud-optimized GeoTIFFs with overviews, atomically.

    The files are written to a staging folder and moved in as one set
    (:func:`glacierkit.staging.output_set`): the folder never holds a new probability
    beside an old mask, and an earlier set with the same prefix is replaced as a whole
    (its ``confidence.tif`` and ``outlines.gpkg`` too), or refused with
    ``overwrite=False``.

    Files in ``output_dir`` (each name starts with ``prefix``):

    * ``probability.tif``: with ``probability_dtype="uint8"`` (default) the value is
      ``round(p * 250)``, so 0..250 maps to 0..1 in steps of 0.004 (the file's scale factor
      is 0.004, so GDAL/QGIS can unscale it) and 255 is nodata; with ``"float32"`` the
      probability itself with NaN nodata.
    * ``mask.tif``: uint8, 1 glacier (``p > threshold``), 0 not glacier, 255 nodata.
    * ``confidence.tif`` (when ``confidence`` is given or ``prob`` carries a ``confidence``
      coordinate from ``tta=True``): uint8 like the probability, 0..250 = 0..1.
    * beside each, its QGIS style (``probability.qml`` ...; :mod:`glacierkit.qgis`), so the
      layers open readable in QGIS.

    Parameters
    ----------
    prob
        ``(y, x)`` probability from :func:`predict_scene` (CRS and transform needed).
    output_dir
        Folder for the files (created if needed).
    threshold
        Probability above which a pixel is glacier in the mask.
    prefix
        Prepended to the file names, e.g. ``"merdeglace_"``.
    probability_dtype
        ``"uint8"`` or ``"float32"``.
    confidence
        A confidence layer on the same grid (default: ``prob.confidence`` if present).
    overwrite
        Replace an earlier set of outputs with the same prefix in ``output_dir``;
        ``False`` raises :class:`~glacierkit.exceptions.OutputExistsError` instead.

    Returns
    -------
    dict
        ``{"probability": path, "mask": path[, "confidence": path]}``.
    """
    from .io import write_raster
    from .staging import check_prefix, output_set

    if not 0 <= threshold <= 1:
        raise ParameterError(f"threshold={threshold} must be a probability in [0, 1].")
    prefix = check_prefix(prefix)
    if probability_dtype not in ("uint8", "float32"):
        raise ParameterError(
            f"probability_dtype={probability_dtype!r}; use 'uint8' (0..250, 255 nodata) or "
            "'float32'."
        )
    if prob.dims != ("y", "x"):
        raise GlacierKitError(f"Expected a (y, x) probability; got dims {prob.dims}.")
    if confidence is None and "confidence" in prob.coords:
        confidence = prob["confidence"]
    values = np.asarray(prob.values, dtype="float32")
    if confidence is not None and confidence.shape != values.shape:
        raise GlacierKitError(
            f"The confidence layer is {confidence.shape}; the probability is {values.shape}."
        )
    final_dir = Path(output_dir)
    tags = {k: prob.attrs[k] for k in ("model", "scene_id", "sensor", "date", "window",
                                       "overlap", "tta") if k in prob.attrs}
    if prob.attrs.get("guard"):
        import json

        tags["domain_shift_guard"] = json.dumps(prob.attrs["guard"], default=float)
        tags["in_training_domain"] = "yes" if prob.attrs["guard"].get("in_domain") else "no"
    unit_note = (f"value / {PROBABILITY_SCALE} = {{}} in [0, 1]; {NODATA_UINT8} = nodata")
    paths: dict[str, Path] = {}
    # GDAL's block cache defaults to 5% of RAM; keep the COG conversion lean.
    with output_set(final_dir, prefix, overwrite=overwrite) as out_dir, \
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        if probability_dtype == "uint8":
            layer = _like(_encode_unit(values), prob, "glacier_probability")
            paths["probability"] = write_raster(
                layer, out_dir / f"{prefix}probability.tif", dtype="uint8",
                nodata=NODATA_UINT8, tags={**tags, "encoding": unit_note.format("probability")},
                descriptions=["glacier_probability"], scales=[1 / PROBABILITY_SCALE],
                resampling="AVERAGE")
        else:
            layer = _like(values, prob, "glacier_probability")
            paths["probability"] = write_raster(
                layer, out_dir / f"{prefix}probability.tif", dtype="float32",
                tags={**tags, "encoding": "glacier probability; NaN = nodata"},
                descriptions=["glacier_probability"], resampling="AVERAGE")
        mask = _encode_mask(values, threshold)
        paths["mask"] = write_raster(
            _like(mask, prob, "glacier_mask"), out_dir / f"{prefix}mask.tif", dtype="uint8",
            nodata=NODATA_UINT8, descriptions=["glacier_mask"],
            tags={**tags, "threshold": threshold,
                  "encoding": f"1 = glacier (probability > {threshold}), 0 = not glacier, "
                              f"{NODATA_UINT8} = nodata"})
        del mask
        if confidence is not None:
            cvals = np.asarray(confidence.values, dtype="float32")
            if cvals.shape != values.shape:
                raise GlacierKitError(
                    f"The confidence layer is {cvals.shape}; the probability is {values.shape}."
                )
            paths["confidence"] = write_raster(
                _like(_encode_unit(cvals), prob, "confidence"),
                out_dir / f"{prefix}confidence.tif", dtype="uint8", nodata=NODATA_UINT8,
                descriptions=["tta_agreement"], scales=[1 / PROBABILITY_SCALE],
                resampling="AVERAGE",
                tags={**tags, "encoding": unit_note.format(
                    "fraction of the 8 flips/rotations agreeing with the mean decision")})
        from .qgis import write_style

        for kind, path in paths.items():  # QGIS default styles, committed with the set
            write_style(path, kind)
    paths = {kind: final_dir / p.name for kind, p in paths.items()}
    log.info("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def predict_to_file(
    model,
    scene,
    output_dir: str | os.PathLike,
    *,
    threshold: float = 0.5,
    prefix: str = "",
    probability_dtype: str = "uint8",
    overwrite: bool = True,
    **kwargs,
) -> dict[str, Path]:
    """:func:`predict_scene` then :func:`write_prediction`; returns the written paths.

    The output folder is checked (writable, no earlier set unless ``overwrite``) before
    the prediction starts.

    The scene is streamed from disk (only the probability, 4 bytes per pixel, is held in
    memory), so a full Landsat scene fits in well under 2 GB beyond the model. ``kwargs``
    go to :func:`predict_scene` (``window``, ``overlap``, ``batch_size``, ``tta`` ...).
    """
    from .staging import check_target

    if not 0 <= threshold <= 1:  # fail before the long prediction
        raise ParameterError(f"threshold={threshold} must be a probability in [0, 1].")
    check_target(output_dir, prefix, overwrite=overwrite)
    prob = predict_scene(model, scene, **kwargs)
    return write_prediction(prob, output_dir, threshold=threshold, prefix=prefix,
                            probability_dtype=probability_dtype, overwrite=overwrite)
