"""minicnn.functional.winograd (Winograd F(2x2, 3x3)) against the reference im2col
path and the naive loop oracles of tests/oracles.py, and the Conv2d layer's memo of the
kernel transform.

Shapes come from hypothesis and include odd sizes, 1x1 and 2x2 images and N > 1.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from minicnn.functional import reference, winograd
from minicnn.layers import Conv2d
from minicnn import functional
from minicnn.functional import conv_choice, winograd_schedule
from oracles import to_np

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


conv_shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
                        st.integers(1, 9), st.integers(1, 9))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=conv_shapes, seed=st.integers(0, 2**31 - 1), with_bias=st.booleans())
def test_winograd_conv_matches_general_and_naive(xp, dtype, shape, seed, with_bias):
    n, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype) if with_bias else None
    dy = rng.standard_normal((n, o, h, w)).astype(dtype)
    xd, wd, dyd = xp.asarray(x), xp.asarray(weight), xp.asarray(dy)
    bd = None if bias is None else xp.asarray(bias)

    y = functional.winograd_conv2d_forward(xd, wd, bd)
    assert y.dtype == dtype and y.shape == (n, o, h, w)
    np.testing.assert_allclose(to_np(y), to_np(reference.conv2d_forward(xd, wd, bd, 1, 1)), **TOL[dtype])
    np.testing.assert_allclose(to_np(y), oracles.conv2d_naive(x, weight, bias, 1, 1), **TOL[dtype])

    dx = functional.winograd_conv2d_backward_input(dyd, wd)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(to_np(dx), to_np(reference.conv2d_backward_input(dyd, wd, x.shape, 1, 1)),
                               **TOL[dtype])
    np.testing.assert_allclose(to_np(dx), oracles.conv_transpose_naive(dy, weight, x.shape, 1, 1),
                               **TOL[dtype])

    dw, db = winograd.winograd_conv3x3_backward_params(dyd, xd)
    assert dw.dtype == dtype and dw.shape == weight.shape
    dw_ref, db_ref = oracles.conv_param_grads_naive(dy, x, weight.shape, 1, 1)
    np.testing.assert_allclose(to_np(dw), dw_ref, **TOL[dtype])
    np.testing.assert_allclose(to_np(db), db_ref, **TOL[dtype])
    dw_gen, _ = reference.conv2d_backward_params(dyd, xd, weight.shape, 1, 1)
    np.testing.assert_allclose(to_np(dw), to_np(dw_gen), **TOL[dtype])


@given(shape=conv_shapes, seed=st.integers(0, 2**31 - 1))
def test_winograd_backward_is_the_exact_adjoint_in_float64(xp, shape, seed):
    """<conv(x), dy> == <x, conv^T(dy)>: the flipped-kernel transform is the adjoint."""
    n, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((n, c, h, w)), rng.standard_normal((n, o, h, w))
    weight = rng.standard_normal((o, c, 3, 3))
    y = functional.winograd_conv2d_forward(xp.asarray(x), xp.asarray(weight), None)
    dx = functional.winograd_conv2d_backward_input(xp.asarray(dy), xp.asarray(weight))
    lhs, rhs = float((to_np(y) * dy).sum()), float((x * to_np(dx)).sum())
    assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs))


def test_winograd_chunks_cover_every_tile_row(xp, monkeypatch):
    """Tiny chunks (one tile row each, in groups) give the same result as one chunk."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 11, 7))
    weight = rng.standard_normal((4, 5, 3, 3))
    dy = rng.standard_normal((2, 4, 11, 7))
    args = (xp.asarray(x), xp.asarray(weight), xp.asarray(dy))
    whole = [to_np(functional.winograd_conv2d_forward(args[0], args[1], None)),
             to_np(winograd.winograd_conv3x3_backward_params(args[2], args[0])[0])]
    monkeypatch.setattr(winograd_schedule, "WINOGRAD_CHUNK", 1)
    monkeypatch.setattr(winograd_schedule, "WINOGRAD_MIN_TILES", 1)
    groups = winograd_schedule.row_groups(6, 4, 5)
    assert len(groups) == winograd_schedule.WINOGRAD_GROUPS
    assert [rows for group in groups for rows in group] == [(r, r + 1) for r in range(6)]
    np.testing.assert_allclose(to_np(functional.winograd_conv2d_forward(args[0], args[1], None)), whole[0],
                               rtol=1e-12)
    np.testing.assert_allclose(to_np(winograd.winograd_conv3x3_backward_params(args[2], args[0])[0]),
                               whole[1], rtol=1e-12)


def test_winograd_mixed_dtypes_promote_like_the_general_path(xp):
    rng = np.random.default_rng(4)
    x = xp.asarray(rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
    weight = xp.asarray(rng.standard_normal((3, 2, 3, 3)))        # float64
    assert functional.winograd_conv2d_forward(x, weight, None).dtype == reference.conv2d_forward(x, weight, None, 1, 1).dtype


def test_conv_layer_sees_weight_changes_through_its_kernel_transform_memo(xp):
    """The layer remembers U between passes, but a replaced or in-place edited weight
    (or another input dtype) is always used."""
    k = conv_choice.WINOGRAD_MIN_CHANNELS
    rng = np.random.default_rng(7)
    conv = Conv2d(k, k, 3, 1, 1)
    conv.params = {"weight": xp.asarray(rng.standard_normal((k, k, 3, 3)).astype(np.float32)),
                   "bias": xp.asarray(np.zeros(k, np.float32))}
    x = xp.asarray(rng.standard_normal((1, k, 4, 4)).astype(np.float32))

    def check(inp):
        ref = reference.conv2d_forward(inp, conv.params["weight"], conv.params["bias"], 1, 1)
        np.testing.assert_allclose(to_np(conv.forward(inp)), to_np(ref), rtol=1e-4, atol=1e-4)
        dy = xp.ones(ref.shape, dtype=ref.dtype)
        ref_dx = reference.conv2d_backward_input(dy, conv.params["weight"], inp.shape, 1, 1)
        np.testing.assert_allclose(to_np(conv.backward(dy)), to_np(ref_dx), rtol=1e-4, atol=1e-4)

    check(x)
    check(x)                                         # memo reused
    conv.params["weight"][0, 0, 1, 1] += 5           # edited in place
    check(x)
    conv.params["weight"] = conv.params["weight"] * 2   # replaced
    check(x)
    check(x.astype(np.float64))                      # float64 input: float64 transform


def test_the_memo_compares_weights_bit_for_bit():
    """A NaN weight is the same weight (its transform is kept); -0.0 written over 0.0 is
    an edit (the transform is made again); a non-contiguous weight is compared too."""
    from minicnn.functional.winograd_kernels import KernelTransforms
    k = conv_choice.WINOGRAD_MIN_CHANNELS
    weight = np.random.default_rng(8).standard_normal((k, k, 3, 3)).astype(np.float32)
    weight[1, 2, 0, 0] = np.nan
    weight[2, 1, 1, 1] = 0.0
    memo = KernelTransforms()
    u = memo.get(weight, np.float32)
    assert memo.get(weight, np.float32) is u                     # NaN: the same bits
    weight[2, 1, 1, 1] = -0.0
    u2 = memo.get(weight, np.float32)
    assert u2 is not u and memo.get(weight, np.float32) is u2
    weight[3, 3, 2, 2] += 1.0                                      # one ordinary edit
    u3 = memo.get(weight, np.float32)
    assert u3 is not u2 and memo.get(weight, np.float32) is u3
    strided = np.ascontiguousarray(np.swapaxes(weight, 0, 1)).swapaxes(0, 1)
    u4 = memo.get(strided, np.float32)                            # another array: new
    assert memo.get(strided, np.float32) is u4
    strided[0, 5, 1, 0] *= -2
    assert memo.get(strided, np.float32) is not u4
