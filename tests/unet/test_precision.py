"""Precision: CPU detection, the "auto" rule, bfloat16 casting of a model."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_unet
from glacierkit.exceptions import ParameterError
from glacierkit.unet import precision
from glacierkit.unet.artifact import cast_model

keras = pytest.importorskip("keras")

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f "
        "avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2\n")
OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_cpu_flags_from_cpuinfo(tmp_path):
    zen4, old = tmp_path / "zen4", tmp_path / "old"
    zen4.write_text(ZEN4)
    old.write_text(OLD)
    flags = precision.cpu_flags.__wrapped__(str(zen4))  # the first processor's flags
    assert "avx512_bf16" in flags and precision.cpu_has_bf16(flags)
    assert not precision.cpu_has_bf16(precision.cpu_flags.__wrapped__(str(old)))
    assert precision.cpu_has_bf16(frozenset({"amx_bf16", "amx_tile"}))
    # no /proc/cpuinfo (macOS, Windows): no bfloat16, so float32
    assert precision.cpu_flags.__wrapped__(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags, gpus, task, expected", [
    (frozenset({"avx512_bf16"}), [], "predict", "bfloat16" if precision.PREDICT_BF16_ON_CPU
     else "float32"),
    (frozenset({"avx512_bf16"}), [], "train", "bfloat16" if precision.TRAIN_BF16_ON_CPU
     else "float32"),
    (frozenset({"avx2"}), [], "predict", "float32"),
    (frozenset({"avx512_bf16"}), ["gpu"], "predict", "float32"),  # GPUs: not measured here
])
def test_auto_follows_the_hardware_and_the_measurements(monkeypatch, flags, gpus, task,
                                                        expected):
    monkeypatch.delenv("GLACIERKIT_PRECISION", raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda path="": flags)
    monkeypatch.setattr(precision, "_gpus", lambda: gpus)
    assert precision.resolve("auto", task) == expected
    assert precision.resolve(None, task) == expected
    assert precision.resolve("float32", task) == "float32"


def test_explicit_and_environment_choices(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda path="": frozenset({"avx2"}))
    monkeypatch.setattr(precision, "_gpus", lambda: [])
    monkeypatch.setenv("GLACIERKIT_PRECISION", "bfloat16")
    with caplog.at_level("WARNING"):
        assert precision.resolve("auto") == "bfloat16"  # emulated: honoured, with a warning
    assert "emulated" in caplog.text
    assert precision.resolve("float32") == "float32"  # an explicit choice wins
    monkeypatch.setenv("GLACIERKIT_PRECISION", "double")
    with pytest.raises(ParameterError, match="double"):
        precision.resolve("auto")
    with pytest.raises(ParameterError, match="'float32', 'bfloat16' or 'auto'"):
        precision.resolve("fp8")


def test_cast_model_computes_in_bfloat16_with_float32_output():
    keras.utils.set_random_seed(3)
    model = tiny_unet(4)
    cast = cast_model(model, "bfloat16")
    assert cast is cast_model(model, "bfloat16")  # cached per model
    assert cast_model(model, "float32") is model
    policies = {layer.name: layer.dtype_policy.name for layer in cast.layers[1:]}
    assert policies.pop(cast.layers[-1].name) == "float32"  # the output layer
    assert set(policies.values()) == {"mixed_bfloat16"}
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}  # untouched
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 4)).astype("float32")
    a, b = model.predict_on_batch(x), cast.predict_on_batch(x)
    assert b.dtype == np.float32
    diff = float(np.abs(a - b).max())
    assert 0 < diff < 0.05  # bfloat16 rounds, a little
    back = cast_model(cast, "float32")
    assert {layer.dtype_policy.name for layer in back.layers} == {"float32"}
    np.testing.assert_allclose(back.predict_on_batch(x), a, atol=1e-6)
