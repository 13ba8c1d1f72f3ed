"""The paper's Sect. 4 (docs/backward_rules.md) as properties over small random networks.

The three passes (gradient, DeconvNet, guided backprop) must share every layer's
backward except ReLU's, whose three rules are the table's formulas. The gradient must
equal centred finite differences (float64, away from kinks and pooling ties), for the
input and for the parameters.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import Net, ReLU
from oracles import (RULES, backward_layers, build_layers, build_net, draw_input,
                     draw_upstream, forward_layers, kink_margin, layers_to, net_specs, on,
                     output_shape, relu_rule, to_np)

# float32 comparisons: the float64 reference is exact up to rounding, float32 work has a
# relative error of a few 1e-7 per operation, summed over at most a few hundred terms.
RTOL32 = 1e-4


def close32(actual, expected, what=""):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL32, atol=RTOL32 * scale, err_msg=what)


# ----------------------------------------------------------------------------- no ReLU

@given(spec=net_specs(relu="none", batch=(1, 3)))
def test_without_relu_all_three_passes_are_identical(backend, spec):
    """No ReLU: DeconvNet == gradient == guided, bitwise (the same code runs)."""
    net = build_net(spec, backend)
    x = draw_input(spec)
    y = net.forward(x)
    g = draw_upstream(spec, tuple(y.shape))
    out = {rule: to_np(net.backward(g, rule=rule)) for rule in RULES}
    assert out["gradient"].shape == spec.input_shape
    np.testing.assert_array_equal(out["deconvnet"], out["gradient"])
    np.testing.assert_array_equal(out["guided"], out["gradient"])


# ----------------------------------------------------------------------------- rule swap

@pytest.mark.parametrize("rule", RULES)
@given(spec=net_specs(relu="some", batch=(1, 2)))
def test_passes_differ_only_through_the_relu_rule(backend, rule, spec):
    """net.backward(rule) == our own layer-by-layer pass that calls every non-ReLU layer
    with rule 'gradient' and applies the table's formula at each ReLU."""
    net = build_net(spec, backend)
    x = on(backend, draw_input(spec))
    y = net.forward(x)
    g = on(backend, draw_upstream(spec, tuple(y.shape)))
    engine = to_np(net.backward(g, rule=rule))

    layers = list(net)
    _, inputs = forward_layers(layers, x)
    ours = to_np(backward_layers(layers, inputs, g, relu=lambda r, xin: relu_rule(rule, r, xin)))
    np.testing.assert_array_equal(engine, ours)


@given(spec=net_specs(relu="some", batch=(1, 2)))
def test_swapping_the_deconvnet_relu_rule_for_gradient_gives_the_gradient(backend, spec):
    """Swap only ReLU's rule in a DeconvNet (and a guided) pass for 'gradient': the result
    is the gradient pass, bitwise. So no other layer looks at the rule."""
    net = build_net(spec, backend)
    y = net.forward(on(backend, draw_input(spec)))
    g = on(backend, draw_upstream(spec, tuple(y.shape)))
    grad = to_np(net.backward(g, rule="gradient"))
    original = ReLU.backward

    def swapped(self, grad, rule="gradient", param_grads=False, **kwargs):
        return original(self, grad, "gradient", param_grads, **kwargs)

    ReLU.backward = swapped
    try:
        for rule in ("deconvnet", "guided"):
            np.testing.assert_array_equal(to_np(net.backward(g, rule=rule)), grad)
    finally:
        ReLU.backward = original


@given(spec=net_specs(relu="some", batch=(1, 2)))
def test_guided_is_the_gradient_mask_combined_with_the_deconvnet_mask(backend, spec):
    """At every ReLU guided keeps R where both the gradient rule (X > 0) and the DeconvNet
    rule (R > 0) keep it: run our pass with 'deconvnet of gradient' at each ReLU."""
    net = build_net(spec, backend)
    x = on(backend, draw_input(spec))
    y = net.forward(x)
    g = on(backend, draw_upstream(spec, tuple(y.shape)))
    guided = to_np(net.backward(g, rule="guided"))
    layers = list(net)
    _, inputs = forward_layers(layers, x)
    both = to_np(backward_layers(
        layers, inputs, g,
        relu=lambda r, xin: relu_rule("deconvnet", relu_rule("gradient", r, xin), xin)))
    np.testing.assert_array_equal(guided, both)


# ----------------------------------------------------------------------------- typical net

@pytest.fixture(scope="module")
def small_vgg():
    net = minicnn.vgg_from_config([8, "M", 16, 16, "M"], num_classes=7, input_size=(16, 16),
                                  fc_sizes=(32,), seed=3).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    return net, x


def test_three_passes_really_differ_on_a_typical_net(backend, small_vgg):
    """On a VGG-like net with random weights the three passes give three different maps
    (peers ship a 'deconvnet' that silently equals guided backprop)."""
    net, x = small_vgg
    net.to(backend)
    try:
        y = net.forward(x)
        g = np.zeros(tuple(y.shape), np.float32)
        g[:, 2] = 1.0                                 # one class score, as in the paper
        maps = {rule: to_np(net.backward(g, rule=rule)) for rule in RULES}
    finally:
        net.to("cpu")
    for a, b in (("gradient", "deconvnet"), ("gradient", "guided"), ("deconvnet", "guided")):
        diff = np.abs(maps[a] - maps[b]).max()
        scale = max(np.abs(maps[a]).max(), np.abs(maps[b]).max())
        assert diff > 0.05 * scale, f"{a} and {b} maps are (nearly) the same"
    # and every map is non-trivial
    for rule, m in maps.items():
        assert np.abs(m).max() > 0, rule


def test_input_attributions_of_all_three_passes_can_be_negative(backend, small_vgg):
    """The first layer is linear, so even DeconvNet/guided input maps have negative values."""
    net, x = small_vgg
    net.to(backend)
    try:
        y = net.forward(x)
        g = np.zeros(tuple(y.shape), np.float32)
        g[:, 0] = 1.0
        for rule in RULES:
            m = to_np(net.backward(g, rule=rule))
            assert (m < 0).any() and (m > 0).any(), rule
    finally:
        net.to("cpu")


@given(spec=net_specs(relu="some", batch=(1, 2)))
def test_relu_layer_rules_match_the_table(backend, spec):
    """Each ReLU in a random net: its backward for each rule is the table's formula."""
    net = build_net(spec, backend)
    x = on(backend, draw_input(spec))
    layers = list(net)
    _, inputs = forward_layers(layers, x)
    rng = np.random.default_rng(spec.seed)
    for (name, layer), xin in zip(layers, inputs):
        if not isinstance(layer, ReLU):
            continue
        r = on(backend, rng.standard_normal(tuple(layer.forward(xin).shape)).astype(np.float32))
        for rule in RULES:
            np.testing.assert_array_equal(to_np(layer.backward(r, rule)), to_np(relu_rule(rule, r, xin)))


# ----------------------------------------------------------------------------- finite differences

H = 1e-6          # step: the nets are piecewise linear, so centred differences are exact
MARGIN = 1e-4     # ...as long as no ReLU input / pooling gap is within reach of the step
RTOL64 = 1e-6     # rounding error of the differences: ~1e-16 * |f| / H ~ 1e-9


def _f64(spec):
    """Layers in float64 and a scalar objective f(x) = <net(x), g>."""
    layers = build_layers(spec, np.float64)
    x = draw_input(spec, np.float64)
    y, inputs = forward_layers(layers, x)
    g = draw_upstream(spec, y.shape, np.float64)
    assert y.dtype == np.float64, "layers must compute in the dtype they are given"

    def f(xx):
        return float(np.sum(forward_layers(layers, xx)[0] * g))
    return layers, x, g, inputs, f


@given(spec=net_specs(relu="random", batch=(1, 1), max_hw=7))
def test_gradient_pass_equals_centred_finite_differences(spec):
    layers, x, g, inputs, f = _f64(spec)
    assume(kink_margin(layers, inputs) > MARGIN)
    forward_layers(layers, x)
    grad = backward_layers(layers, inputs, g)     # every layer with rule "gradient"
    assert grad.dtype == np.float64
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += H
        xm[idx] -= H
        fd[idx] = (f(xp) - f(xm)) / (2 * H)
    scale = max(1.0, float(np.abs(fd).max()))
    np.testing.assert_allclose(grad, fd, rtol=RTOL64, atol=RTOL64 * scale)

    # the float32 Net API gives the same gradient within float32 rounding
    net = Net(build_layers(spec, np.float32)).eval()
    net.forward(x.astype(np.float32))
    close32(net.backward(g.astype(np.float32), rule="gradient"), fd, "Net.backward float32")


@given(spec=net_specs(relu="random", batch=(1, 2), max_hw=6, max_spatial=2))
def test_parameter_gradients_equal_centred_finite_differences(spec):
    """layer.grads after backward(param_grads=True): float64 layers against float64
    differences (tight), and the float32 Net API against the same differences."""
    layers, x, g, inputs, f = _f64(spec)
    assume(any(layer.param_names for _, layer in layers))
    assume(kink_margin(layers, inputs) > MARGIN)
    forward_layers(layers, x)
    backward_layers(layers, inputs, g, param_grads=True)
    analytic = {(name, p): layer.grads[p].copy() for name, layer in layers for p in layer.param_names}

    net = Net(build_layers(spec, np.float32)).eval()
    net.forward(x.astype(np.float32))
    net.backward(g.astype(np.float32), rule="gradient", param_grads=True)

    for name, layer in layers:
        for p in layer.param_names:
            param = layer.params[p]
            fd = np.zeros_like(param)
            for idx in np.ndindex(param.shape):
                keep = param[idx]
                param[idx] = keep + H
                fp = f(x)
                param[idx] = keep - H
                fm = f(x)
                param[idx] = keep
                fd[idx] = (fp - fm) / (2 * H)
            got = analytic[(name, p)]
            assert got.shape == param.shape and got.dtype == np.float64
            scale = max(1.0, float(np.abs(fd).max()))
            np.testing.assert_allclose(got, fd, rtol=RTOL64, atol=RTOL64 * scale,
                                       err_msg=f"{name}.{p} (float64 layers)")
            close32(to_np(net[name].grads[p]), fd, f"{name}.{p} (Net, float32)")


# ----------------------------------------------------------------------------- batches

@given(spec=net_specs(relu="random", batch=(2, 4)))
def test_batch_equals_single_examples_stacked(backend, spec):
    """forward, the three passes and the parameter gradients (summed over the batch) on
    N > 1 equal the N = 1 results."""
    net = build_net(spec, backend)
    x = draw_input(spec)
    y = to_np(net.forward(x))
    g = draw_upstream(spec, y.shape)
    batch = {rule: to_np(net.backward(g, rule=rule)) for rule in RULES}
    net.backward(g, rule="gradient", param_grads=True)
    pgrads = {k: to_np(layer.grads[p]) for k, layer, p in net.parameters()}

    sum_pgrads = {k: 0.0 for k in pgrads}
    for i in range(x.shape[0]):
        yi = to_np(net.forward(x[i:i + 1]))
        close32(y[i:i + 1], yi, f"forward example {i}")
        for rule in RULES:
            close32(batch[rule][i:i + 1], to_np(net.backward(g[i:i + 1], rule=rule)),
                    f"{rule} example {i}")
        net.backward(g[i:i + 1], rule="gradient", param_grads=True)
        for k, layer, p in net.parameters():
            sum_pgrads[k] = sum_pgrads[k] + to_np(layer.grads[p]).astype(np.float64)
    for k in pgrads:
        close32(pgrads[k], sum_pgrads[k], f"param grad {k}")


# ----------------------------------------------------------------------------- float64 Net API

def test_public_net_api_in_float64_checks_a_small_vgg_against_finite_differences():
    """Net.to(dtype="float64") end to end on a small VGG whose second block takes the
    Winograd path: the input gradient of a random projection of the scores equals
    centred differences tightly, and DeconvNet / guided backprop differ from it only
    through the ReLU rule (every other layer returns the same signal under any rule)."""
    from minicnn import functional as F
    net = minicnn.vgg_from_config([4, "M", 16, 16, "M"], num_classes=3, input_size=(8, 8),
                                  fc_sizes=(8,), dropout=0.0, seed=3).to(dtype="float64")
    assert all(layer.params[p].dtype == np.float64 for _, layer, p in net.parameters())
    conv = net["conv2_2"].params["weight"]
    assert F.use_winograd(np.zeros((1, 16, 4, 4)), conv.shape, 1, 1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)    # cast to float64 by the net
    y = net.forward(x)
    assert y.dtype == np.float64
    g = rng.standard_normal(y.shape)
    grad = net.backward(g, rule="gradient")
    assert grad.dtype == np.float64
    x64 = x.astype(np.float64)

    def f(xx):
        return float(np.sum(net.forward(xx) * g))
    fd = np.zeros_like(x64)
    for idx in np.ndindex(x64.shape):
        step = np.zeros_like(x64)
        step[idx] = H
        fd[idx] = (f(x64 + step) - f(x64 - step)) / (2 * H)
    scale = max(1.0, float(np.abs(fd).max()))
    np.testing.assert_allclose(grad, fd, rtol=RTOL64, atol=RTOL64 * scale)

    net.forward(x)
    layers = list(net)
    for rule in ("deconvnet", "guided"):
        signal = net.backward(g, rule=rule)
        relu_only, others_only = g, g
        for _, layer in reversed(layers):
            relu = isinstance(layer, ReLU)
            relu_only = layer.backward(relu_only, rule if relu else "gradient")
            others_only = layer.backward(others_only, "gradient" if relu else rule)
        np.testing.assert_array_equal(relu_only, signal)
        np.testing.assert_array_equal(others_only, grad)
        assert not np.allclose(signal, grad)
