"""minicnn.Net: forward(until) / backward(start) against sub-nets, clear errors, shapes,
state_dict layouts and strict/non-strict loading, train/eval."""
import functools
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, Net, ReLU
from oracles import (RULES, build_layers, draw_input, draw_upstream,
                     forward_layers, layers_to, net_specs, on, to_np)


def tiny_net(seed=0):
    rng = np.random.default_rng(seed)
    net = Net([("conv1", Conv2d(2, 3, 3, 1, 1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
               ("flatten", Flatten()), ("fc1", Linear(3 * 3 * 4, 5)), ("relu2", ReLU()),
               ("drop", Dropout(0.5)), ("fc2", Linear(5, 4))])
    for _, layer, p in net.parameters():
        layer.params[p] = rng.standard_normal(layer.params[p].shape).astype(np.float32)
    return net


X = np.random.default_rng(1).standard_normal((2, 2, 6, 8)).astype(np.float32)


# ----------------------------------------------------------------------------- until / start

@given(spec=net_specs(relu="random", batch=(1, 2)), data=st.data())
def test_forward_until_and_backward_start_equal_the_sub_net(backend, spec, data):
    cut = data.draw(st.integers(0, len(spec.layers) - 1))
    net = Net(build_layers(spec)).eval().to(backend)
    sub = Net(build_layers(spec)[:cut + 1]).eval().to(backend)   # same weights
    name = net.names[cut]
    x = draw_input(spec)
    y_until = to_np(net.forward(x, until=name))
    y_sub = to_np(sub.forward(x))
    np.testing.assert_array_equal(y_until, y_sub)
    g = draw_upstream(spec, y_sub.shape)
    for rule in RULES:
        np.testing.assert_array_equal(to_np(net.backward(g, rule=rule, start=name)),
                                      to_np(sub.backward(g, rule=rule)))
    # a full forward, then backward from an inner layer: same as the sub-net too
    net.forward(x)
    for rule in RULES:
        np.testing.assert_array_equal(to_np(net.backward(g, rule=rule, start=name)),
                                      to_np(sub.backward(g, rule=rule)))


@given(spec=net_specs(relu="some", batch=(1, 2)), data=st.data())
def test_in_place_passes_equal_the_layers_one_by_one_and_spare_the_callers_arrays(
        backend, spec, data):
    """Inside a pass a ReLU rectifies the previous layer's new output (and its incoming
    signal) in place. The results must equal the layers called one by one (which never
    overwrite), for every rule and from any start, and the caller's input and signal must
    come back unchanged (nets may begin or end with a ReLU)."""
    net = Net(build_layers(spec)).eval().to(backend)
    layers = build_layers(spec)                 # same weights; layers start in eval mode
    x = on(backend, draw_input(spec))
    x_before = to_np(x).copy()
    y_ref, _ = forward_layers(layers_to(layers, backend), x)
    np.testing.assert_array_equal(to_np(net.forward(x)), to_np(y_ref))
    np.testing.assert_array_equal(to_np(x), x_before)
    cut = data.draw(st.integers(0, len(layers) - 1))
    g = on(backend, draw_upstream(spec, tuple(net._last_run.shapes[cut])))
    g_before = to_np(g).copy()
    for rule in RULES:
        expected = g
        for _, layer in reversed(layers[:cut + 1]):
            expected = layer.backward(expected, rule)
        got = net.backward(g, rule=rule, start=net.names[cut])
        np.testing.assert_array_equal(to_np(got), to_np(expected))
        np.testing.assert_array_equal(to_np(g), g_before)
    # forward layers called directly never overwrite their input either
    np.testing.assert_array_equal(to_np(x), x_before)


@pytest.mark.parametrize("in_channels", [2, 16])          # im2col, Winograd
def test_a_relu_after_a_conv_is_fused_into_it(monkeypatch, in_channels):
    """The conv rectifies its own output for the ReLU after it, and that ReLU keeps the
    buffer as its mask without a pass of its own; a second ReLU (after a ReLU, which
    keeps its output) writes a new array. Values as the layers one by one, bitwise."""
    net = Net([("conv", Conv2d(in_channels, 16, 3, 1, 1)), ("relu", ReLU()),
               ("relu_again", ReLU())])
    rng = np.random.default_rng(0)
    for _, layer, p in net.parameters():
        layer.params[p] = rng.standard_normal(layer.params[p].shape).astype(np.float32)
    x = rng.standard_normal((2, in_channels, 40, 40)).astype(np.float32)
    expected = np.maximum(net["conv"].forward(x), 0)
    seen, relu_passes = {}, []
    conv_forward, relu_forward = net["conv"].forward, minicnn.functional.relu_forward

    @functools.wraps(conv_forward)             # a wrapper the net sees through
    def spy(x, **options):
        seen["out"] = conv_forward(x, **options)
        return seen["out"]
    monkeypatch.setattr(net["conv"], "forward", spy)
    monkeypatch.setattr(minicnn.functional, "relu_forward",
                        lambda *a, **k: relu_passes.append(1) or relu_forward(*a, **k))
    y = net.forward(x)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(seen["out"], expected)       # rectified by the conv
    assert np.shares_memory(net["relu"].cache["output"], seen["out"])
    assert not np.shares_memory(y, net["relu"].cache["output"])
    assert len(relu_passes) == 1                                # relu_again's only
    monkeypatch.undo()
    # stopping at the conv returns its output before any ReLU
    np.testing.assert_array_equal(net.forward(x, until="conv"),
                                  Net([("c", net["conv"])]).forward(x))
    assert (net.forward(x, until="conv") < 0).any()


def test_a_custom_layer_without_overwrite_still_runs_in_a_net():
    """Layers that do not declare in_place are called as forward(x) / backward(grad, rule,
    param_grads=...), whatever comes before them."""
    from minicnn import Layer

    class Double(Layer):
        kind = "double"

        def forward(self, x):
            return 2 * x

        def backward(self, grad, rule="gradient", param_grads=False):
            return 2 * grad

    net = Net([("conv", Conv2d(1, 1, 1)), ("double", Double()), ("relu", ReLU()),
               ("double2", Double())])
    net["conv"].params["weight"][...] = 1
    x = np.arange(-4, 4, dtype=np.float32).reshape(1, 1, 2, 4)
    np.testing.assert_array_equal(net.forward(x), 4 * np.maximum(x, 0))
    g = np.ones_like(x)
    np.testing.assert_array_equal(net.backward(g), 4 * (x > 0))


@given(spec=net_specs(relu="random", batch=(1, 2)))
def test_training_backward_without_the_input_signal_gives_the_same_parameter_gradients(
        backend, spec):
    """input_signal=False (what training runs) skips the signal below the lowest layer
    with parameters; every parameter gradient must equal the full backward's, bitwise."""
    net = Net(build_layers(spec)).eval().to(backend)
    x = on(backend, draw_input(spec))
    y = net.forward(x)
    g = on(backend, draw_upstream(spec, tuple(y.shape)))
    assert net.backward(g, param_grads=True) is not None
    full = {key: to_np(layer.grads[p]).copy() for key, layer, p in net.parameters()}
    for _, layer in net:
        layer.grads = {}
    assert net.backward(g, param_grads=True, input_signal=False) is None
    assert sorted(full) == sorted(key for key, layer, p in net.parameters() if p in layer.grads)
    for key, layer, p in net.parameters():
        np.testing.assert_array_equal(to_np(layer.grads[p]), full[key])


def test_training_backward_never_computes_the_signal_below_the_lowest_parameters():
    """The ReLU and pool under the first conv do not run backward at all, and the conv
    computes only its parameter gradients."""
    net = tiny_net()
    net = Net([("relu0", ReLU()), ("pool0", MaxPool2d(1))] + list(net))
    called = []
    for name, layer in net:
        def spy(*args, _name=name, _method=layer.backward, **kwargs):
            called.append(_name)
            return _method(*args, **kwargs)
        layer.backward = functools.wraps(layer.backward)(spy)    # seen through
    y = net.forward(X)
    net.backward(np.ones_like(y), param_grads=True, input_signal=False)
    assert called == ["fc2", "drop", "relu2", "fc1", "flatten", "pool1", "relu1"]
    assert set(net["conv1"].grads) == {"weight", "bias"}
    with pytest.raises(ValueError, match="param_grads=True"):
        net.backward(np.ones_like(y), input_signal=False)
    no_params = Net([("relu", ReLU())])
    no_params.forward(X)
    assert no_params.backward(np.ones_like(X), param_grads=True, input_signal=False) is None


def test_subclasses_and_hooks_that_replace_forward_or_backward_run_the_plain_protocol():
    """The in-place, fusion and training flags describe the methods of the class that
    sets them: a subclass overriding forward or backward, or a hook put on an instance,
    is called as forward(x) / backward(grad, rule, param_grads=...), and what it keeps
    is never overwritten."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)

    class KeepConv(Conv2d):                   # keeps its output: must not be rectified
        def forward(self, x):
            self.kept = super().forward(x)
            self.kept_copy = self.kept.copy()
            return self.kept

    class Leaky(ReLU):                        # the documented forward(x) signature
        def forward(self, x):
            y = np.where(x > 0, x, 0.01 * x)
            self.cache = {"output": y}
            return y

    def randomised(net):
        r = np.random.default_rng(1)
        for _, layer, p in net.parameters():
            layer.params[p] = r.standard_normal(layer.params[p].shape).astype(np.float32)
        return net

    net = randomised(Net([("conv", KeepConv(2, 4, 3, 1, 1)), ("relu", ReLU())]))
    net.forward(x)
    np.testing.assert_array_equal(net["conv"].kept, net["conv"].kept_copy)
    assert (net["conv"].kept < 0).any()
    leaky = randomised(Net([("conv", Conv2d(2, 4, 3, 1, 1)), ("act", Leaky())]))
    assert (leaky.forward(x) < 0).any()
    hooked = randomised(Net([("conv", Conv2d(2, 4, 3, 1, 1)), ("relu", ReLU())]))
    original = hooked["relu"].forward
    hooked["relu"].forward = lambda x: original(x)
    np.testing.assert_array_equal(hooked.forward(x), np.maximum(net.forward(x), 0))

    class HalfGradConv(Conv2d):               # its own backward must still run in training
        def backward(self, grad, rule="gradient", param_grads=False):
            return super().backward(0.5 * grad, rule, param_grads)

    grads = []
    for input_signal in (True, False):
        net = randomised(Net([("conv", HalfGradConv(2, 4, 3, 1, 1)), ("relu", ReLU()),
                              ("flat", Flatten()), ("fc", Linear(144, 3))]))
        y = net.forward(x)
        net.backward(np.ones_like(y), param_grads=True, input_signal=input_signal)
        grads.append(net["conv"].grads["weight"])
    np.testing.assert_array_equal(grads[0], grads[1])


def test_backward_beyond_the_last_forward_is_an_error():
    net = tiny_net()
    net.forward(X)
    net.forward(X, until="pool1")
    with pytest.raises(RuntimeError) as e:
        net.backward(np.ones((2, 4), np.float32))
    assert "fc2" in str(e.value) and "pool1" in str(e.value)
    with pytest.raises(RuntimeError, match="pool1"):
        net.backward(np.ones((2, 5), np.float32), start="fc1")
    # from the layer where it stopped is fine
    assert net.backward(np.ones((2, 3, 3, 4), np.float32), start="pool1").shape == X.shape


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="forward"):
        tiny_net().backward(np.ones((2, 4), np.float32))


def test_backward_with_a_wrongly_shaped_grad_names_both_shapes():
    net = tiny_net()
    net.forward(X)
    with pytest.raises(ValueError) as e:
        net.backward(np.ones((2, 5), np.float32))
    msg = str(e.value)
    assert "(2, 5)" in msg and "(2, 4)" in msg and "fc2" in msg
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        net.backward(np.ones((1, 4), np.float32))      # wrong batch size


def test_backward_after_a_failed_forward_is_a_clear_error():
    net = Net([("relu", ReLU()), ("flatten", Flatten()), ("fc", Linear(36, 4))])
    net.forward(np.ones((2, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="fc"):
        net.forward(np.ones((1, 2, 6, 6), np.float32))     # relu, flatten run; fc fails
    # today: returns a (1, 2, 6, 6) array silently (mask and shape of the failed input,
    # grad of the earlier one) instead of refusing
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.ones((2, 4), np.float32))


# ----------------------------------------------------------------------------- names and rules

def test_unknown_rule_lists_the_valid_rules():
    net = tiny_net()
    net.forward(X)
    with pytest.raises(ValueError) as e:
        net.backward(np.ones((2, 4), np.float32), rule="deconv")
    for word in ("deconv", "gradient", "deconvnet", "guided"):
        assert word in str(e.value)


def test_unknown_layer_name_lists_valid_or_close_names():
    net = tiny_net()
    with pytest.raises(ValueError) as e:
        net.forward(X, until="conv_1")
    assert "conv_1" in str(e.value) and "conv1" in str(e.value)
    with pytest.raises(ValueError) as e:
        net.forward(X, until="zzz")
    assert all(name in str(e.value) for name in net.names), str(e.value)
    net.forward(X)
    with pytest.raises(ValueError, match="fc1"):
        net.backward(np.ones((2, 4), np.float32), start="fc_1")
    with pytest.raises(ValueError, match="relu2"):
        net["relu_2"]
    assert net["relu2"] is net.layers["relu2"]
    assert net.index("pool1") == 2


def test_param_grads_need_the_gradient_rule():
    net = tiny_net()
    net.forward(X)
    for rule in ("deconvnet", "guided"):
        with pytest.raises(ValueError, match="gradient"):
            net.backward(np.ones((2, 4), np.float32), rule=rule, param_grads=True)


def test_construction_errors():
    with pytest.raises(ValueError, match="duplicate"):
        Net([("a", ReLU()), ("a", ReLU())])
    for bad in ("", "a.b", "a/b", 3):
        with pytest.raises(ValueError, match="layer names"):
            Net([(bad, ReLU())])
    with pytest.raises(TypeError, match="not a minicnn Layer"):
        Net([("a", lambda x: x)])
    with pytest.raises(ValueError, match="at least one"):
        Net([])
    net = Net(OrderedDict([("a", ReLU()), ("b", Flatten())]))
    assert net.names == ["a", "b"] and len(net) == 2


def test_forward_input_checks_and_float32():
    net = tiny_net()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        net.forward(X[0])
    y = net.forward(X.astype(np.float64))
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match="conv1"):
        net.forward(np.zeros((1, 3, 6, 8), np.float32))   # wrong channel count


def test_shapes_agree_with_forward_and_name_the_failing_layer():
    net = tiny_net()
    shapes = net.shapes((2, 6, 8))
    assert list(shapes) == net.names
    x = X
    for name, layer in net:
        x = layer.forward(x)
        assert tuple(x.shape[1:]) == shapes[name], name
    with pytest.raises(ValueError, match="fc1"):
        net.shapes((2, 6, 10))


# ----------------------------------------------------------------------------- state dict

def test_state_dict_keys_order_layouts_and_copies():
    net = tiny_net()
    sd = net.state_dict()
    assert list(sd) == ["conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias",
                        "fc2.weight", "fc2.bias"]
    assert sd["conv1.weight"].shape == (3, 2, 3, 3)       # (out, in, kh, kw)
    assert sd["fc1.weight"].shape == (5, 36)              # (out, in)
    assert sd["fc2.bias"].shape == (4,)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in sd.values())
    sd["conv1.weight"][...] = 0
    assert np.abs(net["conv1"].params["weight"]).sum() > 0, "state_dict must return copies"
    assert net.num_parameters() == 3 * 2 * 9 + 3 + 36 * 5 + 5 + 5 * 4 + 4


def test_conv_weight_layout_is_oihw_cross_correlation():
    """weight[o, c, a, b] multiplies x[c, i + a, j + b] (PyTorch / Caffe convention)."""
    conv = Conv2d(2, 1, 2)
    w = np.zeros((1, 2, 2, 2), np.float32)
    w[0, 1, 0, 1] = 1.0       # channel 1, row offset 0, column offset 1
    conv.params["weight"] = w
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 2, 3, 3)
    np.testing.assert_array_equal(conv.forward(x)[0, 0], x[0, 1, :2, 1:])


def test_linear_weight_layout_is_out_in():
    lin = Linear(3, 2)
    lin.params["weight"] = np.array([[1, 0, 0], [0, 0, 2]], np.float32)
    np.testing.assert_array_equal(lin.forward(np.array([[1, 2, 3]], np.float32)), [[1, 6]])


def test_load_state_dict_round_trip():
    a, b = tiny_net(0), tiny_net(1)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.forward(X), b.forward(X))


def test_load_state_dict_strict_names_every_problem_and_changes_nothing():
    net = tiny_net()
    before = net.state_dict()
    state = net.state_dict()
    del state["fc1.bias"]
    state["fc3.weight"] = np.zeros((1, 1), np.float32)
    state["conv1.weight"] = np.zeros((3, 2, 5, 5), np.float32)
    state["fc2.weight"] = np.full((4, 5), 7.0, np.float32)      # fine, must not be applied
    with pytest.raises(ValueError) as e:
        net.load_state_dict(state)
    msg = str(e.value)
    for word in ("fc1.bias", "fc3.weight", "conv1.weight", "(3, 2, 3, 3)", "(3, 2, 5, 5)"):
        assert word in msg, (word, msg)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_load_state_dict_non_strict():
    net = tiny_net()
    before = net.state_dict()
    new = np.full((4, 5), 7.0, np.float32)
    net.load_state_dict({"fc2.weight": new, "other.weight": np.zeros(3)}, strict=False)
    np.testing.assert_array_equal(net.state_dict()["fc2.weight"], new)
    np.testing.assert_array_equal(net.state_dict()["fc1.weight"], before["fc1.weight"])
    with pytest.raises(ValueError, match="fc2.bias"):
        net.load_state_dict({"fc2.bias": np.zeros(5, np.float32)}, strict=False)
    # float64 input is stored as float32
    net.load_state_dict({"fc2.bias": np.ones(4)}, strict=False)
    assert net["fc2"].params["bias"].dtype == np.float32


def test_architecture_describes_layers_in_order():
    arch = tiny_net().architecture()
    assert [a["name"] for a in arch] == tiny_net().names
    assert arch[0] == {"name": "conv1", "type": "conv2d",
                       "config": {"in_channels": 2, "out_channels": 3, "kernel_size": 3,
                                  "stride": 1, "pad": 1}}
    assert arch[2]["config"] == {"kernel_size": 2, "stride": 2, "pad": 0}


# ----------------------------------------------------------------------------- train / eval

def test_dropout_identity_in_eval_and_active_in_train():
    net = tiny_net()
    net.eval()
    y1, y2 = net.forward(X), net.forward(X)
    np.testing.assert_array_equal(y1, y2)
    h = net.forward(X, until="relu2")
    np.testing.assert_array_equal(net.forward(X, until="drop"), h)
    net.train()
    assert all(layer.training for _, layer in net)
    dropped = 0
    for _ in range(10):
        d = net.forward(X, until="drop")
        kept = d != 0
        np.testing.assert_allclose(d[kept], 2.0 * h[kept], rtol=1e-6)   # p = 0.5: scale 2
        dropped += int(np.count_nonzero(~kept & (h > 0)))
    assert dropped > 0
    net.eval()
    np.testing.assert_array_equal(net.forward(X), y1)


def test_to_unknown_device_is_an_error():
    with pytest.raises(ValueError, match="cpu"):
        tiny_net().to("tpu")


def test_float64_mode_casts_parameters_passes_and_loads_and_goes_back():
    net = tiny_net()
    y32 = net.forward(X)
    assert net.to(dtype="float64") is net and net.dtype == np.float64
    assert all(layer.params[p].dtype == np.float64 for _, layer, p in net.parameters())
    y64 = net.forward(X)                          # float32 input: cast by the net
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, y32, rtol=1e-5, atol=1e-5)
    assert net.backward(np.ones(y64.shape, np.float32)).dtype == np.float64
    assert all(v.dtype == np.float64 for v in net.state_dict().values())
    net.load_state_dict({"fc2.bias": np.full(4, 0.1)}, strict=False)
    assert net["fc2"].params["bias"].dtype == np.float64
    assert net["fc2"].params["bias"][0] == 0.1    # not rounded through float32
    assert net.replica().forward(X).dtype == np.float64
    assert net.to("cpu").dtype == np.float64      # dtype=None keeps the dtype
    net.to(dtype=np.float32)
    assert net.forward(X).dtype == np.float32
    assert net.state_dict()["fc2.bias"].dtype == np.float32
    built = minicnn.vgg_from_config([4, "M"], num_classes=2, input_size=(4, 4), fc_sizes=(),
                                    dtype="float64")
    same = minicnn.vgg_from_config([4, "M"], num_classes=2, input_size=(4, 4), fc_sizes=())
    for key, value in same.state_dict().items():   # one seed, the same weights
        np.testing.assert_array_equal(built.state_dict()[key], value.astype(np.float64))


@pytest.mark.parametrize("bad", ["float16", "int32", "double precision", None, 64])
def test_to_unknown_dtype_is_an_error(bad):
    net = tiny_net()
    if bad is None:                                # None means: keep the dtype
        assert net.to(dtype=bad).dtype == np.float32
        return
    with pytest.raises(ValueError, match="float32, float64"):
        net.to(dtype=bad)
    assert net.dtype == np.float32


def test_input_shape_and_num_classes_come_from_the_layers_and_metadata():
    net = minicnn.vgg_from_config([4, "M"], num_classes=7, in_channels=1, input_size=(10, 12),
                                  fc_sizes=())
    assert net.input_channels == 1
    assert net.input_shape == (1, 10, 12)
    assert net.num_classes == 7
    fc_only = Net([("flatten", Flatten()), ("fc", Linear(3 * 2 * 2, 5))],
                  meta={"preprocessing": {"input_size": [2, 2]}})
    assert fc_only.input_shape == (3, 2, 2) and fc_only.num_classes == 5
