"""A ReLU fused into the conv (conv2d_forward(relu=True)) gives max(conv, 0) bitwise, on
every CPU path: Winograd F(2x2) in tile-row groups and in few-tile steps, F(4x4), and
the im2col slabs."""
import numpy as np
import pytest

from minicnn import functional as F
from minicnn.functional import conv_choice


@pytest.mark.parametrize("shape, out_channels, stride, pad", [
    ((1, 16, 40, 40), 16, 1, 1),          # F(2x2), tile-row groups
    ((1, 32, 8, 8), 48, 1, 1),            # F(2x2), few tiles: steps cut by channels
    ((1, 256, 64, 64), 256, 1, 1),        # F(4x4)
    ((2, 3, 21, 19), 8, 2, 1),            # im2col, in output-row slabs
])
def test_fused_relu_is_the_relu_of_the_conv(shape, out_channels, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((out_channels, shape[1], 3, 3)).astype(np.float32)
    bias = rng.standard_normal(out_channels).astype(np.float32)
    if shape[1] == 256:
        assert conv_choice.rule_choice("forward", x.shape, weight.shape, 1, 1) == "winograd4"
    elif stride == 1:
        assert conv_choice.rule_choice("forward", x.shape, weight.shape, 1, 1) == "winograd2"
    plain = F.conv2d_forward(x, weight, bias, stride, pad)
    fused = F.conv2d_forward(x, weight, bias, stride, pad, relu=True)
    assert (plain < 0).any()
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))
