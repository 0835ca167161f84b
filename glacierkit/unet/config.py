"""Training settings: :class:`TrainConfig`, a frozen dataclass that validates itself.

Every setting of a training run lives here (bands, architecture preset, tiles and the
blocked split, optimizer, augmentation, the NDSI prior ...), derived values are properties
(``channels``, ``model_depth``, ``lr``), and the config is stored in the model's sidecar so
that a run can be reproduced or continued. Two constructors serve the notebooks and the
fine-tuning code: :meth:`TrainConfig.from_pretrained` (a saved model's recipe and inputs,
with changes) and :meth:`TrainConfig.from_parameters` (a notebook's parameters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..bands import PAPER_BANDS
from ..exceptions import ParameterError
from .features import EXTRA_CHANNELS, NORMALIZATIONS, InputSpec
from .model import PRESETS, check_input_size
from .tiles import SIDES, SPLITS

__all__ = ["TrainConfig", "OPTIMIZERS", "LOSSES", "STRATEGIES", "DEFAULT_LEARNING_RATES", "MODEL_NAME"]

OPTIMIZERS = ("adam", "adadelta")
LOSSES = ("bce", "dice", "focal")
STRATEGIES = ("auto", "none", "mirrored", "multiworker")
#: ``auto``: float16 mixed precision on a GPU, else :func:`glacierkit.unet.resolve`.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
SCHEDULES = ("constant", "cosine")
#: Used when ``learning_rate`` is not given: Adadelta 1.0 as in the paper (Keras 2 default).
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "adadelta": 1.0}
MODEL_NAME = "unet"
#: A pixel is glacier when the predicted probability exceeds this.
THRESHOLD = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; validated on creation.

    Parameters
    ----------
    bands
        Input bands by role, in channel order (the paper: swir1, nir, blue).
    extra
        Extra index channels after the bands. Default ``("ndsi",)``: on the Alps validation
        blocks it raised kappa by 0.03-0.06 over the paper's three bands (two seeds); the
        paper proposed it as future work. ``()`` gives the paper's inputs.
    preset
        ``"cpu"`` (4 pooling steps, 16 base filters) or ``"paper"`` (5, 64).
    depth, base_filters
        Override the preset's pooling steps / first-level filters (None or 0: preset's).
    patch_size, stride
        Tile size (a multiple of ``2**depth``) and step, in pixels.
    max_nan_fraction, min_glacier_fraction
        Tile filters: no-data fraction above which a tile is dropped; the paper's balancing
        (drop tiles with less glacier than this).
    val_fraction, val_gap, val_side, split
        Validation: fraction of each scene, pixels between it and the training tiles, its
        side, and ``"blocked"`` (spatial, default) or ``"random"`` (the paper's; leaks).
    batch_size, epochs
        Batch size (paper: 8) and the total number of epochs.
    optimizer, learning_rate
        ``"adam"`` or ``"adadelta"`` (the paper's); None or 0: :data:`DEFAULT_LEARNING_RATES`.
    lr_schedule
        ``"constant"`` (the paper's) or ``"cosine"``: decay to 0 over ``epochs`` (the last
        epochs then change the weights little, so the best-epoch pick is less noisy).
    loss
        ``"bce"`` (binary cross-entropy, the paper's), ``"dice"`` or ``"focal"``.
    jitter
        Radiometric augmentation strength (0: flips/rotations only); see
        :func:`glacierkit.unet.training_dataset`.
    photometric
        Photometric augmentation strength in reflectance space (0: none; 1: global gain
        0.67-1.5, per-band gain +-10 %, haze/TOA-like offsets; see
        :func:`glacierkit.unet.photometric_augment`).
    lakes
        Share of training tiles that get a synthetic lake (label 0): water is NDSI's
        classical false alarm and the sample scenes hold almost none
        (:func:`glacierkit.unet.lake_augment`).
    shadows
        Share of training tiles that get a synthetic cast shadow, labels unchanged
        (:func:`glacierkit.unet.shadow_augment`): shadowed ice stays glacier.
    haze
        Share of training tiles that get a simulated atmosphere (top of atmosphere, or a
        scene over-corrected by dark-object subtraction), labels unchanged
        (:func:`glacierkit.unet.haze_augment`).
    max_addition
        With a prior: the saved model's correction logit may add at most this much towards
        glacier (0: unbounded; :func:`glacierkit.unet.bound_correction`). The network trains
        without the bound and is bounded when saved (measured better than training with
        it: ``models/README.md``). Removal (water, shadow, cloud, seasonal snow) stays free;
        with the prior's slope ``s`` and threshold ``t`` nothing with an index below
        ``t - max_addition / s`` can become glacier.
    resolutions
        Resolution augmentation: ``(smallest, largest)`` pixel size in metres at which tiles
        are seen, e.g. ``(10, 30)`` (empty: native resolution only).
    normalization
        ``"global"`` or ``"scene"`` (band channels divided by the scene's band medians; see
        :class:`glacierkit.unet.InputSpec`).
    prior
        ``""`` (the paper's network) or ``"ndsi"``: the network corrects the NDSI threshold
        rule (learned on the training tiles) instead of replacing it
        (:class:`glacierkit.unet.IndexPrior`); needs ``"ndsi"`` in ``extra``.
    prior_slope
        The prior's logit per NDSI unit.
    residual_l2
        L2 penalty on the network's correction logit (with a prior).
    dropout
        Spatial dropout before the output convolution.
    seed
        Seeds weights, tile order and augmentation.
    strategy
        ``"auto"`` (MirroredStrategy with more than one GPU), ``"none"``, ``"mirrored"``
        (all GPUs of this machine, or its CPU) or ``"multiworker"``
        (``MultiWorkerMirroredStrategy`` across machines: every worker runs the same
        ``fit`` with its own ``TF_CONFIG`` environment variable, e.g.
        ``{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type":
        "worker", "index": 0}}``; ``batch_size`` is the global batch). With
        ``"multiworker"`` create the config before any other TensorFlow work in the process.
    precision
        ``"auto"`` (float16 mixed precision on a GPU, float32 on CPUs; see
        :mod:`glacierkit.unet.precision`), ``"float32"``, ``"bfloat16"`` (mixed: bfloat16
        compute, float32 weights and output; fast on CPUs with ``avx512_bf16``/AMX and on
        recent GPUs, no loss scaling) or ``"float16"`` (mixed, with loss scaling; GPUs).
        The saved model is float32 either way for ``"bfloat16"``, so it predicts anywhere.
    """

    bands: tuple[str, ...] = PAPER_BANDS
    extra: tuple[str, ...] = ("ndsi",)
    preset: str = "cpu"
    depth: int | None = None
    base_filters: int | None = None
    patch_size: int = 128
    stride: int = 32
    max_nan_fraction: float = 0.1
    min_glacier_fraction: float = 0.0
    val_fraction: float = 0.2
    val_gap: int = 128
    val_side: str = "bottom"
    split: str = "blocked"
    batch_size: int = 8
    epochs: int = 40
    optimizer: str = "adam"
    learning_rate: float | None = None
    lr_schedule: str = "cosine"
    loss: str = "bce"
    jitter: float = 0.0
    photometric: float = 0.0
    lakes: float = 0.0
    shadows: float = 0.0
    haze: float = 0.0
    max_addition: float = 0.0
    resolutions: tuple[float, ...] = ()
    normalization: str = "global"
    prior: str = ""
    prior_slope: float = 20.0
    residual_l2: float = 0.0
    dropout: float = 0.0
    seed: int = 42
    strategy: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        def setf(name, value):
            object.__setattr__(self, name, value)

        for name in ("bands", "extra"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,) if value else ()
            setf(name, tuple(str(v) for v in value))
        res = self.resolutions
        if res is None or res == 0:
            res = ()
        try:
            res = tuple(float(v) for v in res)
        except (TypeError, ValueError):
            raise ParameterError(
                f"resolutions must be two pixel sizes in metres, e.g. [10, 30]; got {res!r}."
            ) from None
        if res and (len(res) != 2 or not 0 < res[0] <= res[1]):
            raise ParameterError(
                f"resolutions must be [smallest, largest] pixel sizes in metres, e.g. [10, 30]; "
                f"got {list(res)}."
            )
        setf("resolutions", res)
        if self.prior is None:
            setf("prior", "")
        if self.prior not in ("", "ndsi"):
            raise ParameterError(f"Unknown prior {self.prior!r}. Valid: '' (none), 'ndsi'.")
        if self.prior == "ndsi" and "ndsi" not in self.extra:
            raise ParameterError(
                "prior='ndsi' needs the NDSI as an input channel: add 'ndsi' to extra."
            )
        self._choice("normalization", NORMALIZATIONS)
        for name in ("depth", "base_filters"):
            if getattr(self, name) in (0, None):
                setf(name, None)
        if self.learning_rate in (0, None):
            setf("learning_rate", None)
        if not self.bands and not self.extra:
            raise ParameterError("bands is empty; give roles such as ['swir1', 'nir', 'blue'].")
        if len(set(self.channels)) != len(self.channels):
            raise ParameterError(f"Channels repeat: {self.channels}.")
        bad = [e for e in self.extra if e not in EXTRA_CHANNELS]
        if bad:
            raise ParameterError(f"Unknown extra channels {bad}. Valid: {sorted(EXTRA_CHANNELS)}.")
        self._choice("preset", sorted(PRESETS))
        self._choice("optimizer", OPTIMIZERS)
        self._choice("loss", LOSSES)
        self._choice("strategy", STRATEGIES)
        self._choice("precision", PRECISIONS)
        self._choice("lr_schedule", SCHEDULES)
        self._choice("split", SPLITS)
        self._choice("val_side", SIDES)
        for name, low in (("depth", 1), ("base_filters", 1), ("patch_size", 2), ("stride", 1),
                          ("batch_size", 1), ("epochs", 1), ("val_gap", 0), ("seed", 0)):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
                raise ParameterError(f"{name} must be an integer >= {low}; got {value!r}.")
            setf(name, int(value))
        for name, low, high in (("max_nan_fraction", 0.0, 1.0),
                                ("min_glacier_fraction", 0.0, 1.0),
                                ("val_fraction", 0.0, 0.5), ("jitter", 0.0, 1.0),
                                ("photometric", 0.0, 2.0), ("lakes", 0.0, 1.0), ("shadows", 0.0, 1.0),
                                ("haze", 0.0, 1.0), ("max_addition", 0.0, 100.0),
                                ("prior_slope", 0.1, 1000.0),
                                ("residual_l2", 0.0, 1.0), ("dropout", 0.0, 0.9)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not low <= value <= high:
                raise ParameterError(f"{name} must be a number in [{low}, {high}]; got {value!r}.")
            setf(name, float(value))
        if self.val_fraction == 0:
            raise ParameterError(
                "val_fraction is 0: training keeps the best epoch by validation accuracy, so it "
                "needs a validation set. Use e.g. 0.2."
            )
        if self.learning_rate is not None:
            if not isinstance(self.learning_rate, int | float) or self.learning_rate <= 0:
                raise ParameterError(f"learning_rate must be > 0; got {self.learning_rate!r}.")
            setf("learning_rate", float(self.learning_rate))
        check_input_size(self.patch_size, self.model_depth)

    def _choice(self, name: str, valid) -> None:
        value = getattr(self, name)
        if value not in valid:
            raise ParameterError(f"Unknown {name} {value!r}. Valid: {list(valid)}.")

    # derived values -------------------------------------------------------------------------
    @property
    def channels(self) -> tuple[str, ...]:
        return self.input_spec.channels

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def model_depth(self) -> int:
        return self.depth or PRESETS[self.preset].depth

    @property
    def model_filters(self) -> int:
        return self.base_filters or PRESETS[self.preset].base_filters

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.optimizer]

    @property
    def input_spec(self) -> InputSpec:
        """The input contract without statistics (those come from the training tiles)."""
        return InputSpec(self.bands, self.extra, patch_size=self.patch_size,
                         normalization=self.normalization)

    @property
    def tile_size(self) -> int:
        """Stored tile size: the patch size, larger when resolution augmentation zooms out
        (by the largest pixel size over the 20 m of the sample scenes, rounded up to a
        multiple of 8)."""
        if not self.resolutions:
            return self.patch_size
        zoom = max(1.0, self.resolutions[1] / 20.0)
        return int(np.ceil(self.patch_size * zoom / 8) * 8)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ParameterError(f"Unknown TrainConfig fields {sorted(unknown)}. Valid: "
                                 f"{sorted(names)}.")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    #: The fields that fix what a model takes as input: fine-tuning keeps them.
    INPUT_FIELDS = ("bands", "extra", "normalization")

    @classmethod
    def from_pretrained(cls, model, **changes) -> TrainConfig:
        """The recipe of a saved model (its sidecar's ``config`` and ``inputs``), with
        ``changes``: the starting point for fine-tuning it (``fit(..., init_model=model)``).

        The inputs (bands, extra channels, normalization) are the model's own and cannot be
        changed; a change to them raises :class:`~glacierkit.exceptions.ParameterError`.

        Examples
        --------
        >>> config = TrainConfig.from_pretrained("models/unet_alps_s2.keras",
        ...                                      epochs=20, learning_rate=1e-4)  # doctest: +SKIP
        """
        from .artifact import read_sidecar, resolve_model_path

        path = resolve_model_path(model)
        sidecar = read_sidecar(path)
        base = dict(sidecar.get("config") or {})
        for name, default in NEW_FIELDS.items():  # sidecars written before a field existed
            base.setdefault(name, default)
        spec = sidecar["inputs"]
        model_inputs = {"bands": spec.bands, "extra": spec.extra,
                        "normalization": spec.normalization}
        for name in cls.INPUT_FIELDS:
            if name in changes and tuple(np.atleast_1d(changes[name])) != \
                    tuple(np.atleast_1d(model_inputs[name])):
                raise ParameterError(
                    f"{name}={changes[name]!r}: {path.name} takes {name} "
                    f"{model_inputs[name]!r}, and fine-tuning keeps a model's inputs. Leave "
                    f"{name} out, or train a new model without init_model."
                )
        return cls.from_dict({**base, **changes, **model_inputs})

    @classmethod
    def from_parameters(cls, parameters: Mapping, init_model: str | None = None) -> TrainConfig:
        """The config from a notebook's parameters (notebook 04 passes ``globals()``): the
        names that are fields of :class:`TrainConfig` are used, the rest ignored. With
        ``init_model`` the inputs are the pretrained model's
        (:meth:`from_pretrained`) and every other field comes from ``parameters``."""
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in parameters.items() if k in names}
        if init_model:
            return cls.from_pretrained(init_model, **{k: v for k, v in given.items()
                                                      if k not in cls.INPUT_FIELDS})
        return cls(**given)

    @classmethod
    def paper(cls, **changes) -> TrainConfig:
        """The paper's recipe: 6-5-2 bands, ``paper`` preset, Adadelta (lr 1.0, constant),
        BCE, batch 8 (the split stays spatially blocked unless ``split="random"``)."""
        return cls(**{"bands": PAPER_BANDS, "extra": (), "preset": "paper",
                      "optimizer": "adadelta", "lr_schedule": "constant", "loss": "bce",
                      "batch_size": 8, **changes})


#: Fields added after the first sidecars were written, with the value that means "off".
NEW_FIELDS = {"photometric": 0.0, "lakes": 0.0, "shadows": 0.0, "haze": 0.0,
              "max_addition": 0.0, "resolutions": [],
               "normalization": "global", "prior": "", "prior_slope": 20.0, "residual_l2": 0.0,
               "dropout": 0.0, "precision": "auto"}
