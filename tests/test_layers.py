"""minicnn.layers: each layer's forward/backward against oracles, adjoint identities,
max-pool switches (one per window, first in raster order, overlaps add up, padding),
dtype preservation, constructor validation, Dropout train/eval, clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from oracles import (RULES, conv2d_naive, conv_geometry, conv_out, conv_param_grads_naive,
                     conv_transpose_naive, linear_naive, maxpool_naive, on, relu_rule, to_np,
                     unpool_naive)

TIGHT = dict(rtol=1e-12, atol=1e-12)


def conv_layer(rng, c, o, k, s, p, dtype=np.float64, device="cpu"):
    layer = Conv2d(c, o, k, s, p)
    layer.params["weight"] = on(device, rng.standard_normal((o, c, k, k)).astype(dtype))
    layer.params["bias"] = on(device, rng.standard_normal(o).astype(dtype))
    return layer


@st.composite
def conv_setups(draw):
    c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    k, s, p = draw(conv_geometry())
    h = draw(st.integers(max(1, k - 2 * p), 9))
    w = draw(st.integers(max(1, k - 2 * p), 9))     # non-square allowed
    n = draw(st.integers(1, 3))
    return (n, c, h, w), o, k, s, p, draw(st.integers(0, 2**32 - 1))


# ----------------------------------------------------------------------------- Conv2d

@given(setup=conv_setups())
def test_conv2d_layer_against_naive_loops(backend, setup):
    shape, o, k, s, p, seed = setup
    rng = np.random.default_rng(seed)
    layer = conv_layer(rng, shape[1], o, k, s, p, device=backend)
    x = rng.standard_normal(shape)
    y = to_np(layer.forward(on(backend, x)))
    w, b = to_np(layer.params["weight"]), to_np(layer.params["bias"])
    np.testing.assert_allclose(y, conv2d_naive(x, w, b, s, p), **TIGHT)
    assert y.shape[1:] == layer.output_shape(shape[1:])
    dy = rng.standard_normal(y.shape)
    for rule in RULES:       # conv backward is the same for every rule
        dx = to_np(layer.backward(on(backend, dy), rule, param_grads=True))
        np.testing.assert_allclose(dx, conv_transpose_naive(dy, w, shape, s, p), **TIGHT)
        dw, db = conv_param_grads_naive(dy, x, w.shape, s, p)
        np.testing.assert_allclose(to_np(layer.grads["weight"]), dw, **TIGHT)
        np.testing.assert_allclose(to_np(layer.grads["bias"]), db, **TIGHT)


@given(setup=conv_setups())
def test_conv2d_adjoint_identity(backend, setup):
    """<L x, y> == <x, L^T y> with L the bias-free conv and L^T the layer's backward."""
    shape, o, k, s, p, seed = setup
    rng = np.random.default_rng(seed)
    layer = conv_layer(rng, shape[1], o, k, s, p, device=backend)
    layer.params["bias"] = on(backend, np.zeros(o))
    x = rng.standard_normal(shape)
    lx = to_np(layer.forward(on(backend, x)))
    y = rng.standard_normal(lx.shape)
    lty = to_np(layer.backward(on(backend, y), "gradient"))
    lhs, rhs = float(np.sum(lx * y)), float(np.sum(x * lty))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, np.abs(lx * y).sum())


# ----------------------------------------------------------------------------- Linear

@given(n=st.sampled_from([1, 2, 3, 4, 31, 32, 33, 40]), i=st.integers(1, 7), o=st.integers(1, 7),
       seed=st.integers(0, 2**32 - 1))
def test_linear_layer_against_naive_and_adjoint(backend, n, i, o, seed):
    """Batches on both sides of LINEAR_TRANSPOSED_MAX (the forward as (W x^T)^T)."""
    rng = np.random.default_rng(seed)
    layer = Linear(i, o)
    W, b = rng.standard_normal((o, i)), rng.standard_normal(o)
    layer.params = {"weight": on(backend, W), "bias": on(backend, b)}
    x = rng.standard_normal((n, i))
    y = to_np(layer.forward(on(backend, x)))
    np.testing.assert_allclose(y, linear_naive(x, W, b), **TIGHT)
    dy = rng.standard_normal((n, o))
    for rule in RULES:
        dx = to_np(layer.backward(on(backend, dy), rule, param_grads=True))
        np.testing.assert_allclose(dx, dy @ W, **TIGHT)                         # W^T r
        np.testing.assert_allclose(to_np(layer.grads["weight"]),
                                   sum(np.outer(dy[j], x[j]) for j in range(n)), **TIGHT)
        np.testing.assert_allclose(to_np(layer.grads["bias"]), dy.sum(axis=0), **TIGHT)
    # adjoint identity for the bias-free map
    lx = y - b
    assert abs(np.sum(lx * dy) - np.sum(x * dx)) <= 1e-12 * max(1.0, np.abs(lx * dy).sum())


# ----------------------------------------------------------------------------- MaxPool2d

@st.composite
def pool_setups(draw, ties):
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, k + 1))
    p = draw(st.integers(0, k // 2))
    h = draw(st.integers(max(1, k - 2 * p), 8))
    w = draw(st.integers(max(1, k - 2 * p), 8))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.integers(-2, 2, size=shape).astype(np.float64) if ties
         else rng.standard_normal(shape))
    return x, k, s, p


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@given(data=st.data())
def test_maxpool_one_switch_per_window_first_in_raster_order(backend, ties, data):
    """A one-hot signal on output p comes back as a one-hot on the first maximum (raster
    order) of window p, for every rule; random signals add up over overlapping windows."""
    x, k, s, p = data.draw(pool_setups(ties))
    layer = MaxPool2d(k, s, p)
    y = to_np(layer.forward(on(backend, x)))
    y_ref, winners, _ = maxpool_naive(x, k, s, p)
    np.testing.assert_array_equal(y, y_ref)
    assert y.shape[1:] == layer.output_shape(x.shape[1:])
    for idx in np.ndindex(y.shape):
        onehot = np.zeros(y.shape)
        onehot[idx] = 1.0
        back = to_np(layer.backward(on(backend, onehot), "gradient"))
        assert np.count_nonzero(back) == 1, f"window {idx}: {np.count_nonzero(back)} switches"
        n, c = idx[:2]
        assert back[(n, c) + tuple(winners[idx])] == 1.0, f"window {idx}"
    dy = np.random.default_rng(0).standard_normal(y.shape)
    expected = unpool_naive(dy, winners, x.shape)
    for rule in RULES:    # same switches for every rule
        np.testing.assert_allclose(to_np(layer.backward(on(backend, dy), rule)), expected, **TIGHT)
    # adjoint of the selection map with the switches fixed: <pool(x), dy> == <x, unpool(dy)>
    assert abs(np.sum(y * dy) - np.sum(x * expected)) <= 1e-12 * max(1.0, np.abs(y * dy).sum())


def test_maxpool_switches_come_from_the_forward_not_recomputed():
    """Backward routes through the cached switches of the last forward."""
    layer = MaxPool2d(2)
    x1 = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    layer.forward(x1)
    back = to_np(layer.backward(np.ones((1, 1, 1, 1)), "deconvnet"))
    np.testing.assert_array_equal(back[0, 0], [[1, 0], [0, 0]])


def test_maxpool_default_stride_is_kernel_and_pad_is_checked():
    assert MaxPool2d(3).stride == 3
    with pytest.raises(ValueError, match="pad"):
        MaxPool2d(2, 2, 2)
    for bad in (dict(kernel_size=0), dict(kernel_size=2, stride=0), dict(kernel_size=2.0),
                dict(kernel_size=2, pad=-1)):
        with pytest.raises(ValueError):
            MaxPool2d(**bad)
    with pytest.raises(ValueError, match="does not fit"):
        MaxPool2d(3).output_shape((1, 2, 5))


# ----------------------------------------------------------------------------- ReLU

@given(seed=st.integers(0, 2**32 - 1))
def test_relu_forward_and_rules(backend, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4))
    x[0, 0, :2] = 0.0
    layer = ReLU()
    y = to_np(layer.forward(on(backend, x)))
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    g = rng.standard_normal(x.shape)
    out = {rule: to_np(layer.backward(on(backend, g), rule)) for rule in RULES}
    for rule in RULES:
        np.testing.assert_array_equal(out[rule], relu_rule(rule, g, x))
    # guided = gradient mask combined with DeconvNet mask (either order)
    np.testing.assert_array_equal(out["guided"], relu_rule("deconvnet", out["gradient"], x))
    np.testing.assert_array_equal(out["guided"], relu_rule("gradient", out["deconvnet"], x))
    with pytest.raises(ValueError, match="gradient"):
        layer.backward(on(backend, g), "Guided")


def test_relu_deconvnet_ignores_the_forward_input():
    layer = ReLU()
    layer.forward(-np.ones((1, 4)))            # every input negative
    g = np.array([[1.0, -1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(to_np(layer.backward(g, "deconvnet")), [[1, 0, 2, 0]])
    np.testing.assert_array_equal(to_np(layer.backward(g, "gradient")), [[0, 0, 0, 0]])
    np.testing.assert_array_equal(to_np(layer.backward(g, "guided")), [[0, 0, 0, 0]])


# ----------------------------------------------------------------------------- Flatten, Dropout

def test_flatten_is_c_h_w_order_and_backward_reshapes(backend):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    layer = Flatten()
    y = to_np(layer.forward(on(backend, x)))
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    assert layer.output_shape((3, 4, 5)) == (60,)
    for rule in RULES:
        np.testing.assert_array_equal(to_np(layer.backward(on(backend, y), rule)), x)


def test_dropout_is_identity_in_eval(backend):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    layer = Dropout(0.5)
    assert layer.training is False
    np.testing.assert_array_equal(to_np(layer.forward(on(backend, x))), x)
    for rule in RULES:
        np.testing.assert_array_equal(to_np(layer.backward(on(backend, x), rule)), x)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_dropout_in_training_zeroes_and_scales(backend, p):
    x = np.random.default_rng(0).uniform(1, 2, (200, 100)).astype(np.float32)
    layer = Dropout(p, seed=1)
    layer.training = True
    y = to_np(layer.forward(on(backend, x)))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    frac = 1 - kept.mean()
    assert abs(frac - p) < 0.02, frac          # 20000 draws: std ~ 0.0035
    g = np.ones_like(x)
    back = to_np(layer.backward(on(backend, g), "gradient"))
    np.testing.assert_array_equal(back != 0, kept)            # same mask as forward
    np.testing.assert_allclose(back[kept], 1 / (1 - p), rtol=1e-6)


def test_dropout_p_is_validated():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="Dropout p"):
            Dropout(bad)


# ----------------------------------------------------------------------------- common

@pytest.mark.parametrize("make", [lambda: Conv2d(1, 1, 1), lambda: Linear(2, 2), ReLU,
                                  lambda: MaxPool2d(1), Flatten, Dropout])
def test_backward_without_forward_is_a_clear_error(make):
    layer = make()
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((1, 1, 1, 1)), "gradient")


def test_constructor_validation_names_the_argument():
    for args, name in (((0, 1, 1), "in_channels"), ((1, 0, 1), "out_channels"),
                       ((1, 1, 0), "kernel_size"), ((1, 1, 1, 0), "stride"),
                       ((1, 1, 1, 1, -1), "pad"), ((1, 1, 2.5), "kernel_size")):
        with pytest.raises(ValueError, match=name):
            Conv2d(*args)
    for args, name in (((0, 1), "in_features"), ((1, 0), "out_features"), ((1.5, 1), "in_features")):
        with pytest.raises(ValueError, match=name):
            Linear(*args)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="input channels"):
        Conv2d(3, 2, 3).forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="does not fit"):
        Conv2d(1, 1, 5).forward(np.zeros((1, 1, 3, 8)))
    with pytest.raises(ValueError, match="Flatten"):
        Linear(4, 2).forward(np.zeros((1, 2, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_compute_in_the_dtype_they_are_given(dtype):
    rng = np.random.default_rng(0)
    conv = conv_layer(rng, 2, 3, 3, 1, 1, dtype=dtype)
    lin = Linear(12, 2)
    lin.params = {"weight": rng.standard_normal((2, 12)).astype(dtype),
                  "bias": rng.standard_normal(2).astype(dtype)}
    layers = [conv, ReLU(), MaxPool2d(2), Flatten(), Dropout(), lin]
    x = rng.standard_normal((2, 2, 4, 4)).astype(dtype)
    for layer in layers:
        x = layer.forward(x)
        assert x.dtype == dtype, type(layer).__name__
    g = np.ones_like(x)
    for layer in reversed(layers):
        g = layer.backward(g, "guided")
        assert g.dtype == dtype, type(layer).__name__


def test_output_shape_formula():
    assert Conv2d(3, 8, 3, 2, 1).output_shape((3, 7, 10)) == (8, conv_out(7, 3, 2, 1), conv_out(10, 3, 2, 1))
    assert MaxPool2d(3, 2, 1).output_shape((4, 7, 6)) == (4, 4, 3)
    assert Linear(5, 2).output_shape((5,)) == (2,)


def test_layer_base_declares_the_interface():
    """A subclass that forgets forward or backward fails loudly; output_shape and config
    have documented defaults (shape unchanged, no arguments)."""
    from minicnn import Layer

    class Bare(Layer):
        kind = "bare"

    layer = Bare()
    with pytest.raises(NotImplementedError, match="Bare must implement forward"):
        layer.forward(np.zeros((1, 2)))
    with pytest.raises(NotImplementedError, match="Bare must implement backward"):
        layer.backward(np.zeros((1, 2)), "gradient")
    assert layer.output_shape((3, 4, 5)) == (3, 4, 5)
    assert layer.config() == {}


@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from(["conv2d", "linear"]), a=st.integers(1, 6), b=st.integers(1, 6),
       k=st.integers(1, 4))
def test_parameter_shapes_are_the_shapes_a_built_layer_holds(kind, a, b, k):
    from minicnn.layers import LAYER_TYPES
    config = ({"in_channels": a, "out_channels": b, "kernel_size": k} if kind == "conv2d"
              else {"in_features": a, "out_features": b})
    layer = LAYER_TYPES[kind](**config)
    expected = {name: value.shape for name, value in layer.params.items()}
    assert LAYER_TYPES[kind].parameter_shapes(layer.config()) == expected
    assert LAYER_TYPES["relu"].parameter_shapes({}) == {}
