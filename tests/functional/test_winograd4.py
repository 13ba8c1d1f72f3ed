"""minicnn.functional.winograd4 (Winograd F(4x4, 3x3)) against the reference im2col path
and the naive loop oracles, on the CPU paths it runs on: the forward conv and the
transposed conv, in float32 and float64, with odd sizes, 1x1 images, N > 1, and both of
its schedules (tile-row groups, and the few-tile parts)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from minicnn.functional import reference, winograd, winograd4
from minicnn import functional
from minicnn.functional import conv_choice, winograd_kernels, winograd_schedule

# float32: the F(4x4) transforms scale values by up to 8 and 1/24, so rounding grows with
# the channel count; the bound is relative to the largest output (see docs/winograd.md)
TOL = {np.float32: 3e-5, np.float64: 1e-12}

conv_shapes = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12),
                        st.integers(1, 14), st.integers(1, 14))


def close(actual, expected, dtype):
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(np.asarray(actual, dtype=np.float64) - expected).max() <= TOL[dtype] * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=conv_shapes, seed=st.integers(0, 2**31 - 1), with_bias=st.booleans(),
       many_groups=st.booleans())
def test_f4_conv_and_transpose_match_the_oracles(dtype, shape, seed, with_bias, many_groups):
    n, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype) if with_bias else None
    dy = rng.standard_normal((n, o, h, w)).astype(dtype)
    with pytest.MonkeyPatch.context() as m:
        if many_groups:                      # tiny chunks: the tile-row group schedule
            m.setattr(winograd_schedule, "WINOGRAD_CHUNK", 1)
            m.setattr(winograd_schedule, "WINOGRAD_MIN_TILES", 1)
        y = winograd4.winograd4_conv3x3(x, winograd_kernels.kernel_transform(weight, dtype, f4=True), bias)
        dx = winograd4.winograd4_conv3x3(
            dy, winograd_kernels.kernel_transform(weight, dtype, flipped=True, f4=True), None)
    assert y.dtype == dtype and y.shape == (n, o, h, w)
    assert dx.dtype == dtype and dx.shape == x.shape
    close(y, oracles.conv2d_naive(x.astype(np.float64), weight.astype(np.float64),
                                  None if bias is None else bias.astype(np.float64), 1, 1), dtype)
    close(dx, oracles.conv_transpose_naive(dy.astype(np.float64), weight.astype(np.float64),
                                           x.shape, 1, 1), dtype)


def test_f4_matches_f2_on_a_vgg_sized_layer():
    """A conv4-like layer (256 channels, 28x28) in float32 against the float64 reference,
    relative to the largest output: F(2x2) about 6e-7, F(4x4) about 1.1e-5 (its
    transforms scale by up to 8 and 1/24). Both far below the 2e-4 the engine's tests
    allow; a wrong transform would be off by O(1)."""
    rng = np.random.default_rng(1)
    c = o = 256
    x = rng.standard_normal((1, c, 28, 28)).astype(np.float32)
    weight = (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    exact = reference.conv2d_forward(x.astype(np.float64), weight.astype(np.float64), None, 1, 1)
    scale = np.abs(exact).max()
    f4 = winograd4.winograd4_conv3x3(x, winograd_kernels.kernel_transform(weight, np.float32, f4=True))
    f2 = winograd.winograd_conv3x3(x, winograd_kernels.kernel_transform(weight, np.float32))
    err4, err2 = (float(np.abs(a - exact).max() / scale) for a in (f4, f2))
    assert err4 < 3e-5 and err2 < 3e-6, (err4, err2)


def test_layers_dispatch_to_f4_by_shape_and_agree(monkeypatch):
    """With the F(4x4) thresholds met, the dispatcher's Winograd conv and the transposed conv
    take F(4x4) (same values as F(2x2) up to rounding); below them F(2x2)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 20, 9, 9)).astype(np.float64)
    weight = rng.standard_normal((24, 20, 3, 3))
    dy = rng.standard_normal((2, 24, 9, 9))
    monkeypatch.setattr(conv_choice, "F4_MIN_CHANNELS", 16)
    monkeypatch.setattr(conv_choice, "F4_MIN_TILES", 1)
    assert conv_choice.rule_choice("forward", x.shape, weight.shape, 1, 1) == "winograd4"
    calls = []
    real = winograd4.winograd4_conv3x3
    monkeypatch.setattr(winograd4, "winograd4_conv3x3", lambda *a: calls.append(1) or real(*a))
    y = functional.winograd_conv2d_forward(x, weight, None)
    dx = functional.winograd_conv2d_backward_input(dy, weight)
    assert len(calls) == 2
    np.testing.assert_allclose(y, reference.conv2d_forward(x, weight, None, 1, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, reference.conv2d_backward_input(dy, weight, x.shape, 1, 1),
                               rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(conv_choice, "F4_MIN_CHANNELS", 32)
    assert conv_choice.rule_choice("forward", x.shape, weight.shape, 1, 1) == "winograd2"
