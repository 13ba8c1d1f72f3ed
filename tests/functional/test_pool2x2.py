"""minicnn.functional.pool2x2 (2x2 stride-2 pooling by strided views) against the
reference k x k pooling and the naive loop oracles, with small integer values so that
ties are common."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from minicnn import functional as F
from minicnn.functional import reference
from oracles import to_np

pool_shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=pool_shapes, seed=st.integers(0, 2**31 - 1), levels=st.sampled_from([2, 3, 1000]))
def test_pool2x2_matches_general_and_naive_including_ties(xp, dtype, shape, seed, levels):
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (n, c, h, w)).astype(dtype)     # levels 2, 3: many ties
    xd = xp.asarray(x)
    y, sw = F.maxpool2d_forward(xd, 2, 2, 0)
    y_gen, sw_gen = reference.maxpool2d_forward(xd, 2, 2, 0)
    assert y.dtype == dtype and sw.dtype == sw_gen.dtype
    np.testing.assert_array_equal(to_np(y), to_np(y_gen))
    np.testing.assert_array_equal(to_np(sw), to_np(sw_gen))
    y_ref, winners, _ = oracles.maxpool_naive(x, 2, 2, 0)
    np.testing.assert_array_equal(to_np(y), y_ref)
    # the switch names the first maximum in raster order
    sw_np = to_np(sw).astype(np.int64)
    ho, wo = y.shape[2:]
    rows = 2 * np.arange(ho)[:, None] + sw_np // 2
    cols = 2 * np.arange(wo)[None, :] + sw_np % 2
    np.testing.assert_array_equal(rows, winners[..., 0])
    np.testing.assert_array_equal(cols, winners[..., 1])

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.maxpool2d_backward(xp.asarray(dy), sw, x.shape, 2, 2, 0)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(to_np(dx), to_np(reference.maxpool2d_backward(xp.asarray(dy), sw_gen, x.shape, 2, 2, 0)))
    np.testing.assert_array_equal(to_np(dx), oracles.unpool_naive(dy, winners, x.shape))


def test_pool2x2_all_equal_window_picks_offset_zero(xp):
    x = xp.asarray(np.ones((1, 1, 4, 4), np.float32))
    _, sw = F.maxpool2d_forward(x, 2, 2, 0)
    assert (to_np(sw) == 0).all()
