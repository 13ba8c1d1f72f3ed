"""Saliency and unit reconstruction against closed-form answers (hand-built nets)."""
import numpy as np
import pytest

import minicnn
from minicnn.viz import saliency, tencrop_saliency, unit_reconstruction
from minicnn.viz.deconv import keep_strongest
from minicnn.viz.saliency import crop_boxes, smooth_signal, ten_crops

from conftest import linear_net, relu_net, tiny_vgg


def test_linear_net_saliency_is_abs_weight_row_for_every_rule():
    net = linear_net()
    x = np.random.default_rng(1).standard_normal((4, 3, 4, 5)).astype(np.float32)
    w = net["fc"].params["weight"]
    logits = x.reshape(4, -1) @ w.T + net["fc"].params["bias"]
    for rule in minicnn.RULES:          # no ReLU: the three passes coincide
        res = saliency(net, x, rule=rule)
        np.testing.assert_array_equal(res.classes, logits.argmax(axis=1))   # top-1 default
        want = w[res.classes].reshape(4, 3, 4, 5)
        np.testing.assert_allclose(res.signal, want, rtol=1e-6)
        np.testing.assert_allclose(res.map, np.abs(want).max(axis=1), rtol=1e-6)
        np.testing.assert_allclose(res.scores, logits[np.arange(4), res.classes], rtol=1e-5)
    res = saliency(net, x, classes=[2, 0, 1, 2])
    np.testing.assert_allclose(res.signal, w[[2, 0, 1, 2]].reshape(4, 3, 4, 5), rtol=1e-6)


def test_three_rules_differ_only_by_the_relu_rule_in_closed_form():
    net = relu_net()
    x = np.array([1, 0, 0, 0], np.float32).reshape(1, 1, 2, 2)
    w1 = net["fc1"].params["weight"]
    expected = {"gradient": [1, 0, -1], "deconvnet": [1, 1, 0], "guided": [1, 0, 0]}
    maps = {}
    for rule, r in expected.items():
        res = saliency(net, x, classes=[0], rule=rule)
        want = (np.array(r, np.float32) @ w1).reshape(1, 1, 2, 2)
        np.testing.assert_array_equal(res.signal, want)
        maps[rule] = res.map
    # the three pictures really differ (users' complaint no. 1)
    assert not np.array_equal(maps["gradient"], maps["deconvnet"])
    assert not np.array_equal(maps["deconvnet"], maps["guided"])
    assert not np.array_equal(maps["gradient"], maps["guided"])


def test_smoothgrad_of_a_linear_net_is_the_gradient():
    net = linear_net()
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    sig = smooth_signal(net, x, [1, 2], samples=7, noise=0.2, seed=0, batch_size=3)
    np.testing.assert_allclose(sig, net["fc"].params["weight"][[1, 2]].reshape(2, 3, 4, 5),
                               rtol=1e-5)
    again = saliency(net, x, [1, 2], smoothgrad=7, seed=0)
    np.testing.assert_allclose(again.signal, sig, rtol=1e-6)


def test_smoothgrad_is_seeded():
    net = tiny_vgg()
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    a = saliency(net, x, smoothgrad=4, seed=5).signal
    b = saliency(net, x, smoothgrad=4, seed=5).signal
    c = saliency(net, x, smoothgrad=4, seed=6).signal
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ten_crop_windows_and_mirror_average_in_closed_form():
    assert crop_boxes((6, 7), (4, 5)) == [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]
    frame = np.arange(3 * 6 * 7, dtype=np.float32).reshape(3, 6, 7)
    crops = ten_crops(frame, (4, 5))
    np.testing.assert_array_equal(crops[1], frame[:, 0:4, 2:7])
    np.testing.assert_array_equal(crops[6], frame[:, 0:4, 2:7][:, :, ::-1])
    # frame == input size: every crop is the image or its mirror, so for a linear net
    # the signal is (W_c + mirror(W_c)) / 2 and the score the mean of the two scores
    net = linear_net()
    x = np.random.default_rng(4).standard_normal((3, 4, 5)).astype(np.float32)
    res = tencrop_saliency(net, x, cls=1)
    w = net["fc"].params["weight"][1].reshape(3, 4, 5)
    np.testing.assert_allclose(res.signal[0], (w + w[:, :, ::-1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.map[0], (np.abs(w).max(0) + np.abs(w).max(0)[:, ::-1]) / 2,
                               rtol=1e-5)
    b = net["fc"].params["bias"][1]
    want = (np.sum(w * x) + np.sum(w * x[:, :, ::-1])) / 2 + b
    np.testing.assert_allclose(res.scores[0], want, rtol=1e-4)


def test_tencrop_covers_a_larger_frame():
    net = tiny_vgg()
    frame = np.random.default_rng(5).standard_normal((3, 19, 23)).astype(np.float32)
    res = tencrop_saliency(net, frame)
    assert res.signal.shape == (1, 3, 19, 23) and res.map.shape == (1, 19, 23)
    assert np.isfinite(res.map).all()


def test_blend_leaves_no_seam_where_crops_disagree():
    """Five crops whose maps are constants 0..4: a plain coverage mean jumps where a crop
    ends inside the frame; the blend moves much less between
    neighbouring pixels (1/8 of the mean's jump), and keeps a crop's own value where it alone covers the frame."""
    from minicnn.viz.saliency import blend, crop_windows
    frame_hw, crop_hw = (256, 341), (224, 224)
    windows = crop_windows(frame_hw, crop_hw, 5)
    values = np.stack([np.full(crop_hw, float(k)) for k in range(5)])
    blended = blend(frame_hw, windows, crop_hw, values)
    plain = blend(frame_hw, windows, crop_hw, values, weight=np.ones(crop_hw))
    step = lambda m: max(np.abs(np.diff(m, axis=0)).max(), np.abs(np.diff(m, axis=1)).max())
    assert step(plain) >= 2.0                       # the seam the blend removes
    assert step(blended) <= 0.25                    # a ramp over the crops' outer 28 px
    for (t, l, _), k in zip(windows, range(5)):     # a corner only one crop covers
        if (t, l) == (0, 0):
            assert blended[0, 0] == pytest.approx(k)


@pytest.mark.parametrize("frame_hw", [(256, 341), (256, 768), (900, 256), (224, 224)])
def test_the_crops_cover_every_pixel_of_the_frame(frame_hw):
    """Corners and centre for a photo-shaped frame (five windows); a panorama's frame gets
    windows between the corners, so no band of the map is left without a crop."""
    from minicnn.viz.saliency import crop_windows
    windows = crop_windows(frame_hw, (224, 224), 5)
    covered = np.zeros(frame_hw, bool)
    for t, l, _ in windows:
        assert 0 <= t <= frame_hw[0] - 224 and 0 <= l <= frame_hw[1] - 224
        covered[t:t + 224, l:l + 224] = True
    assert covered.all()
    if max(frame_hw) <= 2 * 224 + 224:
        assert len(windows) == 5


def test_crops_in_batches_of_one_equal_one_batch_also_when_the_first_guess_is_wrong():
    """With cls None, batches of one crop start from the centre crop's top-1; a frame whose
    centre crop ranks another class first than the mean of the crops must still give the
    mean's top-1 and the same signals as all crops in one batch."""
    from minicnn.viz.saliency import crop_saliency, crop_windows, _cut
    net = tiny_vgg(seed=3)
    found = None
    for seed in range(50):
        frame = 3 * np.random.default_rng(seed).standard_normal((3, 40, 48)).astype(np.float32)
        windows = crop_windows(frame.shape[1:], (16, 16), 5)
        logits = net.forward(np.stack([_cut(frame, w, (16, 16)) for w in windows]))
        if logits[0].argmax() != logits.mean(axis=0).argmax():
            found = frame
            break
    assert found is not None
    one = crop_saliency(net, found, crops=5, batch_size=1)
    together = crop_saliency(net, found, crops=5, batch_size=5)
    assert one.classes[0] == together.classes[0] == int(logits.mean(axis=0).argmax())
    np.testing.assert_allclose(one.signal, together.signal, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one.map, together.map, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one.scores, together.scores, rtol=1e-6)


def test_keep_strongest_keeps_exactly_one_activation():
    a = np.random.default_rng(6).standard_normal((2, 4, 3, 3)).astype(np.float32)
    sig, pos, val = keep_strongest(a, [1, 3])
    for i, k in enumerate([1, 3]):
        assert np.count_nonzero(sig[i]) == 1
        assert sig[i, k][pos[i]] == a[i, k].max() == val[i]


def test_unit_reconstruction_of_a_hidden_unit_in_closed_form():
    net = relu_net()
    x = np.array([1, 0, 0, 0], np.float32).reshape(1, 1, 2, 2)
    rec = unit_reconstruction(net, x, "relu1", "top")      # h = [1, -1, 2]: unit 2 wins
    assert int(rec.channels[0]) == 2 and rec.values[0] == 2.0
    w1 = net["fc1"].params["weight"]
    for rule in minicnn.RULES:
        np.testing.assert_array_equal(rec.signals[rule], (2.0 * w1[2]).reshape(1, 1, 2, 2))


def test_unit_reconstruction_rules_on_a_conv_net():
    net = tiny_vgg()
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    rec = unit_reconstruction(net, x, "relu2_1", 3)
    assert set(rec.signals) == set(minicnn.RULES)
    assert all(s.shape == x.shape for s in rec.signals.values())
    # a positive unit at a ReLU output: DeconvNet and guided see a non-negative signal
    # at that ReLU; the passes differ below it only through the ReLU rule
    act = net.forward(x, until="relu2_1")
    sig, _, _ = keep_strongest(act, [3, 3])
    np.testing.assert_allclose(rec.signals["gradient"],
                               net.backward(sig, "gradient", start="relu2_1"), rtol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        unit_reconstruction(net, x, "relu2_1", 99)
    with pytest.raises(ValueError, match="close matches"):
        unit_reconstruction(net, x, "relu2_l", 0)


def test_smoothgrad_draws_the_same_noise_in_any_batch_size():
    """The noisy copies are drawn a batch at a time (memory for one batch only): the
    signal is the same as with all copies in one batch."""
    net = tiny_vgg()
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    one = smooth_signal(net, x, [0, 2], samples=6, seed=3, batch_size=1)
    all_at_once = smooth_signal(net, x, [0, 2], samples=6, seed=3, batch_size=6)
    np.testing.assert_allclose(one, all_at_once, rtol=1e-5, atol=1e-7)
