"""Deletion and insertion curves (Petsiuk et al. 2018, "RISE"): does the map rank the
pixels the network needs first?

Per image (:func:`evaluate_item`), for the network's top-1 class c and each method's map
of c (the registry's definitions, as ``localize``):

- pixels are ordered by the map, highest first; ties (the zeros of a clipped map, as
  Grad-CAM's and occlusion's) in a seeded random order, not by position, which would
  delete or insert the top rows first;
- deletion: the first k of them set to the baseline (0 at every network input, all
  channels) for k = 0, HW/steps, ..., HW; the curve is the softmax probability P_c at each
  k, starting at the image and ending at the baseline image;
- insertion: the same pixels put back, in the same order, into a blurred copy of the
  image (Gaussian, sigma = shorter side / 45 pixels, 5 at 224, per channel), ending at
  the image;
- the area under each curve by the trapezoid rule over the fraction of pixels in [0, 1]:
  low deletion AUC and high insertion AUC mean the map put the evidence first;
- the same curves for a random order (seeded by the image's index): the baseline any map
  must beat.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy
from ..viz.batching import examples_per_batch
from ..viz.saliency import BATCH_BYTES, softmax
from .localization import MapSettings, _scores, _view, method_maps
from .metrics import ci95

RANDOM = "random"
CURVES = ("deletion", "insertion")


@dataclass
class FaithfulnessSettings(MapSettings):
    """What decides a faithfulness record: the maps' settings and the curves' steps."""
    steps: int = 20

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= int(self.steps) <= 1000:
            raise ValueError(f"steps must be 1-1000, got {self.steps}")


def blurred(x):
    """(C, H, W) network input -> its Gaussian blur, sigma = shorter side / 45 pixels."""
    from scipy.ndimage import gaussian_filter
    sigma = max(1.0, min(x.shape[1:]) / 45.0)
    return np.stack([gaussian_filter(np.asarray(c, np.float64), sigma, mode="nearest")
                     for c in x]).astype(np.float32)


def curve_inputs(start, end, order, steps):
    """(steps + 1, C, H, W): ``start`` with the first k pixels of ``order`` (flat (H*W,)
    indices) taken from ``end``, k = round(i * H*W / steps), i = 0..steps."""
    c, h, w = start.shape
    counts = np.round(np.arange(steps + 1) * (h * w) / steps).astype(np.int64)
    out = np.repeat(start[None], steps + 1, axis=0).reshape(steps + 1, c, h * w)
    end_flat = end.reshape(c, h * w)
    for i, k in enumerate(counts):
        chosen = order[:k]
        out[i][:, chosen] = end_flat[:, chosen]
    return out.reshape(steps + 1, c, h, w)


def probabilities(net, inputs, cls):
    """P_cls of each input (batched within the saliency memory budget)."""
    size = examples_per_batch(net, BATCH_BYTES)
    out = []
    for a in range(0, len(inputs), size):
        logits = to_numpy(net.forward(inputs[a:a + size])).astype(np.float64)
        out.append(softmax(logits)[:, cls])
    return np.concatenate(out)


def auc(curve):
    """Trapezoid area under a curve sampled at equal steps over [0, 1]."""
    curve = np.asarray(curve, np.float64)
    return float(((curve[:-1] + curve[1:]) / 2).mean())


def curves_for(net, x, order, cls, steps, baseline):
    """{"deletion": [P_c ...], "insertion": [P_c ...]} for one pixel order."""
    deleted = np.full_like(x, baseline)
    return {"deletion": [round(float(p), 6) for p in
                         probabilities(net, curve_inputs(x, deleted, order, steps), cls)],
            "insertion": [round(float(p), 6) for p in
                          probabilities(net, curve_inputs(blurred(x), x, order, steps), cls)]}


def evaluate_item(net, item, index, settings):
    """One image -> {"image", "label", "class", "curves": {method or "random":
    {"deletion": [...], "insertion": [...]}}} (steps + 1 probabilities each)."""
    view = _view(net, item, False)
    cls = int(np.argmax(_scores(net, view, False)))
    maps = method_maps(net, view, [cls], settings, (settings.seed, int(index)))
    x = np.asarray(view.x, np.float32)
    h, w = x.shape[1:]
    record = {"image": item.key, "label": int(item.label), "class": cls, "curves": {}}
    tie_break = np.random.default_rng((settings.seed, int(index), 11)).permutation(h * w)
    for method in settings.methods:
        order = np.lexsort((tie_break, -maps[method][0].reshape(-1)))
        record["curves"][method] = curves_for(net, x, order, cls, settings.steps,
                                              settings.baseline)
    order = np.random.default_rng((settings.seed, int(index), 7)).permutation(h * w)
    record["curves"][RANDOM] = curves_for(net, x, order, cls, settings.steps, settings.baseline)
    return record


def summarise(records, methods, steps):
    """Records -> faithfulness.json: per method (and the random order) the mean deletion
    and insertion AUC with bootstrap 95% intervals, and the mean curves."""
    def entry(name):
        out = {}
        for kind in CURVES:
            aucs = [auc(r["curves"][name][kind]) for r in records]
            out[f"{kind}_auc"] = float(np.mean(aucs))
            out[f"{kind}_auc_ci95"] = ci95(aucs)
            out[f"{kind}_curve"] = [round(float(v), 6) for v in
                                    np.mean([r["curves"][name][kind] for r in records], axis=0)]
        return out
    for r in records:      # a record made with other steps would mix curves of two lengths
        for name in list(methods) + [RANDOM]:
            for kind in CURVES:
                if len(r["curves"][name][kind]) != steps + 1:
                    raise ValueError(f"{r['image']}: a {kind} curve of "
                                     f"{len(r['curves'][name][kind])} points, not {steps + 1}")
    return {"n": len(records), "steps": int(steps),
            "methods": {m: entry(m) for m in methods}, "random": entry(RANDOM)}
