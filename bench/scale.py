"""Benchmark scaling out: scenes per minute on 1 and 2 Dask workers; chunked vs in-memory.

**A. Across scenes.** ``N`` synthetic Landsat 8-like scenes (7 bands, uint16, tiled,
deflate; ``--size`` pixels square) are predicted with a U-Net (random weights, the CPU
preset's shape: 4 levels, 16 base filters) by :func:`glacierkit.pipeline.run_scenes`: COG
outputs, outlines and ``result.json`` per scene, one task per scene. Two LocalClusters on
127.0.0.1 run side by side, alternating: 1 worker and 2 workers, one thread each (and
TensorFlow limited to one intra-op thread per worker). Workers are started and warmed up
(TensorFlow imported, model loaded, one small prediction) before timing, so the times are
the steady state of a long run; cluster start-up is reported separately. Reported: wall
time, scenes per minute (median of ``--repeats``), and the scaling ratio. The plot
(``--plot``, default ``docs/scaling.png``) shows the time at which the k-th scene finished.

**B. Within a scene.** A bigger scene (``--big-size`` square, 7 bands) is processed:

* ``ndsi``: open the scene, compute NDSI over every pixel (reduced to its mean so that
  nothing large travels back);
* ``sweep``: NDSI, rasterized reference outlines and the threshold sweep
  (``glacierkit.ndsi.sweep``, a dask reduction of per-chunk class histograms),

once **in memory** (``open_scene(path, chunks=False)``, numpy; on a worker without a memory
limit) and once **chunked** (``open_scene(path, chunks=2048)``, dask; on a worker with
``--limit-mb`` memory, 2 threads). Peak RSS per worker is sampled every 10 ms. With the
defaults the in-memory run needs well over the limit, so unchunked the scene would not fit
that worker (``--show-kill`` runs it there to show the worker being killed).

The last lines are ``scaling_2_vs_1_workers: <x>`` (median scenes/min with 2 workers over
1; ideal 2) and ``chunked_vs_in_memory: <y>`` (median time of the chunked sweep over the
in-memory one; below 1 is faster).

Defaults (8 scenes of 1024 px, 3 repeats, a 6000 px big scene) take about 9 minutes on 2
shared cores (measured: scaling 1.92, chunked_vs_in_memory 0.52; see docs/scaling.md). Quick check: ``python bench/scale.py --scenes 4 --size 512 --repeats 1
--big-size 3000 --limit-mb 600``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _bench_predict():
    """``write_scene`` and ``build_unet`` from bench/predict.py."""
    spec = importlib.util.spec_from_file_location("bench_predict", HERE / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- worker helpers
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_sampler(dask_worker=None, interval: float = 0.01) -> float:
    """Run in every worker: a thread keeping the peak RSS on the worker object."""
    dask_worker._bench_peak = _rss_mb()
    if getattr(dask_worker, "_bench_sampler", None) is None:
        def loop():
            while True:
                dask_worker._bench_peak = max(dask_worker._bench_peak, _rss_mb())
                time.sleep(interval)

        dask_worker._bench_sampler = threading.Thread(target=loop, daemon=True)
        dask_worker._bench_sampler.start()
    return dask_worker._bench_peak


def read_peak(dask_worker=None) -> float:
    return dask_worker._bench_peak


def warm_up(model_path: str, scene_path: str) -> int:
    """Import TensorFlow, load the model and predict once, in this worker."""
    from glacierkit.io import open_scene
    from glacierkit.unet import predict_scene
    from glacierkit.unet.predict_dask import cached_predictor

    scene = open_scene(scene_path).isel(y=slice(0, 256), x=slice(0, 256))
    predict_scene(cached_predictor(model_path), scene, progress=False)
    return os.getpid()


def _local_cluster(n_workers: int, threads: int, memory_limit="auto", tf_threads: int = 1):
    from dask.distributed import Client, LocalCluster

    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": str(tf_threads),
           "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": str(threads)}
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                           host="127.0.0.1", dashboard_address=":0",
                           memory_limit=memory_limit, env=env)
    return cluster, Client(cluster)


# --------------------------------------------------------------------------- A: many scenes
def bench_scenes(args, tmp: Path, bp) -> dict:
    import keras

    from glacierkit.pipeline import run_scenes
    from glacierkit.unet import InputSpec, save_model

    spec = InputSpec(("swir1", "nir", "blue"), ("ndsi",), mean=(0.2, 0.3, 0.3, 0.2),
                     std=(0.2, 0.2, 0.3, 0.5), patch_size=args.window)
    keras.utils.set_random_seed(0)
    model = save_model(bp.build_unet(spec.n_channels, depth=4, base=16),
                       tmp / "unet.keras", spec, name="bench-unet")
    scenes = []
    t = time.perf_counter()
    for i in range(args.scenes):
        path = tmp / f"scene{i:02d}.tif"
        bp.write_scene(path, args.size, args.size)
        scenes.append(str(path))
    print(f"A. {args.scenes} scenes of {args.size} x {args.size} x 7 uint16 written in "
          f"{time.perf_counter() - t:.1f} s; model 4 levels / 16 filters, window "
          f"{args.window}, overlap 0.5")
    clusters = {}
    for n in (1, 2):
        t = time.perf_counter()
        clusters[n] = _local_cluster(n, 1)
        clusters[n][1].wait_for_workers(n)
        start = time.perf_counter() - t
        t = time.perf_counter()
        clusters[n][1].run(warm_up, str(model), scenes[0])
        print(f"   {n} worker(s): cluster start {start:.1f} s, warm-up (TensorFlow import, "
              f"model load, first prediction) {time.perf_counter() - t:.1f} s")
    walls = {1: [], 2: []}
    curves = {1: [], 2: []}
    try:
        for r in range(args.repeats):
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                out = tmp / f"run-{n}-{r}"
                t = time.perf_counter()
                table = run_scenes(scenes, model, out, cluster=clusters[n][1], progress=False,
                                   outlines=False,
                                   predict_kwargs={"window": args.window, "batch_size": 4})
                wall = time.perf_counter() - t
                if (table["error"] != "").any():
                    raise RuntimeError(f"scenes failed: {table['error'].tolist()}")
                walls[n].append(wall)
                curves[n].append(sorted(table["finished_s"]))
                print(f"   repeat {r + 1}, {n} worker(s): {wall:6.1f} s = "
                      f"{60 * len(scenes) / wall:5.2f} scenes/min (per scene "
                      f"{table['seconds'].median():.1f} s median)")
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    spm = {n: 60 * len(scenes) / statistics.median(w) for n, w in walls.items()}
    for n in (1, 2):
        print(f"   {n} worker(s): median {statistics.median(walls[n]):.1f} s, "
              f"{spm[n]:.2f} scenes/min")
    return {"spm": spm, "walls": walls, "curves": curves, "n": len(scenes)}


def plot(result: dict, path: Path, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glacierkit.plot import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {1: "tab:blue", 2: "tab:orange"}
    k = np.arange(1, result["n"] + 1)
    for n in (1, 2):
        walls = result["walls"][n]
        typical = int(np.argsort(walls)[len(walls) // 2])  # the run with the median time
        for i, curve in enumerate(result["curves"][n]):
            ax.plot(k, curve, "o-", color=colours[n], alpha=1.0 if i == typical else 0.3,
                    lw=1.5, label=f"{n} worker{'s' * (n > 1)} (median "
                    f"{result['spm'][n]:.1f} scenes/min)" if i == typical else None)
    ax.plot(k, k * 60 / result["spm"][1], ":", color="grey", label="1 worker, linear")
    ax.plot(k, k * 60 / result["spm"][1] / 2, "--", color="grey", label="ideal 2x")
    ax.set_xlabel("scenes done")
    ax.set_ylabel("time since start (s)")
    ax.set_title(f"run_scenes on a LocalCluster: {size} px scenes, U-Net 4/16\n"
                 "(faint: other repeats; 2 cores)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- B: one big scene
def _outline(scene_path: str):
    """Outlines of the big scene's 'glaciers' (a coarse polygon of the field > 0.3)."""
    import geopandas as gpd
    import rasterio
    from rasterio import features
    from shapely.geometry import shape

    with rasterio.open(scene_path) as src:
        step = 8
        green = src.read(3, out_shape=(src.height // step, src.width // step))
        transform = src.transform * src.transform.scale(src.width / green.shape[1],
                                                        src.height / green.shape[0])
    mask = (green > 20000).astype("uint8")
    polys = [shape(g) for g, v in features.shapes(mask, mask=mask > 0, transform=transform)]
    return gpd.GeoDataFrame({"RGIId": [f"g{i}" for i in range(len(polys))]}, geometry=polys,
                            crs="EPSG:32632")


def task_ndsi(scene_path: str, chunks) -> float:
    from glacierkit.indices import ndsi
    from glacierkit.io import open_scene

    scene = open_scene(scene_path, chunks=chunks)
    return float(ndsi(scene).mean().compute())


def task_sweep(scene_path: str, chunks, outlines) -> int:
    from glacierkit.indices import ndsi
    from glacierkit.io import open_scene
    from glacierkit.labels import rasterize_outlines

    scene = open_scene(scene_path, chunks=chunks)
    index = ndsi(scene)
    labels = rasterize_outlines(outlines, like=scene)
    from glacierkit.ndsi import sweep

    table = sweep(index, labels)
    return int(table["TP"].iloc[0] + table["FN"].iloc[0])


def _n_tasks(dask_scheduler=None) -> int:
    return len(dask_scheduler.tasks)


def _wait_no_tasks(client, timeout: float = 60.0) -> None:
    """Until the scheduler holds no task (the previous graph fully released)."""
    deadline = time.monotonic() + timeout
    while client.run_on_scheduler(_n_tasks):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scheduler still holds tasks after {timeout:.0f} s")
        time.sleep(0.05)  # polling for the event


def bench_big(args, tmp: Path, bp) -> dict:
    import dask
    import distributed  # noqa: F401 - its config must exist before dask.config.set below

    impl = "glacierkit.ndsi.sweep"
    path = tmp / "big.tif"
    t = time.perf_counter()
    bp.write_scene(path, args.big_size, args.big_size)
    gb = args.big_size ** 2 * 7 * 4 / 2**30
    print(f"B. big scene {args.big_size} x {args.big_size} x 7 written in "
          f"{time.perf_counter() - t:.1f} s ({path.stat().st_size / 1e6:.0f} MB on disk, "
          f"{gb:.2f} GiB as float32 in memory); sweep: {impl}")
    outlines = _outline(str(path))
    chunks = {"band": 1, "y": args.chunk, "x": args.chunk}
    limit = f"{args.limit_mb}MiB"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        mem_cluster, mem_client = _local_cluster(1, 2, memory_limit=0, tf_threads=2)
        lim_cluster, lim_client = _local_cluster(1, 2, memory_limit=limit, tf_threads=2)
    times = {(k, m): [] for k in ("ndsi", "sweep") for m in ("in_memory", "chunked")}
    peaks = {k: [] for k in times}
    idle = {}
    try:
        for r in range(args.repeats):
            order = ("in_memory", "chunked") if r % 2 == 0 else ("chunked", "in_memory")
            for kind in ("ndsi", "sweep"):
                for mode in order:
                    client = mem_client if mode == "in_memory" else lim_client
                    # A fresh worker process each time: freed memory that the allocator
                    # keeps would otherwise carry over from one measurement to the next.
                    _wait_no_tasks(client)  # restart refuses while the last graph's
                    client.restart()  # tasks are still being released
                    idle[mode] = client.run(start_sampler)
                    idle[mode] = list(idle[mode].values())[0]
                    t = time.perf_counter()
                    if mode == "in_memory":  # one task, numpy, on the unlimited worker
                        fn = task_ndsi if kind == "ndsi" else task_sweep
                        extra = () if kind == "ndsi" else (outlines,)
                        value = client.submit(fn, str(path), False, *extra, pure=False).result()
                    else:  # the graph runs on the limited worker, chunk by chunk
                        with client.as_current(), dask.config.set(scheduler=client):
                            value = (task_ndsi(str(path), chunks) if kind == "ndsi" else
                                     task_sweep(str(path), chunks, outlines))
                    dt = time.perf_counter() - t
                    peak = list(client.run(read_peak).values())[0]
                    times[(kind, mode)].append(dt)
                    peaks[(kind, mode)].append(peak)
                    print(f"   repeat {r + 1} {kind:5s} {mode:9s}: {dt:6.2f} s, worker peak "
                          f"{peak:6.0f} MB (idle {idle[mode]:.0f} MB), result {value:.6g}")
        if args.show_kill:
            print(f"   in-memory sweep on the {args.limit_mb} MiB worker:", end=" ", flush=True)
            try:
                lim_client.submit(task_sweep, str(path), False, outlines, pure=False).result()
                print("completed (the limit was not reached)")
            except Exception as exc:
                print(f"{type(exc).__name__}: the worker was killed")
    finally:
        for cluster, client in ((mem_cluster, mem_client), (lim_cluster, lim_client)):
            client.close()
            cluster.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    pk = {k: max(v) for k, v in peaks.items()}
    for kind in ("ndsi", "sweep"):
        print(f"   {kind}: in memory {med[(kind, 'in_memory')]:.2f} s, peak "
              f"{pk[(kind, 'in_memory')]:.0f} MB; chunked ({args.chunk} px, {args.limit_mb} "
              f"MiB limit, 2 threads) {med[(kind, 'chunked')]:.2f} s, peak "
              f"{pk[(kind, 'chunked')]:.0f} MB; ratio "
              f"{med[(kind, 'chunked')] / med[(kind, 'in_memory')]:.2f}")
    return {"median": med, "peak": pk, "idle": idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8, help="scenes per run (A)")
    parser.add_argument("--size", type=int, default=1024, help="scene side in pixels (A)")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-size", type=int, default=6000, help="big scene side (B)")
    parser.add_argument("--chunk", type=int, default=2048, help="chunk side (B)")
    parser.add_argument("--limit-mb", type=int, default=1024,
                        help="memory limit of the chunked worker (B)")
    parser.add_argument("--show-kill", action="store_true",
                        help="also run the in-memory sweep on the limited worker (B)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "scaling.png"))
    parser.add_argument("--skip-scenes", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()
    # the synthetic scenes are far from any training data: the domain-shift guard would
    # warn on every one, here and in the workers (which inherit the environment)
    import warnings

    from glacierkit.exceptions import DomainShiftWarning

    warnings.simplefilter("ignore", DomainShiftWarning)
    os.environ["PYTHONWARNINGS"] = "ignore::UserWarning"
    bp = _bench_predict()
    tmp = Path(tempfile.mkdtemp(prefix="gk-scale-", dir=args.tmp))
    print(f"{os.cpu_count()} cores; temporary files in {tmp}")
    a = b = None
    if not args.skip_scenes:
        a = bench_scenes(args, tmp, bp)
        if args.plot:
            plot(a, Path(args.plot), args.size)
            print(f"   plot: {args.plot}")
    if not args.skip_big:
        b = bench_big(args, tmp, bp)
    if a:
        print(f"scenes_per_minute_1_worker: {a['spm'][1]:.2f}")
        print(f"scenes_per_minute_2_workers: {a['spm'][2]:.2f}")
    if b:
        m = b["median"]
        print(f"peak_mb_per_worker_in_memory: {b['peak'][('sweep', 'in_memory')]:.0f}")
        print(f"peak_mb_per_worker_chunked: {b['peak'][('sweep', 'chunked')]:.0f}")
        print(f"ndsi_chunked_vs_in_memory: {m[('ndsi', 'chunked')] / m[('ndsi', 'in_memory')]:.2f}")
    if a:
        print(f"scaling_2_vs_1_workers: {a['spm'][2] / a['spm'][1]:.2f}")
    if b:
        m = b["median"]
        print(f"chunked_vs_in_memory: {m[('sweep', 'chunked')] / m[('sweep', 'in_memory')]:.2f}")


if __name__ == "__main__":
    main()
