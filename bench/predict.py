"""Benchmark full-scene prediction against the model's raw forward pass.

A synthetic full-size Landsat 8 scene (default 7,700 x 7,800 pixels, 7 bands, uint16,
band-interleaved, tiled, deflate) is written to a temporary GeoTIFF. In one process:

1. the raw forward pass: ``model.predict_on_batch`` on random windows of the same shape
   (timed on a subset of batches before and after step 2, median per window);
2. ``predict_scene(model, path)``: streaming reads, features, normalization, windows,
   blending, NaN handling, all included;
3. ``write_prediction``: the probability and mask COGs.

Reported: time, megapixels/s, peak RSS (sampled every 20 ms) above the baseline after the
model was loaded and warmed up, and the overhead of ``predict_scene`` over the raw forward:

* ``overhead_vs_raw_forward`` (the last line) = predict time / time of the forward passes
  of the windows it predicted, measured in the same run by timing the model's
  ``predict_on_batch`` calls: the cost of everything except the forward passes (reading,
  features, windows, blending, NaN). Target <= 1.3. Robust to other processes sharing the
  cores, since both sides see the same load.
* ``raw_ratio`` = the same over the forward pass of just the scene's pixels: it also counts
  the extra windows of the overlap (about 4.2x at 50% overlap).
* The same two ratios against a separately timed raw forward pass on a fixed random batch
  (median of batches before, after and interleaved with the prediction) are printed too;
  on shared cores they are noisier.

Usage::

    python bench/predict.py                   # full size: several minutes on 2 cores
    python bench/predict.py --size 2048 2048  # quick check
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402


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
    """The CPU preset's shape: ``depth`` levels including the bottleneck, 2 convs each."""
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
    ``probe_every`` calls also times one raw forward pass on a fixed random batch (a probe
    of the raw speed under the same load; its time is reported separately)."""

    def __init__(self, model, probe: np.ndarray, probe_every: int = 8):
        self._model = model
        self.seconds = 0.0
        self.calls = 0
        self.probe = probe
        self.probe_every = probe_every
        self.probe_times: list[float] = []  # seconds per window

    def predict_on_batch(self, x):
        t = time.perf_counter()
        y = self._model.predict_on_batch(x)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        if self.calls % self.probe_every == 0:
            t = time.perf_counter()
            self._model.predict_on_batch(self.probe)
            self.probe_times.append((time.perf_counter() - t) / len(self.probe))
        return y

    def __getattr__(self, name):
        return getattr(self._model, name)


def time_raw(model, batch: int, window: int, channels: int, n: int) -> list[float]:
    """Seconds per window of ``n`` raw forward passes on random batches."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, window, window, channels)).astype("float32")
    out = []
    for _ in range(n):
        t = time.perf_counter()
        model.predict_on_batch(x)
        out.append((time.perf_counter() - t) / batch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(7700, 7800),
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--raw-batches", type=int, default=12,
                        help="raw forward batches timed before and after the prediction")
    parser.add_argument("--tmp", default=None, help="folder for the synthetic scene")
    parser.add_argument("--no-write", action="store_true", help="skip write_prediction")
    args = parser.parse_args()

    from glacierkit.features import InputSpec, load_model, save_model
    from glacierkit.predict import (
        _Axis,
        _resolve_model,
        _split,
        _step_size,
        predict_scene,
        write_prediction,
    )

    height, width = args.size
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-", dir=args.tmp))
    scene_path = tmp / "scene.tif"
    t = time.perf_counter()
    write_scene(scene_path, height, width)
    print(f"scene: {height} x {width} x 7 uint16 ({scene_path.stat().st_size / 1e6:.0f} MB "
          f"on disk, {height * width * 7 * 4 / 1e9:.2f} GB as float32), written in "
          f"{time.perf_counter() - t:.1f} s")

    import keras

    keras.utils.set_random_seed(0)
    spec = InputSpec(("swir1", "nir", "blue"), ("ndsi",), mean=(0.15, 0.3, 0.3, 0.1),
                     std=(0.1, 0.2, 0.3, 0.5), patch_size=args.window)
    model_path = save_model(build_unet(spec.n_channels), tmp / "unet.keras", spec,
                            name="bench-unet-4-16")
    model, sidecar = load_model(model_path)
    print(f"model: U-Net depth 4 base 16, {model.count_params() / 1e6:.2f} M params, "
          f"{spec.n_channels} channels {list(spec.channels)}")

    step = _step_size(args.window, args.overlap, _resolve_model((model, sidecar)).multiple)
    ax = _Axis(width, args.window, step)
    ay = _Axis(height, args.window, step)
    n_windows = ax.count * ay.count
    for b in {b - a for a, b in _split(ax.count, args.batch_size)}:  # warm up both shapes
        model.predict_on_batch(np.zeros((b, args.window, args.window, spec.n_channels),
                                        "float32"))
    raw = time_raw(model, args.batch_size, args.window, spec.n_channels, args.raw_batches)
    base_rss = rss_mb()
    print(f"baseline RSS after loading and warming up the model: {base_rss:.0f} MB")

    probe = np.random.default_rng(2).normal(
        size=(args.batch_size, args.window, args.window, spec.n_channels)).astype("float32")
    timed = TimedModel(model, probe)
    with PeakRSS() as peak:
        t = time.perf_counter()
        prob = predict_scene((timed, sidecar), scene_path, window=args.window,
                             overlap=args.overlap, batch_size=args.batch_size, progress=False)
        t_pred = time.perf_counter() - t
    t_probes = sum(timed.probe_times) * args.batch_size
    t_pred -= t_probes  # the probes ran inside predict_scene: take them out
    assert prob.attrs["n_windows"] == n_windows, (prob.attrs["n_windows"], n_windows)
    raw += time_raw(model, args.batch_size, args.window, spec.n_channels, args.raw_batches)
    raw += timed.probe_times
    t_win = float(np.median(raw))
    mpx = height * width / 1e6
    raw_windows = t_win * n_windows
    raw_pixels = t_win * height * width / args.window**2
    print(f"windows: {n_windows} of {args.window} px (step {step}), "
          f"{n_windows * args.window**2 / (height * width):.2f}x the scene's pixels")
    print(f"raw forward: {t_win * 1e3:.1f} ms per window (median of {len(raw)} batches of "
          f"{args.batch_size}, {len(timed.probe_times)} of them interleaved with the "
          f"prediction (median {np.median(timed.probe_times or [np.nan]) * 1e3:.1f} ms); IQR {np.percentile(raw, 25) * 1e3:.1f}-"
          f"{np.percentile(raw, 75) * 1e3:.1f} ms), {args.window**2 / t_win / 1e6:.2f} Mpx/s")
    print(f"predict_scene: {t_pred:.1f} s (without the {t_probes:.1f} s of probes), {mpx / t_pred:.2f} Mpx/s of scene; "
          f"peak RSS {peak.peak:.0f} MB = baseline + {peak.peak - base_rss:.0f} MB")
    print(f"forward passes inside predict_scene: {timed.seconds:.1f} s in {timed.calls} "
          f"batches ({timed.seconds / n_windows * 1e3:.1f} ms per window); everything else "
          f"{t_pred - timed.seconds:.1f} s")
    print(f"raw forward estimate from the separate timing: {raw_pixels:.1f} s over the "
          f"scene's pixels, {raw_windows:.1f} s over the windows predicted")
    valid = np.isfinite(prob.values)
    print(f"output: {valid.mean():.4f} valid, glacier fraction {(prob.values[valid] > 0.5).mean():.3f}")

    if not args.no_write:
        before = rss_mb()
        with PeakRSS() as wpeak:
            t = time.perf_counter()
            paths = write_prediction(prob, tmp / "out")
            t_write = time.perf_counter() - t
        sizes = ", ".join(f"{k} {p.stat().st_size / 1e6:.1f} MB" for k, p in paths.items())
        print(f"write_prediction: {t_write:.1f} s ({sizes}); peak RSS {wpeak.peak:.0f} MB = "
              f"baseline + {wpeak.peak - base_rss:.0f} MB ({wpeak.peak - before:+.0f} MB over "
              f"the {before:.0f} MB before writing)")
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    tmp.rmdir()
    factor = n_windows * args.window**2 / (height * width)
    print(f"overhead vs the separately timed raw forward (noisy on shared cores): "
          f"{t_pred / raw_windows:.3f} per window, {t_pred / raw_pixels:.3f} per scene pixel")
    print(f"raw_ratio (predict_scene / in-run forward over the scene's pixels, incl. the "
          f"{factor:.2f}x windows of {args.overlap:.0%} overlap): "
          f"{t_pred / (timed.seconds / factor):.3f}")
    print(f"overhead_vs_raw_forward: {t_pred / timed.seconds:.3f}")

if __name__ == "__main__":
    main()
