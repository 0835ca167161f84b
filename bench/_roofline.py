"""Distance to the hardware limit: a model's forward FLOPs and the machine's matmul peak.

Shared by ``bench/predict.py`` and ``bench/train_input.py``.

* :func:`forward_flops` counts the multiply-adds of the convolutions (and dense layers) of a
  fully convolutional Keras model for one input of ``height x width`` pixels, 2 FLOPs each,
  walking the layers in order and tracking the resolution through pooling, strides and
  upsampling. Batch normalization, activations and additions are not counted (they are a
  few FLOPs per activation against hundreds per convolution output).
* :func:`matmul_peak` times ``tf.matmul`` of two ``n x n`` matrices in float32 or bfloat16
  (best of a few runs): the rate the same TensorFlow reaches on this machine's cores for
  the densest kernel there is. The fraction ``achieved / peak`` says how far a forward
  (or training) step is from that limit.
"""

from __future__ import annotations

import time


def _pair(value, default=1):
    if value is None:
        return default
    if isinstance(value, int):
        return value
    return tuple(int(v) for v in value)


def _layers(model):
    for layer in getattr(model, "layers", []) or []:
        if getattr(layer, "layers", None):
            yield from _layers(layer)
        else:
            yield layer


def forward_flops(model, height: int, width: int) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of ``model`` on ``height x width``."""
    sy = sx = 1.0  # current downsampling factor
    total = 0.0
    for layer in _layers(model):
        kind = type(layer).__name__
        if kind in ("Conv2D", "Conv2DTranspose", "SeparableConv2D", "DepthwiseConv2D"):
            kh, kw = _pair(layer.kernel_size)
            st = _pair(getattr(layer, "strides", 1))
            st = (st, st) if isinstance(st, int) else st
            kernel = layer.kernel.shape  # (kh, kw, in, out) or (kh, kw, out, in) transposed
            if kind == "Conv2DTranspose":
                sy, sx = sy / st[0], sx / st[1]
                cin = kernel[3]
                cout = kernel[2]
                # every input pixel scatters kh*kw*cout outputs
                total += 2 * kh * kw * cin * cout * (height / sy / st[0]) * (width / sx / st[1])
                continue
            sy, sx = sy * st[0], sx * st[1]
            pixels = (height / sy) * (width / sx)
            if kind == "DepthwiseConv2D":
                total += 2 * kh * kw * kernel[2] * kernel[3] * pixels
            elif kind == "SeparableConv2D":
                cin, mult = layer.depthwise_kernel.shape[2:]
                total += 2 * kh * kw * cin * mult * pixels
                total += 2 * cin * mult * layer.pointwise_kernel.shape[3] * pixels
            else:
                total += 2 * kh * kw * kernel[2] * kernel[3] * pixels
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            st = _pair(getattr(layer, "strides", None) or layer.pool_size)
            st = (st, st) if isinstance(st, int) else st
            sy, sx = sy * st[0], sx * st[1]
        elif kind == "UpSampling2D":
            u = _pair(layer.size)
            u = (u, u) if isinstance(u, int) else u
            sy, sx = sy / u[0], sx / u[1]
        elif kind == "Dense":
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1] * (height / sy) * (
                width / sx)
    return total


def matmul_peak(dtype: str = "float32", n: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of ``tf.matmul`` on two ``n x n`` matrices of ``dtype`` (best of ``repeats``)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype="float32", seed=1)
    b = tf.random.normal((n, n), dtype="float32", seed=2)
    if dtype != "float32":
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    mm = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], "float32")))
    mm(a, b).numpy()  # warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
