"""Benchmark full-scene prediction against the model's raw forward pass.

A synthetic full-size Landsat 8 scene (default 7,700 x 7,800 pixels, 7 bands, uint16,
band-interleaved, tiled, deflate) is written to a temporary GeoTIFF, and a model is loaded
(default: the committed ``models/unet_alps_s2.keras``; ``--model`` for another one with its
sidecar). In one process:

1. the raw forward pass: ``model.predict_on_batch`` on random batches of the windows that
   ``predict_scene`` uses and of 4 windows of 256 x 256 (the earlier default), timed
   before, during (about 12 of the prediction's calls are each followed by one probe batch
   of each shape) and after step 2;
2. ``predict_scene(model, path)`` with its defaults: streaming reads, features,
   normalization, windows, blending, NaN handling, all included;
3. ``write_prediction``: the probability and mask COGs;
4. unless ``--no-compare``: ``predict_scene`` again in the other precision (float32 if the
   first run used bfloat16, and the other way round), for the speed ratio and the largest
   probability difference.
5. unless ``--no-memory-run``: ``predict_scene`` alone in a fresh process (no probes, only
   the model loaded before it), for ``memory_beyond_model_gb``: its peak RSS above the
   loaded model (issue 19's bound: 2 GB on the full scene).

Reported: times, megapixels/s, peak RSS (sampled every 20 ms) above the RSS once the model
was loaded (so the activations of the windows count; step 5 measures the prediction's own),
the achieved FLOP/s of the forward passes as a fraction of the same run's ``tf.matmul``
peak in the same precision (``bench/_roofline.py``), and:

* ``scene_vs_raw_forward_throughput`` (the last line) = megapixels of scene per second of
  ``predict_scene`` / megapixels per second of the raw forward pass, the faster of the two
  window shapes of step 1 (medians of all their batches: before, during and after).
  1.0 would be a prediction that costs no more than pushing each scene pixel through the
  network once. Target >= 0.6.
* ``overhead_vs_raw_forward`` = predict time / time of the forward passes it made (timed
  inside): the cost of everything but the network (reading, features, windows, blending).
* ``pixel_factor``: window pixels predicted per scene pixel (50% overlap of 256-px
  windows, the earlier default: 4.2).
* ``forward_vs_matmul_peak``: FLOP/s of the forward passes inside ``predict_scene`` / the
  matmul peak of the precision in use.
* ``cli_small_scene_s``: wall time of ``glacierkit predict -q MODEL scene OUT`` on a
  256 x 256 scene in a fresh process (TensorFlow import, model load, tracing, prediction,
  writing), median of ``--cli-runs`` runs that alternate with a bare
  ``python -c "import tensorflow"``; ``cli_vs_tf_import`` = that median / the median of the
  bare imports (the first call's cost in units of what no TensorFlow program can avoid).

The ratios compare rates measured under the same load, so other processes sharing the
cores change them less than the absolute numbers.

Usage::

    python bench/predict.py                   # full size: several minutes on 2 cores
    python bench/predict.py --size 2048 2048  # quick check
    python bench/predict.py --model runs/x/model/unet.keras --precision float32
    python bench/predict.py --cli-only        # only cli_small_scene_s and cli_vs_tf_import

The machine (CPU, cores, native bfloat16 or not) and the load average are printed at the
start and the end: the cores may be shared, so compare ratios from one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Sample the resident set size in a thread; ``peak`` in MB."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def write_scene(path: Path, height: int, width: int, block: int = 512) -> None:
    """A Landsat 8 L2SP-like 7-band uint16 GeoTIFF with smooth 'glaciers', written by blocks."""
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
    # reflectance of ice and rock per band (coastal .. swir2); DN = (r + 0.2) / 2.75e-5
    ice = np.array([0.82, 0.80, 0.78, 0.75, 0.60, 0.08, 0.05])
    rock = np.array([0.09, 0.10, 0.12, 0.15, 0.22, 0.18, 0.14])
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 7,
               "dtype": "uint16", "crs": "EPSG:32632", "nodata": 0,
               "transform": from_origin(400_000, 5_200_000, 30, 30), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate",
               "interleave": "band", "BIGTIFF": "IF_SAFER"}
    rng = np.random.default_rng(0)
    xx = np.arange(width)[None, :]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, block):
            r1 = min(r0 + block, height)
            yy = np.arange(r0, r1)[:, None]
            field = np.sin(xx / 310.0) * np.cos(yy / 270.0) + 0.4 * np.sin((xx + yy) / 97.0)
            glacier = field > 0.3
            for b in range(7):
                refl = np.where(glacier, ice[b], rock[b]) + rng.normal(0, 0.01, glacier.shape)
                dn = np.clip((refl + 0.2) / 2.75e-5, 1, 65535).astype("uint16")
                if r0 == 0:
                    dn[:20, :20] = 0  # a nodata corner
                dst.write(dn, b + 1, window=rasterio.windows.Window(0, r0, width, r1 - r0))
        dst.descriptions = tuple(names)
        dst.update_tags(sensor="landsat8", product="l2sp")



def build_unet(channels: int, depth: int = 4, base: int = 16):
    """The CPU preset's shape: ``depth`` levels including the bottleneck, 2 convs each
    (random weights; ``bench/scale.py`` uses it)."""
    import keras
    from keras import layers

    conv = {"padding": "same", "activation": "relu"}
    inp = keras.Input((None, None, channels))
    x, skips = inp, []
    for d in range(depth - 1):
        x = layers.Conv2D(base * 2**d, 3, **conv)(x)
        x = layers.Conv2D(base * 2**d, 3, **conv)(x)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(base * 2 ** (depth - 1), 3, **conv)(x)
    x = layers.Conv2D(base * 2 ** (depth - 1), 3, **conv)(x)
    for d in reversed(range(depth - 1)):
        x = layers.Conv2DTranspose(base * 2**d, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skips[d]])
        x = layers.Conv2D(base * 2**d, 3, **conv)(x)
        x = layers.Conv2D(base * 2**d, 3, **conv)(x)
    return keras.Model(inp, layers.Conv2D(1, 1, activation="sigmoid")(x))


class TimedModel:
    """Delegates to a Keras model, adds up the time spent in ``predict_on_batch``, and every
    ``probe_every`` calls also times one raw forward pass of each probe batch (the raw speed
    under the same load; reported separately and taken out of the prediction's time)."""

    def __init__(self, model, probes: dict[str, np.ndarray], probe_every: int = 8):
        self._model = model
        self.seconds = 0.0
        self.calls = 0
        self.probes = probes
        self.probe_every = probe_every
        self.probe_times: dict[str, list[float]] = {k: [] for k in probes}  # s per Mpx
        self.probe_seconds = 0.0

    def predict_on_batch(self, x):
        t = time.perf_counter()
        y = self._model.predict_on_batch(x)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        if self.calls % self.probe_every == 0:
            for name, probe in self.probes.items():
                t = time.perf_counter()
                self._model.predict_on_batch(probe)
                dt = time.perf_counter() - t
                self.probe_seconds += dt
                self.probe_times[name].append(dt / _mpx(probe))
        return y

    def __getattr__(self, name):
        return getattr(self._model, name)


def _mpx(x: np.ndarray) -> float:
    return x.shape[0] * x.shape[1] * x.shape[2] / 1e6


def time_raw(model, x: np.ndarray, n: int) -> list[float]:
    """Seconds per megapixel of ``n`` raw forward passes on the batch ``x``."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        model.predict_on_batch(x)
        out.append((time.perf_counter() - t) / _mpx(x))
    return out


def machine() -> str:
    """CPU model, cores, native bfloat16 (avx512_bf16/AMX) or not, and the load average."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"}) or ["no native bfloat16"]
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{model}, {os.cpu_count()} cores, {simd}, {', '.join(bf16)}; load average "
            f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _glacierkit_command() -> list[str]:
    script = Path(sys.executable).with_name("glacierkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "glacierkit.pipeline.cli"]


def cli_timing(model: str, tmp: Path, runs: int, precision: str) -> tuple[list, list]:
    """Wall seconds of ``glacierkit predict -q`` on a 256 x 256 scene and of a bare
    ``python -c "import tensorflow"``, each in a fresh process, alternating."""
    scene = tmp / "small.tif"
    write_scene(scene, 256, 256)
    env = {**os.environ, "GLACIERKIT_PRECISION": precision} if precision != "auto" else None
    cli, tf_import = [], []
    for r in range(runs):
        out = tmp / f"cli-{r}"
        jobs = [("tf", [sys.executable, "-c", "import tensorflow"]),
                ("cli", [*_glacierkit_command(), "predict", "-q", model, str(scene), str(out)])]
        for name, cmd in (jobs if r % 2 == 0 else jobs[::-1]):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            (cli if name == "cli" else tf_import).append(time.perf_counter() - t)
    return cli, tf_import


def memory_child(scene: str, model: str, precision: str, kwargs: dict) -> None:
    """In a fresh process: ``predict_scene`` alone (no probes, nothing run before it but
    loading the model and one 64 x 64 pass), and its peak RSS above the loaded model."""
    from glacierkit.unet import predict_scene
    from glacierkit.unet.artifact import resolve_model

    pred = resolve_model(model, precision)
    pred.model.predict_on_batch(np.zeros((1, 64, 64, pred.spec.n_channels), "float32"))
    base = rss_mb()
    with PeakRSS() as peak:
        t = time.perf_counter()
        predict_scene(pred, scene, **kwargs)
    print(f"MEMORY {peak.peak - base:.1f} {time.perf_counter() - t:.2f} {base:.1f}")


def memory_run(scene: Path, model: str, precision: str, kwargs: dict) -> tuple[float, float,
                                                                              float]:
    """``(MB beyond the model, seconds, MB of the loaded model)`` of :func:`memory_child`."""
    import json

    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(
        [str(scene), model, precision, kwargs])], check=True, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")][-1]
    mb, seconds, base = (float(v) for v in line.split()[1:])
    return mb, seconds, base


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        import json

        memory_child(*json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(7700, 7800),
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--model", default=str(ROOT / "models" / "unet_alps_s2.keras"),
                        help="a .keras model with its .json sidecar (default: the committed one)")
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--overlap", type=float, default=None)
    parser.add_argument("--context", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the second prediction in the other precision")
    parser.add_argument("--raw-batches", type=int, default=4,
                        help="raw forward batches of each shape timed before and after")
    parser.add_argument("--tmp", default=None, help="folder for the synthetic scene")
    parser.add_argument("--no-write", action="store_true", help="skip write_prediction")
    parser.add_argument("--cli-runs", type=int, default=3,
                        help="CLI runs on a 256 x 256 scene (and bare TensorFlow imports)")
    parser.add_argument("--peak-size", type=int, default=4096,
                        help="matrix size of the tf.matmul peak (smaller: a quick check)")
    parser.add_argument("--no-memory-run", action="store_true",
                        help="skip predict_scene alone in a fresh process (its peak memory)")
    parser.add_argument("--cli-only", action="store_true",
                        help="only time the CLI on the small scene against the import")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-", dir=args.tmp))
    cli = tf_import = None
    if args.cli_runs > 0:
        cli, tf_import = cli_timing(args.model, tmp, args.cli_runs, args.precision)
        print(f"glacierkit predict -q on 256 x 256 px: {np.median(cli):.2f} s (runs "
              f"{', '.join(f'{v:.2f}' for v in cli)}); python -c 'import tensorflow': "
              f"{np.median(tf_import):.2f} s (runs {', '.join(f'{v:.2f}' for v in tf_import)})"
              f"; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.cli_only:
        _cleanup(tmp)
        _print_cli(cli, tf_import)
        return

    from _roofline import forward_flops, matmul_peak

    from glacierkit.unet import load_model, predict_scene, write_prediction
    from glacierkit.unet.artifact import resolve_model
    from glacierkit.unet.windows import plan_windows

    height, width = args.size
    scene_path = tmp / "scene.tif"
    t = time.perf_counter()
    write_scene(scene_path, height, width)
    print(f"scene: {height} x {width} x 7 uint16 ({scene_path.stat().st_size / 1e6:.0f} MB "
          f"on disk, {height * width * 7 * 4 / 1e9:.2f} GB as float32), written in "
          f"{time.perf_counter() - t:.1f} s")

    model, sidecar = load_model(args.model)
    spec = sidecar["inputs"]
    pred = resolve_model((model, {**sidecar, "name": Path(args.model).stem}), args.precision)
    channels = spec.n_channels
    t = time.perf_counter()
    pred.model.predict_on_batch(np.zeros((1, 64, 64, channels), "float32"))
    print(f"first forward pass (trace and run, 64 x 64 px): {time.perf_counter() - t:.2f} s")
    if pred.precision == "bfloat16":  # windows may be assembled in bfloat16: its graph too
        import ml_dtypes

        pred.model.predict_on_batch(np.zeros((1, 64, 64, channels), ml_dtypes.bfloat16))
    base_rss = rss_mb()
    print(f"model: {args.model}, {model.count_params() / 1e6:.2f} M params, {channels} channels "
          f"{list(spec.channels)}, pooling factor {pred.multiple}, receptive radius "
          f"{pred.radius} px; precision {pred.precision} (asked: {args.precision}); RSS once "
          f"loaded: {base_rss:.0f} MB")

    plan = plan_windows(pred, height, width, window=args.window, overlap=args.overlap,
                 context=args.context, batch_size=args.batch_size)
    wy, wx = plan.ay.window, plan.ax.window
    print(f"plan: {plan.ay.count} x {plan.ax.count} = {plan.n_windows} windows of {wy} x {wx} "
          f"px (nominal {plan.window} px square, steps {plan.ay.step}/{plan.ax.step}, context "
          f"{plan.context}, reflected margin {plan.ay.margin}/{plan.ax.margin}, batch "
          f"{plan.batch_size}): pixel_factor {plan.pixel_factor:.3f} (50% overlap of 256-px "
          f"windows: 4.2)")
    rng = np.random.default_rng(2)
    probes = {
        "plan": rng.normal(size=(plan.batch_size, wy, wx, channels)).astype("float32"),
        "256": rng.normal(size=(4, 256, 256, channels)).astype("float32"),
    }
    flops = {k: forward_flops(pred.model, p.shape[1], p.shape[2]) / (p.shape[1] * p.shape[2])
             for k, p in probes.items()}  # per pixel
    other = "float32" if pred.precision == "bfloat16" else "bfloat16"
    peaks = {pred.precision: matmul_peak(pred.precision, args.peak_size)}
    if not args.no_compare:
        peaks[other] = matmul_peak(other, args.peak_size)
    print(f"the model: {flops['plan'] * 65536 / 1e9:.2f} GFLOP per 256 x 256 px")
    raw = {}
    for k, p in probes.items():
        t = time.perf_counter()
        time_raw(pred.model, p, 1)  # the first call of a shape compiles (XLA: large windows)
        print(f"first call on a batch of {' x '.join(map(str, p.shape[:3]))} px: "
              f"{time.perf_counter() - t:.1f} s (compile and run)")
        raw[k] = time_raw(pred.model, p, args.raw_batches)

    # about 12 probes of each shape while predict_scene runs: the raw speed under its load
    timed = TimedModel(pred.model, probes, probe_every=max(1, plan.n_windows // 12))
    timed_pred = dataclasses.replace(pred, model=timed)
    kwargs = {"window": args.window, "overlap": args.overlap, "context": args.context,
              "batch_size": args.batch_size, "progress": False}
    with PeakRSS() as peak:
        t = time.perf_counter()
        prob = predict_scene(timed_pred, scene_path, **kwargs)
        t_pred = time.perf_counter() - t
    t_probes = timed.probe_seconds
    t_pred -= t_probes  # the probes ran inside predict_scene: take them out
    assert prob.attrs["n_windows"] == plan.n_windows, (prob.attrs["n_windows"], plan.n_windows)
    for k, p in probes.items():
        raw[k] += time_raw(pred.model, p, args.raw_batches) + timed.probe_times[k]
    # the peak before and after the prediction
    peaks = {k: max(v, matmul_peak(k, args.peak_size)) for k, v in peaks.items()}
    print(f"matmul peak (tf.matmul {args.peak_size}^2, best of 5 before and 5 after the "
          "prediction): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    mpx = height * width / 1e6
    raw_rate = {k: 1 / float(np.median(v)) for k, v in raw.items()}  # Mpx/s
    for k, v in raw.items():
        b, h, w = probes[k].shape[:3]
        gflops = raw_rate[k] * 1e6 * flops[k]
        print(f"raw forward, batches of {b} x {h} x {w}: {raw_rate[k]:.2f} Mpx/s (median of "
              f"{len(v)} batches, {len(timed.probe_times[k])} during the prediction; IQR "
              f"{1 / np.percentile(v, 75):.2f}-{1 / np.percentile(v, 25):.2f}), "
              f"{gflops / 1e9:.0f} GFLOP/s = {gflops / peaks[pred.precision]:.2f} of the "
              f"{pred.precision} matmul peak")
    best = max(raw_rate, key=raw_rate.get)
    scene_rate = mpx / t_pred
    fwd_rate = plan.n_windows * wy * wx / 1e6 / timed.seconds  # Mpx/s inside predict_scene
    achieved = fwd_rate * 1e6 * flops["plan"]
    print(f"predict_scene: {t_pred:.1f} s (without the {t_probes:.1f} s of probes), "
          f"{scene_rate:.2f} Mpx/s of scene; peak RSS {peak.peak:.0f} MB = model + "
          f"{peak.peak - base_rss:.0f} MB (with the probe batches, and what the steps "
          "before it freed but the allocator kept)")
    print(f"forward passes inside predict_scene: {timed.seconds:.1f} s in {timed.calls} "
          f"batches ({fwd_rate:.2f} Mpx/s of windows, {achieved / 1e9:.0f} GFLOP/s); "
          f"everything else {t_pred - timed.seconds:.1f} s")
    valid = np.isfinite(prob.values)
    print(f"output: {valid.mean():.4f} valid, glacier fraction "
          f"{(prob.values[valid] > 0.5).mean():.3f}")

    if not args.no_write:
        before = rss_mb()
        with PeakRSS() as wpeak:
            t = time.perf_counter()
            paths = write_prediction(prob, tmp / "out")
            t_write = time.perf_counter() - t
        sizes = ", ".join(f"{k} {p.stat().st_size / 1e6:.1f} MB" for k, p in paths.items())
        print(f"write_prediction: {t_write:.1f} s ({sizes}); peak RSS {wpeak.peak:.0f} MB = "
              f"model + {wpeak.peak - base_rss:.0f} MB ({wpeak.peak - before:+.0f} MB over "
              f"the {before:.0f} MB before writing)")
    if not args.no_compare:
        other_pred = pred.with_precision(other)
        time_raw(other_pred.model, probes["plan"], 1)  # compile before timing
        t = time.perf_counter()
        prob2 = predict_scene(other_pred, scene_path, **kwargs)
        t_other = time.perf_counter() - t
        both = valid & np.isfinite(prob2.values)
        diff = np.abs(prob.values[both] - prob2.values[both])
        flips = ((prob.values[both] > 0.5) != (prob2.values[both] > 0.5)).mean()
        times = {pred.precision: t_pred, other: t_other}
        # the speed of the two precisions side by side: alternating batches of one window
        models = {pred.precision: pred.model, other: other_pred.model}
        one = probes["plan"][:1]
        paired = []
        for r in range(2 * args.raw_batches):
            t_batch = {}
            for k in (("float32", "bfloat16") if r % 2 == 0 else ("bfloat16", "float32")):
                t = time.perf_counter()
                models[k].predict_on_batch(one)
                t_batch[k] = time.perf_counter() - t
            paired.append(t_batch["float32"] / t_batch["bfloat16"])
        print(f"precision: bfloat16 forward speedup {np.median(paired):.2f}x (median of "
              f"{len(paired)} alternating float32/bfloat16 windows; IQR "
              f"{np.percentile(paired, 25):.2f}-{np.percentile(paired, 75):.2f}); "
              f"predict_scene {times['float32']:.1f} s in float32 and "
              f"{times['bfloat16']:.1f} s in bfloat16, one after the other "
              f"({times['float32'] / times['bfloat16']:.2f}x); probability difference max "
              f"{diff.max():.4f}, 99.9th percentile {np.percentile(diff, 99.9):.4f}; mask "
              f"pixels flipped {flips:.1e}")
        del prob2

    memory = None
    if not args.no_memory_run:
        memory = memory_run(scene_path, args.model, pred.precision, kwargs)
        print(f"predict_scene alone (a fresh process, no probes): peak RSS model + "
              f"{memory[0]:.0f} MB (model loaded: {memory[2]:.0f} MB), {memory[1]:.1f} s")
    _cleanup(tmp)
    print(f"traces: {getattr(pred.model, 'traces', 'n/a')} (graphs traced in this process)")
    print(f"machine at the end: {machine()}")
    print(f"pixel_factor: {plan.pixel_factor:.3f}")
    print(f"forward_vs_matmul_peak: {achieved / peaks[pred.precision]:.3f} ({pred.precision}, "
          f"peak {peaks[pred.precision] / 1e9:.0f} GFLOP/s)")
    print(f"overhead_vs_raw_forward: {t_pred / timed.seconds:.3f}")
    if memory:
        print(f"memory_beyond_model_gb: {memory[0] / 1024:.3f} (predict_scene alone)")
    _print_cli(cli, tf_import)
    print(f"scene_vs_raw_forward_throughput: {scene_rate / raw_rate[best]:.3f} "
          f"({pred.precision})")


def _cleanup(tmp: Path) -> None:
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    tmp.rmdir()


def _print_cli(cli, tf_import) -> None:
    if cli:
        print(f"cli_small_scene_s: {np.median(cli):.2f} (median of {len(cli)}; "
              f"{min(cli):.2f}-{max(cli):.2f})")
        print(f"cli_vs_tf_import: {np.median(cli) / np.median(tf_import):.2f} (bare import "
              f"{np.median(tf_import):.2f} s, {min(tf_import):.2f}-{max(tf_import):.2f})")


if __name__ == "__main__":
    main()
