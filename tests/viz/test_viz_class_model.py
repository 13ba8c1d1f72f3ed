"""Class model visualisation: objective, its gradient, ascent, determinism."""
import numpy as np
import pytest

from minicnn.viz import class_model, objective_and_gradient

from conftest import linear_net, tiny_vgg

# the paper's bare procedure: no jitter, no blur, the exact zero start
PLAIN = dict(jitter=0, blur_every=0, init_noise=0.0)


def test_objective_and_l2_gradient_in_closed_form():
    net = linear_net()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    w, b = net["fc"].params["weight"], net["fc"].params["bias"]
    lam = 0.3
    obj, grad, scores = objective_and_gradient(net, x, [2, 0], lam)
    s = np.array([w[2] @ x[0].ravel() + b[2], w[0] @ x[1].ravel() + b[0]])
    np.testing.assert_allclose(scores, s, rtol=1e-5)
    np.testing.assert_allclose(obj, s - lam * (x.astype(np.float64) ** 2).sum(axis=(1, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(grad, w[[2, 0]].reshape(x.shape) - 2 * lam * x, rtol=1e-5,
                               atol=1e-6)
    _, grad0, _ = objective_and_gradient(net, x, [2, 0], 0.0)
    np.testing.assert_allclose(grad - grad0, -2 * lam * x, rtol=1e-5, atol=1e-6)


def test_gradient_matches_centred_differences_on_a_relu_net():
    net = tiny_vgg()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    lam, d = 0.05, rng.standard_normal(x.shape).astype(np.float32)
    _, grad, _ = objective_and_gradient(net, x, [1], lam)
    eps = 1e-3
    up = objective_and_gradient(net, x + eps * d, [1], lam)[0]
    down = objective_and_gradient(net, x - eps * d, [1], lam)[0]
    numeric = (up - down) / (2 * eps)
    np.testing.assert_allclose(numeric, [np.sum(grad * d)], rtol=2e-2)


def test_plain_ascent_increases_the_objective_monotonically():
    net = linear_net()
    lam, step, steps = 0.5, 0.1, 30
    res = class_model(net, [0, 1, 2], steps=steps, step=step, lam=lam, normalize=False, **PLAIN)
    assert res.x.shape == (3, 3, 4, 5)
    assert (np.diff(res.history, axis=0) > 0).all()
    # x_{t+1} = x_t + step (w - 2 lam x_t) from 0: x_t = w / (2 lam) (1 - (1 - 2 lam step)^t)
    w = net["fc"].params["weight"].reshape(3, 3, 4, 5)
    want = w / (2 * lam) * (1 - (1 - 2 * lam * step) ** steps)
    np.testing.assert_allclose(res.x, want, rtol=1e-4, atol=1e-5)


def test_regularised_ascent_raises_the_class_score_from_the_zero_image():
    net = tiny_vgg()
    zero = net.forward(np.zeros((1, 3, 16, 16), np.float32))[0]
    res = class_model(net, [0, 2], steps=25, step=0.05, lam=0.01, jitter=1, blur_every=4,
                      blur_sigma=0.5, decay=1e-3, norm_pct=5, seed=0)
    assert (res.scores > zero[[0, 2]] + 1.0).all()
    assert res.history.shape == (25, 2) and np.isfinite(res.x).all()


def test_same_seed_same_image_other_seed_other_image():
    net = tiny_vgg()
    kw = dict(steps=8, step=0.1, lam=0.01, jitter=2, blur_every=2)
    a = class_model(net, [1], seed=3, **kw).x
    b = class_model(net, [1], seed=3, **kw).x
    c = class_model(net, [1], seed=4, **kw).x
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batch_equals_one_class_at_a_time_without_jitter():
    net = tiny_vgg()
    kw = dict(steps=5, step=0.1, lam=0.01, blur_every=2, jitter=0)
    both = class_model(net, [0, 2], **kw).x
    np.testing.assert_allclose(both[1], class_model(net, [2], **kw).x[0], rtol=1e-4, atol=1e-5)


def test_bad_options_are_refused():
    net = linear_net()
    with pytest.raises(ValueError, match="decay"):
        class_model(net, [0], steps=1, decay=1.5)
    with pytest.raises(ValueError, match="no classes"):
        class_model(net, [], steps=1)


def test_start_noise_escapes_a_dead_zero_image():
    """All first-layer biases negative: every first ReLU is off at the zero image, the
    gradient there is exactly zero and plain ascent never moves; seeded start noise
    breaks the tie and the class score rises."""
    net = tiny_vgg()
    net["conv1_1"].params["bias"] = -np.abs(net["conv1_1"].params["bias"]) - 0.05
    stuck = class_model(net, [1], steps=5, step=0.1, lam=0.01, **PLAIN)
    assert not stuck.x.any() and np.all(stuck.history == stuck.history[0])
    moved = class_model(net, [1], steps=30, step=0.1, lam=0.01, jitter=0, blur_every=0,
                        init_noise=0.01, seed=3)
    assert moved.history[-1, 0] > moved.history[0, 0]
    again = class_model(net, [1], steps=30, step=0.1, lam=0.01, jitter=0, blur_every=0,
                        init_noise=0.01, seed=3)
    np.testing.assert_array_equal(moved.x, again.x)


@pytest.mark.parametrize("objective", ["softmax", "log-softmax"])
def test_softmax_objectives_match_finite_differences(objective):
    """On S = W x + b the objective is computable in float64 without the engine: its
    centred differences must equal the engine's gradient."""
    from minicnn.viz.class_model import softmax
    net = linear_net(seed=3)
    w = net["fc"].params["weight"].astype(np.float64)
    b = net["fc"].params["bias"].astype(np.float64)
    rng = np.random.default_rng(2)
    x = (0.3 * rng.standard_normal((2, 3, 4, 5))).astype(np.float32)
    classes = [1, 2]

    def exact(xx):
        p = softmax(xx.reshape(2, -1).astype(np.float64) @ w.T + b)
        pc = p[[0, 1], classes]
        return pc if objective == "softmax" else np.log(pc)

    obj, grad, scores = objective_and_gradient(net, x, classes, 0.0, objective)
    np.testing.assert_allclose(obj, exact(x), rtol=1e-5)
    eps = 1e-3
    numeric = np.zeros(x.shape)
    for idx in np.ndindex(x.shape[1:]):
        for n in range(2):
            up, down = x.astype(np.float64).copy(), x.astype(np.float64).copy()
            up[(n,) + idx] += eps
            down[(n,) + idx] -= eps
            numeric[(n,) + idx] = (exact(up)[n] - exact(down)[n]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5 * np.abs(numeric).max())


def test_softmax_ascent_raises_the_probability():
    net = linear_net(seed=1)
    res = class_model(net, [0, 1, 2], steps=40, step=0.05, lam=0.0, objective="softmax",
                      **PLAIN)
    from minicnn.viz.class_model import softmax
    p = softmax(res.logits)
    assert (p[np.arange(3), [0, 1, 2]] > 0.9).all()
    with pytest.raises(ValueError, match="unknown objective"):
        class_model(net, [0], steps=1, objective="probability")
