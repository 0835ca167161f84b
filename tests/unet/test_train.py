"""Training: config validation, a short fit, the best-checkpoint rule, the sidecar, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import ROOT, make_scene
from glacierkit.exceptions import ParameterError
from glacierkit.unet import load_model, normalize

TINY = dict(depth=2, base_filters=4, patch_size=32, stride=16, val_gap=8, batch_size=4,
            learning_rate=0.01)


def _scenes(n=2):
    out = {}
    for i in range(n):
        scene, glacier = make_scene(96, 80, seed=i)
        labels = xr.DataArray(glacier.astype("float32"), dims=("y", "x"))
        out[f"s{i}"] = (scene, labels)
    return out


# --- TrainConfig ---------------------------------------------------------------------------

def test_config_defaults_and_derived_values():
    from glacierkit.unet import TrainConfig

    c = TrainConfig()
    assert c.bands == ("swir1", "nir", "blue") and c.batch_size == 8
    assert (c.model_depth, c.model_filters) == (4, 16)        # cpu preset
    assert c.channels == ("swir1", "nir", "blue", "ndsi") and c.lr == 1e-3
    p = TrainConfig.paper()
    assert (p.model_depth, p.model_filters, p.optimizer, p.lr) == (5, 64, "adadelta", 1.0)
    assert p.channels == ("swir1", "nir", "blue") and p.lr_schedule == "constant"
    n = TrainConfig(extra=["ndsi"], bands=["swir1", "nir"], depth=0, learning_rate=0)
    assert n.channels == ("swir1", "nir", "ndsi") and n.n_channels == 3
    assert n.depth is None and n.learning_rate is None
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(dataclasses_frozen()):
        c.epochs = 3


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("changes, message", [
    ({"preset": "gpu"}, "Unknown preset 'gpu'"),
    ({"optimizer": "sgd"}, "Unknown optimizer 'sgd'"),
    ({"loss": "mse"}, "Unknown loss 'mse'"),
    ({"split": "spatial"}, "Unknown split 'spatial'"),
    ({"strategy": "tpu"}, "Unknown strategy"),
    ({"extra": ["ndxx"]}, "Unknown extra channels"),
    ({"bands": [], "extra": []}, "bands is empty"),
    ({"bands": ["nir", "nir"]}, "Channels repeat"),
    ({"patch_size": 100}, "multiples of 2\\*\\*depth = 16"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"val_fraction": 0.0}, "needs a validation set"),
    ({"val_fraction": 0.7}, "val_fraction must be a number in"),
    ({"min_glacier_fraction": -0.1}, "min_glacier_fraction"),
    ({"learning_rate": -1.0}, "learning_rate must be > 0"),
])
def test_config_validation_errors(changes, message):
    from glacierkit.unet import TrainConfig

    with pytest.raises(ParameterError, match=message):
        TrainConfig(**changes)


def test_from_dict_refuses_unknown_fields():
    from glacierkit.unet import TrainConfig

    with pytest.raises(ParameterError, match="Unknown TrainConfig fields \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})


# --- fit -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from glacierkit.unet import TrainConfig, fit

    out = tmp_path_factory.mktemp("fit")
    config = TrainConfig(epochs=3, **TINY)
    result = fit(config, _scenes(), out, verbose=0)
    return config, out, result


def test_fit_writes_model_sidecar_and_logs(trained):
    config, out, result = trained
    assert result.model_path == out / "unet.keras" and result.model_path.is_file()
    log = pd.read_csv(out / "training_log.csv")
    assert list(log["epoch"]) == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_iou", "val_kc"} <= set(log)
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
    model, side = load_model(result.model_path)
    spec = side["inputs"]
    assert spec.channels == config.channels and spec.patch_size == 32
    assert len(spec.mean) == len(spec.std) == 4
    np.testing.assert_allclose(spec.mean, result.patches.spec.mean)
    assert side["config"] == config.to_dict()
    assert side["training_scenes"] == ["s0", "s1"]
    assert side["architecture"]["depth"] == 2 and side["architecture"]["params"] == \
        model.count_params()
    val = side["metrics"]["validation"]
    assert {"OA", "KC", "IoU", "TP", "FP", "FN", "TN"} <= set(val)
    assert side["metrics"]["validation_per_scene"].keys() == {"s0", "s1"}
    assert side["validation"]["split"] == "blocked"
    assert side["tiles"][-1]["scene"] == "total"
    # the planted glacier is easy: the model learned it
    assert val["KC"] > 0.5
    # the saved model has no optimizer state (small); prediction needs only these two files
    assert getattr(model, "optimizer", None) is None
    assert result.model_path.stat().st_size < (out / "checkpoints" / "best.keras").stat().st_size


def test_best_checkpoint_is_the_best_validation_accuracy(trained):
    _, out, result = trained
    log = pd.read_csv(out / "training_log.csv")
    best = int(log["val_accuracy"].idxmax())
    assert result.best_epoch == int(log.loc[best, "epoch"])
    assert result.metrics["best_epoch"] == result.best_epoch
    np.testing.assert_allclose(result.metrics["validation"]["OA"], log.loc[best, "val_accuracy"],
                               rtol=1e-6)
    np.testing.assert_allclose(result.metrics["validation"]["KC"], log.loc[best, "val_kc"],
                               rtol=1e-6)


def test_model_predicts_through_the_shared_contract(trained):
    _, _, result = trained
    model, side = load_model(result.model_path)
    scene, glacier = make_scene(64, 48, seed=7)
    from glacierkit.unet import feature_stack

    x = normalize(np.moveaxis(feature_stack(scene, side["inputs"]).values, 0, -1),
                  side["inputs"])
    p = np.asarray(model.predict_on_batch(x[None]))[0, ..., 0]
    assert p.dtype == np.float32 and p.shape == (64, 48)
    assert ((p > 0.5) == glacier).mean() > 0.8


def test_rerun_is_idempotent_and_more_epochs_continue(trained, tmp_path):
    import shutil

    from glacierkit.unet import fit

    config, out, _ = trained
    work = tmp_path / "again"
    shutil.copytree(out, work)
    again = fit(config, _scenes(), work, verbose=0)
    assert again.initial_epoch == 3
    more = fit(config.replace(epochs=4), _scenes(), work, verbose=0)
    assert more.initial_epoch == 3
    assert list(pd.read_csv(work / "training_log.csv")["epoch"]) == [0, 1, 2, 3]
    with pytest.raises(ParameterError, match="different training.*'loss': \\('bce', 'dice'\\)"):
        fit(config.replace(loss="dice"), _scenes(), work, verbose=0)
    fresh = fit(config.replace(loss="dice", epochs=1), _scenes(), work, resume=False, verbose=0)
    assert fresh.initial_epoch == 0
    assert list(pd.read_csv(work / "training_log.csv")["epoch"]) == [0]


def test_fit_refuses_benchmark_test_scenes(prepared_alps, tmp_path):
    from glacierkit.unet import TrainConfig, fit

    with pytest.raises(ParameterError, match="test scene of the benchmark split"):
        fit(TrainConfig(epochs=1, **TINY), ["alps-s2/morteratsch"], tmp_path,
            prepared_dir=prepared_alps)


def test_dice_loss_ignores_masked_pixels():
    from glacierkit.unet import DiceLoss

    y = np.zeros((1, 4, 4, 1), "float32")
    y[0, :2] = 1
    p = y.copy()
    p[0, 3, 3] = 1.0                       # one wrong pixel ...
    w = np.ones((1, 4, 4), "float32")
    loss = DiceLoss(smooth=0.0)
    assert float(loss(y, p, sample_weight=w)) > 0
    w[0, 3, 3] = 0                         # ... that does not count
    assert float(loss(y, p, sample_weight=w)) == pytest.approx(0.0, abs=1e-6)


# --- resume after kill -9 ---------------------------------------------------------------------

RUNNER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    import keras, xarray as xr
    from conftest import make_scene
    from glacierkit.unet import TrainConfig, fit

    class StopMidEpoch(keras.callbacks.Callback):
        # Signal the test, then hang inside epoch 2 until killed.
        def on_train_batch_end(self, batch, logs=None):
            if os.environ.get("PAUSE") and self.epoch == 2 and batch == 2:
                open(os.environ["PAUSE"], "w").write("mid-epoch")
                time.sleep(600)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    scenes = {{}}
    for i in range(2):
        scene, glacier = make_scene(96, 80, seed=i)
        scenes[f"s{{i}}"] = (scene, xr.DataArray(glacier.astype("float32"), dims=("y", "x")))
    config = TrainConfig(epochs=5, {tiny})
    result = fit(config, scenes, sys.argv[1], callbacks=[StopMidEpoch()], verbose=0)
    print("INITIAL_EPOCH", result.initial_epoch)
""")


def test_resume_after_kill_mid_epoch(tmp_path):
    tiny = ", ".join(f"{k}={v!r}" for k, v in TINY.items())
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(ROOT / "tests"), tiny=tiny))
    out = tmp_path / "run"
    marker = tmp_path / "paused"
    env = {**os.environ, "PAUSE": str(marker), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "training never reached epoch 2"
            time.sleep(0.2)
        state = json.loads((out / "checkpoints" / "last.json").read_text())
        assert state["epochs_done"] == 2   # epochs 0 and 1 are complete, epoch 2 is running
        before = pd.read_csv(out / "training_log.csv")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(before["epoch"]) == [0, 1]

    env.pop("PAUSE")
    done = subprocess.run([sys.executable, str(script), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "INITIAL_EPOCH 2" in done.stdout            # continued, did not restart
    log = pd.read_csv(out / "training_log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3, 4]         # no gap, no repeat
    pd.testing.assert_frame_equal(log.iloc[:2], before)  # the first epochs were not re-run
    state = json.loads((out / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == 5
    assert sorted(p.name for p in (out / "checkpoints").glob("last-*.keras")) == [
        "last-0005.keras"]
    assert (out / "unet.keras").is_file() and (out / "unet.json").is_file()


# --- notebook 04 ---------------------------------------------------------------------------

@pytest.mark.notebook
def test_notebook_04_runs_headless_with_tiny_parameters(prepared_alps, tmp_path):
    import shutil

    from conftest import run_notebook

    shutil.copytree(prepared_alps / "prepared", tmp_path / "prepared")
    out = run_notebook("04_unet_training", tmp_path, patch_size=32, stride=64, depth=2,
                       base_filters=4, val_gap=32, epochs=1)
    assert out.is_file()
    from conftest import holoviews_outputs

    assert len(holoviews_outputs(out)) == 1  # the learning curves (history_view)
    from conftest import foreign_stderr_lines, notebook_stderr, path_reprs

    assert notebook_stderr(out) == []  # training printed no TensorFlow lines in the cells
    assert path_reprs(out) == []
    log = out.with_name("04_unet_training.kernel.log")  # nor in the kernel's own log
    assert log.is_file() and foreign_stderr_lines(log.read_text()) == []
    model, side = load_model(tmp_path / "model" / "unet.keras")
    assert side["inputs"].channels == ("swir1", "nir", "blue", "ndsi", "ndwi")  # the defaults
    assert side["config"]["prior"] == "ndsi" and side["config"]["shadows"] == 0.0
    assert side["training_scenes"] == ["alps-s2/aletsch", "alps-s2/fiescher", "landsat8-l2sp"]
    for name in ("04_tiles_split.png", "04_example_tiles.png", "04_learning_curves.png"):
        assert (tmp_path / "figures" / name).is_file()
    scores = pd.read_csv(tmp_path / "model" / "validation_scores.csv")
    assert list(scores["scene"]) == ["alps-s2/aletsch", "alps-s2/fiescher", "landsat8-l2sp",
                                     "pooled"]
    assert len(pd.read_csv(tmp_path / "model" / "tiles.csv")) > 0


def test_fit_refuses_tiles_cut_with_other_settings(tmp_path):
    from glacierkit.unet import TrainConfig, fit, prepare_patches

    config = TrainConfig(epochs=1, **TINY)
    patches = prepare_patches(config, _scenes())
    with pytest.raises(ParameterError, match="'stride': \\(16, 32\\)"):
        fit(config.replace(stride=32), patches, tmp_path)


# --- the committed pretrained model ----------------------------------------------------------

PRETRAINED = ROOT / "models" / "unet_alps_s2.keras"


def test_pretrained_model_reproduces_its_validation_scores(prepared_alps):
    """The committed model + sidecar alone re-score the validation blocks as recorded."""
    from glacierkit.data import split
    from glacierkit.io import open_scene
    from glacierkit.metrics import confusion, scores
    from glacierkit.prep import load_prepared
    from glacierkit.unet import feature_stack

    assert PRETRAINED.stat().st_size < 30 * 2 ** 20  # an ensemble of three 1.9 M-parameter nets
    model, side = load_model(PRETRAINED)
    # the Alps train scenes and the glacier-free tropical Landsat 8 crop, never a test scene
    assert set(side["training_scenes"]) <= {*split("alps-s2")["train"], "landsat8-l2sp"}
    spec = side["inputs"]
    assert spec.channels == ("swir1", "nir", "blue", "ndsi", "ndwi") and spec.patch_size == 128
    assert side["architecture"]["prior"]["threshold"] > 0
    step = 2 ** side["architecture"]["depth"]
    total = None
    for name, region in side["validation"]["regions"].items():
        if name == "landsat8-l2sp":  # glacier-free: every valid pixel is "not glacier"
            scene = open_scene(name)
            labels = xr.DataArray(np.where(np.isfinite(scene.values).all(axis=0), 0.0, np.nan))
        else:
            scene, labels = load_prepared(prepared_alps, name)
        b = region["validation"]
        window = (slice(b["row0"], b["row1"]), slice(b["col0"], b["col1"]))
        x = np.moveaxis(feature_stack(scene, spec).values[(slice(None), *window)], 0, -1)
        x = normalize(x, spec)
        h, w = x.shape[:2]
        x = np.pad(x, ((0, -h % step), (0, -w % step), (0, 0)), mode="reflect")
        p = np.asarray(model.predict_on_batch(x[None]))[0, :h, :w, 0]
        c = confusion(p > side["architecture"]["threshold"], labels.values[window])
        total = c if total is None else total + c
    recorded = side["metrics"]["validation"]
    assert scores(total)["KC"] == pytest.approx(recorded["KC"], abs=2e-3)
    assert abs(total.tp - recorded["TP"]) <= 0.002 * total.n


def test_mixed_precision_path_trains_and_resumes(tmp_path):
    """The GPU path (float16 compute, loss scaling, float32 output), forced on the CPU."""
    from glacierkit.unet import TrainConfig, fit

    config = TrainConfig(epochs=1, **{**TINY, "depth": 1, "base_filters": 2, "stride": 32})
    result = fit(config, _scenes(1), tmp_path, verbose=0, mixed_precision=True)
    assert result.sidecar["architecture"]["mixed_precision"] is True
    import keras

    last = keras.saving.load_model(tmp_path / "checkpoints" / "last-0001.keras")
    assert isinstance(last.optimizer, keras.optimizers.LossScaleOptimizer)
    assert last.layers[1].compute_dtype == "float16"
    assert last.layers[-1].compute_dtype == "float32"
    more = fit(config.replace(epochs=2), _scenes(1), tmp_path, verbose=0, mixed_precision=True)
    assert more.initial_epoch == 1


def test_trim_log_drops_epochs_that_will_run_again(tmp_path):
    from glacierkit.unet.train import _trim_log

    csv = tmp_path / "log.csv"
    pd.DataFrame({"epoch": [0, 1, 2, 3], "loss": [4.0, 3.0, 2.0, 1.0]}).to_csv(csv, index=False)
    _trim_log(csv, 2)  # killed after epoch 2's row was written, before its checkpoint
    assert list(pd.read_csv(csv)["epoch"]) == [0, 1]
    _trim_log(csv, 5)
    assert list(pd.read_csv(csv)["epoch"]) == [0, 1]


def test_mirrored_strategy_on_one_device_gives_the_same_loss(tmp_path):
    """tf.distribute wraps the same training: on this machine's single CPU device the
    MirroredStrategy run must match the plain one."""
    import tensorflow as tf

    from glacierkit.unet import TrainConfig, fit

    logs = {}
    for strategy in ("none", "mirrored"):
        config = TrainConfig(epochs=2, strategy=strategy, **TINY)
        result = fit(config, _scenes(), tmp_path / strategy, verbose=0)
        logs[strategy] = pd.read_csv(tmp_path / strategy / "training_log.csv")
        side = json.loads(result.model_path.with_suffix(".json").read_text())
        assert (side["environment"]["strategy"] == "MirroredStrategy") == (strategy == "mirrored")
    assert len(tf.config.list_logical_devices("CPU")) >= 1
    np.testing.assert_allclose(logs["mirrored"]["loss"], logs["none"]["loss"], rtol=1e-4)
    np.testing.assert_allclose(logs["mirrored"]["val_loss"], logs["none"]["val_loss"], rtol=1e-4)


def test_bfloat16_training_saves_a_float32_model(tmp_path):
    """precision="bfloat16": the layers compute in bfloat16 (output float32, no loss
    scaling), it resumes, and the saved model is float32 so it predicts anywhere."""
    import keras

    from glacierkit.unet import TrainConfig, fit

    config = TrainConfig(epochs=1, precision="bfloat16",
                         **{**TINY, "depth": 1, "base_filters": 2, "stride": 32})
    result = fit(config, _scenes(1), tmp_path, verbose=0)
    assert result.sidecar["architecture"]["precision"] == "bfloat16"
    assert result.sidecar["config"]["precision"] == "bfloat16"
    last = keras.saving.load_model(tmp_path / "checkpoints" / "last-0001.keras")
    assert not isinstance(last.optimizer, keras.optimizers.LossScaleOptimizer)
    assert last.layers[1].compute_dtype == "bfloat16"
    assert last.layers[-1].compute_dtype == "float32"
    saved, _ = load_model(result.model_path)
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
    more = fit(config.replace(epochs=2), _scenes(1), tmp_path, verbose=0)
    assert more.initial_epoch == 1
    with pytest.raises(ParameterError, match="different training"):
        fit(config.replace(epochs=3, precision="float32"), _scenes(1), tmp_path, verbose=0)
    with pytest.raises(ParameterError, match="precision"):
        TrainConfig(precision="half")
