"""The U-Net builder: the paper's layer pattern, parameter counts, input sizes."""

from __future__ import annotations

import numpy as np
import pytest

from glacierkit.exceptions import ParameterError
from glacierkit.unet import PRESETS, build_from_preset, build_unet, check_input_size, count_params


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_layer_pattern_is_the_papers():
    model = build_unet(3, depth=2, base_filters=4)
    kinds = _kinds(model)
    conv_bn = ["Conv2D", "BatchNormalization"] * 2
    expected = (["InputLayer"]
                + conv_bn + ["MaxPooling2D"] + conv_bn + ["MaxPooling2D"]   # encoder
                + conv_bn                                                   # bottom
                + ["Conv2DTranspose", "Concatenate"] + conv_bn              # decoder 1
                + ["Conv2DTranspose", "Concatenate"] + conv_bn              # decoder 0
                + ["Conv2D"])                                               # 1x1 output
    assert kinds == expected
    convs = [la for la in model.layers if type(la).__name__ == "Conv2D"]
    # 3x3, stride 1, same padding, ReLU (BN comes after the activation) everywhere but the head
    for la in convs[:-1]:
        assert la.kernel_size == (3, 3) and la.strides == (1, 1) and la.padding == "same"
        assert la.activation.__name__ == "relu"
    head = convs[-1]
    assert head.kernel_size == (1, 1) and head.activation.__name__ == "sigmoid"
    assert head.filters == 1
    # channels double per level, then halve on the way up
    assert [la.filters for la in convs[:-1]] == [4, 4, 8, 8, 16, 16, 8, 8, 4, 4]
    ups = [la for la in model.layers if type(la).__name__ == "Conv2DTranspose"]
    assert [(la.filters, la.kernel_size, la.strides) for la in ups] == [
        (8, (2, 2), (2, 2)), (4, (2, 2), (2, 2))]
    # depth = pooling steps = decoder groups
    assert kinds.count("MaxPooling2D") == kinds.count("Conv2DTranspose") == 2


@pytest.mark.parametrize("c, depth, base", [(1, 1, 1), (3, 2, 4), (4, 3, 2), (7, 1, 8)])
def test_param_count_formula(c, depth, base):
    assert build_unet(c, depth=depth, base_filters=base).count_params() == count_params(
        c, depth, base)


def test_paper_size_is_about_124m_parameters():
    # The paper's 5 pooling steps with 64 base filters (formula, no 500 MB model built).
    assert count_params(3, depth=5, base_filters=64) == 124_410_305
    p = PRESETS["paper"]
    assert (p.depth, p.base_filters, p.bands) == (5, 64, ("swir1", "nir", "blue"))
    assert count_params(len(PRESETS["cpu"].bands), PRESETS["cpu"].depth,
                        PRESETS["cpu"].base_filters) < 2_000_000


@pytest.mark.parametrize("shape", [(16, 16), (32, 48), (64, 16)])
def test_output_shape_for_sizes_divisible_by_2_power_depth(shape):
    model = build_unet(2, depth=3, base_filters=2)
    x = np.random.default_rng(0).normal(size=(2, *shape, 2)).astype("float32")
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == (2, *shape, 1)
    assert y.dtype == np.float32
    assert (y >= 0).all() and (y <= 1).all()


def test_sizes_not_divisible_are_refused():
    check_input_size(128, 5)
    with pytest.raises(ParameterError, match="multiples of 2\\*\\*depth = 32"):
        check_input_size(100, 5)
    with pytest.raises(ParameterError, match="48"):
        check_input_size((64, 48), 5)


def test_mixed_precision_keeps_a_float32_output():
    model = build_unet(3, depth=1, base_filters=2, mixed_precision=True)
    assert model.layers[1].compute_dtype == "float16"
    assert model.layers[-1].compute_dtype == "float32"
    assert model.output.dtype == "float32"


def test_presets_and_bad_arguments():
    model = build_from_preset("cpu", depth=1, base_filters=2)
    assert model.input_shape == (None, None, None, 3)
    with pytest.raises(ParameterError, match="Unknown preset 'gpu'"):
        build_from_preset("gpu")
    with pytest.raises(ParameterError, match="depth must be an integer >= 1"):
        build_unet(3, depth=0)
    with pytest.raises(ParameterError, match="in_channels"):
        build_unet(0)
