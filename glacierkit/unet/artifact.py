"""The saved model: the ``.keras`` file, its ``.json`` sidecar, ensembles and casts.

A trained model is two files side by side: ``<name>.keras`` and ``<name>.json``. The
sidecar holds the input contract (:class:`~glacierkit.unet.InputSpec`: bands by role, extra
channels, normalization statistics), the training config, the scores, and the
distribution of the training inputs (:func:`training_distribution`, the reference of the
domain-shift guard). :func:`save_model` / :func:`load_model` / :func:`read_sidecar` write
and read them; :func:`resolve_model_path` finds a model by name.

For prediction, :func:`resolve_model` turns a path or a ``(model, sidecar)`` pair into a
:class:`Predictor`: the model cast to the compute precision (:func:`cast_model`), its
pooling factor, receptive-field radius and output kind; its forward pass is a
:class:`~glacierkit.unet.forward.CompiledForward` (one graph for any window shape). An
ensemble (:func:`glacierkit.unet.ensemble`) runs one member at a time, so it needs the
activation memory of one member.
"""

from __future__ import annotations

import dataclasses
import math
import os
import weakref
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util import read_json
from ..exceptions import (
    CorruptFileError,
    DataNotFoundError,
    GlacierKitError,
    ParameterError,
)
from .features import InputSpec
from .forward import CompiledForward
from .tiles import Patches
from .windows import CONTEXT_FRACTION

__all__ = ["sidecar_path", "save_model", "save_keras", "load_model", "read_sidecar", "resolve_model_path", "PRETRAINED", "SIDECAR_FORMAT", "cast_model"]

SIDECAR_FORMAT = "glacierkit-model/1"


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.keras`` -> ``model.json``."""
    return Path(model_path).with_suffix(".json")


def save_model(model, path: str | os.PathLike, spec: InputSpec, **info) -> Path:
    """Save a Keras model and its JSON sidecar atomically (``.keras`` + ``.json``).

    ``info`` goes into the sidecar as is (config, training scenes, metrics ...); it must be
    JSON-serializable.
    """
    from .._util import to_json, write_json

    path = Path(path)
    if path.suffix != ".keras":
        raise ParameterError(f"Model files end in .keras; got {path}.")
    sidecar = {"format": SIDECAR_FORMAT, "inputs": spec.to_dict(), **info}
    to_json(sidecar)  # fails before anything is written
    save_keras(model, path)
    write_json(sidecar_path(path), sidecar)
    return path


def save_keras(model, path: str | os.PathLike) -> Path:
    """``model.save`` atomically (Keras insists on the .keras suffix of its target)."""
    from .._util import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        keras_tmp = tmp.with_suffix(".keras")
        try:
            model.save(keras_tmp)
            os.replace(keras_tmp, tmp)
        finally:
            if keras_tmp.exists():
                keras_tmp.unlink()
    return path


#: The committed pretrained sample model (see models/README.md).
PRETRAINED = "models/unet_alps_s2.keras"


def resolve_model_path(path: str | os.PathLike = PRETRAINED) -> Path:
    """Find a model file: as given (relative to the working directory), else relative to
    the glacierkit checkout (so ``models/unet_alps_s2.keras`` works from any folder)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p.resolve()
    from .._util import CHECKOUT as root

    for candidate in (root / p, root / "models" / p.name):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"Model not found: {path} (also looked in {root} and {root / 'models'}). Give the path "
        f"of a .keras file with its .json sidecar, e.g. {PRETRAINED}, or train one with "
        "notebook 04."
    )


def read_sidecar(path: str | os.PathLike) -> dict:
    """The sidecar of the model ``path`` (``.keras``; its ``.json`` beside it), checked, with
    ``sidecar["inputs"]`` as an :class:`~glacierkit.unet.InputSpec`. Reads no weights."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"Model not found: {path}. The sample's pretrained model is models/*.keras; train "
            "one with notebook 04."
        )
    side = sidecar_path(path)
    if not side.is_file():
        raise DataNotFoundError(
            f"The model {path} has no sidecar {side}. glacierkit needs it to know the input "
            "bands and normalization; save models with glacierkit.unet.save_model."
        )
    try:
        sidecar = read_json(side)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(
            f"The model's sidecar {side} is not readable JSON ({exc}). It is damaged: copy it "
            "again from where the model came from (it must be saved with the .keras file)."
        ) from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        found = sidecar.get("format") if isinstance(sidecar, dict) else type(sidecar).__name__
        raise GlacierKitError(
            f"{side} has format {found!r}; expected {SIDECAR_FORMAT!r}. Save models with "
            "glacierkit.unet.save_model."
        )
    try:
        sidecar["inputs"] = InputSpec.from_dict(sidecar["inputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(
            f"The 'inputs' block of {side} is missing or damaged ({type(exc).__name__}: {exc}); "
            "it names the bands and normalization the model needs. Copy the sidecar again."
        ) from None
    return sidecar


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load ``(keras_model, sidecar_dict)``; ``sidecar["inputs"]`` becomes an InputSpec."""
    path = Path(path)
    sidecar = read_sidecar(path)
    if not zipfile.is_zipfile(path):
        raise CorruptFileError(
            f"{path} is not a .keras model file (a .keras file is a zip archive; this one is "
            "damaged, truncated or something else). Download or copy it again, or re-save the "
            "model with glacierkit.unet.save_model."
        )
    import keras  # after the checks above, so their errors come before TensorFlow loads

    from ..unet import layers  # noqa: F401  (registers glacierkit's layers for deserialization)

    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as exc:
        raise CorruptFileError(
            f"Cannot load the Keras model {path} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}). The file is damaged or was saved by an "
            "incompatible Keras version: copy it again or re-save it."
        ) from exc
    return model, sidecar


# One cast copy per (model, precision), dropped with the model.
_CASTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _output_layers(model) -> set[str]:
    names = set()
    for t in getattr(model, "outputs", None) or []:
        history = getattr(t, "_keras_history", None)
        if history is not None:
            names.add(history[0].name)
    if not names and getattr(model, "layers", None):
        names.add(model.layers[-1].name)
    return names


def cast_model(model, precision: str):
    """``model`` computing in ``precision`` (``"float32"``: the model itself).

    For ``"bfloat16"``: a clone (same weights, cached per model) whose layers use the
    ``mixed_bfloat16`` policy, except the output layers (float32), so outputs are float32.
    Layers of a model saved in another policy are recast the same way.
    """
    import keras

    if precision == "float32" and all(
            getattr(getattr(layer, "dtype_policy", None), "name", "float32") == "float32"
            for layer in getattr(model, "layers", [])):
        return model
    if precision not in ("float32", "bfloat16"):
        raise ParameterError(f"precision={precision!r}; use 'float32' or 'bfloat16'.")
    try:
        cached = _CASTS.get(model, {})
    except TypeError:  # not weak-referenceable
        cached = {}
    if precision in cached:
        return cached[precision]
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    outputs = _output_layers(model)

    def clone(layer):
        config = layer.get_config()
        if layer.name not in outputs and "dtype" in config:
            config["dtype"] = policy
        elif layer.name in outputs:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        cast = keras.models.clone_model(model, clone_function=clone)
        cast.set_weights(model.get_weights())
    except Exception as exc:  # subclassed or exotic models cannot be cloned layer by layer
        raise GlacierKitError(
            f"Cannot run this model in {precision}: cloning it with the {policy} policy "
            f"failed ({type(exc).__name__}: {exc}). Use precision='float32'."
        ) from exc
    try:
        _CASTS.setdefault(model, {})[precision] = cast
    except TypeError:
        pass
    return cast


#: Quantiles of each input channel saved in the sidecar (the domain-shift guard's reference).
DISTRIBUTION_QUANTILES = (0.005, 0.05, 0.25, 0.5, 0.75, 0.95, 0.995)


def training_distribution(patches: Patches, photometric: float = 0.0, seed: int = 0,
                          max_pixels: int = 2_000_000) -> dict:
    """Per-channel quantiles of the (unnormalized) inputs the model was trained on, and the
    share of training pixels with a negative reflectance, for the sidecar (the reference of
    the domain-shift guard, :mod:`glacierkit.unet.guard`).

    With photometric augmentation the statistics are those of augmented tiles (each tile
    once, with a seeded random augmentation), since that is what the network saw.
    """
    spec = patches.spec
    ok = patches.w > 0
    mean, std = np.asarray(spec.mean, "float32"), np.asarray(spec.std, "float32")
    if photometric > 0 and patches.raw is not None:
        import tensorflow as tf

        from .augment import photometric_augment, tf_features

        feats, negative, masks = [], [], []
        for i in range(patches.n_train):
            raw = photometric_augment(tf.constant(np.nan_to_num(patches.raw[i])), patches.roles,
                                      float(photometric), tf.constant([seed, i], tf.int64))
            x = tf_features(raw, patches.roles, spec, tf.constant(patches.medians[i]))
            feats.append(x.numpy())
            negative.append((raw.numpy() < 0).any(axis=-1))
            masks.append(ok[i])
        m = np.stack(masks)
        x, neg = np.stack(feats)[m], np.stack(negative)[m]
    else:
        x = patches.x[ok]
        neg = ((patches.raw[ok] < 0).any(axis=-1) if patches.raw is not None
               else np.zeros(len(x), bool))
    step = max(1, int(len(x) // max_pixels))
    x = x[::step]
    raw = x * std + mean
    q = np.quantile(raw, DISTRIBUTION_QUANTILES, axis=0)  # (quantiles, channels)
    return {"channels": list(spec.channels), "quantiles": list(DISTRIBUTION_QUANTILES),
            "values": {ch: [round(float(v), 5) for v in q[:, i]]
                       for i, ch in enumerate(spec.channels)},
            "negative_reflectance": round(float(np.mean(neg)), 5),
            "augmented": bool(photometric > 0), "pixels": int(x.shape[0])}


def tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


# --------------------------------------------------------------------------- model
@dataclass
class Predictor:
    model: object  # what runs: ``source`` compiled in ``precision`` (a CompiledForward)
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

    def with_precision(self, precision: str | None) -> Predictor:
        """This predictor computing in ``precision`` (None: unchanged)."""
        if precision is None:
            return self
        from ..unet import precision as gk_precision

        value = gk_precision.resolve(precision, "predict")
        if value == self.precision:
            return self
        source = self.source if self.source is not None else self.model
        return dataclasses.replace(self, model=_runner(source, value),
                                   precision=value, source=source, bf16_inputs=None)


def _runner(model, precision: str) -> CompiledForward:
    """What runs the forward pass: ``model`` compiled in ``precision``; an ensemble's
    members one at a time, through one graph per architecture (:class:`CompiledForward`)."""
    return CompiledForward(_ensemble_members(model) or [model], precision)


def _walk_layers(layer) -> Iterator:
    for sub in getattr(layer, "layers", []) or []:
        yield sub
        yield from _walk_layers(sub)


def _members(model) -> list:
    """The parallel sub-models of an ensemble (:func:`glacierkit.unet.ensemble`), or []."""
    subs = [la for la in getattr(model, "layers", []) or [] if hasattr(la, "layers")
            and getattr(la, "layers", None)]
    return subs if len(subs) > 1 else []


def _ensemble_members(model) -> list:
    """The members of an ensemble that averages them (:func:`glacierkit.unet.ensemble`:
    an input, the sub-models, one ``Average``), or []."""
    members = _members(model)
    rest = [la for la in getattr(model, "layers", []) or []
            if la not in members and type(la).__name__ != "InputLayer"]
    if members and len(rest) == 1 and type(rest[0]).__name__ == "Average":
        return members
    return []


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


def resolve_model(model, precision: str | None = None) -> Predictor:
    """A model path (``.keras`` with its ``.json`` sidecar), or ``(keras_model, sidecar)``.

    The sidecar may be the dict from :func:`glacierkit.unet.load_model` or an
    :class:`~glacierkit.unet.InputSpec`. ``precision`` (``"auto"``, ``"float32"``,
    ``"bfloat16"``; None: ``"auto"``, or a given predictor's own) is applied with
    :func:`glacierkit.unet.cast_model`.
    """
    if isinstance(model, Predictor):
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
                        "glacierkit.unet.load_model, or (keras_model, InputSpec)."
                    )
                sidecar["inputs"] = InputSpec.from_dict(sidecar["inputs"])
        else:
            raise GlacierKitError(
                f"The second item of the model pair is a {type(sidecar).__name__}; give the "
                "sidecar dict from glacierkit.unet.load_model or an InputSpec."
            )
    elif hasattr(model, "predict_on_batch"):
        raise GlacierKitError(
            "A bare Keras model does not say which bands it takes or how to normalize them. "
            "Pass (model, sidecar) from glacierkit.unet.load_model, (model, InputSpec), "
            "or the path of a .keras file saved with glacierkit.unet.save_model."
        )
    else:
        raise GlacierKitError(
            f"Cannot use {type(model).__name__} as a model. Give the path of a .keras file "
            "(with its .json sidecar beside it) or the (keras_model, sidecar) pair from "
            "glacierkit.unet.load_model."
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
            "this model: save them together with glacierkit.unet.save_model."
        )
    fixed = shape[1] if len(shape) == 4 and shape[1] is not None else None
    radius, first = _reach(keras_model)
    from ..unet import precision as gk_precision

    value = gk_precision.resolve("auto" if precision is None else precision, "predict")
    return Predictor(_runner(keras_model, value), spec, sidecar, _pool_factor(keras_model),
                     fixed, _output_kind(keras_model, sidecar), radius=radius,
                     first_filters=first, precision=value, source=keras_model)
