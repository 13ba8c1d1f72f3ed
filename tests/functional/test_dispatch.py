"""minicnn.functional's dispatchers: which path each operation takes, that the layers
reach the fast paths with the same named caches, and that a whole net on the fast paths
equals the same net on the reference paths."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import functional as F
from minicnn.functional import conv_choice, pool2x2, reference
from minicnn.layers import Conv2d, MaxPool2d
from oracles import to_np

def test_dispatch_rules():
    big = conv_choice.WINOGRAD_MIN_CHANNELS

    def winograd_possible(weight_shape, stride, pad):
        return len(conv_choice.candidates("forward", (1, weight_shape[1], 8, 8), weight_shape,
                                          stride, pad)) > 1
    assert winograd_possible((big, big, 3, 3), 1, 1)
    assert not winograd_possible((big, 3, 3, 3), 1, 1)       # RGB input: im2col
    assert not winograd_possible((3, big, 3, 3), 1, 1)
    assert not winograd_possible((big, big, 3, 3), 2, 1)
    assert not winograd_possible((big, big, 3, 3), 1, 0)
    assert not winograd_possible((big, big, 5, 5), 1, 1)
    x = np.zeros((1, big, 4, 4), np.float32)
    assert F.use_winograd(x, (big, big, 3, 3), 1, 1)          # CPU: Winograd
    assert not F.use_winograd(x, (big, big, 3, 3), 2, 1)
    if minicnn.cuda_available():                              # GPU: one cuBLAS GEMM
        import cupy
        assert not F.use_winograd(cupy.asarray(x), (big, big, 3, 3), 1, 1)
    assert pool2x2.is_2x2_pool(2, 2, 0)
    assert not pool2x2.is_2x2_pool(2, 1, 0)
    assert not pool2x2.is_2x2_pool(3, 2, 1)


def test_dispatch_reaches_the_winograd_path_and_agrees(xp):
    """A conv wide enough for Winograd, through the public functions and the layer."""
    k = conv_choice.WINOGRAD_MIN_CHANNELS
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, k, 5, 6))
    weight, bias = rng.standard_normal((k, k, 3, 3)), rng.standard_normal(k)
    dy = rng.standard_normal((2, k, 5, 6))
    xd, wd, bd, dyd = (xp.asarray(a) for a in (x, weight, bias, dy))
    np.testing.assert_allclose(to_np(F.conv2d_forward(xd, wd, bd, 1, 1)),
                               to_np(reference.conv2d_forward(xd, wd, bd, 1, 1)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_np(F.conv2d_backward_input(dyd, wd, x.shape, 1, 1)),
                               to_np(reference.conv2d_backward_input(dyd, wd, x.shape, 1, 1)),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_np(F.conv2d_backward_params(dyd, xd, weight.shape, 1, 1)[0]),
                               to_np(reference.conv2d_backward_params(dyd, xd, weight.shape, 1, 1)[0]),
                               rtol=1e-10, atol=1e-10)
    conv = Conv2d(k, k, 3, 1, 1)
    conv.params = {"weight": wd, "bias": bd}
    np.testing.assert_allclose(to_np(conv.forward(xd)), to_np(reference.conv2d_forward(xd, wd, bd, 1, 1)),
                               rtol=1e-10, atol=1e-10)
    assert set(conv.cache) == {"x"}     # the same named cache on every path and backend


def test_layers_use_the_fast_paths_with_the_same_caches(xp):
    """The layer caches hold the same named entries whichever path runs."""
    rng = np.random.default_rng(5)
    conv = Conv2d(3, 4, 3, 1, 1)
    conv.params = {"weight": xp.asarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
                   "bias": xp.asarray(rng.standard_normal(4).astype(np.float32))}
    x = xp.asarray(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    conv.forward(x)
    assert set(conv.cache) == {"x"}
    pool = MaxPool2d(2)
    pool.forward(x)
    assert set(pool.cache) == {"switches", "x_shape"}


@pytest.mark.parametrize("rule", F.RULES)
@given(size=st.integers(2, 9), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_whole_net_on_the_fast_paths_equals_the_general_paths(rule, size, batch, seed):
    """A VGG-style net whose convs take the Winograd path (channels-last outputs, so the
    ReLU, pool, flatten and their backward passes meet mixed memory layouts) gives, in
    float64, the outputs, signals at the input and parameter gradients of the same net
    run entirely on the general paths (im2col convs, whose NumPy outputs are channels-last
    too, and k*k pooling)."""
    k = conv_choice.WINOGRAD_MIN_CHANNELS
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
    with conv_choice.policy("im2col"):
        general = run()
    np.testing.assert_allclose(fast[0], general[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast[1], general[1], rtol=1e-9, atol=1e-9)
    for key, value in general[2].items():
        np.testing.assert_allclose(fast[2][key], value, rtol=1e-9, atol=1e-9, err_msg=key)
