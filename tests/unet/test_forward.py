"""The compiled forward pass: one trace for any window shape and member, the same outputs
as Keras, and predictions unchanged against the former path (windows and forward)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import make_scene, tiny_unet

keras = pytest.importorskip("keras")

from glacierkit.unet import (  # noqa: E402
    CompiledForward,
    InputSpec,
    architecture_key,
    cast_model,
    ensemble,
    feature_stack,
    normalize,
    predict_scene,
)
from glacierkit.unet.artifact import resolve_model  # noqa: E402
from glacierkit.unet.windows import blend_weights  # noqa: E402


def _spec() -> InputSpec:
    scene, _ = make_scene(64, 64, seed=3)
    spec = InputSpec(("green", "swir1", "nir"), ("ndsi",), patch_size=32)
    raw = feature_stack(scene, spec).values
    return spec.with_stats(np.nanmean(raw, axis=(1, 2)), np.nanstd(raw, axis=(1, 2)))


@pytest.fixture(scope="module")
def trio():
    """An ensemble of three untrained tiny U-Nets (one recipe, three seeds) and its spec:
    outputs spread around 0.5, so any change shows."""
    spec = _spec()
    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        members.append(tiny_unet(spec.n_channels))
    return ensemble(members), spec


def test_one_trace_for_every_window_shape_batch_and_member(trio):
    model, spec = trio
    fwd = CompiledForward(model.layers[1:4])
    rng = np.random.default_rng(0)
    for shape in [(1, 32, 32), (2, 48, 64), (1, 64, 40), (3, 40, 64), (1, 32, 32)]:
        x = rng.normal(size=(*shape, spec.n_channels)).astype("float32")
        np.testing.assert_allclose(fwd.predict_on_batch(x), model.predict_on_batch(x),
                                   atol=1e-6, rtol=0)
    assert fwd.traces == 1  # Keras' predict_on_batch: one per shape (and member)


def test_large_batches_run_xla_compiled_with_the_same_result(trio, monkeypatch):
    """In float32 a batch of at least XLA_FROM_PIXELS pixels runs through the XLA-compiled
    twin of the graph (one more trace, a compile per shape): the same probabilities to
    float rounding. Small batches and bfloat16 keep the plain graph."""
    from glacierkit.unet import forward

    model, spec = trio
    monkeypatch.setattr(forward, "XLA_FROM_PIXELS", 2 * 48 * 64)
    rng = np.random.default_rng(4)
    large = rng.normal(size=(2, 48, 64, spec.n_channels)).astype("float32")
    small = large[:1, :32, :32]
    fwd = CompiledForward(model.layers[1:4])
    np.testing.assert_allclose(fwd.predict_on_batch(large), model.predict_on_batch(large),
                               atol=1e-5, rtol=0)
    assert fwd.traces == 1
    np.testing.assert_allclose(fwd.predict_on_batch(small), model.predict_on_batch(small),
                               atol=1e-6, rtol=0)
    assert fwd.traces == 2  # the plain graph, for the small batch
    low = CompiledForward(model.layers[1:4], "bfloat16")
    low.predict_on_batch(large)
    low.predict_on_batch(small)
    assert low.traces == 1


def test_members_of_other_architectures_get_their_own_graph():
    spec = _spec()
    keras.utils.set_random_seed(0)
    small, large, small2 = (tiny_unet(spec.n_channels, base=4), tiny_unet(spec.n_channels, base=8),
                            tiny_unet(spec.n_channels, base=4))
    assert architecture_key(small) == architecture_key(small2)  # names and weights differ
    assert architecture_key(small) != architecture_key(large)
    model = ensemble([small, large, small2])
    fwd = CompiledForward([small, large, small2])
    x = np.random.default_rng(1).normal(size=(2, 32, 48, spec.n_channels)).astype("float32")
    np.testing.assert_allclose(fwd.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6,
                               rtol=0)
    assert fwd.traces == 2


def test_bfloat16_runs_each_member_as_its_own_cast_would(trio):
    """One cast template fed with every member's weights gives each member's bfloat16
    output: the mean equals the members' casts run one by one."""
    model, spec = trio
    members = model.layers[1:4]
    fwd = CompiledForward(members, "bfloat16")
    x = np.random.default_rng(2).normal(size=(2, 32, 32, spec.n_channels)).astype("float32")
    each = [np.asarray(cast_model(m, "bfloat16").predict_on_batch(x), "float32")
            for m in members]
    expected = (each[0] + each[1] + each[2]) / np.float32(3)
    np.testing.assert_allclose(fwd.predict_on_batch(x), expected, atol=1e-6, rtol=0)
    f32 = CompiledForward(members).predict_on_batch(x)
    assert 0 < float(np.abs(fwd.predict_on_batch(x) - f32).max()) < 0.05  # it is bfloat16


def test_the_predictor_uses_new_weights_of_its_model(trio):
    """The weights are read at every call, as Keras' predict_on_batch does."""
    model, spec = trio
    pred = resolve_model((model, spec), "float32")
    x = np.random.default_rng(3).normal(size=(1, 32, 32, spec.n_channels)).astype("float32")
    before = pred.model.predict_on_batch(x)
    member = model.layers[1]
    saved = member.get_weights()
    try:
        member.set_weights([w * 0.5 for w in saved])
        after = pred.model.predict_on_batch(x)
        np.testing.assert_allclose(after, model.predict_on_batch(x), atol=1e-6, rtol=0)
        assert float(np.abs(after - before).max()) > 1e-3
    finally:
        member.set_weights(saved)


def test_a_scene_with_tta_and_rectangular_windows_traces_once(trio):
    """Rotated windows (TTA) of a rectangular plan and batches of several sizes: one graph."""
    model, spec = trio
    pred = resolve_model((model, spec), "float32")
    scene, _ = make_scene(150, 90, seed=4)
    prob = predict_scene(pred, scene, window=64, batch_size=2, tta=True, progress=False,
                         guard=False)
    wy, wx = (int(v) for v in prob.attrs["window_shape"].split("x"))
    assert wy != wx and prob.attrs["n_windows"] > 3
    assert pred.model.traces == 1


# ------------------------------------------------------------------ unchanged predictions
def _former_prediction(model, spec: InputSpec, scene, window: int, context: int,
                       ramp: int, multiple: int) -> np.ndarray:
    """The former path, written out plainly: square windows of at most ``window`` px
    fitted to the scene, reflected by ``context + ramp`` px beyond each edge, blended with
    ``blend_weights``, each batch through Keras' ``predict_on_batch`` of the whole model."""
    raw = feature_stack(scene, spec).values
    nodata = np.isnan(raw[: len(spec.bands)]).any(axis=0)
    feats = normalize(raw, spec, axis=0)
    feats = np.nan_to_num(feats, nan=0.0).transpose(1, 2, 0)
    overlap = 2 * context + ramp
    margin = context + ramp

    def axis(size):
        step = window - overlap
        n = max(1, math.ceil((size + 2 * margin - window) / step) + 1)
        w = math.ceil((size + 2 * margin + (n - 1) * overlap) / n / multiple) * multiple
        w = min(w, window)
        return n, w, w - overlap

    (ny, wy, sy), (nx, wx, sx) = axis(scene.sizes["y"]), axis(scene.sizes["x"])
    height, width = nodata.shape
    rows = np.arange(-margin, -margin + (ny - 1) * sy + wy)
    cols = np.arange(-margin, -margin + (nx - 1) * sx + wx)
    def reflect(i, n):
        r = np.mod(i, 2 * (n - 1))
        return np.where(r >= n, 2 * (n - 1) - r, r)

    padded = feats[reflect(rows, height)][:, reflect(cols, width)]
    taper = np.outer(blend_weights(wy, sy, context), blend_weights(wx, sx, context))
    acc = np.zeros(padded.shape[:2])
    norm = np.zeros(padded.shape[:2])
    for j in range(ny):
        for k in range(nx):
            win = padded[j * sy: j * sy + wy, k * sx: k * sx + wx]
            p = np.asarray(model.predict_on_batch(win[None]))[0, ..., 0]
            acc[j * sy: j * sy + wy, k * sx: k * sx + wx] += p * taper
            norm[j * sy: j * sy + wy, k * sx: k * sx + wx] += taper
    inside = (slice(margin, margin + height), slice(margin, margin + width))
    out = (acc[inside] / norm[inside]).astype("float32")
    out[nodata] = np.nan
    return out


@pytest.fixture(scope="module")
def trained_trio(trained):
    """The tiny trained U-Net and two copies with perturbed weights, as one ensemble:
    probabilities from 0 to 1, as a real model gives."""
    _, net, spec = trained
    rng = np.random.default_rng(5)
    members = [net]
    for _ in range(2):
        copy = keras.models.clone_model(net)
        copy.set_weights([w * (1 + 0.05 * rng.standard_normal(w.shape)).astype(w.dtype)
                          for w in net.get_weights()])
        members.append(copy)
    return ensemble(members), spec


def test_predictions_are_unchanged_against_the_former_path(trained_trio):
    """A three-member ensemble on a scene with several windows and a nodata patch: the
    compiled forward and the new window plan (least-work rectangles, planned without
    reflecting the scene's edges) change no probability by more than 0.002 in float32
    against the former plan and Keras forward pass, except within the context (12 px) of
    the scene's edges, which the former plan reflected by 28 px and the new one by what
    the windows' rounding leaves free (here none: as a single window sees a scene)."""
    model, spec = trained_trio
    scene, _ = make_scene(170, 150, seed=8)
    scene = scene.copy()
    scene[:, 70:80, 20:35] = np.nan
    pred = resolve_model((model, spec), "float32")
    new = predict_scene(pred, scene, window=96, progress=False, guard=False)
    assert (pred.context, pred.multiple) == (12, 4)
    former = _former_prediction(model, spec, scene, window=96, context=12, ramp=16,
                                multiple=4)
    assert new.attrs["n_windows"] >= 4 and new.attrs["window_shape"] != "96x96"
    np.testing.assert_array_equal(np.isnan(new.values), np.isnan(former))
    inner = (slice(12, -12), slice(12, -12))
    diff = np.abs(new.values - former)[inner]
    assert float(np.nanmax(diff)) <= 0.002, float(np.nanmax(diff))
    assert float(np.nanstd(former)) > 0.2  # probabilities from 0 to 1
    # ... and the comparison can fail: without context the windows' edges show
    hard = _former_prediction(model, spec, scene, window=96, context=0, ramp=0, multiple=4)
    assert float(np.nanmax(np.abs(hard - former)[inner])) > 0.002
    # at the scene's edges: what one window that reaches past the edge predicts there
    single = predict_scene(pred, scene, window=192, progress=False, guard=False)
    assert single.attrs["n_windows"] == 1
    edge = np.ones(new.shape, bool)
    edge[inner] = False
    np.testing.assert_allclose(new.values[edge][:150], single.values[edge][:150], atol=1e-5)


# ------------------------------------------------------------------ the first call
def test_a_small_scene_streams_without_numba_or_distributed(tmp_path):
    """What a command-line call on a small scene imports besides TensorFlow: reading it
    through the row streamer (features, NDSI, NDWI) imports neither numba (the NumPy
    expression gives the same bits below a million pixels) nor distributed (dask's
    schedulers are handed over as functions, as the CLI does)."""
    import subprocess
    import sys

    from conftest import ROOT, write_scene

    path = write_scene(tmp_path / "small.tif", 64, 48)
    code = f"""
import sys
import dask, dask.threaded
import numpy as np
from glacierkit.unet import InputSpec
from glacierkit.unet.rows import Rows, open_streaming
with dask.config.set(scheduler=dask.threaded.get):
    scene = open_streaming({str(path)!r}, 32)
    spec = InputSpec(("green", "swir1", "nir"), ("ndsi", "ndwi")).with_stats([0.0] * 5,
                                                                              [1.0] * 5)
    rows = Rows(scene, spec, 32)
    out = np.empty((64, 48, 5), "float32")
    rows.fill(out, np.arange(64))
    rows.close()
assert np.isfinite(out).all() and out.std() > 0
print("numba" in sys.modules, "distributed" in sys.modules, "tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr[-2000:]
