"""minicnn.functional (the dispatchers the layers call): the pure math against naive loop
oracles (tests/oracles.py).

Only the documented contracts are used: output shapes and values of conv2d_forward and
its two backward functions, maxpool2d_forward's pooled values, and maxpool2d_backward
(unpooling) routing through whatever switches maxpool2d_forward returned (their encoding
is an internal detail and is not checked).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn.functional as F
from oracles import (conv2d_naive, conv2d_offsets, conv_geometry, conv_out, conv_param_grads_naive, conv_transpose_naive,
                     maxpool_naive, on, relu_rule, to_np, unpool_naive)

TIGHT = dict(rtol=1e-12, atol=1e-12)   # float64, sums of at most ~100 terms of size ~1


@st.composite
def conv_cases(draw, max_hw=8):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k, s, p = draw(conv_geometry(max_pad=3))
    h = draw(st.integers(max(1, k - 2 * p), max_hw))
    w = draw(st.integers(max(1, k - 2 * p), max_hw))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((o, c, k, k))
    bias = rng.standard_normal(o) if draw(st.booleans()) else None
    return x, weight, bias, s, p


@st.composite
def pool_cases(draw, ties=False, max_hw=8):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, k + 1))
    p = draw(st.integers(0, k // 2))
    h = draw(st.integers(max(1, k - 2 * p), max_hw))
    w = draw(st.integers(max(1, k - 2 * p), max_hw))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if ties:   # few distinct integer values (negative too): exact ties everywhere
        x = rng.integers(-2, 2, size=(n, c, h, w)).astype(np.float64)
    else:
        x = rng.standard_normal((n, c, h, w))
    return x, k, s, p


@given(size=st.integers(1, 30), kernel=st.integers(1, 7), stride=st.integers(1, 5),
       pad=st.integers(0, 3))
def test_out_size_counts_window_positions(size, kernel, stride, pad):
    if size + 2 * pad < kernel:
        return
    assert F.out_size(size, kernel, stride, pad) == conv_out(size, kernel, stride, pad)


def test_check_rule_lists_valid_rules():
    for rule in ("gradient", "deconvnet", "guided"):
        assert F.check_rule(rule) == rule
    with pytest.raises(ValueError) as e:
        F.check_rule("backprop")
    for rule in ("gradient", "deconvnet", "guided", "backprop"):
        assert rule in str(e.value)


@given(case=conv_cases())
def test_conv2d_matches_naive_loops(backend, case):
    x, w, b, s, p = case
    y = to_np(F.conv2d_forward(on(backend, x), on(backend, w), None if b is None else on(backend, b), s, p))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, conv2d_naive(x, w, b, s, p), **TIGHT)


@given(case=conv_cases())
def test_conv2d_backward_input_is_the_transposed_convolution(backend, case):
    x, w, _, s, p = case
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((x.shape[0], w.shape[0], conv_out(x.shape[2], w.shape[2], s, p),
                              conv_out(x.shape[3], w.shape[3], s, p)))
    dx = to_np(F.conv2d_backward_input(on(backend, dy), on(backend, w), x.shape, s, p))
    assert dx.shape == x.shape and dx.dtype == np.float64
    np.testing.assert_allclose(dx, conv_transpose_naive(dy, w, x.shape, s, p), **TIGHT)


@given(case=conv_cases())
def test_conv2d_backward_params_matches_naive_loops(backend, case):
    x, w, _, s, p = case
    rng = np.random.default_rng(1)
    dy = rng.standard_normal((x.shape[0], w.shape[0], conv_out(x.shape[2], w.shape[2], s, p),
                              conv_out(x.shape[3], w.shape[3], s, p)))
    dw, db = F.conv2d_backward_params(on(backend, dy), on(backend, x), w.shape, s, p)
    dw_ref, db_ref = conv_param_grads_naive(dy, x, w.shape, s, p)
    np.testing.assert_allclose(to_np(dw), dw_ref, **TIGHT)
    np.testing.assert_allclose(to_np(db), db_ref, **TIGHT)


@pytest.mark.parametrize("ties", [False, True])
@given(data=st.data())
def test_maxpool_and_unpool_match_naive_loops(backend, ties, data):
    """Pooled values equal the loops; unpooling any dy through the returned switches
    routes each window's value to its first maximum in raster order (ties included),
    padding never wins, overlapping windows add up."""
    x, k, s, p = data.draw(pool_cases(ties=ties))
    y, switches = F.maxpool2d_forward(on(backend, x), k, s, p)
    y_ref, winners, _ = maxpool_naive(x, k, s, p)
    np.testing.assert_array_equal(to_np(y), y_ref)
    dy = np.random.default_rng(2).standard_normal(y_ref.shape)
    dx = to_np(F.maxpool2d_backward(on(backend, dy), switches, x.shape, k, s, p))
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, unpool_naive(dy, winners, x.shape), **TIGHT)


def test_maxpool_overlapping_windows_on_a_constant_input_accumulate():
    """3x3 windows, stride 1, on a constant 4x4 input: every window's first pixel wins,
    so ones routed back land on the window origins (no spreading over ties)."""
    x = np.full((1, 1, 4, 4), 5.0)
    y, sw = F.maxpool2d_forward(x, 3, 1, 0)
    dx = to_np(F.maxpool2d_backward(np.ones_like(y), sw, x.shape, 3, 1, 0))
    expected = np.zeros((4, 4))
    expected[:2, :2] = 1.0
    np.testing.assert_array_equal(dx[0, 0], expected)
    # with pad 1 the padded border never wins; windows starting in the border pick the
    # first real pixel of the window in raster order
    y, sw = F.maxpool2d_forward(x, 3, 1, 1)
    dx = to_np(F.maxpool2d_backward(np.ones_like(y), sw, x.shape, 3, 1, 1))
    expected = np.zeros((4, 4))
    expected[0, 0] = 4    # windows at (-1,-1), (-1,0), (0,-1), (0,0)
    expected[0, 1:3] = 2  # (-1, 1), (0, 1) -> (0, 1); (-1, 2), (0, 2) -> (0, 2)
    expected[1:3, 0] = 2
    expected[1:3, 1:3] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    assert dx.sum() == y.size


def test_maxpool_padding_never_wins_over_negative_values():
    x = -np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)   # all negative
    y, _ = F.maxpool2d_forward(x, 3, 2, 1)
    np.testing.assert_array_equal(to_np(y), maxpool_naive(x, 3, 2, 1)[0])
    assert (to_np(y) < 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functions_keep_the_input_dtype(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = F.conv2d_forward(x, w, b, 2, 1)
    assert y.dtype == dtype
    assert F.conv2d_backward_input(y, w, x.shape, 2, 1).dtype == dtype
    dw, db = F.conv2d_backward_params(y, x, w.shape, 2, 1)
    assert dw.dtype == dtype and db.dtype == dtype
    p, sw = F.maxpool2d_forward(x, 2, 1, 1)
    assert p.dtype == dtype
    assert F.maxpool2d_backward(p, sw, x.shape, 2, 1, 1).dtype == dtype
    for rule in ("gradient", "deconvnet", "guided"):
        assert F.relu_backward(x, x > 0, rule).dtype == dtype


@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
@given(seed=st.integers(0, 2**32 - 1))
def test_relu_backward_is_the_table_formula(backend, rule, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 5))
    x[0, 0, 0, :2] = 0.0          # X == 0 is not positive
    g = rng.standard_normal(x.shape)
    g[0, 1, 0, :2] = 0.0
    out = to_np(F.relu_backward(on(backend, g), on(backend, x > 0), rule))
    np.testing.assert_array_equal(out, relu_rule(rule, g, x))


def test_relu_backward_rejects_unknown_rule():
    with pytest.raises(ValueError, match="deconvnet"):
        F.relu_backward(np.ones(3), np.ones(3, bool), "deconv")


@pytest.mark.parametrize("shape,o", [((1, 64, 71, 66), 64), ((2, 5, 33, 17), 3)])
@pytest.mark.parametrize("ksp", [(3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_conv_on_larger_inputs_against_offset_sums(shape, o, ksp):
    """Large, odd-sized inputs (any tiling/chunking of a fast path is crossed): forward,
    transposed conv (adjoint identity) and weight gradient against float64 offset sums."""
    k, s, p = ksp
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((o, shape[1], k, k)) / np.sqrt(shape[1] * k * k)
    b = rng.standard_normal(o)
    y = F.conv2d_forward(x, w, b, s, p)
    y_ref = conv2d_offsets(x, w, b, s, p)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y_ref.shape)
    dx = F.conv2d_backward_input(dy, w, x.shape, s, p)
    assert dx.shape == x.shape
    lhs = float(np.sum((y_ref - b.reshape(1, o, 1, 1)) * dy))
    assert abs(lhs - float(np.sum(x * dx))) <= 1e-10 * np.abs(x * dx).sum()
    dw, db = F.conv2d_backward_params(dy, x, w.shape, s, p)
    # dW[o, c, a, q] = sum over positions of dy * shifted x: the offset oracle with x as weights
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = dy.shape[2:]
    dw_ref = np.empty(w.shape)
    for a in range(k):
        for q in range(k):
            patch = xp[:, :, a:a + s * (ho - 1) + 1:s, q:q + s * (wo - 1) + 1:s]
            dw_ref[:, :, a, q] = np.einsum("nohw,nchw->oc", dy, patch)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-9, atol=1e-9 * np.abs(dw_ref).max())
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-10)
