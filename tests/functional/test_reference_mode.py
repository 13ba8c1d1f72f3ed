"""minicnn.reference_mode(): every layer runs reference.py only, and a whole VGG16 agrees
with the fast paths (float32 within its rounding, float64 tightly)."""
import numpy as np
import pytest

import minicnn
from minicnn import functional
from minicnn.functional import pool2x2, winograd, winograd4, workspace


def passes(net, x, rule="gradient"):
    """Scores, the input signal of the top class under ``rule`` and every parameter
    gradient of that score."""
    scores = net.forward(x)
    seed = np.zeros_like(scores)
    seed[np.arange(len(x)), scores.argmax(axis=1)] = 1.0
    signal = net.backward(seed, rule=rule, param_grads=rule == "gradient")
    grads = {f"{name}.{p}": np.array(layer.grads[p]) for name, layer in net
             for p in getattr(layer, "grads", {}) if layer.grads.get(p) is not None}
    return np.array(scores), np.array(signal), grads


def test_reference_mode_reaches_no_fast_path(monkeypatch):
    """Every fast-path entry point raises: the whole pass still runs in reference mode
    (and fails without it, so the trap is set)."""
    net = minicnn.vgg_from_config([4, 4, "M", 8, "M"], num_classes=5, input_size=(16, 16),
                                  fc_sizes=(8,), seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)

    def trap(*args, **kwargs):
        raise AssertionError("a fast path ran in reference mode")
    for module, name in ((winograd, "winograd_conv3x3"),
                         (winograd, "winograd_conv3x3_backward_params"),
                         (winograd4, "winograd4_conv3x3"),
                         (pool2x2, "maxpool2x2_forward"), (pool2x2, "maxpool2x2_backward"),
                         (functional, "recycled"), (functional, "scratch"),
                         (functional, "parallel_map")):
        monkeypatch.setattr(module, name, trap)
    with minicnn.reference_mode():
        for rule in minicnn.RULES:
            passes(net, x, rule)
    with pytest.raises(AssertionError, match="fast path"):
        passes(net, x)


def relu_outputs_and_switches(net):
    """{layer: array} of the last forward's ReLU outputs and pool switches."""
    out = {}
    for name, layer in net:
        if isinstance(layer, minicnn.ReLU):
            out[name] = np.array(layer.cache["output"])
        elif isinstance(layer, minicnn.MaxPool2d):
            out[name] = np.array(layer.cache["switches"])
    return out


def test_vgg16_in_reference_mode_equals_the_fast_paths_in_float64():
    """The whole VGG16 (scores, input signal, all 32 parameter gradients) in both modes."""
    net = minicnn.vgg16(num_classes=1000, seed=3, dtype="float64")
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224))
    fast = passes(net, x)
    with minicnn.reference_mode():
        assert functional.in_reference_mode()
        ref = passes(net, x)
    assert not functional.in_reference_mode()
    for a, b in zip(fast[:2], ref[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * float(np.abs(b).max()))
    assert fast[2].keys() == ref[2].keys() and len(ref[2]) == 32
    for key, b in ref[2].items():
        np.testing.assert_allclose(fast[2][key], b, rtol=1e-10,
                                   atol=1e-10 * float(np.abs(b).max()), err_msg=key)


def test_vgg16_in_reference_mode_in_float32():
    """float32: the scores agree within float32 rounding, and so does every ReLU decision
    and pool switch, except a handful of units whose value is itself a rounding error
    away from the kink (there the two modes may rectify differently, and the backward
    signal, which is discontinuous at the kink, differs by that unit's share)."""
    net = minicnn.vgg16(num_classes=1000, seed=3)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    fast_scores = np.array(net.forward(x))
    fast = relu_outputs_and_switches(net)
    with minicnn.reference_mode():
        ref_scores = np.array(net.forward(x))
        ref = relu_outputs_and_switches(net)
    np.testing.assert_allclose(fast_scores, ref_scores, rtol=1e-5,
                               atol=1e-5 * float(np.abs(ref_scores).max()))
    flipped = 0
    for name, b in ref.items():
        a = fast[name]
        if name.startswith("relu"):
            differ = (a > 0) != (b > 0)
            near_zero = np.maximum(a, b)[differ]
            assert (near_zero <= 1e-5 * float(b.max())).all(), name
        else:
            differ = a != b
        flipped += int(differ.sum())
    assert flipped <= 10, flipped


def test_reference_mode_runs_every_layer_itself(monkeypatch):
    """No conv+ReLU fusion and no in-place layers in reference mode: every ReLU computes
    its own output (a fresh array) and no layer is told to overwrite its input."""
    net = minicnn.vgg_from_config([4, 4, "M", 8, "M"], num_classes=5, input_size=(16, 16),
                                  fc_sizes=(8,), seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    relus = [name for name, layer in net if isinstance(layer, minicnn.ReLU)]
    calls = []
    real = functional.relu_forward
    monkeypatch.setattr(functional, "relu_forward",
                        lambda x, out=None: calls.append(out is None) or real(x, out=out))
    net.forward(x)
    fast_calls = list(calls)
    calls.clear()
    with minicnn.reference_mode():
        net.forward(x)
    assert calls == [True] * len(relus)          # each ReLU, into a new array
    assert len(fast_calls) < len(relus) or not all(fast_calls)   # fused or in place
