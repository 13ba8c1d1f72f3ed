"""The CPU im2col paths, both ways of cutting their GEMMs over the threads (output-row
slabs, or for a small batch of a deep layer the whole image's columns in slices of
channels), against the reference im2col conv and the naive loop oracle."""
import numpy as np
import pytest

from minicnn import functional as F
from minicnn.functional import conv_choice
from oracles import conv2d_naive, conv_transpose_naive

CASES = [  # x shape, out channels, stride, pad
    ((2, 3, 40, 36), 8, 1, 1),       # rows per slab: 2 * 36 * 10 = 720
    ((1, 24, 14, 14), 40, 1, 1),     # 1 * 14 * 4 = 56: slices of channels
    ((2, 5, 21, 19), 7, 2, 1),       # 2 * 10 * 3 = 60, strided
    ((3, 4, 9, 11), 6, 1, 0),        # 3 * 9 * 2 = 54, no padding
]


def few_rows(x_shape, stride, pad, positions_split):
    """Whether a path cuts by channels: fewer than IM2COL_MIN_ROWS GEMM rows a slice."""
    n, _, h, w = x_shape
    ho, wo = (h + 2 * pad - 3) // stride + 1, (w + 2 * pad - 3) // stride + 1
    rows = n * (-(-ho * wo // F.CPU_PARTS) if positions_split else wo * -(-ho // F.CPU_PARTS))
    return rows < F.IM2COL_MIN_ROWS


def test_the_cases_cover_both_cuts():
    cuts = {few_rows(s, st, p, False) for s, _, st, p in CASES}
    assert cuts == {True, False}
    assert {few_rows(s, st, p, True) for s, _, st, p in CASES} == {True, False}


@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("shape, out_channels, stride, pad", CASES)
def test_im2col_forward_and_transposed_conv_equal_the_reference(shape, out_channels, stride, pad,
                                                                chunk, monkeypatch):
    """With chunk=64 output elements, each slab of rows runs in several chunks."""
    if chunk is not None:
        monkeypatch.setattr(F, "IM2COL_CHUNK", chunk)
    rng = np.random.default_rng(sum(shape) + out_channels + (chunk or 0))   # no stale buffers
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((out_channels, shape[1], 3, 3))
    bias = rng.standard_normal(out_channels)
    with conv_choice.policy("im2col"):
        y = F.conv2d_forward(x, weight, bias, stride, pad)
        fused = F.conv2d_forward(x, weight, bias, stride, pad, relu=True)
        dy = rng.standard_normal(y.shape)
        dx = F.conv2d_backward_input(dy, weight, x.shape, stride, pad)
    np.testing.assert_allclose(y, conv2d_naive(x, weight, bias, stride, pad),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(fused, np.maximum(y, 0))
    np.testing.assert_allclose(dx, conv_transpose_naive(dy, weight, x.shape, stride, pad),
                               rtol=1e-10, atol=1e-10)
    # the adjoint identity <conv(x), dy> = <x, conv^T(dy)> (no bias)
    y0 = y - bias.reshape(1, -1, 1, 1)
    assert np.isclose(np.vdot(y0, dy), np.vdot(x, dx), rtol=1e-10)
