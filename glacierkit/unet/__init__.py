"""The Deep U-Net: its inputs, training, the saved artifact and full-scene prediction.

Training: :mod:`~glacierkit.unet.features` (the input contract) ->
:mod:`~glacierkit.unet.tiles` (patches and the blocked split) ->
:mod:`~glacierkit.unet.augment` (tf.data, flips, rotations, synthetic lakes) ->
:mod:`~glacierkit.unet.config` (:class:`TrainConfig`) -> :mod:`~glacierkit.unet.train`
(:func:`fit`), building :mod:`~glacierkit.unet.model` with :mod:`~glacierkit.unet.layers`.

The saved model: :mod:`~glacierkit.unet.artifact` (``.keras`` + ``.json`` sidecar,
ensembles, the training distribution, precision casts; :mod:`~glacierkit.unet.precision`
decides float32 or bfloat16; :mod:`~glacierkit.unet.forward` compiles the forward pass of
a model or an ensemble once for every window shape).

Prediction: :mod:`~glacierkit.unet.windows` (the window plan and blending weights) ->
:mod:`~glacierkit.unet.rows` (streaming the scene by rows) ->
:mod:`~glacierkit.unet.predict` (:func:`predict_scene`) -> :mod:`~glacierkit.unet.output`
(the one path from a prediction to a committed set of files); :mod:`~glacierkit.unet.guard`
(domain shift) and :mod:`~glacierkit.unet.predict_dask` (scenes larger than memory).

Importing this package loads no TensorFlow; the modules that need it load it on first use.
"""

from .._util import lazy_exports

_EXPORTS = {
    # artifact
    "artifact": ".artifact",
    "sidecar_path": ".artifact",
    "save_model": ".artifact",
    "save_keras": ".artifact",
    "load_model": ".artifact",
    "read_sidecar": ".artifact",
    "resolve_model_path": ".artifact",
    "PRETRAINED": ".artifact",
    "SIDECAR_FORMAT": ".artifact",
    "cast_model": ".artifact",
    # augment
    "augment": ".augment",
    "dihedral": ".augment",
    "training_dataset": ".augment",
    "tf_features": ".augment",
    "photometric_augment": ".augment",
    "lake_augment": ".augment",
    "shadow_augment": ".augment",
    "haze_augment": ".augment",
    "ROLE_WAVELENGTHS": ".augment",
    # config
    "config": ".config",
    "TrainConfig": ".config",
    "OPTIMIZERS": ".config",
    "LOSSES": ".config",
    "STRATEGIES": ".config",
    "DEFAULT_LEARNING_RATES": ".config",
    "MODEL_NAME": ".config",
    # features
    "features": ".features",
    "EXTRA_CHANNELS": ".features",
    "ND_CHANNELS": ".features",
    "NORMALIZATIONS": ".features",
    "InputSpec": ".features",
    "feature_stack": ".features",
    "scene_medians": ".features",
    "normalize": ".features",
    # forward
    "forward": ".forward",
    "CompiledForward": ".forward",
    "architecture_key": ".forward",
    "XLA_FROM_PIXELS": ".forward",
    # guard
    "guard": ".guard",
    "LIMITS": ".guard",
    "input_report": ".guard",
    "output_report": ".guard",
    "guard_report": ".guard",
    "guard_table": ".guard",
    "warn": ".guard",
    # layers
    "layers": ".layers",
    "IndexPrior": ".layers",
    "BoundedCorrection": ".layers",
    # model
    "model": ".model",
    "Preset": ".model",
    "PRESETS": ".model",
    "build_unet": ".model",
    "build_from_preset": ".model",
    "count_params": ".model",
    "check_input_size": ".model",
    "ensemble": ".model",
    "bound_correction": ".model",
    # output
    "output": ".output",
    "predict_to_files": ".output",
    "write_prediction": ".output",
    "check_not_the_scene": ".output",
    "PredictionFiles": ".output",
    "PROBABILITY_SCALE": ".output",
    # precision
    "precision": ".precision",
    "PRECISIONS": ".precision",
    "cpu_flags": ".precision",
    "cpu_has_bf16": ".precision",
    "gpu_has_bf16": ".precision",
    "resolve": ".precision",
    "PREDICT_BF16_ON_CPU": ".precision",
    "TRAIN_BF16_ON_CPU": ".precision",
    # predict
    "predict": ".predict",
    "predict_scene": ".predict",
    "to_model_level": ".predict",
    # predict_dask
    "predict_dask": ".predict_dask",
    "predict_scene_dask": ".predict_dask",
    "aligned_chunks": ".predict_dask",
    "DEFAULT_CHUNK": ".predict_dask",
    # rows
    "rows": ".rows",
    # tiles
    "tiles": ".tiles",
    "Box": ".tiles",
    "ValidationItem": ".tiles",
    "Patches": ".tiles",
    "window_starts": ".tiles",
    "blocked_regions": ".tiles",
    "make_patches": ".tiles",
    "channel_stats": ".tiles",
    "pad_to_multiple": ".tiles",
    "SPLITS": ".tiles",
    "SIDES": ".tiles",
    # train
    "train": ".train",
    "TrainResult": ".train",
    "fit": ".train",
    "prepare_patches": ".train",
    "load_scenes": ".train",
    "DiceLoss": ".train",
    "ValidationMetrics": ".train",
    "save_ensemble": ".train",
    "make_loss": ".train",
    "make_optimizer": ".train",
    "train_precision": ".train",
    # windows
    "windows": ".windows",
    "window_weights": ".windows",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
