"""Numeric precision of the U-Net: float32, or bfloat16 where the hardware has it.

``precision="bfloat16"`` is Keras' ``mixed_bfloat16``: weights stay float32, every layer
computes in bfloat16 except the layers that produce the model's outputs, which compute
(and return) float32. bfloat16 has float32's exponent range, so no loss scaling is needed,
but only 8 bits of mantissa: probabilities differ from float32 ones by up to a few
hundredths near the decision boundary.

Where it is fast: CPUs with ``avx512_bf16`` (AMD Zen 4 and later, Intel Cooper Lake) or
AMX (Intel Sapphire Rapids and later), where oneDNN runs the convolutions on bfloat16
dot-product instructions, and NVIDIA GPUs from compute capability 8.0 (Ampere). Elsewhere
TensorFlow emulates it, several times slower than float32.

The default (``"auto"``, see :func:`resolve`) follows measurements, not hopes:

* **prediction** uses bfloat16 on a CPU with ``avx512_bf16``/AMX when no GPU is visible
  (:data:`PREDICT_BF16_ON_CPU`; measured on an AMD EPYC Zen 4: see the README's benchmark
  section), float32 otherwise (GPUs have not been measured here);
* **training** uses float32 on CPUs (:data:`TRAIN_BF16_ON_CPU`) and keeps glacierkit's
  float16 mixed precision on GPUs.

CPU support is read from the ``flags`` line of ``/proc/cpuinfo`` (Linux); where that file
does not exist, the CPU counts as lacking bfloat16. ``GLACIERKIT_PRECISION`` (``float32``
or ``bfloat16``) overrides ``"auto"``.
"""

from __future__ import annotations

import functools
import logging
import os

from ..exceptions import ParameterError

log = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "cpu_flags", "cpu_has_bf16", "gpu_has_bf16", "resolve", "PREDICT_BF16_ON_CPU", "TRAIN_BF16_ON_CPU"]

PRECISIONS = ("auto", "float32", "bfloat16")
#: CPU flags that mean native bfloat16 dot products (AVX-512 BF16, AMX).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Whether "auto" predicts in bfloat16 on a bfloat16 CPU (decided by measurement).
PREDICT_BF16_ON_CPU = True
#: Whether "auto" trains in bfloat16 on a bfloat16 CPU (decided by measurement).
TRAIN_BF16_ON_CPU = False
_ENV = "GLACIERKIT_PRECISION"


@functools.lru_cache(maxsize=1)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` (empty if unknown)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has native bfloat16 dot products (``avx512_bf16`` or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def _gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def gpu_has_bf16(gpus: list | None = None) -> bool:
    """True when every visible GPU reports compute capability 8.0 or more."""
    import tensorflow as tf

    gpus = _gpus() if gpus is None else gpus
    if not gpus:
        return False
    for gpu in gpus:
        try:
            cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except Exception:  # noqa: BLE001 - a device without details counts as unknown
            cc = None
        if not cc or tuple(cc) < (8, 0):
            return False
    return True


def _check(precision: str | None) -> str:
    value = "auto" if precision is None else str(precision).lower()
    if value not in PRECISIONS:
        raise ParameterError(
            f"precision={precision!r}; use 'float32', 'bfloat16' or 'auto' (bfloat16 where "
            "the hardware has it and it was measured to help)."
        )
    return value


def resolve(precision: str | None = "auto", task: str = "predict") -> str:
    """``"float32"`` or ``"bfloat16"`` for ``precision`` (``"auto"``, None or explicit).

    ``task`` is ``"predict"`` or ``"train"``; see the module docstring for the defaults.
    An explicit ``"bfloat16"`` on hardware without it is honoured with a warning (it is
    emulated, and slow).
    """
    value = _check(precision)
    if value == "auto" and os.environ.get(_ENV):
        value = _check(os.environ[_ENV])
        if value == "auto":
            raise ParameterError(f"{_ENV}=auto; set it to 'float32' or 'bfloat16', or unset it.")
    if value == "auto":
        if _gpus():
            return "float32"  # bfloat16 on GPUs is offered, not measured here
        wanted = PREDICT_BF16_ON_CPU if task == "predict" else TRAIN_BF16_ON_CPU
        return "bfloat16" if wanted and cpu_has_bf16() else "float32"
    if value == "bfloat16":
        gpus = _gpus()
        native = gpu_has_bf16(gpus) if gpus else cpu_has_bf16()
        if not native:
            log.warning("precision='bfloat16' on hardware without native bfloat16 (no "
                        "avx512_bf16/AMX CPU flag, or a GPU older than compute capability "
                        "8.0): it is emulated and usually slower than float32.")
    return value
