"""Image-specific class saliency (Simonyan et al. 2013, Sect. 3).

    w = dS_c / dI at the image I0         (one backward pass of the class score S_c,
                                           the unnormalised score, never the softmax)
    M[i, j] = max_k |w[k, i, j]|

``rule`` picks the backward pass: "gradient" is the paper's map; "deconvnet" and
"guided" send the same one-hot class signal back with the other ReLU rules (Sect. 4).

Extras, each optional:
- SmoothGrad (Smilkov et al. 2017): the signal averaged over ``n`` noisy copies of the
  input, noise sigma = ``noise`` * (max - min) of that input; the map is max |average|.
- Ten crops (the paper's protocol): the four corner crops, the centre crop and their
  mirrors of a frame larger than the input; the class score is the mean over the crops,
  the map the mean of the ten crop maps (mirrored back), the signal likewise.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, to_numpy
from ..functional import check_rule


@dataclass
class Saliency:
    """Results for a batch of N images.

    signal  (N, C, H, W) float32 input-space signal of the chosen pass and class
    map     (N, H, W) float32 saliency map M = max over channels |signal|
            (ten crops: mean of the crop maps)
    classes (N,) int class indices
    scores  (N,) float unnormalised class scores S_c (ten crops: mean over crops)
    probs   (N,) float softmax probability of the class (for the label only)
    """
    signal: np.ndarray
    map: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    probs: np.ndarray


def softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def saliency_map(signal):
    """(N, C, H, W) signal -> (N, H, W) max over channels of |signal|."""
    xp = get_array_module(signal)
    return xp.abs(signal).max(axis=1)


def class_signal(net, x, classes, rule="gradient"):
    """One forward and one backward: the input-space signal of class score S_c for each
    image. x (N, C, H, W); classes (N,) ints or None (top-1 per image).

    Returns (signal (N, C, H, W) on the net's device, logits (N, K) NumPy, classes (N,))."""
    check_rule(rule)
    logits = net.forward(x)
    xp = get_array_module(logits)
    logits_np = to_numpy(logits).astype(np.float64)
    classes = _classes_for(logits_np, classes)
    seed = xp.zeros(logits.shape, dtype=xp.float32)
    seed[xp.arange(logits.shape[0]), xp.asarray(classes)] = 1.0
    return net.backward(seed, rule=rule), logits_np, classes


def _classes_for(logits, classes):
    """classes (N,) ints, or None for the top-1 of each row of logits (N, K)."""
    classes = logits.argmax(axis=1) if classes is None else classes
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if classes.shape[0] != logits.shape[0]:
        raise ValueError(f"{classes.shape[0]} classes for a batch of {logits.shape[0]} images")
    return classes


def smooth_signal(net, x, classes, rule="gradient", samples=0, noise=0.15, seed=0,
                  batch_size=32):
    """SmoothGrad: mean of ``class_signal`` over ``samples`` noisy copies of each image
    (Gaussian noise, sigma = noise * (max - min) of the image). samples=0: plain signal.
    classes (N,) ints must be given. Returns (N, C, H, W) NumPy float32."""
    x = np.asarray(to_numpy(x), np.float32)
    if samples <= 0:
        return to_numpy(class_signal(net, x, classes, rule)[0]).astype(np.float32)
    rng = np.random.default_rng(seed)
    classes = np.asarray(classes, np.int64)
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        sigma = float(noise) * float(x[i].max() - x[i].min())
        noisy = x[i][None] + rng.standard_normal((samples,) + x.shape[1:]).astype(np.float32) \
            * np.float32(sigma)
        for start in range(0, samples, batch_size):
            chunk = noisy[start:start + batch_size]
            sig = class_signal(net, chunk, np.full(len(chunk), classes[i]), rule)[0]
            out[i] += to_numpy(sig).astype(np.float64).sum(axis=0)
    return (out / samples).astype(np.float32)


def saliency(net, x, classes=None, rule="gradient", smoothgrad=0, noise=0.15, seed=0):
    """Saliency of a batch x (N, C, H, W) at the network input size.

    classes: None (top-1 of each image) or N class indices. rule: "gradient" (the
    paper), "deconvnet" or "guided". smoothgrad: number of noisy samples (0: off), noise:
    sigma as a fraction of the input range. Returns a :class:`Saliency` (NumPy arrays)."""
    check_rule(rule)
    x = np.asarray(to_numpy(x), np.float32)
    if x.ndim != 4:
        raise ValueError(f"saliency expects a (N, C, H, W) batch, got shape {x.shape}")
    if smoothgrad:   # the clean image gives the scores and classes; only noisy copies go back
        logits = to_numpy(net.forward(x)).astype(np.float64)
        classes = _classes_for(logits, classes)
        signal = smooth_signal(net, x, classes, rule, smoothgrad, noise, seed)
    else:
        signal, logits, classes = class_signal(net, x, classes, rule)
        signal = to_numpy(signal).astype(np.float32)
    idx = np.arange(len(classes))
    return Saliency(signal=signal, map=to_numpy(saliency_map(signal)).astype(np.float32),
                    classes=classes, scores=logits[idx, classes],
                    probs=softmax(logits)[idx, classes])


def crop_boxes(frame_hw, crop_hw):
    """The five crop windows (top, left) of the ten-crop protocol: four corners, centre."""
    (fh, fw), (h, w) = frame_hw, crop_hw
    if fh < h or fw < w:
        raise ValueError(f"frame {fh}x{fw} is smaller than the crop {h}x{w}")
    return [(0, 0), (0, fw - w), (fh - h, 0), (fh - h, fw - w), ((fh - h) // 2, (fw - w) // 2)]


def ten_crops(frame, crop_hw):
    """(C, H, W) frame -> (10, C, h, w) crops: five windows, then their mirrors."""
    h, w = crop_hw
    crops = [frame[:, t:t + h, l:l + w] for t, l in crop_boxes(frame.shape[1:], crop_hw)]
    return np.stack(crops + [c[:, :, ::-1] for c in crops]).astype(np.float32)


def tencrop_saliency(net, frame, cls=None, rule="gradient", smoothgrad=0, noise=0.15, seed=0):
    """Saliency of one (C, H, W) frame at least as large as the network input, averaged
    over its ten crops and mirrors (Simonyan et al. 2013, Sect. 3.1). cls: class index or None (top-1 of
    the mean crop scores). Returns a :class:`Saliency` with N = 1 in the frame's size."""
    check_rule(rule)
    frame = np.asarray(to_numpy(frame), np.float32)
    h, w = net.preprocessing.input_size
    crops = ten_crops(frame, (h, w))
    logits = to_numpy(net.forward(crops)).astype(np.float64)
    mean_logits = logits.mean(axis=0, keepdims=True)
    if cls is None:
        cls = int(mean_logits.argmax())
    classes = np.full(len(crops), int(cls))
    if smoothgrad:
        signal = smooth_signal(net, crops, classes, rule, smoothgrad, noise, seed)
    else:
        signal = to_numpy(class_signal(net, crops, classes, rule)[0]).astype(np.float32)
    signal[5:] = signal[5:, :, :, ::-1]          # mirror back
    maps = np.abs(signal).max(axis=1)
    sig_sum = np.zeros(frame.shape, np.float64)
    map_sum = np.zeros(frame.shape[1:], np.float64)
    count = np.zeros(frame.shape[1:], np.float64)
    for k, (t, l) in enumerate(crop_boxes(frame.shape[1:], (h, w)) * 2):
        sig_sum[:, t:t + h, l:l + w] += signal[k]
        map_sum[t:t + h, l:l + w] += maps[k]
        count[t:t + h, l:l + w] += 1
    count = np.maximum(count, 1)
    return Saliency(signal=(sig_sum / count)[None].astype(np.float32),
                    map=(map_sum / count)[None].astype(np.float32),
                    classes=np.array([int(cls)]), scores=mean_logits[:, int(cls)],
                    probs=softmax(mean_logits)[:, int(cls)])


def split(result):
    """A batch Saliency -> list of N single-image Saliency objects."""
    return [Saliency(signal=result.signal[i:i + 1], map=result.map[i:i + 1],
                     classes=result.classes[i:i + 1], scores=result.scores[i:i + 1],
                     probs=result.probs[i:i + 1]) for i in range(len(result.classes))]


def saliency_of_views(net, views, classes=None, rule="gradient", smoothgrad=0, noise=0.15,
                      seed=0):
    """Saliency of ``views`` (list of (View, uses_tencrop) from ``load_views``).

    classes: None (top-1 each) or one class index per view. Views at the input size run
    as one batch; ten-crop views one by one. Returns one single-image Saliency per view,
    in the view's own frame."""
    classes = [None] * len(views) if classes is None else list(classes)
    results = [None] * len(views)
    batch = [i for i, (_, tc) in enumerate(views) if not tc]
    if batch:
        x = np.stack([views[i][0].x for i in batch]).astype(np.float32)
        cls = None
        if any(classes[i] is not None for i in batch):
            logits = to_numpy(net.forward(x)).argmax(axis=1)
            cls = [classes[i] if classes[i] is not None else int(logits[k])
                   for k, i in enumerate(batch)]
        for i, r in zip(batch, split(saliency(net, x, cls, rule, smoothgrad, noise, seed))):
            results[i] = r
    for i, (view, tc) in enumerate(views):
        if tc:
            results[i] = tencrop_saliency(net, view.x, classes[i], rule, smoothgrad, noise, seed)
    return results
