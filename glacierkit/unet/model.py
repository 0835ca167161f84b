"""The paper's Deep U-Net as a pure Keras builder, plus named presets.

Architecture (the paper's, kept exactly):

- **encoder**, one group per level: two 3×3 convolutions (stride 1, ``same`` padding), each
  followed by ReLU and then batch normalization; a 2×2 max-pool ends the group. The channel
  count doubles from level to level, starting at ``base_filters``;
- **bottom**: the same two convolutions at ``base_filters * 2**depth`` channels;
- **decoder**, one group per pooling step: a 2×2 transposed convolution with stride 2 (to
  the level's channel count, no activation), concatenation with the encoder's output of the
  same level (the skip), then two 3×3 convolutions (ReLU then BN) at that channel count,
  i.e. half the channels of the concatenation;
- **output**: a 1×1 convolution with a sigmoid: the glacier probability.

``depth`` counts the pooling steps, which is also the number of decoder groups. The paper
uses 5 with ``base_filters=64``: a 128×128 tile reaches 4×4 at the bottom, and the network
has 124.4 M parameters (see :func:`count_params`). Inputs of any size divisible by
``2**depth`` work (the spatial dimensions are ``None``).

Examples
--------
>>> model = build_unet(3, depth=2, base_filters=4)   # doctest: +SKIP
>>> model.output_shape                                # doctest: +SKIP
(None, None, None, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import ParameterError

__all__ = ["Preset", "PRESETS", "build_unet", "build_from_preset", "count_params", "check_input_size", "ensemble",
           "bound_correction"]


@dataclass(frozen=True)
class Preset:
    """A named architecture: bands by role, ``depth`` (pooling steps) and ``base_filters``."""

    name: str
    bands: tuple[str, ...]
    depth: int
    base_filters: int
    description: str = ""


#: ``paper``: the paper's network (6-5-2 bands, 5 pooling steps, 64 filters at the top,
#: 124 M parameters); for a GPU. ``cpu``: the same design, narrower and one level shallower
#: (1.9 M parameters), which trains in minutes on 2 CPU cores.
PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", ("swir1", "nir", "blue"), depth=5, base_filters=64,
                    description="The paper's Deep U-Net: 5 pooling steps, 64 base filters "
                                "(124 M parameters). Use a GPU."),
    "cpu": Preset("cpu", ("swir1", "nir", "blue"), depth=4, base_filters=16,
                  description="The same design, 4 pooling steps and 16 base filters "
                              "(1.9 M parameters): trains in minutes on 2 CPU cores."),
}


def _check(in_channels: int, depth: int, base_filters: int) -> None:
    for name, value, low in (("in_channels", in_channels, 1), ("depth", depth, 1),
                             ("base_filters", base_filters, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ParameterError(f"{name} must be an integer >= {low}; got {value!r}.")


def check_input_size(size: int | Sequence[int], depth: int) -> None:
    """Raise :class:`ParameterError` unless every size is divisible by ``2**depth``."""
    sizes = [size] if isinstance(size, int) else list(size)
    step = 2 ** depth
    bad = [s for s in sizes if s is not None and (s <= 0 or s % step)]
    if bad:
        raise ParameterError(
            f"Input size {bad[0]} does not suit a U-Net with {depth} pooling steps: sizes must "
            f"be positive multiples of 2**depth = {step} (e.g. {max(step, bad[0] // step * step)}"
            f" or {(bad[0] // step + 1) * step}). Pad or crop the input."
        )


def count_params(in_channels: int, depth: int = 5, base_filters: int = 64) -> int:
    """The number of parameters of :func:`build_unet` computed by formula (no TensorFlow).

    Each 3×3 conv from ``a`` to ``b`` channels has ``9ab + b`` weights, each batch
    normalization ``4b`` (two of them trainable), each 2×2 transposed conv ``4ab + b`` and
    the output ``c0 + 1``.

    >>> count_params(3, depth=5, base_filters=64)
    124410305
    """
    _check(in_channels, depth, base_filters)

    def conv_bn(a: int, b: int) -> int:
        return 9 * a * b + b + 4 * b

    total, prev = 0, in_channels
    for level in range(depth + 1):  # encoder levels and the bottom
        c = base_filters * 2 ** level
        total += conv_bn(prev, c) + conv_bn(c, c)
        prev = c
    for level in reversed(range(depth)):
        c = base_filters * 2 ** level
        total += 4 * prev * c + c  # transposed conv
        total += conv_bn(2 * c, c) + conv_bn(c, c)
        prev = c
    return total + prev + 1


def build_unet(in_channels: int, depth: int = 5, base_filters: int = 64, *,
               mixed_precision: bool = False, name: str = "unet", prior: dict | None = None,
               residual_l2: float = 0.0, dropout: float = 0.0):
    """Build the paper's U-Net (see the module docstring for the exact design).

    Parameters
    ----------
    in_channels
        Number of input channels; derive it from the band list (``InputSpec.n_channels``).
    depth
        Pooling steps = decoder groups (paper: 5).
    base_filters
        Channels of the first level; doubled at every level (paper: 64).
    mixed_precision
        Compute in float16 (for GPUs). The output layer stays float32 either way, so
        predictions are float32 probabilities.
    name
        The Keras model name.
    prior
        ``None`` (the paper's network) or the arguments of
        :class:`glacierkit.unet.IndexPrior` (``channel``, ``mean``, ``std``,
        ``threshold``, ``slope``): the output becomes ``sigmoid(prior + network logit)``
        and the network's last convolution starts at zero, so the untrained model *is*
        the index threshold and training learns corrections to it.
    residual_l2
        With a prior: L2 penalty on the network's logit (per pixel), which keeps it near
        the prior where the data do not ask otherwise.
    dropout
        Spatial dropout rate before the output convolution (0: none).

    Returns
    -------
    keras.Model
        Input ``(None, None, None, in_channels)``, output ``(None, None, None, 1)`` in 0..1.
    """
    import keras
    from keras import layers

    _check(in_channels, depth, base_filters)
    dtype = "mixed_float16" if mixed_precision else None

    def conv_block(x, filters: int, prefix: str):
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, strides=1, padding="same", activation="relu",
                              dtype=dtype, name=f"{prefix}_conv{i}")(x)
            x = layers.BatchNormalization(dtype=dtype, name=f"{prefix}_bn{i}")(x)
        return x

    inputs = keras.Input(shape=(None, None, in_channels), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = conv_block(x, base_filters * 2 ** level, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, dtype=dtype, name=f"enc{level}_pool")(x)
    x = conv_block(x, base_filters * 2 ** depth, "bottom")
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", dtype=dtype,
                                   name=f"dec{level}_up")(x)
        x = layers.Concatenate(dtype=dtype, name=f"dec{level}_concat")([x, skips[level]])
        x = conv_block(x, filters, f"dec{level}")
    if dropout:
        x = layers.SpatialDropout2D(float(dropout), name="dropout")(x)
    if prior is None:
        outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="glacier")(x)
        return keras.Model(inputs, outputs, name=name)
    from .layers import IndexPrior

    reg = keras.regularizers.L2(float(residual_l2)) if residual_l2 else None
    logit = layers.Conv2D(1, 1, dtype="float32", kernel_initializer="zeros",
                          activity_regularizer=reg, name="correction")(x)
    base = IndexPrior(**prior, dtype="float32", name="prior")(inputs)
    total = layers.Add(dtype="float32", name="logit")([base, logit])
    outputs = layers.Activation("sigmoid", dtype="float32", name="glacier")(total)
    return keras.Model(inputs, outputs, name=name)


def build_from_preset(preset: str, in_channels: int | None = None, **overrides):
    """Build a preset's network; ``in_channels`` defaults to the preset's band count."""
    if preset not in PRESETS:
        raise ParameterError(f"Unknown preset {preset!r}. Valid presets: {sorted(PRESETS)}.")
    p = PRESETS[preset]
    kwargs = {"depth": p.depth, "base_filters": p.base_filters, **overrides}
    return build_unet(in_channels or len(p.bands), name=f"unet_{preset}", **kwargs)


def ensemble(models, name: str = "unet_ensemble"):
    """One Keras model that averages the glacier probability of several trained models.

    The members must take the same inputs (the same channels and normalization, as models
    trained with one recipe and different seeds do). Averaging a few seeds removes much
    of the seed-to-seed variation of a network trained on little data, which matters most
    on regions none of them has seen. The result saves and loads as one ``.keras`` file.
    """
    import keras

    models = list(models)
    if len(models) < 2:
        raise ParameterError(f"An ensemble needs at least two models; got {len(models)}.")
    shapes = {tuple(m.input_shape) for m in models}
    if len(shapes) != 1:
        raise ParameterError(f"The members take different inputs: {sorted(shapes)}.")
    inputs = keras.Input(shape=models[0].input_shape[1:], name="image")
    outs = []
    for i, m in enumerate(models):
        m.name = f"member{i}"
        outs.append(m(inputs))
    return keras.Model(inputs, keras.layers.Average(dtype="float32", name="glacier")(outs),
                       name=name)


def bound_correction(model, max_addition: float):
    """``model`` with its correction logit bounded towards glacier (its weights shared).

    A model with an NDSI prior (:func:`build_unet` with ``prior=``) outputs
    ``sigmoid(prior + correction)``; this inserts :class:`glacierkit.unet.BoundedCorrection`
    after the correction, so that the network may remove glacier from the prior freely but
    add at most ``max_addition`` logits: nothing whose index lies below
    ``threshold - max_addition / slope`` becomes glacier, whatever the network makes of
    inputs it never saw. An ensemble gets every member bounded. Idempotent: a bounded model
    gets the new bound instead of a second one. ``max_addition=0`` returns ``model``.
    """
    import keras

    from .layers import BoundedCorrection

    if not max_addition:
        return model
    members = [la for la in model.layers if hasattr(la, "layers") and la.layers]
    if len(members) > 1:
        return ensemble([bound_correction(m, max_addition) for m in members],
                        name=model.name)
    names = {la.name for la in model.layers}
    if not {"correction", "prior"} <= names:
        raise ParameterError(
            f"{model.name} has no NDSI prior (no 'correction' and 'prior' layers): only a "
            "model trained with prior='ndsi' has a correction to bound. Use "
            "max_addition=0 for it."
        )
    correction = model.get_layer("correction").output
    prior = model.get_layer("prior").output
    bounded = BoundedCorrection(float(max_addition), dtype="float32", name="bounded")(
        correction)
    total = keras.layers.Add(dtype="float32", name="logit")([prior, bounded])
    out = keras.layers.Activation("sigmoid", dtype="float32", name="glacier")(total)
    return keras.Model(model.inputs, out, name=model.name)
