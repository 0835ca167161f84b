"""Benchmark: the one-pass NDSI threshold sweep and the live slider on a full Landsat scene.

A synthetic 7,800 x 7,700 (60 Mpx) six-band float32 reflectance scene with spatially
coherent glaciers, rock, noise and a few NaN stripes (like a real scene's fill), and labels
that disagree with NDSI in places. Everything is measured side by side in one run,
interleaving the methods in each repeat, and medians are printed:

- the exact one-pass sweep over 71 thresholds (``threshold.sweep``) against a naive loop
  that thresholds the same NDSI array once per threshold (two ``count_nonzero`` per
  threshold, the faster of the naive variants); both get the precomputed NDSI;
- the fused sweep that computes NDSI inside the pass (``threshold.sweep_scene``) against
  computing the NDSI array once (the faster of ``indices.ndsi`` and bare NumPy
  ``(g - s) / (g + s)`` on band views). The sweep runs with the labels as the label files
  hold them (uint8: 1 glacier, 0 other, 255 unknown) and as float32 with NaN; both sweeps
  and ``indices.ndsi`` are timed back to back ``--pairs`` times per repeat, in rotating
  order. ``cost_vs_one_ndsi_pass`` is the fastest sweep (uint8 labels) over the fastest
  NDSI pass: each without interference from other processes on the shared cores, and
  without the page faults that make some NDSI passes (which allocate their 240 MB output)
  ten times slower under memory pressure. The medians of the paired wall-time and
  CPU-time ratios are printed too;
- the slider: building the explorer, the first draw, then the latency of each move;
- memory: the scene's size, the extra memory the sweeps allocate (tracemalloc), and the
  process's peak RSS.

The counts of the sweep are checked against the naive loop before anything is reported.
The last two lines are ``speedup_vs_naive: <x>`` and ``cost_vs_one_ndsi_pass: <y>``.

Run: ``python bench/ndsi_sweep.py`` (about 2 minutes; ``--repeats`` and ``--size`` to change).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc

import numpy as np
import xarray as xr
from affine import Affine

from glacierkit import indices
from glacierkit.ndsi import ThresholdExplorer, threshold

ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")


def field(shape, coarse, rng):
    from scipy import ndimage

    f = rng.normal(size=coarse).astype("float32")
    zoom = (shape[0] / coarse[0], shape[1] / coarse[1])
    return ndimage.zoom(f, zoom, order=1, output=np.float32)[: shape[0], : shape[1]]


def synthetic_scene(height: int, width: int, seed: int = 0):
    """Six-band reflectance with glaciers (NDSI ~0.7), rock (~-0.1), noise and NaN fill."""
    rng = np.random.default_rng(seed)
    base = field((height, width), (40, 40), rng)
    glacier = base > 0.3
    ndsi = np.where(glacier, np.float32(0.7), np.float32(-0.1))
    ndsi += 0.15 * field((height, width), (200, 200), rng)
    ndsi += rng.normal(0, 0.05, (height, width)).astype("float32")
    np.clip(ndsi, -0.95, 0.95, out=ndsi)
    green = np.where(glacier, np.float32(0.6), np.float32(0.15))
    green += 0.05 * field((height, width), (100, 100), rng) + np.float32(0.1)
    swir1 = green * (1 - ndsi) / (1 + ndsi)
    data = np.empty((6, height, width), dtype="float32")
    data[0], data[1], data[2] = green * 1.05, green, green * 0.97
    data[3], data[4], data[5] = green * 0.8, swir1, swir1 * 0.85
    data[:, :, :64] = np.nan  # fill along the scene edge
    labels = (field((height, width), (40, 40), rng) * 0.3 + base > 0.3).astype("float32")
    labels[:200, :] = np.nan  # unlabelled rows
    res = 30.0
    scene = xr.DataArray(
        data, dims=("band", "y", "x"),
        coords={"band": ["B2", "B3", "B4", "B5", "B6", "B7"], "role": ("band", list(ROLES)),
                "y": 8_000_000 - res * (np.arange(height) + 0.5),
                "x": 300_000 + res * (np.arange(width) + 0.5)},
        attrs={"sensor": "landsat8", "scene_id": "synthetic-full-scene"})
    scene = scene.rio.write_crs("EPSG:32645").rio.write_transform(
        Affine(res, 0, 300_000, 0, -res, 8_000_000))
    return scene, labels


def naive_sweep(index: np.ndarray, labels: np.ndarray, thresholds) -> np.ndarray:
    """Per-threshold thresholding: the reference the one-pass sweep must equal."""
    ok = ~np.isnan(index)
    glacier, other = ok & (labels == 1), ok & (labels == 0)  # other labels: not counted
    n_glacier, n_other = np.count_nonzero(glacier), np.count_nonzero(other)
    out = []
    for t in thresholds:
        pred = index > np.float32(t)
        tp, fp = np.count_nonzero(pred & glacier), np.count_nonzero(pred & other)
        out.append((tp, fp, n_glacier - tp, n_other - fp))
    return np.array(out, dtype="int64")


def shuffled_sweep_time(values, labels, grid, repeats: int = 3) -> float:
    order = np.random.default_rng(1).permutation(values.size)
    x, lab = values.reshape(-1)[order], labels.reshape(-1)[order]
    return statistics.median(timed(lambda: threshold.sweep(x, lab, grid))[0]
                             for _ in range(repeats))


def timed(func):
    t0 = time.perf_counter()
    result = func()
    return time.perf_counter() - t0, result


def extra_memory(func) -> int:
    """Peak bytes that ``func`` allocates through NumPy/Python (tracemalloc)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(7800, 7700),
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=4,
                        help="back-to-back sweep_scene/NDSI pairs per repeat")
    args = parser.parse_args()
    height, width = args.size
    grid = threshold.fine_grid()  # 0.00 ... 0.70: 71 thresholds

    t_gen, (scene, labels) = timed(lambda: synthetic_scene(height, width))
    scene_bytes = scene.nbytes
    print(f"scene: {height} x {width} x {scene.sizes['band']} float32 = {scene_bytes / 1e9:.2f} GB "
          f"(generated in {t_gen:.1f} s); thresholds: {grid.size}")

    # Warm up (numba compilation is cached on disk, but the first call loads it).
    small = scene.isel(y=slice(0, 300), x=slice(0, 300))
    threshold.sweep_scene(small, labels[:300, :300], grid)
    threshold.sweep(indices.ndsi(small), labels[:300, :300], grid)

    ndsi = indices.ndsi(scene)
    values = ndsi.values
    reference = naive_sweep(values, labels, grid)
    table = threshold.sweep(ndsi, labels, grid)
    fused = threshold.sweep_scene(scene, labels, grid)
    for name, got in (("sweep", table), ("sweep_scene", fused)):
        counts = got[["TP", "FP", "FN", "TN"]].to_numpy()
        if not np.array_equal(counts, reference):
            raise SystemExit(f"{name} differs from the per-threshold loop: not exact")
    # The label files' own format: uint8, 1 glacier, 0 other, 255 unknown (NODATA).
    labels8 = np.where(np.isnan(labels), 255, labels).astype("uint8")
    fused8 = threshold.sweep_scene(scene, labels8, grid)
    if not np.array_equal(fused8[["TP", "FP", "FN", "TN"]].to_numpy(), reference):
        raise SystemExit("sweep_scene with uint8 labels (255 unknown) is not exact")
    print("exactness: sweep and sweep_scene (float32 labels with NaN, and uint8 labels with "
          f"255 = unknown) equal the per-threshold loop at all {grid.size} thresholds "
          f"({int(reference[0].sum()):,} valid labelled pixels)")

    times: dict[str, list[float]] = {k: [] for k in ("naive", "sweep", "sweep_scene",
                                                     "sweep_scene_f32", "ndsi", "ndsi_numpy")}
    green, swir1 = scene.values[1], scene.values[4]
    runs = {  # the fused sweep with both label formats, and one compiled NDSI pass
        "sweep_scene": lambda: threshold.sweep_scene(scene, labels8, grid),
        "sweep_scene_f32": lambda: threshold.sweep_scene(scene, labels, grid),
        "ndsi": lambda: indices.ndsi(scene),
    }
    # back to back, in rotating order: wall-time and CPU-time ratios per round
    paired: dict[str, list[float]] = {"wall": [], "wall_f32": [], "cpu": [], "cpu_f32": []}
    names = list(runs)
    for r in range(args.repeats):
        times["naive"].append(timed(lambda: naive_sweep(values, labels, grid))[0])
        times["sweep"].append(timed(lambda: threshold.sweep(ndsi, labels, grid))[0])
        for p in range(args.pairs):
            shift = (r * args.pairs + p) % len(names)
            wall, cpu = {}, {}
            for name in names[shift:] + names[:shift]:
                c0 = time.process_time()
                wall[name] = timed(runs[name])[0]
                cpu[name] = time.process_time() - c0
                times[name].append(wall[name])
            paired["wall"].append(wall["sweep_scene"] / wall["ndsi"])
            paired["wall_f32"].append(wall["sweep_scene_f32"] / wall["ndsi"])
            paired["cpu"].append(cpu["sweep_scene"] / cpu["ndsi"])
            paired["cpu_f32"].append(cpu["sweep_scene_f32"] / cpu["ndsi"])
        times["ndsi_numpy"].append(timed(lambda: (green - swir1) / (green + swir1))[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"time {k:<12} median {v:7.3f} s  (runs: {', '.join(f'{x:.3f}' for x in times[k])})")

    # The same sweep with the pixels in random order: no spatial coherence (worst case).
    t_shuffled = shuffled_sweep_time(values, labels, grid)
    print(f"time sweep, pixels in random order (worst case): {t_shuffled:.3f} s")

    # Dask-backed scene: per-chunk histograms, never loaded whole.
    lazy = scene.chunk({"band": 1, "y": 2048, "x": 2048})
    t_lazy, lazy_table = timed(lambda: threshold.sweep_scene(lazy, labels, grid))
    assert np.array_equal(lazy_table[["TP", "FP", "FN", "TN"]].to_numpy(), reference)
    lazy_mem = extra_memory(lambda: threshold.sweep_scene(lazy, labels, grid))
    print(f"dask scene (2048 px chunks): sweep_scene {t_lazy:.3f} s, exact, "
          f"peak extra memory {lazy_mem / 1e6:.0f} MB")

    # The slider.
    mem_slider = extra_memory(lambda: ThresholdExplorer(ndsi, labels, grid, threshold=0.3))
    t_build, explorer = timed(lambda: ThresholdExplorer(ndsi, labels, grid, threshold=0.3))
    import holoviews as hv

    hv.extension("bokeh")
    t_draw, plot = timed(lambda: hv.renderer("bokeh").get_plot(explorer.view()))
    source = plot.handles["source"]
    first = np.array(source.data["image"][0]).copy()
    moves = []
    rng = np.random.default_rng(2)
    for t in rng.choice(grid, args.moves):
        moves.append(timed(lambda t=t: explorer.set_threshold(float(t)))[0])
    explorer.set_threshold(0.0)
    changed = not np.array_equal(first, np.array(source.data["image"][0]))
    print(f"slider: explorer built in {t_build:.2f} s (one pass over {height * width:,} px; "
          f"display {explorer.codes().shape[0]} x {explorer.codes().shape[1]}), first draw "
          f"{t_draw * 1000:.0f} ms, move median {statistics.median(moves) * 1000:.1f} ms "
          f"(max {max(moves) * 1000:.1f} ms over {len(moves)} moves; map updated: {changed})")

    # Memory.
    mem_sweep = extra_memory(lambda: threshold.sweep(ndsi, labels, grid))
    mem_fused = extra_memory(lambda: threshold.sweep_scene(scene, labels, grid))
    mem_ndsi = extra_memory(lambda: indices.ndsi(scene))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    worst = max(mem_fused, mem_sweep, mem_slider)
    print(f"memory: scene {scene_bytes / 1e6:.0f} MB; extra allocated by sweep "
          f"{mem_sweep / 1e6:.2f} MB, by sweep_scene {mem_fused / 1e6:.2f} MB, by the slider "
          f"build {mem_slider / 1e6:.1f} MB, by indices.ndsi {mem_ndsi / 1e6:.0f} MB; "
          f"process peak RSS {rss / 1e9:.2f} GB (includes generating the scene, the NDSI "
          "array and the naive loop's masks)")
    footprint = (scene_bytes + worst) / scene_bytes
    speedup = med["naive"] / med["sweep"]
    # Against the faster of the two ways to compute NDSI once (glacierkit's compiled pass
    # or bare numpy): the median of the back-to-back ratios, robust to slow changes of the
    # load from other processes (the ratio of the medians is printed above too).
    # Best against best: the fastest of the interleaved runs of each, i.e. each pass without
    # interference. (The NDSI pass allocates its 240 MB output: under memory pressure its
    # page faults make some runs 10x slower, which would flatter any ratio of medians.)
    best = {k: min(v) for k, v in times.items()}
    cost = best["sweep_scene"] / min(best["ndsi"], best["ndsi_numpy"])
    print(f"best of {len(times['ndsi'])} interleaved runs: sweep_scene {best['sweep_scene']:.3f} s "
          f"(float32 labels {best['sweep_scene_f32']:.3f} s), compiled NDSI pass "
          f"{best['ndsi']:.3f} s, NumPy NDSI {best['ndsi_numpy']:.3f} s")
    for key, what in (("wall", "uint8 labels, wall time"), ("wall_f32", "float32 labels, wall "
                      "time"), ("cpu", "uint8 labels, CPU time"), ("cpu_f32", "float32 labels, "
                      "CPU time")):
        v = paired[key]
        print(f"sweep_scene / compiled NDSI pass, back to back ({what}): median "
              f"{statistics.median(v):.3f} (IQR {np.percentile(v, 25):.3f}-"
              f"{np.percentile(v, 75):.3f}, {len(v)} rounds)")
    print(f"ratios: naive/sweep {speedup:.1f}; naive/sweep_scene "
          f"{med['naive'] / med['sweep_scene']:.1f}; sweep_scene/indices.ndsi "
          f"{med['sweep_scene'] / med['ndsi']:.3f}; sweep_scene/numpy NDSI "
          f"{med['sweep_scene'] / med['ndsi_numpy']:.3f}")
    print(f"targets: speedup >= 20 ({'met' if speedup >= 20 else 'MISSED'}), sweep/NDSI <= 1.5 "
          f"({'met' if cost <= 1.5 else 'MISSED'}), move <= 50 ms "
          f"({'met' if statistics.median(moves) <= 0.05 else 'MISSED'}), sweep/slider memory "
          f"<= 2 x scene ({footprint:.3f} x: {'met' if footprint <= 2 else 'MISSED'})")
    print(f"speedup_vs_naive: {speedup:.1f}")
    print(f"cost_vs_one_ndsi_pass: {cost:.3f}")


if __name__ == "__main__":
    main()
