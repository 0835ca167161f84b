"""Full-scene prediction: seam-free, memory-bounded sliding windows, written as COGs.

:func:`predict_scene` runs a trained model over a whole scene and returns the glacier
probability on the scene's exact grid. How it works:

* **Inputs by role.** The model's sidecar (:class:`glacierkit.features.InputSpec`) names the
  bands by role and holds the normalization statistics, so a model trained on Sentinel-2
  runs on Landsat 8/9 or 7 as long as the scene has those roles.
* **Large windows, cropped context, a short blend.** A U-Net's output near a window edge
  depends on the zero padding there: for the committed model it moves by up to 0.96 at
  the edge and by less than 0.01 only from about 76 px inside. So every window gives zero
  weight to ``context`` pixels at each edge (by default 0.7 of the model's receptive-field
  radius, computed from its layers, rounded up to the pooling factor: 80 px for the
  ``cpu`` preset), and neighbouring windows overlap by twice the context plus a 16-px
  sine-squared ramp whose weights add up to exactly one (:func:`blend_weights`). Every
  pixel then comes from windows that see it with at least ``context`` pixels around it:
  no seams, and the result does not depend on where the window edges fall (tested by
  cropping the scene). Windows are as large as the activation memory allows (640 MB in
  float32, 800 MB in bfloat16: for the ``cpu`` preset 1168 px and 1792 px), and shrunk to
  the fewest pixels that cover the scene, so a full Landsat scene costs 1.25-1.43 window
  pixels per scene pixel (the former 50% overlap of 256-px windows: 4.2). ``overlap=0.5, context=0`` is that former Hann blend. Window
  sizes and steps are multiples of the model's pooling factor, so every window sees the
  scene with the same pooling phase.
* **Any size.** The scene is reflect-padded at every edge by the context and the ramp
  (and up to a whole number of windows), so edge pixels get context too; scenes smaller
  than a window get one window just large enough.
* **Precision.** ``precision="bfloat16"`` computes in bfloat16 with float32 outputs;
  ``"auto"`` (the default) does so on CPUs with native bfloat16, where it was measured to
  be faster with the same scores (:mod:`glacierkit.precision`).
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

:func:`write_prediction` writes the probability, the binary mask and (with TTA) the
confidence as cloud-optimized GeoTIFFs with overviews, atomically. :func:`predict_to_file`
does both. The console command is ``glacierkit predict MODEL SCENE OUTDIR``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
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
from .features import InputSpec, feature_stack, load_model

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
BLOCK_ROWS = 256
#: GDAL block cache (MB) while a scene file streams through (GDAL's default is 5% of RAM).
GDAL_CACHE_MB = 128
#: The smallest default window; larger than a typical training patch gives more context.
MIN_DEFAULT_WINDOW = 256
#: The largest default window (pixels). Larger windows waste less work on context.
MAX_DEFAULT_WINDOW = 1792
#: Memory (bytes) the activations of one default window may take, estimated as
#: ``ACTIVATION_BYTES_PER_FILTER[precision]`` bytes per pixel per filter of the first
#: convolution. More in bfloat16, whose windows and row blocks are stored in half the bytes.
WINDOW_MEMORY = {"float32": 640 * 2**20, "bfloat16": 800 * 2**20}
#: Measured (RSS growth of one forward pass): the committed U-Net, 16 first filters, took
#: 444-468 bytes per window pixel in float32 and 232 in bfloat16.
ACTIVATION_BYTES_PER_FILTER = {"float32": 30, "bfloat16": 15}
#: Pixels per forward pass when ``batch_size`` is not given.
BATCH_PIXELS = 2**20
#: Default context (pixels at each window edge given zero weight) as a fraction of the
#: model's receptive-field radius. For the committed U-Net (radius about 107 px) the window
#: edge changed the output by more than 0.01 up to 72 px inside the window and by less than
#: 0.007 from 76 px on (the three Alps training/unlabelled scenes, every 16-px offset).
CONTEXT_FRACTION = 0.7
#: Width (pixels) of the sine-squared ramp between neighbouring windows when ``overlap`` is
#: not given, beyond the context (rounded up to the pooling factor; 0: a hard crop).
BLEND_RAMP = 16


# --------------------------------------------------------------------------- model
@dataclass
class _Predictor:
    model: object  # the model that runs: ``source`` cast to ``precision``
    spec: InputSpec
    sidecar: dict
    multiple: int  # window sizes must be multiples of this (the model's pooling factor)
    fixed: int | None  # the model's fixed input size, if any
    output: str  # "sigmoid", "logits" or "softmax"
    radius: int = 0  # receptive-field radius (pixels), from the layers
    first_filters: int = 16  # channels of the first convolution (for the memory estimate)
    precision: str = "float32"
    source: object = None  # the model as loaded
    bf16_inputs: object = None  # the window dtype in bfloat16, once checked (_input_dtype)

    @property
    def name(self) -> str:
        return str(self.sidecar.get("name") or self.sidecar.get("path") or "model")

    @property
    def context(self) -> int:
        """The default context: :data:`CONTEXT_FRACTION` of the receptive-field radius,
        rounded up to the pooling factor (0 for a model without spatial reach)."""
        m = self.multiple
        return int(math.ceil(CONTEXT_FRACTION * self.radius / m)) * m if self.radius else 0

    def with_precision(self, precision: str | None) -> _Predictor:
        """This predictor computing in ``precision`` (None: unchanged)."""
        if precision is None:
            return self
        from . import precision as gk_precision

        value = gk_precision.resolve(precision, "predict")
        if value == self.precision:
            return self
        source = self.source if self.source is not None else self.model
        return dataclasses.replace(self, model=_runner(source, value),
                                   precision=value, source=source, bf16_inputs=None)


class _MemberMean:
    """An ensemble (:func:`glacierkit.model.ensemble`) run one member at a time: the mean
    of the members' probabilities, as the ensemble's ``Average`` computes it, with the
    activation memory of one member (so windows stay as large as for a single model)."""

    def __init__(self, members: list):
        self.members = members

    @property
    def layers(self) -> list:  # the members, as the ensemble's own sub-models
        return self.members

    def predict_on_batch(self, x) -> np.ndarray:
        total = None
        for member in self.members:
            y = np.asarray(member.predict_on_batch(x), dtype="float32")
            total = y if total is None else total + y
        return total / len(self.members)


def _runner(model, precision: str):
    """What runs the forward pass: ``model`` cast to ``precision``; an ensemble's members
    cast and run one at a time."""
    from . import precision as gk_precision

    members = _members(model)
    if members:
        return _MemberMean([gk_precision.cast_model(m, precision) for m in members])
    return gk_precision.cast_model(model, precision)


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


def _pair(value, default: int = 1) -> int:
    if value is None:
        return default
    if isinstance(value, (int, np.integer)):
        return int(value)
    return int(max(value))


def _reach(model) -> tuple[int, int]:
    """``(receptive-field radius in pixels, filters of the first convolution)``.

    The radius adds up every layer's reach at its scale, walking the layers in order:
    exact (up to a pixel of alignment) for a chain of layers such as a U-Net, whose
    longest path visits every layer, and an overestimate for parallel branches. For an
    ensemble: the largest of its members' (prediction runs them one at a time).
    """
    members = _members(model)
    if members:
        reaches = [_reach(m) for m in members]
        return max(r for r, _ in reaches), max(f for _, f in reaches)
    scale, radius, first = 1.0, 0.0, None
    for layer in _walk_layers(model):
        kind = type(layer).__name__
        if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose"):
            k = _pair(getattr(layer, "kernel_size", 1))
            d = _pair(getattr(layer, "dilation_rate", 1))
            st = _pair(getattr(layer, "strides", 1))
            if first is None:
                first = getattr(layer, "filters", None) or None
            if kind == "Conv2DTranspose":
                scale /= st
                radius += (k - 1) / 2 * d * scale
            else:
                radius += (k - 1) / 2 * d * scale
                scale *= st
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            p = _pair(getattr(layer, "pool_size", 2), 2)
            radius += (p - 1) / 2 * scale
            scale *= _pair(getattr(layer, "strides", None), p)
        elif kind == "UpSampling2D":
            u = _pair(getattr(layer, "size", 2), 2)
            scale /= u
            radius += (u - 1) / 2 * scale
    return int(math.ceil(radius)), int(first or 16)


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


def _resolve_model(model, precision: str | None = None) -> _Predictor:
    """A model path (``.keras`` with its ``.json`` sidecar), or ``(keras_model, sidecar)``.

    The sidecar may be the dict from :func:`glacierkit.features.load_model` or an
    :class:`~glacierkit.features.InputSpec`. ``precision`` (``"auto"``, ``"float32"``,
    ``"bfloat16"``; None: ``"auto"``, or a given predictor's own) is applied with
    :func:`glacierkit.precision.cast_model`.
    """
    if isinstance(model, _Predictor):
        return model.with_precision(precision)
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
    radius, first = _reach(keras_model)
    pred = _Predictor(keras_model, spec, sidecar, _pool_factor(keras_model), fixed,
                      _output_kind(keras_model, sidecar), radius=radius, first_filters=first,
                      precision="float32", source=keras_model)
    return pred.with_precision("auto" if precision is None else precision)


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
    neighbouring tapers sum to exactly 1. It is ``blend_weights(window, window // 2)``.
    """
    t = np.arange(window, dtype="float64")
    return (np.sin(np.pi * (t + 0.5) / window) ** 2).astype("float32")


def blend_weights(window: int, step: int, context: int = 0) -> np.ndarray:
    """The 1-D weight of a window's pixels when windows ``step`` apart are blended.

    Zero on the ``context`` pixels at each edge (predicted only to give the others
    context), then a sine-squared ramp ``sin^2(pi (t + 0.5) / (2 ramp))`` over the
    ``ramp = window - step - 2 context`` pixels shared with the neighbour, then 1. The
    ramps of neighbours sum to exactly 1. With ``context=0`` and ``step = window / 2`` it is
    :func:`window_weights`; with ``ramp = 0`` it is a plain crop (each pixel comes from the
    one window that sees it with at least ``context`` pixels of context). If the ramps
    would overlap each other (overlap above 50%), the part between the contexts is one
    sine-squared bump.
    """
    if not 0 <= 2 * context <= window - step:
        raise ParameterError(
            f"context={context} must be at most half the overlap of the windows "
            f"(window {window} - step {step} = {window - step}) / 2."
        )
    w = np.zeros(window, dtype="float64")
    inner = window - 2 * context
    ramp = window - step - 2 * context
    if ramp == 0:
        w[context: window - context] = 1
    elif 2 * ramp > inner:
        t = np.arange(inner, dtype="float64")
        w[context: window - context] = np.sin(np.pi * (t + 0.5) / inner) ** 2
    else:
        t = np.arange(ramp, dtype="float64")
        r = np.sin(np.pi * (t + 0.5) / (2 * ramp)) ** 2
        w[context: context + ramp] = r
        w[context + ramp: window - context - ramp] = 1
        w[window - context - ramp: window - context] = r[::-1]
    return w.astype("float32")


def _fold(index: np.ndarray, size: int) -> np.ndarray:
    """Reflect indices into ``[0, size)`` (numpy's ``reflect`` mode, repeated as needed)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    r = np.mod(index, period)
    return np.where(r >= size, period - r, r)


@dataclass(frozen=True)
class _Axis:
    """Window positions along one axis: window ``j`` covers ``[start + j*step, ... + window)``.

    ``context`` pixels at each end of a window get zero weight. The scene is reflected by
    ``margin = window - step - context`` pixels before the first window, so the first
    scene pixel already has the full weight of one window and at least ``context`` pixels
    of (reflected) context; the last window reaches at least as far beyond the scene.
    """

    size: int
    window: int
    step: int
    context: int = 0

    @property
    def margin(self) -> int:
        return self.window - self.step - self.context

    @property
    def start(self) -> int:
        return -self.margin

    @property
    def count(self) -> int:
        return max(1, math.ceil((self.size + 2 * self.margin - self.window) / self.step) + 1)

    @property
    def padded(self) -> int:
        return (self.count - 1) * self.step + self.window

    def taper(self) -> np.ndarray:
        return blend_weights(self.window, self.step, self.context)

    def norm(self, taper: np.ndarray | None = None) -> np.ndarray:
        """Accumulated taper weight per padded position."""
        taper = self.taper() if taper is None else taper
        acc = np.zeros(self.padded, dtype="float64")
        for j in range(self.count):
            acc[j * self.step: j * self.step + self.window] += taper
        return acc.astype("float32")


def _fit_axis(size: int, window: int, step: int, context: int, multiple: int,
              fixed: bool) -> _Axis:
    """The fewest windows of at most ``window`` pixels that cover ``size`` pixels, each as
    small as possible (a multiple of ``multiple``), with the same overlap, context and
    margin: no more pixels are predicted beyond the scene than needed."""
    ax = _Axis(size, window, step, context)
    if fixed:
        return ax
    n, overlap = ax.count, window - step
    need = size + 2 * ax.margin
    w = int(math.ceil((need + (n - 1) * overlap) / n / multiple)) * multiple
    if w >= window or w - overlap < 1:
        return ax
    fitted = _Axis(size, w, w - overlap, context)
    if fitted.count != n or fitted.margin != ax.margin:  # pragma: no cover - by construction
        raise GlacierKitError(f"Internal error: window fit {fitted} differs from {ax}.")
    return fitted


@dataclass(frozen=True)
class _Plan:
    """Where the windows go: the nominal window, step, context and overlap, and the fitted
    windows along y and x."""

    window: int
    step: int
    context: int
    overlap: float
    ay: _Axis
    ax: _Axis
    batch_size: int

    @property
    def n_windows(self) -> int:
        return self.ay.count * self.ax.count

    @property
    def pixel_factor(self) -> float:
        """Predicted pixels per scene pixel."""
        return (self.ay.count * self.ay.window * self.ax.count * self.ax.window
                / max(1, self.ay.size * self.ax.size))

    def attrs(self) -> dict:
        return {"context": self.context, "window_shape": f"{self.ay.window}x{self.ax.window}",
                "n_windows": self.n_windows}


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
        # As large as the activation memory allows, up to MAX_DEFAULT_WINDOW.
        per_px = ACTIVATION_BYTES_PER_FILTER.get(pred.precision, 30) * max(1, pred.first_filters)
        budget = WINDOW_MEMORY.get(pred.precision, WINDOW_MEMORY["float32"])
        side = int(math.sqrt(budget / per_px)) // m * m
        window = max(MIN_DEFAULT_WINDOW, pred.spec.patch_size, min(MAX_DEFAULT_WINDOW, side))
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


def _plan(pred: _Predictor, height: int, width: int, *, window: int | None,
          overlap: float | None, context: int | None, batch_size: int | None) -> _Plan:
    """Window size, step and context for a scene (see :func:`predict_scene`)."""
    m = pred.multiple
    win = _window_size(window, pred)
    if context is not None:
        if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or \
                context < 0:
            raise ParameterError(f"context={context!r} must be an integer >= 0 (pixels).")
        ctx = int(context)
    else:
        ctx = pred.context
    if overlap is None:
        ramp = int(math.ceil(BLEND_RAMP / m)) * m if BLEND_RAMP else 0
        step = (win - 2 * ctx - ramp) // m * m
        if step < m:
            if context is not None:
                raise ParameterError(
                    f"window={win} is too small for context={ctx}: it needs at least "
                    f"{2 * ctx + ramp + m} px. Use a larger window or a smaller context."
                )
            ctx = max(0, (win - ramp - m) // 2)
            step = max(m, (win - 2 * ctx - ramp) // m * m)
            log.warning("window=%d is small for this model (receptive radius %d px): only %d "
                        "px of context per window edge; predictions near window edges may "
                        "differ. Use a larger window.", win, pred.radius, ctx)
        ovl = (win - step) / win
    else:
        step = _step_size(win, float(overlap), m)
        ovl = float(overlap)
        if context is not None and 2 * ctx > win - step:
            raise ParameterError(
                f"context={ctx} needs an overlap of at least {2 * ctx} px, but window={win} "
                f"with overlap={overlap} overlaps by {win - step} px. Leave overlap unset."
            )
        ctx = min(ctx, (win - step) // 2)
    fixed = pred.fixed is not None
    ay = _fit_axis(height, win, step, ctx, m, fixed)
    ax = _fit_axis(width, win, step, ctx, m, fixed)
    if batch_size is None:
        batch = max(1, BATCH_PIXELS // (ay.window * ax.window))
    else:
        batch = int(batch_size)
        if batch < 1:
            raise ParameterError(f"batch_size={batch_size} must be at least 1.")
    return _Plan(win, step, ctx, ovl, ay, ax, batch)


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


def _normalize_last(raw: np.ndarray, spec: InputSpec, dtype="float32") -> np.ndarray:
    """:func:`glacierkit.features.normalize` of ``(C, ...)`` features, channel last (the
    same float32 operations, so the same values, with fewer passes over the block), stored
    as ``dtype`` (float32, or bfloat16 for a model that rounds its inputs to it anyway)."""
    shape = (raw.shape[0],) + (1,) * (raw.ndim - 1)
    norm = raw.astype("float32", copy=False) - np.asarray(spec.mean, dtype="float32").reshape(shape)
    norm /= np.asarray(spec.std, dtype="float32").reshape(shape)
    np.copyto(norm, 0.0, where=~np.isfinite(norm))  # NaN (nodata) and infinities: the mean
    out = np.empty(raw.shape[1:] + (raw.shape[0],), dtype=dtype)
    out[...] = np.moveaxis(norm, 0, -1)  # to bfloat16: rounded to nearest even, as TF casts
    return out


#: Roles an extra input channel is computed from (for the guard's sample of the bands).
_EXTRA_ROLES = {"ndsi": ("green", "swir1"), "ndwi": ("green", "nir")}


def _band_indices(scene: xr.DataArray, spec: InputSpec, also: tuple[str, ...] = ()
                  ) -> list[int]:
    """Indices of the scene's bands that ``spec`` (its bands and the roles its extra
    channels are computed from) and ``also`` need: all bands for an unknown extra."""
    needed = set(spec.bands) | set(also)
    for extra in spec.extra:
        needed |= set(_EXTRA_ROLES.get(extra, ("*",)))
    names = [str(b) for b in scene["band"].values]
    roles = ([str(r) for r in scene["role"].values] if "role" in scene.coords
             else [""] * len(names))
    if "*" in needed:
        return list(range(len(names)))
    return [i for i, (n, r) in enumerate(zip(names, roles, strict=True))
            if n in needed or r in needed]


class _Sample:
    """Every ``step``-th row and column of the bands the domain-shift guard reads, taken
    from the blocks prediction reads anyway: the guard then needs no second pass over the
    file (on a lazily opened scene a strided selection reads every block whole). The same
    pixels as ``scene.isel(y=::step, x=::step)``."""

    #: Roles the guard reads besides the model's (NDSI and the green reflectance).
    ROLES = ("green", "swir1")

    def __init__(self, step: int):
        self.step = int(step)
        self.parts: dict[int, np.ndarray] = {}

    def take(self, b: int, rows: slice, values: np.ndarray) -> None:
        """Keep the sampled rows and columns of block ``b`` (``values``: ``(band, r, W)``)."""
        first = -(-rows.start // self.step) * self.step  # the first sampled row of the block
        if first < rows.stop:
            self.parts[b] = values[:, first - rows.start:: self.step, :: self.step].copy()

    def scene(self, block_scene: xr.DataArray) -> xr.DataArray:
        """The sampled scene, with the coordinates of ``block_scene``'s strided selection."""
        sub = block_scene.isel(y=slice(None, None, self.step), x=slice(None, None, self.step))
        data = np.concatenate([self.parts[b] for b in sorted(self.parts)], axis=1)
        return sub.copy(data=data)


class _Rows:
    """Normalized features (channel last) and the nodata mask of a scene, by blocks of rows.

    Blocks of ``block`` rows are computed once each (aligned to the dask chunks of a
    lazily opened scene), by a background thread ahead of need when ``prefetch`` (reading
    and feature computation then overlap the forward passes). Features are dropped with
    :meth:`forget` once copied into the last strip that needs them; the (small) nodata
    masks with :meth:`forget_nodata` once their rows are written.
    """

    def __init__(self, scene: xr.DataArray, spec: InputSpec, block: int, prefetch: bool = True,
                 sample: _Sample | None = None, dtype="float32"):
        self.scene = scene
        self.dtype = dtype
        self.sample = sample
        self.spec = spec
        self.block = block
        self.height = scene.sizes["y"]
        self.n_blocks = max(1, math.ceil(self.height / block))
        self.cache: dict[int, Future] = {}
        self.masks: dict[int, np.ndarray] = {}
        self.n_bands = len(spec.bands)
        # Only the bands the features (and the guard's sample) need are read.
        self.bands = _band_indices(scene, spec, _Sample.ROLES if sample is not None else ())
        self.source = scene.isel(band=self.bands)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="glacierkit-read") \
            if prefetch else None

    def _load(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``b``: features ``(r, W, C)`` and nodata ``(r, W)``."""
        rows = slice(b * self.block, min((b + 1) * self.block, self.height))
        try:
            # one read of the bands in use, in this thread: the network keeps the other core
            block = self.source.isel(y=rows).compute(scheduler="synchronous")
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            source = self.scene.attrs.get("source") or self.scene.attrs.get("scene_id")
            raise CorruptFileError(
                f"Cannot read rows {rows.start}-{rows.stop} of {source} "
                f"({' '.join(str(exc).split())}). The file is corrupt or truncated: "
                "download or export it again."
            ) from exc
        raw = feature_stack(block, self.spec).values  # (C, r, W)
        nodata = np.isnan(raw[: self.n_bands]).any(axis=0)
        if self.sample is not None:
            self.sample.take(b, rows, np.asarray(block.values))
        return _normalize_last(raw, self.spec, self.dtype), nodata

    def _submit(self, b: int) -> Future:
        if b not in self.cache:
            if self.pool is None:
                fut: Future = Future()
                fut.set_result(self._load(b))
            else:
                fut = self.pool.submit(self._load, b)
            self.cache[b] = fut
        return self.cache[b]

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        feats, nodata = self._submit(b).result()
        self.masks.setdefault(b, nodata)
        return feats, nodata

    def forget(self, row: int) -> None:
        """Drop the features of the blocks that end before ``row``."""
        for b in [k for k in self.cache if (k + 1) * self.block <= row]:
            self.masks.setdefault(b, self.cache[b].result()[1])
            del self.cache[b]

    def forget_nodata(self, row: int) -> None:
        """Drop the nodata masks of the blocks that end before ``row``."""
        for b in [k for k in self.masks if (k + 1) * self.block <= row]:
            del self.masks[b]

    def prefetch(self, lo: int, hi: int) -> None:
        """Start loading the blocks of rows ``[lo, hi)`` (clipped to the scene)."""
        hi = min(hi, self.height)
        for b in range(max(0, lo) // self.block, (hi - 1) // self.block + 1 if hi > 0 else 0):
            self._submit(b)

    def fill(self, out: np.ndarray, rows: np.ndarray) -> None:
        """``out[i] = features of scene row rows[i]`` (``out``: ``(len(rows), W, C)``),
        copying runs of consecutive rows as slices."""
        i, n = 0, len(rows)
        while i < n:
            b = int(rows[i]) // self.block
            feats, _ = self._block(b)
            r = int(rows[i]) - b * self.block
            j = i + 1
            d = int(rows[j] - rows[i]) if j < n else 1
            if d not in (1, -1):
                d = 1
            while j < n and int(rows[j]) - int(rows[j - 1]) == d and \
                    int(rows[j]) // self.block == b:
                j += 1
            stop = r + d * (j - i)
            out[i:j] = feats[r: (stop if stop >= 0 else None): d]
            i = j

    def nodata(self, lo: int, hi: int) -> np.ndarray:
        """The nodata mask of rows ``[lo, hi)``."""
        parts = []
        for b in range(lo // self.block, (hi - 1) // self.block + 1):
            nod = self.masks[b] if b in self.masks else self._block(b)[1]
            parts.append(nod[max(lo - b * self.block, 0): hi - b * self.block])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _input_dtype(pred: _Predictor):
    """The dtype the windows are assembled in: bfloat16 when the model computes in
    bfloat16 and so rounds its float32 inputs to bfloat16 in its first layers anyway (checked
    once on a random window: the outputs must be identical), which halves the memory of the
    strips and row blocks; float32 otherwise."""
    if pred.precision != "bfloat16":
        return np.dtype("float32")
    if pred.bf16_inputs is None:
        import ml_dtypes

        m = 4 * pred.multiple if pred.fixed is None else pred.fixed
        x = np.random.default_rng(0).normal(size=(1, m, m, pred.spec.n_channels))
        x = x.astype("float32")
        rounded = x.astype(ml_dtypes.bfloat16)
        same = np.array_equal(np.asarray(pred.model.predict_on_batch(x)),
                              np.asarray(pred.model.predict_on_batch(rounded)))
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
def _predict_rows(pred: _Predictor, scene: xr.DataArray, plan: _Plan, *, tta: bool,
                  block_rows: int, progress: bool, sample: _Sample | None = None):
    """Yield ``(row0, probability rows, confidence rows or None)`` top to bottom."""
    from tqdm.auto import tqdm

    height, width = scene.sizes["y"], scene.sizes["x"]
    ay, ax = plan.ay, plan.ax
    wy, wx = ay.window, ax.window
    taper2 = np.outer(ay.taper(), ax.taper())
    weighted = np.empty_like(taper2)
    norm_y, norm_x = ay.norm(), ax.norm()
    cols = _fold(np.arange(ax.start, ax.start + ax.padded), width)
    inside = slice(ax.margin, ax.margin + width)  # the strip's columns that are the scene's
    dtype = _input_dtype(pred)
    rows_src = _Rows(scene, pred.spec, block_rows, sample=sample, dtype=dtype)
    strip = np.empty((wy, ax.padded, pred.spec.n_channels), dtype=dtype)
    acc = np.zeros((wy, ax.padded), dtype="float32")
    acc_c = np.zeros_like(acc) if tta else None
    batches = _split(ax.count, plan.batch_size)
    bar = tqdm(total=ay.count * ax.count * (8 if tta else 1), unit="window",
               desc="predict", disable=not progress, leave=False)
    try:
        for j in range(ay.count):
            top = ay.start + j * ay.step  # scene row of the strip's first row
            rows = _fold(np.arange(top, top + wy), height)
            rows_src.fill(strip[:, inside], rows)
            # reflected columns beyond the scene's edges, from the strip's own middle
            strip[:, : ax.margin] = strip[:, ax.margin + cols[: ax.margin]]
            strip[:, ax.margin + width:] = strip[:, ax.margin + cols[ax.margin + width:]]
            if j + 1 < ay.count:  # read the next strip's rows while the network works
                following = _fold(np.arange(top + ay.step, top + ay.step + wy), height)
                rows_src.forget(int(following.min()))
                rows_src.prefetch(int(following.min()), int(following.max()) + 1)
            else:
                rows_src.forget(height)
            for a, b in batches:
                if b - a == 1:
                    x = strip[None, :, a * ax.step: a * ax.step + wx]
                else:
                    x = np.stack([strip[:, k * ax.step: k * ax.step + wx] for k in range(a, b)])
                p, agree = _forward(pred, x, tta)
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
        Largest window size in pixels, a multiple of the model's pooling factor. Default:
        as large as the activation memory allows (:data:`WINDOW_MEMORY`; for the ``cpu``
        preset 1792 px in bfloat16, 1168 px in float32), at least 256 and the training patch
        size. Windows are
        shrunk to cover the scene with the fewest pixels (small scenes get one window).
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
    guard
        Run the domain-shift guard (:mod:`glacierkit.guard`): compare the scene's inputs
        with the model's training distribution and check the map's physical sense; warn
        (:class:`glacierkit.guard.DomainShiftWarning`) above the documented limits. The
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
        see :mod:`glacierkit.precision`).

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
    pred = _resolve_model(model, precision)
    da = _open(scene, block_rows)
    _check_roles(da, pred)
    height, width = da.sizes["y"], da.sizes["x"]
    plan = _plan(pred, height, width, window=window, overlap=overlap, context=context,
                 batch_size=batch_size)
    block = _block_rows(da, block_rows)
    prob = np.empty((height, width), dtype="float32")
    conf = np.empty((height, width), dtype="float32") if tta else None
    sample = None
    if guard:
        from .guard import _step as guard_step

        sample = _Sample(guard_step(da.shape))
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
    _release_memory()
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
        sampled = sample.scene(da.isel(band=_band_indices(da, pred.spec, _Sample.ROLES)))
        report = guard_report(prob[::step, ::step], sampled, pred.spec, pred.sidecar, threshold)
        warn(report, str(da.attrs.get("scene_id", "the scene")))
        extra["guard"] = report
    return probability_array(prob, conf if tta else None, da, pred, plan.window, plan.step,
                             plan.overlap, tta, **plan.attrs(), precision=pred.precision,
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


def _release_memory() -> None:
    """Give the freed row blocks and strips back to the operating system (glibc keeps freed
    heap memory otherwise, and a following write would count it twice; the same as dask's
    ``trim_memory``). Best effort: nothing happens where ``malloc_trim`` does not exist."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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
def _by_rows(values: np.ndarray, encode, rows: int = 1024) -> np.ndarray:
    """uint8 ``encode(block)`` of ``values`` by blocks of rows, so the temporaries stay
    small on full scenes."""
    out = np.empty(values.shape, dtype="uint8")
    for r in range(0, values.shape[0], rows):
        out[r: r + rows] = encode(values[r: r + rows])
    return out


def _encode_unit(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 ``round(v * 250)``; NaN -> 255."""
    def encode(v):
        enc = np.rint(np.clip(np.nan_to_num(v, nan=0.0), 0, 1) * PROBABILITY_SCALE)
        enc[~np.isfinite(v)] = NODATA_UINT8
        return enc
    return _by_rows(values, encode)


def _encode_mask(values: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``p > threshold``, 0 elsewhere, 255 where NaN."""
    def encode(v):
        block = (v > threshold).astype("uint8")
        block[np.isnan(v)] = NODATA_UINT8
        return block
    return _by_rows(values, encode)


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
                                       "overlap", "context", "tta", "precision")
            if k in prob.attrs}
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
