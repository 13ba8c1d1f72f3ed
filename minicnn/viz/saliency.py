"""Image-specific class saliency (Simonyan et al. 2013, Sect. 3).

    w = dS_c / dI at the image I0         (one backward pass of the class score S_c,
                                           the unnormalised score, never the softmax)
    M[i, j] = max_k |w[k, i, j]|

``rule`` picks the backward pass: "gradient" is the paper's map; "deconvnet" and
"guided" send the same one-hot class signal back with the other ReLU rules (Sect. 4).

Extras, each optional:
- SmoothGrad (Smilkov et al. 2017): the signal averaged over ``n`` noisy copies of the
  input, noise sigma = ``noise`` * (max - min) of that input; the map is max |average|.
- Crops of a frame larger than the input: five (the four corners and the centre) or the
  paper's ten (those and their mirrors). The class score is the mean over the crops; the
  map and signal are blended by coverage: each crop's values weigh 1 in its middle and
  fall linearly to near 0 over its outer eighth, so no crop edge shows as a seam.
  Crops and noisy copies run in batches that fit a memory budget.
"""
from dataclasses import dataclass, replace
import math

import numpy as np

from ..backend import get_array_module, to_numpy
from ..functional import RULES
from .attribution import (METHODS, MethodSettings, _classes_for, attribute, class_signal,
                          smooth_signal)
from .batching import examples_per_batch

# memory for one batch of crops or noisy copies (a VGG16 at 224 px: one image a batch)
BATCH_BYTES = 192 * 2**20
CROP_COUNTS = (5, 10)


@dataclass(frozen=True)
class SaliencySettings:
    """The defaults the saliency functions, the tools (--method, --smoothgrad, --noise,
    --seed, --crops), the evaluation and the explorer share. rule: "gradient" (the
    paper), "deconvnet" or "guided"; smoothgrad: noisy samples (0: off); noise: their
    sigma as a fraction of the input's range; seed: of that noise; crops: "auto", 1, 5
    or 10 (see :func:`minicnn.viz.inputs.load_views`)."""
    rule: str = "gradient"
    smoothgrad: int = 0
    noise: float = 0.15
    seed: int = 0
    crops: str = "auto"


SALIENCY = SaliencySettings()


@dataclass
class Saliency:
    """Results for a batch of N images.

    signal  (N, C, H, W) float32 input-space signal of the chosen pass and class
    map     (N, H, W) float32 saliency map M = max over channels |signal|
            (crops: the blend of the crop maps)
    classes (N,) int class indices
    scores  (N,) float unnormalised class scores S_c (crops: mean over crops)
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


def check_method(name):
    """A backward rule ("gradient", "deconvnet", "guided") or a registered method of
    :mod:`minicnn.viz.attribution`; ValueError naming the choices otherwise."""
    if name not in RULES and name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def _options(options, smoothgrad, noise, seed):
    return replace(options or MethodSettings(), smoothgrad=int(smoothgrad), noise=float(noise),
                   seed=int(seed))


def saliency(net, x, classes=None, rule=SALIENCY.rule, smoothgrad=SALIENCY.smoothgrad,
             noise=SALIENCY.noise, seed=SALIENCY.seed, options=None):
    """Saliency of a batch x (N, C, H, W) at the network input size.

    classes: None (top-1 of each image) or N class indices. rule: "gradient" (the
    paper), "deconvnet" or "guided", or a descendant ("gradcam", "integrated_gradients",
    "occlusion", "gradient_x_input"; their options in ``options``, a
    :class:`~minicnn.viz.attribution.MethodSettings`). smoothgrad: number of noisy
    samples (0: off), noise: sigma as a fraction of the input range. Returns a
    :class:`Saliency` (NumPy arrays; Grad-CAM's and occlusion's signal has one channel)."""
    check_method(rule)
    x = np.asarray(to_numpy(x), np.float32)
    if x.ndim != 4:
        raise ValueError(f"saliency expects a (N, C, H, W) batch, got shape {x.shape}")
    if rule not in RULES:       # a descendant of the paper's map (minicnn.viz.attribution)
        logits = to_numpy(net.forward(x)).astype(np.float64)
        classes = _classes_for(logits, classes)
        signal, map_ = attribute(net, x, classes, rule, _options(options, smoothgrad, noise, seed))
        idx = np.arange(len(classes))
        return Saliency(signal=signal, map=map_, classes=classes, scores=logits[idx, classes],
                        probs=softmax(logits)[idx, classes])
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


def _starts(frame, crop):
    """Window starts along one axis: both ends, and for a frame more than twice the crop
    (where the corner windows and the centre one would leave gaps) evenly spaced starts
    between them at most half a crop apart."""
    span = frame - crop
    if span <= crop:
        return [0, span]
    n = math.ceil(span / (crop / 2)) + 1
    return [round(span * i / (n - 1)) for i in range(n)]


def crop_windows(frame_hw, crop_hw, count=10):
    """[(top, left, mirrored)] of the crops: the five windows (centre first: it decides
    the provisional class, see :func:`crop_saliency`), then, for ``count`` 10, their
    mirrors. A frame more than twice the crop along a side (a panorama wider than about
    2.6:1) gets windows between the corners too, so that the crops cover every pixel."""
    if count not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {count}")
    boxes = crop_boxes(frame_hw, crop_hw)
    boxes = boxes[4:] + boxes[:4]
    if any(f - c > c for f, c in zip(frame_hw, crop_hw)):
        ys, xs = (_starts(f, c) for f, c in zip(frame_hw, crop_hw))
        boxes = boxes[:1] + [(t, l) for t in ys for l in xs]
    return [(t, l, False) for t, l in boxes] + ([(t, l, True) for t, l in boxes]
                                                if count == 10 else [])


def ten_crops(frame, crop_hw):
    """(C, H, W) frame -> (10, C, h, w) crops: five windows, then their mirrors."""
    h, w = crop_hw
    crops = [frame[:, t:t + h, l:l + w] for t, l in crop_boxes(frame.shape[1:], crop_hw)]
    return np.stack(crops + [c[:, :, ::-1] for c in crops]).astype(np.float32)


def _cut(frame, window, crop_hw):
    t, l, mirrored = window
    h, w = crop_hw
    crop = frame[:, t:t + h, l:l + w]
    return crop[:, :, ::-1] if mirrored else crop


def blend_weight(crop_hw):
    """(h, w) weight of a crop's pixels in the blend: 1 in the middle, falling linearly to
    1/(2r) at the edge over r = 1/8 of the side, so a crop's edge inside the frame, where
    the maps of neighbouring crops differ, leaves no step (a seam)."""
    def ramp(n):
        r = max(1.0, n / 8.0)
        i = np.arange(n) + 0.5
        return np.minimum(1.0, np.minimum(i, n - i) / r)
    h, w = crop_hw
    return np.outer(ramp(h), ramp(w))


def blend(frame_hw, windows, crop_hw, values, weight=None):
    """Crop values (K, ..., h, w) (mirrored crops already mirrored back) -> (..., H, W):
    the ``weight``-weighted (default :func:`blend_weight`) mean of the crops covering each
    frame pixel."""
    h, w = crop_hw
    weight = blend_weight(crop_hw) if weight is None else weight
    total = np.zeros(values.shape[1:-2] + tuple(frame_hw), np.float64)
    weights = np.zeros(tuple(frame_hw), np.float64)
    for (t, l, _), v in zip(windows, values):
        total[..., t:t + h, l:l + w] += v * weight
        weights[t:t + h, l:l + w] += weight
    return total / np.maximum(weights, 1e-12)


def crop_saliency(net, frame, cls=None, rule=SALIENCY.rule, smoothgrad=SALIENCY.smoothgrad,
                  noise=SALIENCY.noise, seed=SALIENCY.seed, crops=10, batch_size=None,
                  options=None):
    """Saliency of one (C, H, W) frame at least as large as the network input, from
    ``crops`` crops (5: corners and centre; 10: and their mirrors, the paper's protocol)
    blended by :func:`blend`. cls: class index or None (the top-1 of the mean crop
    scores). batch_size: crops per pass (default: as many as :data:`BATCH_BYTES` hold).

    With cls None and crops in several batches, the first batch's top-1 is provisional:
    each batch's backward uses it right after its forward, and only if the mean over all
    crops ranks another class first are the signals computed again for that one. Returns
    a :class:`Saliency` with N = 1 in the frame's size."""
    check_method(rule)
    frame = np.asarray(to_numpy(frame), np.float32)
    crop_hw = tuple(net.preprocessing.input_size)
    windows = crop_windows(frame.shape[1:], crop_hw, crops)
    if batch_size is None:
        batch_size = examples_per_batch(net, BATCH_BYTES)
    batches = [list(range(a, min(a + batch_size, len(windows))))
               for a in range(0, len(windows), batch_size)]
    logits = np.zeros((len(windows), net.num_classes))
    signals, maps = [None] * len(windows), np.zeros((len(windows),) + crop_hw, np.float32)

    def signals_of(c, batch, forward_done):
        """(signals, maps) of the crops ``batch`` for class c."""
        x = np.stack([_cut(frame, windows[k], crop_hw) for k in batch])
        classes = np.full(len(batch), int(c))
        if rule not in RULES:
            return attribute(net, x, classes, rule, _options(options, smoothgrad, noise, seed))
        if smoothgrad:
            sig = smooth_signal(net, x, classes, rule, smoothgrad, noise, seed)
        else:
            if not forward_done:
                net.forward(x)
            seed_signal = np.zeros((len(batch), net.num_classes), np.float32)
            seed_signal[:, int(c)] = 1.0
            sig = to_numpy(net.backward(seed_signal, rule=rule)).astype(np.float32)
        return sig, np.abs(sig).max(axis=1)

    def keep(batch, result):
        for k, sig, m in zip(batch, *result):
            signals[k], maps[k] = sig, m

    guess = cls
    for batch in batches:
        x = np.stack([_cut(frame, windows[k], crop_hw) for k in batch])
        logits[batch] = to_numpy(net.forward(x)).astype(np.float64)
        if guess is None:
            guess = int(logits[batch].mean(axis=0).argmax())
        keep(batch, signals_of(guess, batch, forward_done=True))
    mean_logits = logits.mean(axis=0, keepdims=True)
    final = int(mean_logits.argmax()) if cls is None else int(cls)
    if final != guess:
        for batch in batches:
            keep(batch, signals_of(final, batch, forward_done=False))
    signals = np.stack(signals)
    for k, (_, _, mirrored) in enumerate(windows):
        if mirrored:
            signals[k] = signals[k][:, :, ::-1]
            maps[k] = maps[k][:, ::-1]
    signal = blend(frame.shape[1:], windows, crop_hw, signals)
    crop_map = blend(frame.shape[1:], windows, crop_hw, maps)
    return Saliency(signal=signal[None].astype(np.float32), map=crop_map[None].astype(np.float32),
                    classes=np.array([final]), scores=mean_logits[:, final],
                    probs=softmax(mean_logits)[:, final])


def tencrop_saliency(net, frame, cls=None, rule=SALIENCY.rule, smoothgrad=SALIENCY.smoothgrad,
                     noise=SALIENCY.noise, seed=SALIENCY.seed, options=None):
    """The paper's ten crops: :func:`crop_saliency` with ``crops=10``."""
    return crop_saliency(net, frame, cls, rule, smoothgrad, noise, seed, crops=10,
                         options=options)


def split(result):
    """A batch Saliency -> list of N single-image Saliency objects."""
    return [Saliency(signal=result.signal[i:i + 1], map=result.map[i:i + 1],
                     classes=result.classes[i:i + 1], scores=result.scores[i:i + 1],
                     probs=result.probs[i:i + 1]) for i in range(len(result.classes))]


def saliency_of_views(net, views, classes=None, rule=SALIENCY.rule, smoothgrad=SALIENCY.smoothgrad,
                      noise=SALIENCY.noise, seed=SALIENCY.seed, options=None):
    """Saliency of ``views`` (list of (View, crops) from ``load_views``; crops 1: the
    network view, 5 or 10: crops of a larger frame).

    classes: None (top-1 each) or one class index per view. Views at the input size run
    in batches; cropped views one by one. Returns one single-image Saliency per view,
    in the view's own frame."""
    classes = [None] * len(views) if classes is None else list(classes)
    results = [None] * len(views)
    plain = [i for i, (_, crops) in enumerate(views) if crops == 1]
    size = examples_per_batch(net, BATCH_BYTES)
    for batch in (plain[a:a + size] for a in range(0, len(plain), size)):
        x = np.stack([views[i][0].x for i in batch]).astype(np.float32)
        cls = None
        if any(classes[i] is not None for i in batch):
            logits = to_numpy(net.forward(x)).argmax(axis=1)
            cls = [classes[i] if classes[i] is not None else int(logits[k])
                   for k, i in enumerate(batch)]
        for i, r in zip(batch, split(saliency(net, x, cls, rule, smoothgrad, noise, seed,
                                              options))):
            results[i] = r
    for i, (view, crops) in enumerate(views):
        if crops > 1:
            results[i] = crop_saliency(net, view.x, classes[i], rule, smoothgrad, noise, seed,
                                       crops=crops, options=options)
    return results
