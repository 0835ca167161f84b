"""Is the input pipeline the bottleneck of U-Net training?

Trains the ``cpu`` preset on the real tiles of the Alps training scenes, fed two ways,
measured side by side in alternating rounds of one process (the machine is shared, so only
ratios of interleaved medians mean something):

- ``pipeline``: :func:`glacierkit.unet.training_dataset`, the tf.data pipeline that
  training uses, with the on-the-fly flips/rotations;
- ``in_memory``: one batch of the same shape held as tensors and repeated, so the input
  costs nothing: the upper bound.

Also prints the raw pipeline rate without a model, the training images/s and parameter
counts of the ``cpu`` and ``paper`` presets (the paper's 124 M-parameter network takes tens
of seconds per step on a CPU; ``--skip-paper`` leaves it out), the achieved FLOP/s of the
training step (3x the forward FLOPs: forward, and the gradients of activations and
weights) as a fraction of the same run's ``tf.matmul`` peak in the precision in use
(``bench/_roofline.py``), and the training speed in bfloat16 against float32
(in-memory tensors, alternating rounds; ``--skip-bf16`` leaves it out).

Usage::

    python bench/train_input.py [--rounds 20] [--steps 6] [--skip-paper]

The last line is ``pipeline_vs_in_memory: <ratio>`` (target: >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _fit_rate(model, ds, steps: int, batch: int) -> float:
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6, help="training steps per mode and round")
    parser.add_argument("--paper-steps", type=int, default=2)
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--bf16-rounds", type=int, default=6)
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    from _roofline import forward_flops, matmul_peak

    from glacierkit.unet import (
        PRESETS,
        TrainConfig,
        build_unet,
        cast_model,
        count_params,
        prepare_patches,
    )
    from glacierkit.unet.train import make_loss, make_optimizer, train_precision

    config = TrainConfig()
    with tempfile.TemporaryDirectory() as tmp:
        from glacierkit.data import split
        from glacierkit.prep import prepare_scenes

        train_scenes = split("alps-s2")["train"]
        prepare_scenes(train_scenes, tmp)
        patches = prepare_patches(config, train_scenes, prepared_dir=tmp)
    b = config.batch_size
    print(f"tiles: {patches.n_train} training tiles of {config.patch_size} px x "
          f"{patches.spec.n_channels} channels, batch {b}, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} intra-op threads")
    for name, p in PRESETS.items():
        channels = [len(p.bands)] + ([config.n_channels] if name == config.preset else [])
        counts = ", ".join(f"{c} channels: {count_params(c, p.depth, p.base_filters):,}"
                           for c in channels)
        print(f"{name} preset: depth {p.depth}, base_filters {p.base_filters}; parameters "
              f"with {counts}")

    from glacierkit.unet import training_dataset

    pipe, steps_per_epoch = training_dataset(patches, b, seed=0)
    xb, yb, wb = next(iter(pipe))
    memory = tf.data.Dataset.from_tensors((xb, yb, wb)).repeat()

    # the pipeline alone, no model
    it = iter(training_dataset(patches, b, seed=1)[0])
    next(it)
    t = time.perf_counter()
    for _ in range(100):
        next(it)
    print(f"pipeline alone: {100 * b / (time.perf_counter() - t):.0f} images/s")

    keras.utils.set_random_seed(0)
    model = build_unet(config.n_channels, config.model_depth, config.model_filters)
    model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=make_loss(config.loss),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    precision = train_precision(config, None, bool(tf.config.list_physical_devices("GPU")))
    peaks = {k: matmul_peak(k) for k in {"float32", precision}
             | (set() if args.skip_bf16 else {"bfloat16"})}
    _fit_rate(model, memory, 3, b)  # compile and warm up both paths
    _fit_rate(model, pipe, 3, b)
    rates: dict[str, list[float]] = {"pipeline": [], "in_memory": []}
    for r in range(args.rounds):
        order = ("pipeline", "in_memory") if r % 2 == 0 else ("in_memory", "pipeline")
        for mode in order:
            rates[mode].append(_fit_rate(model, pipe if mode == "pipeline" else memory,
                                         args.steps, b))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = [p / m for p, m in zip(rates["pipeline"], rates["in_memory"], strict=True)]
    step_flops = 3 * forward_flops(model, config.patch_size, config.patch_size)
    achieved = med["pipeline"] * step_flops
    print(f"cpu preset ({config.n_channels} channels) train images/s (batch {b}): tf.data "
          f"pipeline {med['pipeline']:.1f}, in-memory tensors {med['in_memory']:.1f} (medians "
          f"of {args.rounds} rounds x {args.steps} steps); ratio of medians "
          f"{med['pipeline'] / med['in_memory']:.3f}; per-round ratios "
          + " ".join(f"{x:.2f}" for x in ratios))

    if not args.skip_paper:
        paper = TrainConfig.paper()
        keras.utils.set_random_seed(0)
        big = build_unet(paper.n_channels, paper.model_depth, paper.model_filters)
        big.compile(optimizer=make_optimizer(paper, steps_per_epoch), loss=make_loss(paper.loss))
        paper_batch = tf.data.Dataset.from_tensors(
            (xb[..., :paper.n_channels], yb, wb)).repeat()
        _fit_rate(big, paper_batch, 1, b)
        rate = _fit_rate(big, paper_batch, args.paper_steps, b)
        print(f"paper preset train images/s (batch {b}, in-memory, {args.paper_steps} steps): "
              f"{rate:.2f}  ({big.count_params():,} parameters)")
    if not args.skip_bf16:
        keras.utils.set_random_seed(0)
        f32 = build_unet(config.n_channels, config.model_depth, config.model_filters)
        bf16 = cast_model(f32, "bfloat16")
        models = {"float32": f32, "bfloat16": bf16}
        for m in models.values():
            m.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=make_loss(config.loss))
            _fit_rate(m, memory, 3, b)
        prec_rates: dict[str, list[float]] = {k: [] for k in models}
        for r in range(args.bf16_rounds):
            for k in (("float32", "bfloat16") if r % 2 == 0 else ("bfloat16", "float32")):
                prec_rates[k].append(_fit_rate(models[k], memory, args.steps, b))
        pm = {k: statistics.median(v) for k, v in prec_rates.items()}
        speedups = [x / y for x, y in zip(prec_rates["bfloat16"], prec_rates["float32"],
                                          strict=True)]
        peaks = {k: max(v, matmul_peak(k)) for k, v in peaks.items()}
        frac = {k: pm[k] * step_flops / peaks[k] for k in pm}
        print(f"precision: cpu preset train images/s (in-memory, medians of "
              f"{args.bf16_rounds} alternating rounds): float32 {pm['float32']:.1f} "
              f"({frac['float32']:.2f} of the float32 matmul peak), bfloat16 "
              f"{pm['bfloat16']:.1f} ({frac['bfloat16']:.2f} of the bfloat16 peak); "
              f"bfloat16 speedup {statistics.median(speedups):.2f}x (per-round "
              + " ".join(f"{x:.2f}" for x in speedups) + ")")
    print(f"training step: {step_flops / 1e9:.2f} GFLOP per {config.patch_size}-px image "
          f"(3x forward); at {med['pipeline']:.1f} images/s that is {achieved / 1e9:.0f} "
          "GFLOP/s; matmul peak (tf.matmul 4096^2, best of 5 before and after) "
          + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    print(f"train_step_vs_matmul_peak: {achieved / peaks[precision]:.3f} ({precision})")
    print(f"pipeline_vs_in_memory: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
