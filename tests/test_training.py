"""Loss, optimiser and one real training step."""
import numpy as np
import pytest

import minicnn
from minicnn.training import (SGD, DataParallel, learning_rate, softmax_cross_entropy,
                              train_step)


def test_softmax_cross_entropy_against_formula_and_finite_differences():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    loss, grad = softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(5), labels]).mean(), rel=1e-12)
    eps, numeric = 1e-6, np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        d = np.zeros_like(logits)
        d[idx] = eps
        numeric[idx] = (softmax_cross_entropy(logits + d, labels)[0]
                        - softmax_cross_entropy(logits - d, labels)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss, grad = softmax_cross_entropy(np.array([[1e4, 0.0, -1e4]], np.float32), np.array([1]))
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(1e4, rel=1e-6)


def test_sgd_update_rule():
    net = minicnn.Net([("fc", minicnn.Linear(2, 1))])
    w0 = np.array([[1.0, -2.0]], np.float32)
    net["fc"].params["weight"] = w0.copy()
    opt = SGD(net, momentum=0.5, weight_decay=0.1)
    g = np.array([[0.5, 0.5]], np.float32)
    for _ in range(2):
        net["fc"].grads = {"weight": g, "bias": np.zeros(1, np.float32)}
        opt.step(lr=0.1)
    # by hand: v1 = g + 0.1 w0; w1 = w0 - 0.1 v1; v2 = 0.5 v1 + g + 0.1 w1; w2 = w1 - 0.1 v2
    v1 = g + 0.1 * w0
    w1 = w0 - 0.1 * v1
    v2 = 0.5 * v1 + g + 0.1 * w1
    np.testing.assert_allclose(net["fc"].params["weight"], w1 - 0.1 * v2, rtol=1e-6)
    assert np.all(net["fc"].params["bias"] == 0)   # no decay on biases, zero grads


def test_learning_rate_schedule():
    lrs = [learning_rate(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))      # cosine decays
    assert learning_rate(100, 100, 1.0, 10) == pytest.approx(0.0, abs=1e-12)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    net = minicnn.vgg_from_config([8, "M", 16, "M"], num_classes=4, input_size=(16, 16),
                                  fc_sizes=(32,), dropout=0.0, seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 4, 16)
    before = softmax_cross_entropy(net.forward(x), labels)[0]
    opt = SGD(net, momentum=0.0, weight_decay=0.0)
    train_step(net, opt, x, labels, lr=1e-3)
    after = softmax_cross_entropy(net.forward(x), labels)[0]
    assert after < before


def test_sgd_state_round_trip_continues_identically():
    """Saving and loading the momentum buffers (a resumed run) gives the same next step."""
    def fresh():
        net = minicnn.Net([("fc", minicnn.Linear(3, 2))])
        net["fc"].params["weight"] = np.arange(6, dtype=np.float32).reshape(2, 3)
        return net
    grads = {"weight": np.ones((2, 3), np.float32), "bias": np.ones(2, np.float32)}
    a = fresh()
    opt_a = SGD(a, momentum=0.9, weight_decay=0.01)
    a["fc"].grads = dict(grads)
    opt_a.step(0.1)
    b = fresh()
    b.load_state_dict(a.state_dict())
    opt_b = SGD(b, momentum=0.9, weight_decay=0.01)
    opt_b.load_state(opt_a.state())
    for net, opt in ((a, opt_a), (b, opt_b)):
        net["fc"].grads = dict(grads)
        opt.step(0.1)
    np.testing.assert_array_equal(a["fc"].params["weight"], b["fc"].params["weight"])


def _winograd_sized_net():
    # 16 channels: the convs after the first take the Winograd (channels-last) path
    return minicnn.vgg_from_config([16, "M", 16, 16, "M"], num_classes=5, input_size=(12, 12),
                                   fc_sizes=(24,), dropout=0.0, seed=3)


@pytest.mark.parametrize("threads, batch", [(2, 8), (3, 7), (2, 1)])
def test_data_parallel_matches_the_whole_batch_pass(two_threads, threads, batch):
    """Shards in threads (uneven, or fewer examples than threads) give the whole batch's
    loss, logits and parameter gradients."""
    rng = np.random.default_rng(threads * 10 + batch)
    x = rng.normal(size=(batch, 3, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 5, batch)
    net = _winograd_sized_net().train()
    logits = net.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    net.backward(dlogits, "gradient", param_grads=True)
    expected = {key: layer.grads[p].copy() for key, layer, p in net.parameters()}

    twin = _winograd_sized_net()
    got_loss, got_logits = DataParallel(twin, threads).forward_backward(x, labels)
    assert got_loss == pytest.approx(loss, rel=1e-6)
    # float32, and the GEMMs of a smaller batch sum in another order: rounding-level
    np.testing.assert_allclose(got_logits, logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    for key, layer, p in twin.parameters():
        scale = np.abs(expected[key]).max()
        np.testing.assert_allclose(layer.grads[p], expected[key], rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=key)


def test_replicas_share_parameters_and_follow_updates(two_threads):
    net = _winograd_sized_net()
    parallel = DataParallel(net, 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 12, 12)).astype(np.float32)
    opt = SGD(net, momentum=0.9, weight_decay=0.0)
    train_step(net, opt, x, np.arange(4), lr=0.1, parallel=parallel)
    replica = parallel.nets[1]
    # after the update, the replica computes with the new weights
    np.testing.assert_array_equal(replica.eval().forward(x), net.eval().forward(x))


def test_data_parallel_rejects_bad_threads_and_batches():
    with pytest.raises(ValueError, match="threads"):
        DataParallel(_winograd_sized_net(), 0)
    parallel = DataParallel(_winograd_sized_net(), 2)
    with pytest.raises(ValueError, match="non-empty batch"):
        parallel.forward_backward(np.zeros((0, 3, 12, 12), np.float32), np.zeros(0, int))
    with pytest.raises(ValueError, match="another net"):
        train_step(_winograd_sized_net(), None, np.zeros((1, 3, 12, 12), np.float32), [0], 0.1,
                   parallel)


def test_replica_dropout_masks_are_independent():
    """Each replica's dropout draws its own stream (not the original's, not each other's)."""
    net = minicnn.vgg_from_config([4, "M"], num_classes=3, input_size=(8, 8),
                                  fc_sizes=(64, 64), dropout=0.5, seed=0)
    replicas = [net] + [net.replica() for _ in range(2)]
    x = np.ones((1, 64), np.float32)          # the input of both dropouts (fc 64 -> 64)
    masks = []
    for replica in replicas:
        for name, layer in replica:
            if layer.kind == "dropout":
                layer.training = True
                masks.append(layer.forward(x) != 0)
    assert len(masks) == 6
    for i in range(len(masks)):
        for j in range(i):
            assert not np.array_equal(masks[i], masks[j]), (i, j)
