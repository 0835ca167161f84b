"""Training the U-Net: a frozen configuration, resumable :func:`fit`, and the model artifact.

:func:`fit` cuts the training scenes into tiles (:mod:`glacierkit.unet.tiles`), builds the
network (:mod:`glacierkit.unet.model`) and trains it with Keras. It writes into ``output_dir``:

- ``unet.keras`` + ``unet.json``: the model (the checkpoint with the best validation
  accuracy, the paper's rule; no optimizer state) and its sidecar (bands by role,
  normalization, patch size, training scenes, the config, the final validation metrics).
  Prediction needs nothing else (:func:`glacierkit.unet.load_model`).
- ``training_log.csv`` (one row per epoch: loss, accuracy, validation loss, accuracy, IoU
  and kappa) and ``tensorboard/``.
- ``checkpoints/``: ``best.keras`` and, after every epoch, ``last-NNNN.keras`` (model and
  optimizer state) with ``last.json`` (epochs done, best so far, seed) written last, each
  file atomically. Running :func:`fit` again with the same configuration and folder
  continues from the last completed epoch, so an interruption (even ``kill -9``) costs at
  most one epoch. Raising ``epochs`` continues a finished training.

Data order and augmentation are functions of ``(seed, epoch)``, and the weights start from
``keras.utils.set_random_seed(seed)``, so a CPU run is repeatable. On a GPU the model
computes in float16 mixed precision (its output stays float32); with several GPUs it trains
under ``tf.distribute.MirroredStrategy``. ``TrainConfig(precision="bfloat16")`` trains in
bfloat16 (see :mod:`glacierkit.unet.precision`).

Optimizers: the paper used Keras 2's Adadelta with its default learning rate of 1.0.
Keras 3's Adadelta defaults to 0.001, which barely moves the weights, so
``optimizer="adadelta"`` uses 1.0 unless ``learning_rate`` is given. ``adam`` uses 0.001.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import xarray as xr

from .. import metrics as gk_metrics
from .._util import atomic_path, read_json, write_json
from ..exceptions import DataNotFoundError, GlacierKitError, ParameterError
from ..unet import layers as _layers  # noqa: F401  (registers custom layers for checkpoints)
from .artifact import save_keras, save_model, tf_version, training_distribution
from .augment import training_dataset
from .config import MODEL_NAME, NEW_FIELDS, THRESHOLD, TrainConfig
from .features import InputSpec
from .model import bound_correction, build_unet
from .tiles import Patches, make_patches, pad_to_multiple

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "fit", "prepare_patches", "load_scenes", "DiceLoss", "ValidationMetrics",
           "save_ensemble", "make_loss", "make_optimizer", "train_precision"]


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    model_path: Path
    history: pd.DataFrame
    metrics: dict
    best_epoch: int
    initial_epoch: int
    seconds: float
    patches: Patches

    @property
    def sidecar(self) -> dict:
        return read_json(self.model_path.with_suffix(".json"))


# --- losses ------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="glacierkit")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss ``1 - (2 Σ w y p + s) / (Σ w y + Σ w p + s)`` over the whole batch.

    Pixel weights ``w`` (the sample weights) mask no-data pixels.
    """

    def __init__(self, smooth: float = 1.0, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def __call__(self, y_true, y_pred, sample_weight=None):
        from keras import ops

        y_pred = ops.cast(y_pred, "float32")
        y_pred = ops.reshape(y_pred, ops.shape(y_true)) if len(y_true.shape) < len(
            y_pred.shape) else y_pred
        y_true = ops.cast(y_true, "float32")
        w = ops.ones_like(y_true) if sample_weight is None else ops.reshape(
            ops.cast(sample_weight, "float32"), ops.shape(y_true))
        inter = ops.sum(w * y_true * y_pred)
        total = ops.sum(w * y_true) + ops.sum(w * y_pred)
        return 1.0 - (2.0 * inter + self.smooth) / (total + self.smooth)

    def call(self, y_true, y_pred):  # pragma: no cover - __call__ does the work
        return self.__call__(y_true, y_pred)

    def get_config(self) -> dict:
        return {"smooth": self.smooth, "name": self.name}


def make_loss(name: str):
    if name == "bce":
        return keras.losses.BinaryCrossentropy(name="bce")
    if name == "focal":
        return keras.losses.BinaryFocalCrossentropy(gamma=2.0, name="focal")
    return DiceLoss()


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    lr = config.lr
    if config.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps_per_epoch * config.epochs)
    if config.optimizer == "adadelta":
        return keras.optimizers.Adadelta(learning_rate=lr)
    return keras.optimizers.Adam(learning_rate=lr)


def _compile(model, config: TrainConfig, steps_per_epoch: int, mixed: bool = False) -> None:
    """Compile with the config's optimizer and loss; loss scaling under float16 mixed
    precision (``mixed``; bfloat16 has float32's range and needs none)."""
    optimizer = make_optimizer(config, steps_per_epoch)
    if mixed:  # the functional model's own policy is float32, so Keras would not wrap it
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=make_loss(config.loss),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])


# --- callbacks ---------------------------------------------------------------------------------

class ValidationMetrics(keras.callbacks.Callback):
    """After each epoch, score the validation images and add ``val_loss``, ``val_accuracy``
    (overall accuracy at 0.5), ``val_iou`` and ``val_kc`` (kappa) to the epoch's logs.

    It runs before the checkpoint and logger callbacks, which then see these values. Each
    validation pixel counts once (blocks are predicted whole, padded to ``2**depth``).
    """

    def __init__(self, items, loss_name: str, multiple: int):
        super().__init__()
        self.items = [pad_to_multiple(it, multiple) for it in items]
        self.loss_fn = make_loss(loss_name)

    def evaluate(self, model) -> tuple[dict, dict[str, gk_metrics.Counts]]:
        counts: dict[str, gk_metrics.Counts] = {}
        ys, ps, ws = [], [], []
        for it in self.items:
            p = np.asarray(model.predict_on_batch(it.x[None]), dtype="float32")[0, ..., 0]
            c = gk_metrics.confusion(p > THRESHOLD, it.y, valid=it.w > 0)
            counts[it.scene] = counts[it.scene] + c if it.scene in counts else c
            keep = it.w > 0
            ys.append(it.y[keep])
            ps.append(p[keep])
            ws.append(it.w[keep])
        total = None
        for c in counts.values():
            total = c if total is None else total + c
        s = gk_metrics.scores(total)
        y, p, w = (np.concatenate(a)[None, :, None] for a in (ys, ps, ws))
        loss = float(self.loss_fn(y, p, sample_weight=w[..., 0]))
        logs = {"val_loss": loss, "val_accuracy": s["OA"], "val_iou": s["IoU"],
                "val_kc": s["KC"]}
        return logs, counts

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        values, _ = self.evaluate(self.model)
        logs.update(values)


class _Checkpoints(keras.callbacks.Callback):
    """Best checkpoint by ``val_accuracy`` and the resumable "last" state, both atomic."""

    monitor = "val_accuracy"

    def __init__(self, folder: Path, state: dict):
        super().__init__()
        self.folder = folder
        self.state = state  # epochs_done, best, config, scenes, seed ...

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        best = self.state.get("best")
        if value is not None and np.isfinite(value) and (best is None or value > best["value"]):
            save_keras(self.model, self.folder / "best.keras")
            self.state["best"] = {"monitor": self.monitor, "value": float(value),
                                  "epoch": epoch, **{k: float(v) for k, v in logs.items()
                                                     if k.startswith("val_")}}
        name = f"last-{epoch + 1:04d}.keras"
        save_keras(self.model, self.folder / name)
        self.state.update({"epochs_done": epoch + 1, "checkpoint": name,
                           "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        write_json(self.folder / "last.json", self.state)  # the commit point
        for old in self.folder.glob("last-*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)


# --- data --------------------------------------------------------------------------------------

def load_scenes(scenes: Sequence[str], prepared_dir: str | os.PathLike,
                allow_test_scenes: bool = False, glacier_free: Sequence[str] = ()) -> dict:
    """``{name: (scene, labels)}`` from prepared scenes (notebook 01's output folder).

    Refuses scenes of a benchmark's test split unless ``allow_test_scenes``: nothing may be
    tuned on them, and training is tuning. Scenes named in ``glacier_free`` are known to
    hold no glacier at all (e.g. the tropical Landsat 8 sample): every valid pixel is
    labelled 0, no outlines needed. They teach the network what is *not* glacier in other
    regions and on other sensors (water, cloud, bright soil).
    """
    from ..prep import load_prepared

    out = {}
    for name in [*scenes, *[g for g in glacier_free if g not in scenes]]:
        scene, labels = load_prepared(prepared_dir, name)
        if name in glacier_free:
            valid = np.isfinite(scene.values).all(axis=0)
            labels = xr.DataArray(np.where(valid, 0.0, np.nan).astype("float32"),
                                  dims=("y", "x"), coords={"y": scene["y"], "x": scene["x"]})
        if scene.attrs.get("split") == "test" and not allow_test_scenes:
            raise ParameterError(
                f"{name!r} is a test scene of the benchmark split; training on it would make "
                "the test scores meaningless. Train on the train scenes (glacierkit.data.split)"
                " or pass allow_test_scenes=True for your own data."
            )
        if labels is None:
            raise DataNotFoundError(f"Prepared scene {name!r} has no labels (no outlines).")
        if scene.attrs.get("level") == "toa":  # models learn surface reflectance
            from ..io.level import to_surface

            scene = to_surface(scene)
        out[name] = (scene, labels)
    return out


def prepare_patches(config: TrainConfig, scenes, prepared_dir=None,
                    allow_test_scenes: bool = False, spec: InputSpec | None = None,
                    glacier_free: Sequence[str] = (), train_only: Sequence[str] = ()
                    ) -> Patches:
    """Tiles and validation images for ``config`` from scene names or ``{name: (scene,
    labels)}``. With ``spec`` (a pretrained model's inputs), its normalization statistics
    are kept instead of computed from the tiles."""
    if isinstance(scenes, Patches):
        expected = {"patch_size": config.patch_size, "stride": config.stride,
                    "max_nan_fraction": config.max_nan_fraction,
                    "min_glacier_fraction": config.min_glacier_fraction,
                    "val_fraction": config.val_fraction, "gap": config.val_gap,
                    "side": config.val_side, "split": config.split}
        diff = {k: (scenes.settings.get(k), v) for k, v in expected.items()
                if scenes.settings.get(k) != v}
        if scenes.settings.get("tile_size", config.patch_size) != config.tile_size:
            diff["tile_size"] = (scenes.settings.get("tile_size", config.patch_size),
                                 config.tile_size)
        if scenes.spec.channels != config.channels:
            diff["channels"] = (scenes.spec.channels, config.channels)
        if diff:
            raise ParameterError(
                f"The tiles were cut with other settings than the config (tiles, config): "
                f"{diff}. Make them with prepare_patches(config, ...)."
            )
        return scenes
    if not isinstance(scenes, Mapping):
        if prepared_dir is None:
            raise ParameterError("Scene names need prepared_dir (notebook 01's output_dir).")
        scenes = load_scenes(list(scenes), prepared_dir, allow_test_scenes, glacier_free)
    return make_patches(
        scenes, spec or config.input_spec, patch_size=config.patch_size, stride=config.stride,
        max_nan_fraction=config.max_nan_fraction,
        min_glacier_fraction=config.min_glacier_fraction, val_fraction=config.val_fraction,
        gap=config.val_gap, side=config.val_side, split=config.split, seed=config.seed,
        tile_size=config.tile_size, fixed_stats=spec is not None, train_only=train_only)


# --- devices -----------------------------------------------------------------------------------

def _devices(config: TrainConfig):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if config.strategy == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            log.warning("strategy='multiworker' without TF_CONFIG: training on this machine only")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif config.strategy == "mirrored" or (config.strategy == "auto" and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, bool(gpus), len(gpus)


def _tensorboard(folder: Path) -> list:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        log.warning("tensorboard is not installed: no TensorBoard logs (pip install "
                    "tensorboard); training_log.csv has the same numbers.")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(folder), write_graph=False,
                                        profile_batch=0)]


def _verbose(verbose):
    if verbose is not None:
        return verbose
    return "auto" if getattr(sys.stdout, "isatty", lambda: False)() else 2


# --- fit ---------------------------------------------------------------------------------------

def _comparable(config_dict: dict) -> dict:
    return {k: v for k, v in {**NEW_FIELDS, **config_dict}.items() if k != "epochs"}


def train_precision(config: TrainConfig, mixed_precision: bool | None, on_gpu: bool) -> str:
    """The compute precision of a training run: float32, bfloat16 or float16."""
    from ..unet import precision as gk_precision

    if mixed_precision is not None:  # the older switch: float16 or float32
        return "float16" if mixed_precision else "float32"
    if config.precision == "float16" or (config.precision == "auto" and on_gpu):
        return "float16"
    return gk_precision.resolve(config.precision, "train")


def _trim_log(csv_path: Path, epochs_done: int) -> None:
    """Drop log rows of epochs that will be run again (after an interruption)."""
    if not csv_path.is_file():
        return
    try:
        table = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        csv_path.unlink()
        return
    if "epoch" in table and (table["epoch"] >= epochs_done).any():
        with atomic_path(csv_path) as tmp:
            table[table["epoch"] < epochs_done].to_csv(tmp, index=False)


def fit(config: TrainConfig, scenes, output_dir: str | os.PathLike, *,
        prepared_dir: str | os.PathLike | None = None, resume: bool = True,
        callbacks: Sequence = (), verbose=None, allow_test_scenes: bool = False,
        mixed_precision: bool | None = None, init_model: str | os.PathLike | None = None,
        glacier_free: Sequence[str] = (), train_only: Sequence[str] = ()) -> TrainResult:
    """Train a U-Net; resume an interrupted run in the same ``output_dir``.

    With ``init_model`` it **fine-tunes** a pretrained model instead of starting from random
    weights: the network, its input bands and its normalization statistics are kept (the
    weights expect them), and ``config`` sets the training (use a small learning rate, e.g.
    1e-4, and a few epochs). A model with an NDSI prior gets its prior's threshold re-fitted
    on the new tiles when ``config.prior`` is ``"ndsi"`` (the network then learns the
    region's corrections to it). This adapts a model to a new region in minutes from the
    user's scenes and RGI outlines; unknown pixels (label 255, e.g. outside a partial
    outline) count in neither the loss nor the scores.

    Parameters
    ----------
    config
        The :class:`TrainConfig`.
    scenes
        Scene names prepared in ``prepared_dir``, ``{name: (scene, labels)}``, or the
        :class:`~glacierkit.unet.Patches` from :func:`prepare_patches`.
    output_dir
        Where the model, logs and checkpoints go (see the module docstring).
    prepared_dir
        Notebook 01's ``output_dir`` when ``scenes`` are names.
    resume
        Continue from ``output_dir/checkpoints`` when they exist (same config apart from
        ``epochs``); False deletes them and starts over.
    callbacks
        More Keras callbacks (they run after glacierkit's).
    verbose
        Keras' verbosity; default one line per epoch (2) unless stdout is a terminal.
    allow_test_scenes
        Allow training on a benchmark's test scenes (never for benchmark numbers).
    mixed_precision
        None (default): ``config.precision`` decides. True: float16 compute (with loss
        scaling), False: float32, whatever ``config.precision`` says (the switch of earlier
        versions). The output layer is float32 either way.
    init_model
        A ``.keras`` model (with its sidecar) to start from. ``config`` must name the same
        input channels; its preset/depth/filters are ignored (the model's are used).
    glacier_free
        Scene names (in ``prepared_dir``) known to hold no glacier: all their pixels are
        labelled 0 (see :func:`load_scenes`).
    train_only
        Scenes without a validation block (all their tiles train), e.g. pseudo-labelled
        scenes for self-training.
    """
    if not isinstance(config, TrainConfig):
        raise ParameterError(f"config must be a TrainConfig; got {type(config).__name__}.")
    t0 = time.perf_counter()
    out = Path(output_dir)
    ckpt = out / "checkpoints"
    csv_path = out / "training_log.csv"
    init = _init_model(init_model, config) if init_model is not None else None
    patches = prepare_patches(config, scenes, prepared_dir, allow_test_scenes,
                              spec=init[1]["inputs"] if init else None,
                              glacier_free=glacier_free, train_only=train_only)
    scene_names = patches.scenes
    if patches.n_train < config.batch_size:
        raise ParameterError(
            f"Only {patches.n_train} training tiles for batch_size={config.batch_size} "
            f"({patches.summary().iloc[-1].to_dict()}). Lower batch_size, stride or "
            "patch_size, raise max_nan_fraction (partial labels), or add scenes."
        )
    state_path = ckpt / "last.json"
    state = {"config": config.to_dict(), "scenes": scene_names, "seed": config.seed,
             "epochs_done": 0, "best": None,
             "init_model": init[1]["path"] if init else None,
             "data_order": "tile order and augmentation drawn from (seed, epoch)"}
    if state_path.is_file() and not resume:
        for f in [*ckpt.glob("*.keras"), state_path, csv_path]:
            f.unlink(missing_ok=True)
    elif state_path.is_file():
        old = read_json(state_path)
        if _comparable(old["config"]) != _comparable(state["config"]) or \
                old["scenes"] != scene_names or old.get("init_model") != state["init_model"]:
            diff = {k: (old["config"].get(k), v) for k, v in state["config"].items()
                    if k != "epochs" and old["config"].get(k) != v}
            if old["scenes"] != scene_names:
                diff["scenes"] = (old["scenes"], scene_names)
            if old.get("init_model") != state["init_model"]:
                diff["init_model"] = (old.get("init_model"), state["init_model"])
            raise ParameterError(
                f"{out} holds checkpoints of a different training (differences, old -> new: "
                f"{diff}). Use another output_dir, or resume=False to start over."
            )
        state.update({k: old[k] for k in ("epochs_done", "best", "checkpoint") if k in old})
    initial_epoch = int(state["epochs_done"])

    keras.utils.set_random_seed(config.seed)
    strategy, on_gpu, n_gpus = _devices(config)
    precision = train_precision(config, mixed_precision, on_gpu)
    mixed = precision == "float16"
    prior = None
    if init is None and config.prior:
        prior = _prior(config, patches)
    elif init is not None:
        prior = init[1].get("architecture", {}).get("prior")
        if prior and config.prior:  # adapt the prior to the new region's tiles too
            prior = {**prior, "threshold": _prior(config, patches)["threshold"]}
    with strategy.scope():
        if initial_epoch and (ckpt / state.get("checkpoint", "")).is_file():
            log.info("resuming from %s: %d epochs done", state["checkpoint"], initial_epoch)
            model = keras.saving.load_model(ckpt / state["checkpoint"], compile=True)
        else:
            initial_epoch = 0
            state.update({"epochs_done": 0, "best": None})
            if init is not None:
                model = keras.saving.load_model(init[1]["path"], compile=False)
                if prior:  # every IndexPrior (one per member of an ensemble)
                    for layer in _all_layers(model):
                        if isinstance(layer, _layers.IndexPrior):
                            layer.threshold = float(prior["threshold"])
            else:
                model = build_unet(config.n_channels, config.model_depth, config.model_filters,
                                   mixed_precision=mixed, prior=prior,
                                   residual_l2=config.residual_l2, dropout=config.dropout)
            if precision == "bfloat16":
                from .artifact import cast_model

                model = cast_model(model, "bfloat16")  # same initial weights as float32
            _compile(model, config, patches.n_train // config.batch_size, mixed)
    _trim_log(csv_path, initial_epoch)

    depth = int(init[1]["architecture"]["depth"]) if init else config.model_depth
    validation = ValidationMetrics(patches.validation, config.loss, 2 ** depth)
    ckpt.mkdir(parents=True, exist_ok=True)
    # Order matters: validation scores first (the others read them from the logs), the
    # CSV row before the checkpoint commit (a kill in between re-runs that epoch and
    # _trim_log drops its row, so the log never has a gap or a repeat).
    cbs = [validation, keras.callbacks.CSVLogger(str(csv_path), append=initial_epoch > 0),
           *_tensorboard(out / "tensorboard"), _Checkpoints(ckpt, state), *callbacks]
    if initial_epoch < config.epochs:
        ds, steps = training_dataset(patches, config.batch_size, config.seed,
                                     start_epoch=initial_epoch, epochs=config.epochs,
                                     jitter=config.jitter, photometric=config.photometric,
                                     resolutions=config.resolutions, lakes=config.lakes,
                                     shadows=config.shadows, haze=config.haze)
        log.info("training %d tiles (%d steps/epoch), epochs %d..%d", patches.n_train, steps,
                 initial_epoch, config.epochs - 1)
        model.fit(ds, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                  callbacks=cbs, verbose=_verbose(verbose), shuffle=False)
    train_seconds = time.perf_counter() - t0

    if state.get("best") is None or not (ckpt / "best.keras").is_file():
        raise GlacierKitError(
            f"No epoch of the training in {out} had a finite validation accuracy, so there is "
            "no best checkpoint. Check that the validation blocks hold labelled pixels."
        )
    best = keras.saving.load_model(ckpt / "best.keras", compile=False)
    if precision == "bfloat16":  # saved (and scored) in float32; prediction picks its own
        from .artifact import cast_model

        best = cast_model(best, "float32")
    if config.max_addition and prior:  # the saved model's correction is bounded
        best = bound_correction(best, config.max_addition)
    values, per_scene = validation.evaluate(best)
    pooled = None
    for c in per_scene.values():
        pooled = c if pooled is None else pooled + c
    scores = {k: v for k, v in gk_metrics.scores(pooled).items() if k != "reasons"}
    scene_scores = {n: {k: v for k, v in gk_metrics.scores(c).items() if k != "reasons"}
                    for n, c in per_scene.items()}
    history = pd.read_csv(csv_path) if csv_path.is_file() else pd.DataFrame()
    best_epoch = int(state["best"]["epoch"])
    arch = ({**init[1]["architecture"], "mixed_precision": mixed, "prior": prior} if init else
            {"name": "unet", "preset": config.preset, "depth": config.model_depth,
             "base_filters": config.model_filters, "params": int(best.count_params()),
             "mixed_precision": mixed, "threshold": THRESHOLD, "prior": prior})
    arch["precision"] = precision
    arch["max_addition"] = float(config.max_addition) if prior else 0.0
    info = {
        "architecture": arch,
        # the inputs' processing level: training scenes are surface reflectance (top-of-
        # atmosphere ones are corrected first, as prediction does: glacierkit.io.level)
        "level": "surface",
        "config": config.to_dict(),
        "training_scenes": scene_names,
        "validation": {"split": patches.split, "selection": "best val_accuracy (paper)",
                       "regions": {n: {k: (dataclasses.asdict(b) if b else None)
                                       for k, b in r.items()}
                                   for n, r in patches.regions.items()}},
        "tiles": patches.summary().to_dict(orient="records"),
        "metrics": {"validation": {**scores, **pooled.as_dict()},
                    "validation_per_scene": scene_scores, "best_epoch": best_epoch,
                    "epochs": int(state["epochs_done"]), "val_loss": values["val_loss"]},
        "training_distribution": training_distribution(patches, config.photometric,
                                                       config.seed),
        "fine_tuned_from": ({"path": init[1]["path"], "sha256": init[1]["sha256"],
                             "training_scenes": init[1].get("training_scenes")}
                            if init else None),
        "environment": {"keras": keras.__version__, "tensorflow": tf_version(),
                        "gpus": n_gpus, "strategy": type(strategy).__name__,
                        "train_seconds_this_run": round(train_seconds, 1)},
    }
    model_path = save_model(best, out / f"{MODEL_NAME}.keras", patches.spec, **info)
    log.info("best epoch %d: validation OA %.4f KC %.4f IoU %.4f -> %s", best_epoch,
             scores["OA"], scores["KC"], scores["IoU"], model_path)
    return TrainResult(model_path, history, info["metrics"], best_epoch, initial_epoch,
                       train_seconds, patches)


def _all_layers(layer):
    for sub in getattr(layer, "layers", []) or []:
        yield sub
        yield from _all_layers(sub)


def _init_model(path, config: TrainConfig):
    """Load a model to fine-tune and check that ``config`` asks for the same inputs."""
    import hashlib

    from .artifact import load_model, resolve_model_path

    path = resolve_model_path(path)
    model, sidecar = load_model(path)
    spec: InputSpec = sidecar["inputs"]
    if spec.channels != config.channels or spec.normalization != config.normalization:
        raise ParameterError(
            f"The model {path} takes the channels {list(spec.channels)} "
            f"({spec.normalization} normalization) but the config asks for "
            f"{list(config.channels)} ({config.normalization}). Fine-tuning keeps the model's "
            f"inputs: use TrainConfig(bands={list(spec.bands)}, extra={list(spec.extra)}, "
            f"normalization={spec.normalization!r}, ...)."
        )
    if config.patch_size % (2 ** int(sidecar.get("architecture", {}).get("depth", 1))):
        raise ParameterError(f"patch_size={config.patch_size} does not suit the model {path}.")
    sidecar["path"] = str(path)
    sidecar["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    del model  # fit() loads it again inside the distribution strategy's scope
    return None, sidecar


def _prior(config: TrainConfig, patches: Patches) -> dict:
    """The NDSI prior's arguments: the KC-best NDSI threshold of the training tiles."""
    from ..ndsi.threshold import best_threshold, class_histogram, fine_grid

    c = patches.spec.channels.index("ndsi")
    mean, std = patches.spec.mean[c], patches.spec.std[c]
    ok = patches.w > 0
    ndsi = patches.x[..., c][ok] * std + mean
    table = class_histogram(ndsi, patches.y[ok], fine_grid(-0.2, 0.8, 0.01)).table()
    t = round(best_threshold(table, "KC"), 4)
    log.info("NDSI prior: threshold %.2f (KC-best on the training tiles), slope %.1f", t,
             config.prior_slope)
    return {"channel": c, "mean": float(mean), "std": float(std), "threshold": float(t),
            "slope": float(config.prior_slope)}


def save_ensemble(members: Sequence[str | os.PathLike], path: str | os.PathLike,
                  scenes=None, prepared_dir: str | os.PathLike | None = None,
                  glacier_free: Sequence[str] = ()) -> Path:
    """Average trained models of one recipe (different seeds) into one model file.

    The members must share their inputs (channels, normalization statistics), which models
    of one :class:`TrainConfig` trained on the same scenes with different seeds do. The
    sidecar keeps the first member's contract and records every member's seed, sidecar
    path, sha256 and validation scores. With ``scenes`` (names in ``prepared_dir``, or
    ``{name: (scene, labels)}``; ``glacier_free`` as in :func:`fit`) the ensemble is scored
    on the same validation blocks.
    """
    import hashlib

    from .artifact import load_model
    from .model import ensemble

    loaded = [load_model(p) for p in members]
    first = loaded[0][1]
    for p, (_, side) in zip(members, loaded, strict=True):
        if side["inputs"] != first["inputs"]:
            raise ParameterError(
                f"{p} takes other inputs than {members[0]} ({side['inputs']} vs "
                f"{first['inputs']}): only models of one recipe on the same scenes can be "
                "averaged."
            )
    net = ensemble([m for m, _ in loaded])
    config = TrainConfig.from_dict(first["config"])
    info = {k: first[k] for k in ("training_scenes", "validation", "training_distribution",
                                  "level") if k in first}
    info["architecture"] = {**first["architecture"], "name": "ensemble",
                            "members": len(loaded), "params": int(net.count_params())}
    info["config"] = dict(first["config"])  # the recipe (with the first member's seed)
    info["ensemble"] = [{"seed": side["config"]["seed"], "path": str(p),
                         "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(),
                         "validation": side.get("metrics", {}).get("validation")}
                        for p, (_, side) in zip(members, loaded, strict=True)]
    if scenes is not None:
        patches = prepare_patches(config, scenes, prepared_dir, spec=first["inputs"],
                                  glacier_free=glacier_free)
        values, per_scene = ValidationMetrics(
            patches.validation, config.loss, 2 ** int(first["architecture"]["depth"])
        ).evaluate(net)
        pooled = None
        for c in per_scene.values():
            pooled = c if pooled is None else pooled + c
        scores = {k: v for k, v in gk_metrics.scores(pooled).items() if k != "reasons"}
        info["metrics"] = {"validation": {**scores, **pooled.as_dict()},
                           "validation_per_scene": {
                               n: {k: v for k, v in gk_metrics.scores(c).items()
                                   if k != "reasons"} for n, c in per_scene.items()},
                           "val_loss": values["val_loss"]}
    return save_model(net, path, first["inputs"], **info)
