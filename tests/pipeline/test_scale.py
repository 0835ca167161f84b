"""Scaling out: chunked (dask) scenes equal in-memory ones; many scenes on a LocalCluster,
atomic and resumable outputs, a worker killed mid-scene; ``glacierkit run --scenes``."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from conftest import fit_tiny_model, make_scene, tiny_unet

keras = pytest.importorskip("keras")
distributed = pytest.importorskip("distributed")

# The hook below runs inside the worker processes, which cannot import this test module.
import cloudpickle  # noqa: E402

from glacierkit.exceptions import DataNotFoundError, ParameterError  # noqa: E402
from glacierkit.indices import ndsi  # noqa: E402
from glacierkit.io import open_scene, write_raster  # noqa: E402
from glacierkit.labels import rasterize_outlines  # noqa: E402
from glacierkit.pipeline import (  # noqa: E402
    RESULT_FILE,
    load_pipeline,
    pooled_scores,
    read_scene_list,
    run_scenes,
)
from glacierkit.unet import PROBABILITY_SCALE, aligned_chunks, predict_scene, predict_scene_dask  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WINDOW = 32
OUTPUT_FILES = {"probability.tif", "mask.tif", "outlines.gpkg", RESULT_FILE,
                "probability.qml", "mask.qml"}  # QGIS styles (glacierkit.qgis)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny U-Net fitted for a few seconds on the planted glacier; saved with its sidecar."""
    return fit_tiny_model(tmp_path_factory.mktemp("model"), size=(160, 160), window=WINDOW,
                          n_tiles=96, epochs=4, seed=2, optimizer=keras.optimizers.Adam(0.01),
                          name="tiny-scale-test")


@pytest.fixture(scope="module")
def untrained(model):
    """Random weights: outputs spread around 0.5, so any difference in the windows shows
    (the trained model is saturated at 0 and 1 on these easy scenes)."""
    keras.utils.set_random_seed(5)
    return tiny_unet(model[2].n_channels), model[2]


# --------------------------------------------------------------------------- within a scene
def test_aligned_chunks():
    assert aligned_chunks(200, 48, 32, 16) == (48, 48, 48, 56)  # short rest joins the last
    assert aligned_chunks(200, 37, 32, 16) == (48, 48, 48, 56)  # at least window + step
    assert aligned_chunks(200, 100, 32, 16) == (96, 104)
    assert aligned_chunks(30, 48, 32, 16) == (30,)
    assert aligned_chunks(100, 64, 32, 16) == (100,)  # 36 left over: too short to stand alone
    for size in range(1, 300, 7):
        for chunk in (1, 40, 64, 100):
            sizes = aligned_chunks(size, chunk, 32, 24)
            assert sum(sizes) == size
            assert all(c % 24 == 0 for c in sizes[:-1])
            assert len(sizes) == 1 or min(sizes) >= 56


def test_chunked_ndsi_and_labels_equal_in_memory(tmp_path):
    import geopandas as gpd
    from shapely.geometry import Polygon

    scene, _ = make_scene(150, 130, seed=4)
    scene = scene.copy()
    scene[:, 10:20, 100:110] = np.nan
    path = write_raster(scene, tmp_path / "scene.tif", tags={"sensor": "landsat8"})
    eager = open_scene(path, chunks=False)
    lazy = open_scene(path, chunks={"band": 1, "y": 40, "x": 50})
    assert lazy.chunks is not None and eager.chunks is None
    a, b = ndsi(eager), ndsi(lazy)
    assert b.chunks is not None  # still lazy
    np.testing.assert_array_equal(a.values, b.compute().values)
    # a glacier polygon with a hole and a slanted edge, crossing chunk borders
    x0, y0 = 400_000.0, 5_100_000.0
    shell = [(x0 + 300, y0 - 200), (x0 + 3000, y0 - 900), (x0 + 2500, y0 - 4000),
             (x0 + 200, y0 - 3500)]
    hole = [(x0 + 1000, y0 - 1500), (x0 + 1600, y0 - 1500), (x0 + 1600, y0 - 2100)]
    outlines = gpd.GeoDataFrame({"RGIId": ["G1"]}, geometry=[Polygon(shell, [hole])],
                                crs=scene.rio.crs)
    eager_labels = rasterize_outlines(outlines, like=eager)
    lazy_labels = rasterize_outlines(outlines, like=lazy)
    assert lazy_labels.chunks is not None
    assert 0.1 < float(eager_labels.mean()) < 0.9
    np.testing.assert_array_equal(eager_labels.values, lazy_labels.compute().values)


@pytest.mark.parametrize("overlap, chunk, tta", [(0.5, 48, False), (0.5, 37, True),
                                                 (0.25, 50, False), (0.0, 40, False)])
def test_chunked_prediction_equals_in_memory(untrained, overlap, chunk, tta):
    """Same windows, weights and summation order as predict_scene: equal to 1e-6 (TF may
    round differently for other batch sizes; on this machine it is bit-identical)."""
    net, spec = untrained
    scene, _ = make_scene(200, 170, seed=5)
    scene = scene.copy()
    scene[:, 60:70, 40:52] = np.nan  # nodata across a chunk edge
    ref = predict_scene((net, spec), scene, window=WINDOW, overlap=overlap, tta=tta,
                        progress=False)
    lazy = predict_scene_dask((net, spec), scene.chunk({"y": chunk, "x": chunk}),
                              window=WINDOW, overlap=overlap, tta=tta)
    assert lazy.chunks is not None and len(lazy.chunks[0]) >= 3 and len(lazy.chunks[1]) >= 2
    assert lazy.rio.crs == scene.rio.crs and lazy.rio.transform() == scene.rio.transform()
    assert lazy.attrs["window"] == WINDOW and lazy.attrs["step"] == ref.attrs["step"]
    got = lazy.values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.values))
    assert float(np.nanstd(ref.values)) > 0.01  # not saturated: differences would show
    np.testing.assert_allclose(got, ref.values, atol=1e-6, rtol=0)
    if tta:
        np.testing.assert_allclose(lazy["confidence"].values, ref["confidence"].values,
                                   atol=1e-6, rtol=0)


def test_chunked_default_plan_equals_in_memory_at_the_scene_edges(untrained):
    """The default plan does not reflect the scene's edges by the full context, so the
    pixels next to them come from the context of the first and last windows alone (a tiny
    weight); chunked, they and every other pixel are the in-memory result."""
    from glacierkit.unet.artifact import resolve_model
    from glacierkit.unet.windows import plan_windows

    net, spec = untrained
    scene, _ = make_scene(200, 170, seed=5)
    pred = resolve_model((net, spec))
    plan = plan_windows(pred, 200, 170, window=2 * WINDOW, overlap=None, context=None,
                        batch_size=None)
    assert plan.context >= 8 and plan.ay.margin < plan.context  # edge pixels: context only
    ref = predict_scene(pred, scene, window=2 * WINDOW, progress=False)
    lazy = predict_scene_dask(pred, scene.chunk({"y": 48, "x": 48}), window=2 * WINDOW)
    assert len(lazy.chunks[0]) >= 2
    got = lazy.values
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref.values, atol=1e-6, rtol=0)


def test_chunked_prediction_without_the_global_grid_would_differ(untrained):
    """The equality is not automatic: predicting every chunk on its own (plain map_blocks,
    no overlap) gives visible seams, so the test above can fail."""
    import dask.array as dsa

    net, spec = untrained
    scene, _ = make_scene(128, 128, seed=6)
    ref = predict_scene((net, spec), scene, window=WINDOW, progress=False).values

    def alone(block):
        sub = scene.isel(y=slice(0, block.shape[1]), x=slice(0, block.shape[2]))
        return predict_scene((net, spec), sub.copy(data=block), window=WINDOW,
                             progress=False).values

    blocks = dsa.from_array(scene.values, chunks=(-1, 64, 64))
    naive = blocks.map_blocks(alone, drop_axis=0, dtype="float32").compute(
        scheduler="synchronous")
    assert float(np.abs(naive - ref).max()) > 1e-3


def test_chunked_prediction_from_a_file_and_small_scenes(model, tmp_path):
    path, net, spec = model
    scene, glacier = make_scene(130, 100, seed=7)
    tif = write_raster(scene, tmp_path / "s.tif", tags={"sensor": "landsat8"})
    lazy = predict_scene_dask(path, tif, chunks=(64, 48), window=WINDOW)
    assert lazy.chunks is not None and lazy.attrs["model"] == "tiny-scale-test"
    ref = predict_scene((net, spec), scene, window=WINDOW, progress=False)
    np.testing.assert_allclose(lazy.values, ref.values, atol=1e-6, rtol=0)
    assert ((lazy.values > 0.5) == glacier).mean() > 0.95
    for shape in ((1, 1), (5, 40), (47, 49)):  # one chunk, or smaller than a window
        small, _ = make_scene(*shape, seed=1)
        np.testing.assert_allclose(
            predict_scene_dask((net, spec), small, chunks=16, window=WINDOW).values,
            predict_scene((net, spec), small, window=WINDOW, progress=False).values, atol=1e-6)
    with pytest.raises(ParameterError, match="chunks"):
        predict_scene_dask((net, spec), scene, chunks="big")


# --------------------------------------------------------------------------- across scenes
def _outlines_file(folder: Path) -> Path:
    """The planted glacier of make_scene (left half, 64 px wide) as an outline."""
    import geopandas as gpd
    from shapely.geometry import box

    x0, y0, res = 400_000.0, 5_100_000.0, 30.0
    gdf = gpd.GeoDataFrame({"RGIId": ["planted"]},
                           geometry=[box(x0, y0 - 300 * res, x0 + 32 * res, y0)],
                           crs="EPSG:32632")
    path = folder / "outlines.gpkg"
    gdf.to_file(path)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Four small synthetic GeoTIFFs (64 px wide: the glacier is the left 32 px)."""
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for i, name in enumerate(("slow", "b", "c", "d")):
        scene, _ = make_scene(72 + 8 * i, 64, seed=10 + i)
        paths.append(str(write_raster(scene, folder / f"{name}.tif",
                                      tags={"sensor": "landsat8"})))
    return paths, _outlines_file(folder)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes on 127.0.0.1 (real processes, so a kill is real)."""
    from dask.distributed import Client, LocalCluster

    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", env=env) as lc, Client(lc) as client:
        yield lc, client


def _assert_complete(out: Path, names):
    root = out / "scenes"
    assert sorted(p.name for p in root.iterdir()) == sorted(names)  # no staging left
    for name in names:
        assert {p.name for p in (root / name).iterdir()} == OUTPUT_FILES, name


def test_many_scenes_on_a_local_cluster_and_resume(model, scenes, cluster, tmp_path):
    paths, outlines = scenes
    out = tmp_path / "run"
    table = run_scenes(paths, model[0], out, cluster=cluster[1], progress=False,
                       outlines=str(outlines), predict_kwargs={"window": WINDOW})
    assert list(table["scene"]) == paths
    assert (table["error"] == "").all() and not table["skipped"].any()
    assert set(table["pid"]) == set(cluster[1].run(os.getpid).values())  # both workers
    _assert_complete(out, ["slow", "b", "c", "d"])
    # outputs equal to a prediction in this process (uint8 encoding: within one step)
    prob = predict_scene(model[0], paths[2], window=WINDOW, progress=False).values
    with rasterio.open(out / "scenes" / "c" / "probability.tif") as src:
        stored = src.read(1)
        assert src.crs.to_epsg() == 32632
    assert np.abs(stored / PROBABILITY_SCALE - prob).max() <= 1.5 / PROBABILITY_SCALE
    record = json.loads((out / "scenes" / "c" / RESULT_FILE).read_text())
    assert record["metrics"]["KC"] > 0.9 and record["n_polygons"] >= 1
    assert table["KC"].min() > 0.9
    pooled = pooled_scores(table)
    assert pooled["scenes"] == 4 and pooled["TP"] == int(table["TP"].sum())
    csv = (out / "scenes.csv").read_text()
    assert "finished_s" in csv and "KC" in csv
    # a second run finds everything done and does nothing
    mtime = (out / "scenes" / "c" / "mask.tif").stat().st_mtime_ns
    again = run_scenes(paths, model[0], out, cluster=cluster[1], progress=False,
                       outlines=str(outlines), predict_kwargs={"window": WINDOW})
    assert again["skipped"].all() and (again["error"] == "").all()
    assert (out / "scenes" / "c" / "mask.tif").stat().st_mtime_ns == mtime
    np.testing.assert_allclose(again["KC"], table["KC"])


def test_chunked_prediction_on_the_cluster(model, scenes, cluster):
    """The lazy prediction's chunks run on the worker processes, which load the model from
    its path (only the path travels)."""
    path, net, spec = model
    client = cluster[1]
    lazy = predict_scene_dask(path, scenes[0][3], chunks=48, window=WINDOW)
    got = client.compute(lazy.data).result()
    ref = predict_scene((net, spec), scenes[0][3], window=WINDOW, progress=False)
    # the synthetic scene looks top-of-atmosphere from its data: both paths correct it
    assert lazy.attrs["level"] == ref.attrs["level"] == "toa"
    assert lazy.attrs["level_correction"] == ref.attrs["level_correction"] != "none"
    # workers run TensorFlow with one thread, which may round differently
    assert lazy.data.npartitions >= 2
    np.testing.assert_allclose(got, ref.values, atol=1e-5, rtol=0)


def _pause_first_attempt(scene: str, staging: Path) -> None:
    """Runs in the worker: the first attempt at 'slow' records its pid and hangs with its
    outputs half-committed (all files in the staging folder); later attempts go through."""
    if not scene.endswith("slow.tif"):
        return
    flag = staging.parent.parent / "paused.pid"
    if flag.exists():
        return
    tmp = flag.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, flag)
    time.sleep(300)


def test_a_worker_killed_mid_scene(model, scenes, cluster, tmp_path):
    """The worker running 'slow' is killed (SIGKILL) while its files sit in the staging
    folder: the scheduler moves the scene to another worker, it completes, and nothing
    partial is left."""
    paths, outlines = scenes
    out = tmp_path / "run"
    client = cluster[1]
    pids_before = set(client.run(os.getpid).values())
    result: dict = {}

    def run():
        try:
            result["table"] = run_scenes(
                paths, model[0], out, cluster=client, progress=False, outlines=str(outlines),
                before_commit=_pause_first_attempt, predict_kwargs={"window": WINDOW})
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    flag = out / "paused.pid"
    deadline = time.monotonic() + 120
    while not flag.exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
    assert flag.exists(), result
    victim = int(flag.read_text())
    assert victim in pids_before
    staged = list((out / "scenes").glob(".staging-slow.*"))
    assert len(staged) == 1 and {p.name for p in staged[0].iterdir()} == OUTPUT_FILES
    assert not (out / "scenes" / "slow").exists()  # not visible until committed
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in result, result
    table = result["table"]
    assert (table["error"] == "").all(), table["error"].tolist()
    slow = table.set_index("scene").loc[paths[0]]
    assert int(slow["pid"]) != victim and not slow["skipped"]
    _assert_complete(out, ["slow", "b", "c", "d"])
    assert table["KC"].min() > 0.9


def test_local_cluster_workers_get_one_thread_each(monkeypatch):
    from glacierkit.pipeline.batch import _client

    client, lc = _client(None, 1)
    try:
        env = client.run(os.getenv, "TF_NUM_INTRAOP_THREADS")
        assert list(env.values()) == [str(os.cpu_count() or 1)]
        assert all(w.startswith("tcp://127.0.0.1:") for w in env)
    finally:
        client.close()
        lc.close()


def test_bad_scene_lists(model, scenes, tmp_path):
    paths, _ = scenes
    with pytest.raises(ParameterError, match="No scenes"):
        run_scenes([], model[0], tmp_path)
    with pytest.raises(ParameterError, match="listed twice"):
        run_scenes([paths[0], paths[0]], model[0], tmp_path)
    other = tmp_path / "x" / "b.tif"
    other.parent.mkdir()
    other.write_bytes(Path(paths[1]).read_bytes())
    with pytest.raises(ParameterError, match="both write to scenes/b/"):
        run_scenes([paths[1], str(other)], model[0], tmp_path)
    with pytest.raises(DataNotFoundError, match="Model not found"):
        run_scenes(paths, tmp_path / "none.keras", tmp_path)


# --------------------------------------------------------------------------- the runner
def _pipeline(tmp_path: Path, batch: dict, **top) -> Path:
    p = tmp_path / "pipe.yml"
    p.write_text(yaml.safe_dump({"name": "many", "shared": {"output_dir": str(tmp_path / "out")},
                                 "batch": batch, **top}))
    return p


def test_cli_run_scenes_on_a_cluster(model, scenes, cluster, tmp_path, capsys):
    from glacierkit.pipeline import main

    paths, outlines = scenes
    model_rel = os.path.relpath(model[0], tmp_path)  # resolved beside the pipeline file
    pipe = _pipeline(tmp_path, {"model": model_rel, "threshold": 0.5, "window": WINDOW,
                                "outlines": str(outlines), "batch_size": 8})
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two scenes\n{paths[1]}\n\n{paths[2]}  # second\n")
    address = cluster[0].scheduler_address
    rc = main(["run", str(pipe), "--scenes", paths[3], "--scenes-file", str(listing),
               "--cluster", address, "-q"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    out = tmp_path / "out"
    _assert_complete(out, ["d", "b", "c"])
    summary = (out / "scenes_summary.md").read_text()
    assert "Pooled over the 3 evaluated scenes" in summary and "KC" in summary
    assert "3 of 3 scenes done (0 skipped" in printed
    rc = main(["run", str(pipe), "--scenes", paths[3], "--cluster", address, "-q"])
    assert rc == 0 and "(1 skipped" in capsys.readouterr().out


def test_cli_run_scenes_errors(model, tmp_path, capsys):
    from glacierkit.pipeline import main

    def error(*argv):
        assert main(["run", *map(str, argv)]) == 2
        return capsys.readouterr().err

    good = {"model": str(model[0])}
    pipe = _pipeline(tmp_path, {**good, "treshold": 0.4})
    assert "Unknown key 'treshold'" in error(pipe, "--scenes", "a.tif")
    assert "Did you mean 'threshold'" in error(pipe, "--scenes", "a.tif")
    pipe = _pipeline(tmp_path, {**good, "threshold": 2})
    assert "batch.threshold" in error(pipe, "--scenes", "a")
    pipe = _pipeline(tmp_path, {**good, "workers": 0})
    assert "batch.workers" in error(pipe, "--scenes", "a")
    pipe = _pipeline(tmp_path, {**good, "tta": "yes"})
    assert "batch.tta" in error(pipe, "--scenes", "a")
    pipe = _pipeline(tmp_path, {"threshold": 0.5})
    assert "needs 'model:'" in error(pipe, "--scenes", "a")
    pipe = _pipeline(tmp_path, {"model": "models/nope.keras"})
    msg = error(pipe, "--scenes", "a")
    assert "nope.keras" in msg and "not found" in msg
    pipe = _pipeline(tmp_path, good)
    assert "No scenes" in error(pipe, "--scenes")
    assert "--only and --set" in error(pipe, "--scenes", "a", "--only", "01_data_prep")
    assert "--workers 0" in error(pipe, "--scenes", "a", "--workers", "0")
    assert "Scene list not found" in error(pipe, "--scenes-file", tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    assert "lists no scenes" in error(pipe, "--scenes-file", tmp_path / "empty.txt")
    assert "no notebook steps" in error(pipe)  # a batch-only file without --scenes
    assert "--cluster and --workers go with --scenes" in error(pipe, "--workers", "2")
    no_batch = tmp_path / "steps.yml"
    no_batch.write_text(yaml.safe_dump({"name": "x", "steps": {"01_data_prep": {}}}))
    assert "no 'batch:' section" in error(no_batch, "--scenes", "a")


def test_load_pipeline_batch_section(tmp_path):
    cfg = load_pipeline(_pipeline(tmp_path, {"model": "m.keras", "scenes": ["a", "b"],
                                             "outlines": False, "cluster": None}))
    assert cfg["batch"]["scenes"] == ["a", "b"] and cfg["steps"] == {}
    with pytest.raises(ParameterError, match="batch.scenes"):
        load_pipeline(_pipeline(tmp_path, {"model": "m.keras", "scenes": "a"}))
    with pytest.raises(ParameterError, match="must map keys"):
        load_pipeline(_pipeline(tmp_path, ["model"]))


def test_read_scene_list_resolves_beside_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.tif").write_bytes(b"")
    listing = tmp_path / "sub" / "list.txt"
    listing.write_text("s.tif\nalps-s2/aletsch  # a sample\n  \n/abs/x.tif\n")
    assert read_scene_list(listing) == [str(tmp_path / "sub" / "s.tif"), "alps-s2/aletsch",
                                        "/abs/x.tif"]


def test_sample_pipeline_batch_section_is_valid():
    from conftest import ROOT

    cfg = load_pipeline(ROOT / "pipelines" / "sample.yml")
    assert cfg["batch"]["model"].endswith(".keras") and cfg["batch"]["scenes"]
