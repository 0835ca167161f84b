"""Full-scene prediction: grid kept, NaN kept, any size, no seams, TTA, streaming, CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from conftest import ROOT, assert_same_grid, make_scene

keras = pytest.importorskip("keras")

from glacierkit.exceptions import (  # noqa: E402
    DataNotFoundError,
    DomainShiftWarning,
    GlacierKitError,
    ParameterError,
    UnknownBandError,
)
from glacierkit.io import open_scene, write_raster  # noqa: E402
from glacierkit.unet import (  # noqa: E402
    InputSpec,
    predict_scene,
    window_weights,
)
from glacierkit.unet.artifact import _reach, resolve_model  # noqa: E402
from glacierkit.unet.rows import Rows  # noqa: E402
from glacierkit.unet.windows import (  # noqa: E402
    CONTEXT_WEIGHT,
    Axis,
    blend_weights,
    plan_windows,
    reflect_index,
)

WINDOW = 64  # small windows keep the tests fast




def _predict(trained, scene, **kw):
    _, model, spec = trained
    kw = {"window": WINDOW, "progress": False, **kw}
    return predict_scene((model, spec), scene, **kw)


def test_weights_blend_to_one_and_fold_reflects():
    w = window_weights(8)
    assert w.min() > 0
    np.testing.assert_allclose(w[:4] + w[4:], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(reflect_index(np.arange(-3, 8), 5), [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])
    np.testing.assert_array_equal(reflect_index(np.arange(-2, 3), 1), [0, 0, 0, 0, 0])


@pytest.mark.parametrize("window, step, context", [(64, 32, 0), (64, 36, 12), (64, 40, 12),
                                                   (1280, 1104, 80), (96, 24, 8)])
def test_blend_weights_sum_to_one_and_skip_the_context(window, step, context):
    w = blend_weights(window, step, context)
    # the context: a weight of 1e-12, which only counts where no window covers a pixel better
    assert (w[:context] == CONTEXT_WEIGHT).all() and (w[window - context:] == CONTEXT_WEIGHT).all()
    assert (w[context: window - context] > 0).all()
    ax = Axis(700, window, step, context)
    norm = ax.norm()[ax.margin: ax.margin + 700]  # the scene's pixels
    if window - step <= window // 2 + context:  # ramps that meet: a partition of unity
        np.testing.assert_allclose(norm, 1.0, rtol=1e-6)
    assert norm.min() > 0
    np.testing.assert_allclose(blend_weights(64, 32), window_weights(64), rtol=1e-6)
    with pytest.raises(ParameterError, match="context"):
        blend_weights(64, 48, 10)


def test_receptive_radius_from_the_layers_matches_an_impulse():
    """The layer walk that sets the default context agrees with where an impulse at the
    centre of an input changes the output (the receptive field), to within the pooling
    alignment."""
    from conftest import tiny_unet

    keras.utils.set_random_seed(0)
    for model in (tiny_unet(4), tiny_unet(3, base=4)):
        n = 96
        x = np.zeros((1, n, n, model.input_shape[-1]), "float32")
        y = x.copy()
        y[0, n // 2, n // 2] = 3.0
        d = np.abs(model.predict_on_batch(y) - model.predict_on_batch(x))[0, ..., 0]
        rows, cols = np.nonzero(d > 0)
        measured = max(np.abs(rows - n // 2).max(), np.abs(cols - n // 2).max())
        radius, first = _reach(model)
        assert measured <= radius <= measured + 4, (measured, radius)
        assert first == model.layers[1].filters
    # an ensemble: its members run one at a time, so the largest member's reach and filters
    from glacierkit.unet import ensemble

    small, large = tiny_unet(3, base=4), tiny_unet(3, base=8)
    assert _reach(ensemble([small, large])) == (_reach(large)[0], 8)


def _least_work_brute_force(height, width, overlap, margin, side, m=16):
    """The least window pixels of any ny x nx grid of equal windows (multiples of m) that
    cover the scene plus ``margin`` at each edge, each at most ``side`` high and side**2 in
    area: every count tried."""
    def fit(size, n):
        return -(-(size + 2 * margin + (n - 1) * overlap) // (n * m)) * m

    best = None
    for ny in range(1, 40):
        for nx in range(1, 40):
            wy, wx = fit(height, ny), fit(width, nx)
            if wy <= side and wy * wx <= side * side and wy > overlap and wx > overlap:
                work = ny * wy * nx * wx
                best = work if best is None else min(best, work)
    return best


@pytest.mark.parametrize("precision, window, factor, factor_2048", [
    ("float32", 1168, 1.36, 1.20), ("bfloat16", 1792, 1.21, 1.10)])
def test_default_plan_does_the_least_pixel_work(precision, window, factor, factor_2048):
    """The committed model: windows within the activation memory of one default window
    (1168 px square in float32, 1792 in bfloat16; rectangles as wide as that memory allows),
    chosen for the least pixel work without reflection; the scene's edges are then
    reflected by what the rounding leaves free, in whole pooling steps: on a full Landsat
    scene 1.21-1.36 window pixels per scene pixel (50% overlap of 256-px windows: 4.2); on a
    2048-px scene 2 x 2 windows of 1120 px in float32 (1.20), two in bfloat16 (1.09)."""

    path = ROOT / "models" / "unet_alps_s2.keras"
    pred = resolve_model(path, precision)
    assert (pred.multiple, pred.radius, pred.context) == (16, 107, 80)
    for (height, width), most in (((7700, 7800), factor), ((2048, 2048), factor_2048)):
        plan = plan_windows(pred, height, width, window=None, overlap=None, context=None,
                            batch_size=None)
        assert plan.window == window and plan.context == 80
        assert plan.pixel_factor < most
        assert plan.ay.window <= window and plan.ay.window * plan.ax.window <= window**2
        for ax in (plan.ay, plan.ax):
            assert ax.window % 16 == 0 and ax.step % 16 == 0
            assert ax.window - ax.step == plan.window - plan.step == 176  # the same overlap
            # the reflection: free pixels only, whole pooling steps, at most the context
            assert ax.margin % 16 == 0 and 0 <= ax.margin <= 80
            assert ax.margin == min(80, (ax.padded - ax.size) // 2) // 16 * 16
            assert ax.padded >= ax.size + 2 * ax.margin  # covered
            smaller = (ax.count - 1) * (ax.step - 16) + ax.window - 16
            assert smaller < ax.size  # windows 16 px smaller would not cover
        work = plan.ay.count * plan.ay.window * plan.ax.count * plan.ax.window
        assert work == _least_work_brute_force(height, width, 176, 0, window)
        assert plan.batch_size == 1
    plan = plan_windows(pred, 2048, 2048, window=None, overlap=None, context=None,
                        batch_size=None)
    assert plan.n_windows == (2 if precision == "bfloat16" else 4)
    small = plan_windows(pred, 150, 150, window=None, overlap=None, context=None, batch_size=None)
    assert small.n_windows == 1 and small.ay.window == 192  # the overlap (176) + 16
    legacy = plan_windows(pred, 7700, 7800, window=256, overlap=0.5, context=0, batch_size=4)
    assert legacy.pixel_factor > 4 and legacy.ay.margin == 128  # as before: half a window
    given = plan_windows(pred, 2048, 2048, window=1024, overlap=None, context=None,
                         batch_size=None)
    assert max(given.ay.window, given.ax.window) <= 1024  # a given window bounds both sides


def test_bfloat16_windows_give_the_float32_windows_result(trained, monkeypatch):
    """In bfloat16 the windows are assembled in bfloat16 (half the memory): the model
    rounds its inputs to bfloat16 anyway, so the result is the same."""
    import ml_dtypes

    from glacierkit.unet import predict as pr

    scene, _ = make_scene(130, 110, seed=12)
    pred = resolve_model((trained[1], trained[2]), "bfloat16")
    assert pr._input_dtype(pred) == np.dtype(ml_dtypes.bfloat16)
    assert pr._input_dtype(resolve_model((trained[1], trained[2]), "float32")) == np.float32
    a = predict_scene(pred, scene, window=WINDOW, progress=False).values
    monkeypatch.setattr(pr, "_input_dtype", lambda p: np.dtype("float32"))
    b = predict_scene(pred, scene, window=WINDOW, progress=False).values
    np.testing.assert_array_equal(a, b)


def test_context_and_precision_parameters(trained):
    scene, glacier = make_scene(96, 80, seed=3)
    with pytest.raises(ParameterError, match="context"):
        _predict(trained, scene, context=-1)
    with pytest.raises(ParameterError, match="too small for context"):
        _predict(trained, scene, context=40)
    with pytest.raises(ParameterError, match="overlap"):
        _predict(trained, scene, context=20, overlap=0.5)
    with pytest.raises(ParameterError, match="precision"):
        _predict(trained, scene, precision="half")
    f32 = _predict(trained, scene, precision="float32")
    bf16 = _predict(trained, scene, precision="bfloat16")
    assert f32.attrs["precision"] == "float32" and bf16.attrs["precision"] == "bfloat16"
    assert bf16.dtype == np.float32
    diff = np.abs(f32.values - bf16.values)
    assert 0 < float(diff.max()) < 0.05
    assert ((bf16.values > 0.5) == glacier).mean() > 0.95
    assert f32.attrs["context"] == 12 and f32.attrs["window_shape"] == "60x60"


def test_grid_crs_and_values(trained):
    scene, glacier = make_scene(96, 80)
    prob = _predict(trained, scene)
    assert_same_grid(prob, scene)
    assert prob.name == "glacier_probability" and prob.dtype == np.float32
    assert prob.dims == ("y", "x")
    assert float(prob.min()) >= 0 and float(prob.max()) <= 1
    assert ((prob.values > 0.5) == glacier).mean() > 0.95  # the model learnt the planted glacier
    assert prob.attrs["model"] == "model" and prob.attrs["n_windows"] > 1


def test_model_from_path_and_sensor_by_role(trained):
    """The sidecar picks bands by role, so a Sentinel-2 scene works as well as Landsat 8."""
    path = trained[0]
    for sensor in ("landsat8", "sentinel2"):
        scene, glacier = make_scene(70, 90, sensor=sensor, seed=5)
        prob = predict_scene(path, scene, window=WINDOW, progress=False)
        assert_same_grid(prob, scene)
        assert ((prob.values > 0.5) == glacier).mean() > 0.95, sensor
        assert prob.attrs["model"] == "tiny-test-unet"  # the sidecar's name


def test_nan_stays_nan(trained):
    scene, _ = make_scene(80, 72)
    scene = scene.copy()
    scene[:, 10:20, 30:40] = np.nan  # a nodata block in every band
    swir = list(scene.role.values).index("swir1")
    scene[swir, 50, 5] = np.nan  # one input band missing at one pixel
    blue = list(scene.role.values).index("blue")
    scene[blue, 60, 60] = np.nan  # a band the model does not use
    prob = _predict(trained, scene)
    expected = np.zeros((80, 72), dtype=bool)
    expected[10:20, 30:40] = True
    expected[50, 5] = True
    np.testing.assert_array_equal(np.isnan(prob.values), expected)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (63, 65), (130, 37), (64, 64)])
def test_any_size(trained, shape):
    """Sizes that are not multiples of the window, and smaller than one window."""
    scene, glacier = make_scene(*shape, seed=2)
    prob = _predict(trained, scene)
    assert_same_grid(prob, scene)
    assert np.isfinite(prob.values).all()
    if min(shape) >= 30:  # tinier scenes are mostly reflection, unlike any training tile
        assert ((prob.values > 0.5) == glacier).mean() > 0.9


@pytest.mark.parametrize("overlap", [None, 0.5])
def test_no_seams_when_the_window_grid_shifts(trained, overlap):
    """Cropping the scene moves every window edge; the blended result must not move.

    The crop (24 px) is a multiple of the model's pooling factor (4), so only where the
    window edges fall changes. Compared in the interior (one window from every edge): max
    difference <= 0.01 with the default context-and-ramp blend and at 50% overlap, while a
    plain tiling (overlap 0, no context) differs by > 0.1 there, which shows the test can
    fail.
    """
    scene, _ = make_scene(256, 240, seed=7)
    crop = 24
    shifted = scene.isel(y=slice(crop, None), x=slice(crop, None))
    inner = (slice(WINDOW, 256 - crop - WINDOW), slice(WINDOW, 240 - crop - WINDOW))
    diffs = {}
    for ovl in (overlap, 0.0):
        full = _predict(trained, scene, overlap=ovl).values[crop:, crop:][inner]
        part = _predict(trained, shifted, overlap=ovl).values[inner]
        diffs[ovl] = float(np.abs(full - part).max())
    assert diffs[overlap] <= 0.01, diffs
    assert diffs[0.0] > 0.1, diffs


def test_window_size_barely_matters(trained):
    scene, _ = make_scene(200, 200, seed=8)
    a = _predict(trained, scene, window=64).values
    b = _predict(trained, scene, window=96).values
    assert float(np.abs(a - b)[40:-40, 40:-40].max()) < 0.03


def test_tta_confidence(trained):
    scene, glacier = make_scene(70, 60, seed=4)
    scene = scene.copy()
    scene[:, :3, :3] = np.nan
    plain = _predict(trained, scene)
    prob = _predict(trained, scene, tta=True)
    assert_same_grid(prob, scene)
    conf = prob["confidence"].values
    assert conf.shape == prob.shape and conf.dtype == np.float32
    ok = np.isfinite(prob.values)
    np.testing.assert_array_equal(np.isfinite(conf), ok)
    assert conf[ok].min() >= 0 and conf[ok].max() <= 1
    assert np.median(conf[ok]) > 0.9  # an easy scene: the 8 views agree almost everywhere
    assert ((prob.values > 0.5) == glacier)[ok].mean() > 0.95
    assert float(np.nanmax(np.abs(prob.values - plain.values))) > 0  # TTA changed something


def test_tta_is_flip_equivariant(trained):
    """Averaging over all 8 views makes the result commute with flips: the windows' context
    (12 px) nearly covers the tiny model's receptive radius (13 px), so where the windows
    fall does not matter, except within the context of the scene's edges: the windows
    start at the first column and reach past the last one, which is reflected."""
    scene, _ = make_scene(96, 96, seed=9)
    a = _predict(trained, scene, tta=True).values
    flipped = scene.copy(data=scene.values[:, :, ::-1])
    b = _predict(trained, flipped, tta=True).values[:, ::-1]
    np.testing.assert_allclose(a[:, 12:-12], b[:, 12:-12], atol=1e-5)
    assert np.abs(a - b).max() > 1e-3  # ... and the test can fail: at the edges it does


def test_streaming_from_file_equals_in_memory(trained, tmp_path, monkeypatch):

    scene, _ = make_scene(150, 130, seed=6)
    path = write_raster(scene, tmp_path / "scene.tif", tags={"sensor": "landsat8"}, cog=False)
    in_memory = _predict(trained, scene)
    sizes = []
    original = Rows._load

    def spy(self, b):
        sizes.append(len(self.cache))
        return original(self, b)

    monkeypatch.setattr(Rows, "_load", spy)
    from_file = predict_scene(trained[0], path, window=WINDOW, block_rows=16, progress=False)
    assert_same_grid(from_file, scene)
    np.testing.assert_allclose(from_file.values, in_memory.values, atol=1e-6)
    # never more than the 16-row blocks of one window and the next step (read ahead while
    # the network works), plus one at each end, in memory
    assert max(sizes) <= (WINDOW + from_file.attrs["step"]) // 16 + 2
    lazy = open_scene(path, chunks={"y": 40, "x": -1})
    from_dask = _predict(trained, lazy)
    np.testing.assert_allclose(from_dask.values, in_memory.values, atol=1e-6)


def test_sample_scene_by_name(trained, sample_data):
    prob = predict_scene(trained[0], "alps-s2/merdeglace", window=WINDOW, progress=False)
    assert_same_grid(prob, open_scene("alps-s2/merdeglace"))
    assert 0.05 < float((prob > 0.5).mean()) < 0.95  # bright ice and dark rock both present


def test_missing_role_is_named(trained):
    scene, _ = make_scene(40, 40)
    no_swir = scene.isel(band=[i for i, r in enumerate(scene.role.values) if r != "swir1"])
    with pytest.raises(UnknownBandError, match="swir1") as err:
        _predict(trained, no_swir)
    assert "roles" in str(err.value) and "green" in str(err.value)


def test_missing_sidecar_and_bad_parameters(trained, tmp_path):
    lone = tmp_path / "lone.keras"
    shutil.copy(trained[0], lone)
    scene, _ = make_scene(32, 32)
    with pytest.raises(DataNotFoundError, match="sidecar"):
        predict_scene(lone, scene)
    with pytest.raises(ParameterError, match="multiple of 4"):
        _predict(trained, scene, window=30)
    with pytest.raises(ParameterError, match="overlap"):
        _predict(trained, scene, overlap=1.0)
    # a mistyped notebook parameter (text) names the value and the choices
    with pytest.raises(ParameterError, match=r"overlap='half'.*None for the default plan"):
        _predict(trained, scene, overlap="half")
    model, spec = trained[1], trained[2]
    with pytest.raises(GlacierKitError, match="bare Keras model"):
        predict_scene(model, scene)
    with pytest.raises(ParameterError, match="normalization"):
        predict_scene((model, InputSpec(spec.bands, spec.extra)), scene)


def test_cli_predict(trained, tmp_path, capsys):
    from glacierkit.pipeline import main

    scene, glacier = make_scene(600, 560, seed=11)
    src_path = write_raster(scene, tmp_path / "big.tif", tags={"sensor": "landsat8"}, cog=False)
    out = tmp_path / "pred"
    rc = main(["predict", str(trained[0]), str(src_path), str(out), "--threshold", "0.5",
               "--window", str(WINDOW), "--batch-size", "16", "--outlines", "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mask.tif" in printed and "outlines.gpkg" in printed
    for name in ("probability.tif", "mask.tif"):
        with rasterio.open(out / name) as src:
            assert src.crs == scene.rio.crs
            assert src.overviews(1), f"{name} has no overviews"
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert src.profile["tiled"]
    with rasterio.open(out / "mask.tif") as src:
        assert (src.read(1) == glacier).mean() > 0.95
    import geopandas as gpd

    outlines = gpd.read_file(out / "outlines.gpkg")
    assert outlines.crs == scene.rio.crs and len(outlines) >= 1
    assert outlines["area_km2"].iloc[0] == pytest.approx(glacier.sum() * 900 / 1e6, rel=0.05)


def test_cli_errors(trained, tmp_path, capsys):
    from glacierkit.pipeline import main

    rc = main(["predict", str(trained[0]), str(tmp_path / "nope.tif"), str(tmp_path / "o")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    rc = main(["predict", str(tmp_path / "none.keras"), "x", str(tmp_path / "o")])
    assert rc == 2 and "Model not found" in capsys.readouterr().err


def test_guard_reads_its_sample_while_the_scene_streams(trained, tmp_path, monkeypatch):
    """The domain-shift guard gets every n-th pixel from the blocks prediction reads (no
    second pass over the file): the same report as the guard on the whole scene."""
    import warnings

    from glacierkit.unet import guard

    monkeypatch.setattr(guard, "MAX_PIXELS", 1000)  # sample every 5th row and column
    scene, _ = make_scene(150, 130, seed=6)
    scene = scene.copy()
    scene[:, 40:47, 10:90] = np.nan
    path = write_raster(scene, tmp_path / "scene.tif", tags={"sensor": "landsat8"}, cog=False)
    _, model, spec = trained
    from glacierkit.unet import feature_stack

    q = [0.005, 0.05, 0.5, 0.95, 0.995]
    feats = feature_stack(scene.isel(y=slice(0, 60)), spec).values
    values = {ch: [float(v) for v in np.nanquantile(feats[i], q)]
              for i, ch in enumerate(spec.channels)}
    sidecar = {"inputs": spec, "training_distribution": {"quantiles": q, "values": values}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainShiftWarning)
        prob = predict_scene((model, sidecar), path, window=WINDOW, block_rows=16,
                             progress=False)
        lazy = open_scene(path, chunks={"y": 16, "x": -1})
        whole = guard.guard_report(prob.values, lazy, spec, sidecar, 0.5)
    assert guard.sample_step(scene.shape) == 5
    assert prob.attrs["guard"] == whole
    assert prob.attrs["guard"]["inputs"]["pixels_sampled"] > 500
    assert set(whole["inputs"]["channels"]) == set(spec.channels)


def test_bench_predict_still_runs(trained, tmp_path):
    """bench/predict.py on a small scene with the tiny model ends with its figures (the
    CLI timing, which starts two more processes, is left out here, and the matmul peak is
    taken on 256 x 256 matrices: a quick check that the script runs, not a measurement)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "predict.py"), "--size", "300", "260",
         "--model", str(trained[0]), "--no-compare", "--no-write", "--cli-runs", "0",
         "--raw-batches", "1", "--peak-size", "256", "--tmp", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("plan: ") for line in lines)
    names = [line.split(":")[0] for line in lines[-5:]]
    assert names == ["pixel_factor", "forward_vs_matmul_peak", "overhead_vs_raw_forward",
                     "memory_beyond_model_gb", "scene_vs_raw_forward_throughput"]
    assert float(lines[-1].split()[1]) > 0
    # the prediction alone, in its own process, and its memory beyond the model
    assert any(line.startswith("predict_scene alone (a fresh process") for line in lines)
    assert 0 <= float(lines[-2].split()[1]) < 2
