"""The fast paths (Winograd 3x3 convs, 2x2 pooling by strided views) against the general
paths (im2col + GEMM, k*k-offset pooling) and the naive loop oracles of tests/oracles.py.

Shapes come from hypothesis and include odd sizes, 1x1 and 2x2 images, N > 1 and,
for pooling, small integer values so that ties are common.
"""
import numpy as np

import minicnn
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from minicnn import functional as F
from minicnn.layers import Conv2d, MaxPool2d


def _to(xp, a):
    return xp.asarray(a)


def _np(a):
    return oracles.to_np(a)


TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


conv_shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
                        st.integers(1, 9), st.integers(1, 9))


def test_dispatch_rules():
    big = F.WINOGRAD_MIN_CHANNELS
    assert F.is_winograd_conv((big, big, 3, 3), 1, 1)
    assert not F.is_winograd_conv((big, 3, 3, 3), 1, 1)       # RGB input: im2col
    assert not F.is_winograd_conv((3, big, 3, 3), 1, 1)
    assert not F.is_winograd_conv((big, big, 3, 3), 2, 1)
    assert not F.is_winograd_conv((big, big, 3, 3), 1, 0)
    assert not F.is_winograd_conv((big, big, 5, 5), 1, 1)
    x = np.zeros((1, big, 4, 4), np.float32)
    assert F.use_winograd(x, (big, big, 3, 3), 1, 1)          # CPU: Winograd
    assert not F.use_winograd(x, (big, big, 3, 3), 2, 1)
    if minicnn.cuda_available():                              # GPU: one cuBLAS GEMM
        import cupy
        assert not F.use_winograd(cupy.asarray(x), (big, big, 3, 3), 1, 1)
    assert F.is_2x2_pool(2, 2, 0)
    assert not F.is_2x2_pool(2, 1, 0)
    assert not F.is_2x2_pool(3, 2, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=conv_shapes, seed=st.integers(0, 2**31 - 1), with_bias=st.booleans())
def test_winograd_conv_matches_general_and_naive(xp, dtype, shape, seed, with_bias):
    n, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype) if with_bias else None
    dy = rng.standard_normal((n, o, h, w)).astype(dtype)
    xd, wd, dyd = _to(xp, x), _to(xp, weight), _to(xp, dy)
    bd = None if bias is None else _to(xp, bias)

    y = F.conv2d_winograd(xd, wd, bd)
    assert y.dtype == dtype and y.shape == (n, o, h, w)
    np.testing.assert_allclose(_np(y), _np(F.conv2d_im2col(xd, wd, bd, 1, 1)), **TOL[dtype])
    np.testing.assert_allclose(_np(y), oracles.conv2d_naive(x, weight, bias, 1, 1), **TOL[dtype])

    dx = F.conv2d_backward_input_winograd(dyd, wd)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(_np(dx), _np(F.conv2d_backward_input_col2im(dyd, wd, x.shape, 1, 1)),
                               **TOL[dtype])
    np.testing.assert_allclose(_np(dx), oracles.conv_transpose_naive(dy, weight, x.shape, 1, 1),
                               **TOL[dtype])

    dw, db = F.conv2d_backward_params_winograd(dyd, xd)
    assert dw.dtype == dtype and dw.shape == weight.shape
    dw_ref, db_ref = oracles.conv_param_grads_naive(dy, x, weight.shape, 1, 1)
    np.testing.assert_allclose(_np(dw), dw_ref, **TOL[dtype])
    np.testing.assert_allclose(_np(db), db_ref, **TOL[dtype])
    dw_gen, _ = F.conv2d_backward_params_im2col(dyd, xd, weight.shape, 1, 1)
    np.testing.assert_allclose(_np(dw), _np(dw_gen), **TOL[dtype])


@given(shape=conv_shapes, seed=st.integers(0, 2**31 - 1))
def test_winograd_backward_is_the_exact_adjoint_in_float64(xp, shape, seed):
    """<conv(x), dy> == <x, conv^T(dy)>: the flipped-kernel transform is the adjoint."""
    n, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((n, c, h, w)), rng.standard_normal((n, o, h, w))
    weight = rng.standard_normal((o, c, 3, 3))
    y = F.conv2d_winograd(_to(xp, x), _to(xp, weight), None)
    dx = F.conv2d_backward_input_winograd(_to(xp, dy), _to(xp, weight))
    lhs, rhs = float((_np(y) * dy).sum()), float((x * _np(dx)).sum())
    assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs))


def test_winograd_chunks_cover_every_tile_row(xp, monkeypatch):
    """Tiny chunks (one tile row each, in groups) give the same result as one chunk."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 11, 7))
    weight = rng.standard_normal((4, 5, 3, 3))
    dy = rng.standard_normal((2, 4, 11, 7))
    args = (_to(xp, x), _to(xp, weight), _to(xp, dy))
    whole = [_np(F.conv2d_winograd(args[0], args[1], None)),
             _np(F.conv2d_backward_params_winograd(args[2], args[0])[0])]
    monkeypatch.setattr(F, "WINOGRAD_CHUNK", 1)
    monkeypatch.setattr(F, "WINOGRAD_MIN_TILES", 1)
    groups = F._row_groups(6, 4, 5)
    assert len(groups) == F.WINOGRAD_GROUPS
    assert [rows for group in groups for rows in group] == [(r, r + 1) for r in range(6)]
    np.testing.assert_allclose(_np(F.conv2d_winograd(args[0], args[1], None)), whole[0],
                               rtol=1e-12)
    np.testing.assert_allclose(_np(F.conv2d_backward_params_winograd(args[2], args[0])[0]),
                               whole[1], rtol=1e-12)


def test_winograd_mixed_dtypes_promote_like_the_general_path(xp):
    rng = np.random.default_rng(4)
    x = _to(xp, rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
    weight = _to(xp, rng.standard_normal((3, 2, 3, 3)))        # float64
    assert F.conv2d_winograd(x, weight, None).dtype == F.conv2d_im2col(x, weight, None, 1, 1).dtype


pool_shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=pool_shapes, seed=st.integers(0, 2**31 - 1), levels=st.sampled_from([2, 3, 1000]))
def test_pool2x2_matches_general_and_naive_including_ties(xp, dtype, shape, seed, levels):
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (n, c, h, w)).astype(dtype)     # levels 2, 3: many ties
    xd = _to(xp, x)
    y, sw = F.maxpool2d(xd, 2, 2, 0)
    y_gen, sw_gen = F.maxpool2d_general(xd, 2, 2, 0)
    assert y.dtype == dtype and sw.dtype == sw_gen.dtype
    np.testing.assert_array_equal(_np(y), _np(y_gen))
    np.testing.assert_array_equal(_np(sw), _np(sw_gen))
    y_ref, winners, _ = oracles.maxpool_naive(x, 2, 2, 0)
    np.testing.assert_array_equal(_np(y), y_ref)
    # the switch names the first maximum in raster order
    sw_np = _np(sw).astype(np.int64)
    ho, wo = y.shape[2:]
    rows = 2 * np.arange(ho)[:, None] + sw_np // 2
    cols = 2 * np.arange(wo)[None, :] + sw_np % 2
    np.testing.assert_array_equal(rows, winners[..., 0])
    np.testing.assert_array_equal(cols, winners[..., 1])

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.unpool2d(_to(xp, dy), sw, x.shape, 2, 2, 0)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(_np(dx), _np(F.unpool2d_general(_to(xp, dy), sw_gen, x.shape, 2, 2, 0)))
    np.testing.assert_array_equal(_np(dx), oracles.unpool_naive(dy, winners, x.shape))


def test_pool2x2_all_equal_window_picks_offset_zero(xp):
    x = _to(xp, np.ones((1, 1, 4, 4), np.float32))
    _, sw = F.maxpool2d(x, 2, 2, 0)
    assert (_np(sw) == 0).all()


def test_dispatch_reaches_the_winograd_path_and_agrees(xp):
    """A conv wide enough for Winograd, through the public functions and the layer."""
    k = F.WINOGRAD_MIN_CHANNELS
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, k, 5, 6))
    weight, bias = rng.standard_normal((k, k, 3, 3)), rng.standard_normal(k)
    dy = rng.standard_normal((2, k, 5, 6))
    xd, wd, bd, dyd = (_to(xp, a) for a in (x, weight, bias, dy))
    np.testing.assert_allclose(_np(F.conv2d(xd, wd, bd, 1, 1)),
                               _np(F.conv2d_im2col(xd, wd, bd, 1, 1)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(F.conv2d_backward_input(dyd, wd, x.shape, 1, 1)),
                               _np(F.conv2d_backward_input_col2im(dyd, wd, x.shape, 1, 1)),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(F.conv2d_backward_params(dyd, xd, weight.shape, 1, 1)[0]),
                               _np(F.conv2d_backward_params_im2col(dyd, xd, weight.shape, 1, 1)[0]),
                               rtol=1e-10, atol=1e-10)
    conv = Conv2d(k, k, 3, 1, 1)
    conv.params = {"weight": wd, "bias": bd}
    np.testing.assert_allclose(_np(conv.forward(xd)), _np(F.conv2d_im2col(xd, wd, bd, 1, 1)),
                               rtol=1e-10, atol=1e-10)
    assert set(conv.cache) == {"x"}     # the same named cache on every path and backend


def test_layers_use_the_fast_paths_with_the_same_caches(xp):
    """The layer caches hold the same named entries whichever path runs."""
    rng = np.random.default_rng(5)
    conv = Conv2d(3, 4, 3, 1, 1)
    conv.params = {"weight": _to(xp, rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
                   "bias": _to(xp, rng.standard_normal(4).astype(np.float32))}
    x = _to(xp, rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    conv.forward(x)
    assert set(conv.cache) == {"x"}
    pool = MaxPool2d(2)
    pool.forward(x)
    assert set(pool.cache) == {"switches", "x_shape"}


def test_conv_layer_sees_weight_changes_through_its_kernel_transform_memo(xp):
    """The layer remembers U between passes, but a replaced or in-place edited weight
    (or another input dtype) is always used."""
    k = F.WINOGRAD_MIN_CHANNELS
    rng = np.random.default_rng(7)
    conv = Conv2d(k, k, 3, 1, 1)
    conv.params = {"weight": _to(xp, rng.standard_normal((k, k, 3, 3)).astype(np.float32)),
                   "bias": _to(xp, np.zeros(k, np.float32))}
    x = _to(xp, rng.standard_normal((1, k, 4, 4)).astype(np.float32))

    def check(inp):
        ref = F.conv2d_im2col(inp, conv.params["weight"], conv.params["bias"], 1, 1)
        np.testing.assert_allclose(_np(conv.forward(inp)), _np(ref), rtol=1e-4, atol=1e-4)
        dy = xp.ones(ref.shape, dtype=ref.dtype)
        ref_dx = F.conv2d_backward_input_col2im(dy, conv.params["weight"], inp.shape, 1, 1)
        np.testing.assert_allclose(_np(conv.backward(dy)), _np(ref_dx), rtol=1e-4, atol=1e-4)

    check(x)
    check(x)                                         # memo reused
    conv.params["weight"][0, 0, 1, 1] += 5           # edited in place
    check(x)
    conv.params["weight"] = conv.params["weight"] * 2   # replaced
    check(x)
    check(x.astype(np.float64))                      # float64 input: float64 transform


@pytest.mark.parametrize("rule", F.RULES)
@given(size=st.integers(2, 9), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_whole_net_on_the_fast_paths_equals_the_general_paths(rule, size, batch, seed):
    """A VGG-style net whose convs take the Winograd path (channels-last outputs, so the
    ReLU, pool, flatten and their backward passes meet mixed memory layouts) gives, in
    float64, the outputs, signals at the input and parameter gradients of the same net
    run entirely on the general paths (im2col convs, whose NumPy outputs are channels-last
    too, and k*k pooling)."""
    k = F.WINOGRAD_MIN_CHANNELS
    net = minicnn.vgg_from_config([k, k, "M", k, k], num_classes=3, input_size=(size, size),
                                  fc_sizes=(5,), dropout=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size))

    for _, layer in net:              # float64 throughout (Net.forward would cast)
        layer.params = {p: v.astype(np.float64) for p, v in layer.params.items()}

    def run():                        # the layers one by one, as Net runs them
        out = x
        for _, layer in net:
            out = layer.forward(out)
        g = dx = np.random.default_rng(seed + 1).standard_normal(out.shape)
        for _, layer in reversed(list(net)):
            dx = layer.backward(dx, rule, param_grads=rule == "gradient")
        grads = {key: layer.grads[p] for key, layer, p in net.parameters()} \
            if rule == "gradient" else {}
        return out, dx, grads

    fast = run()
    assert F.is_channels_last(net["conv1_2"].forward(net["relu1_1"].cache["output"]))
    original = F.use_winograd
    try:
        F.use_winograd = lambda *args: False
        general = run()
    finally:
        F.use_winograd = original
    np.testing.assert_allclose(fast[0], general[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast[1], general[1], rtol=1e-9, atol=1e-9)
    for key, value in general[2].items():
        np.testing.assert_allclose(fast[2][key], value, rtol=1e-9, atol=1e-9, err_msg=key)
