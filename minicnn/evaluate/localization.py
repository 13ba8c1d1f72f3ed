"""Weakly supervised localisation measured over a data set (Simonyan et al. 2013, Sect. 3.2).

Per image (:func:`evaluate_item`): the network's top-5 classes; for each method, the
saliency map of each top-5 class and of the label (``boxes="label"``: of the label only,
which gives the same numbers for less work), the box of each top-5 class from the
same saliency -> colour models -> GraphCut -> largest component procedure as
``tools/localize.py`` (:func:`minicnn.viz.localize_map`), the arg-max point of the label's
map, and (where the data has masks) the IoU of the label's kept GraphCut component with
the true mask. The result is one JSON-able record; :func:`summarise` turns records into
the localisation error, pointing game and mask IoU of every method and of the baselines.

Every record depends only on (model, image, settings, its index): SmoothGrad's noise is
seeded by (seed, index), each image runs in its own batch, and the GraphCut runs with one
BLAS thread, so a record is the same on any scheduler, worker count or chunk size.
"""
from dataclasses import asdict, dataclass, field
import math

import numpy as np

from ..backend import to_numpy
from ..viz.inputs import network_view, tencrop_view
from ..viz.localize import BOX, BoxSettings, localize_map
from ..viz.attribution import (METHODS as ATTRIBUTION, MethodSettings, attribute,
                               backward_signals, class_signals)
from ..viz.saliency import SALIENCY, tencrop_saliency
from . import metrics

# method name -> (backward rule, uses SmoothGrad); the descendants of the paper's map
# (minicnn.viz.attribution) have no rule of their own here: the registry computes them
METHODS = {"gradient": ("gradient", False), "deconvnet": ("deconvnet", False),
           "guided": ("guided", False), "smoothgrad": ("gradient", True),
           **{name: (None, False) for name, m in ATTRIBUTION.items() if m.rule is None}}
# the default: the paper's three passes and SmoothGrad (the others cost more: IG 32 passes,
# occlusion a forward per patch position; ask for them with --methods)
PAPER_METHODS = ("gradient", "deconvnet", "guided", "smoothgrad")
BASELINES = ("centre_box", "full_image")
POINT_BASELINE = "centre_point"
TOP_K = 5
# "top5": a map and a box for each top-5 class (the ILSVRC submission format);
# "label": only the true class's map and box. No metric changes: a (class, box) pair of a
# class other than the label is wrong whatever its box, so only the label's box counts.
BOX_MODES = ("top5", "label")


def check_methods(methods):
    """Refuse an empty list, unknown or repeated method names."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}"
                         f"; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"a method is named twice in {','.join(methods)}")


@dataclass
class MapSettings:
    """What decides the maps of a record besides the model and the image: the methods,
    SmoothGrad's samples, noise and seed, the descendants' options (see
    :class:`~minicnn.viz.attribution.MethodSettings`) and the batch of noisy copies."""
    methods: list = field(default_factory=lambda: list(PAPER_METHODS))
    smoothgrad_samples: int = 25
    noise: float = SALIENCY.noise
    seed: int = 0
    batch_size: int = 32
    gradcam_layer: str = None
    ig_steps: int = MethodSettings.ig_steps
    baseline: float = MethodSettings.baseline
    patch: int = MethodSettings.patch
    stride: int = MethodSettings.stride
    tencrop: bool = False

    def __post_init__(self):
        check_methods(self.methods)
        if "smoothgrad" in self.methods and self.smoothgrad_samples < 1:
            raise ValueError("smoothgrad needs at least 1 sample")

    def to_dict(self):
        return asdict(self)

    def method_options(self):
        return method_options(self)


@dataclass
class LocalizeSettings(MapSettings):
    """Everything that decides a localisation record besides the model and the image."""
    fg_quantile: float = BOX.fg_quantile
    bg_quantile: float = BOX.bg_quantile
    components: int = BOX.components
    smoothness: float = BOX.smoothness
    boxes: str = "top5"

    def __post_init__(self):
        super().__post_init__()
        if self.boxes not in BOX_MODES:
            raise ValueError(f"boxes must be one of {', '.join(BOX_MODES)}, got {self.boxes!r}")
        BoxSettings(self.fg_quantile, self.bg_quantile, self.components, self.smoothness)


def method_options(settings):
    """The MethodSettings of the descendants from a settings object with their fields."""
    return MethodSettings(gradcam_layer=settings.gradcam_layer, ig_steps=settings.ig_steps,
                          baseline=settings.baseline, patch=settings.patch,
                          stride=settings.stride)


def descendant_maps(net, view, classes, method, settings):
    """(K, H, W) maps of a descendant of the paper's map for each class (the registry's
    definition; ten crops blended when the settings ask for them)."""
    options = method_options(settings)
    if settings.tencrop:
        return np.stack([tencrop_saliency(net, view.x, c, method, options=options).map[0]
                         for c in classes])
    x = np.repeat(np.asarray(view.x, np.float32)[None], len(classes), axis=0)
    return attribute(net, x, classes, method, options)[1]


def class_maps(net, x, classes, rule="gradient", samples=0, noise=SALIENCY.noise, seed=0,
               batch_size=32):
    """Saliency maps M = max over channels |signal| of :func:`class_signals`: (K, H, W)
    float32."""
    signals = class_signals(net, x, classes, rule, samples, noise, seed, batch_size)
    return np.abs(signals).max(axis=1).astype(np.float32)


def _view(net, item, tencrop):
    from PIL import Image
    source = ("image", Image.fromarray(item.image, "RGB"))
    return (tencrop_view if tencrop else network_view)(net, source, item.key)


def _scores(net, view, tencrop):
    from ..viz.saliency import ten_crops
    if tencrop:
        crops = ten_crops(view.x, net.preprocessing.input_size)
        return to_numpy(net.forward(crops)).astype(np.float64).mean(axis=0)
    return to_numpy(net.forward(view.x[None])).astype(np.float64)[0]


def _maps(net, view, classes, rule, smooth, settings, seed):
    samples = settings.smoothgrad_samples if smooth else 0
    if settings.tencrop:
        return np.stack([tencrop_saliency(net, view.x, c, rule, samples, settings.noise,
                                          seed).map[0] for c in classes])
    return class_maps(net, view.x, classes, rule, samples, settings.noise, seed,
                      settings.batch_size)


def backward_maps(net, classes, rule):
    """Saliency maps (K, H, W) float32 of ``classes`` from the forward pass the net has
    just run on one image: one backward pass per class, no second forward."""
    return np.abs(backward_signals(net, 1, classes, rule)).max(axis=1).astype(np.float32)


def method_maps(net, view, classes, settings, seed):
    """{method: (K, H, W) maps} for the settings' methods. Call right after the forward
    pass of ``view.x`` (:func:`_scores` without ten crops): the plain methods reuse its
    caches, and only then SmoothGrad's noisy copies run their own passes."""
    maps = {}
    # the plain passes first: they reuse the caller's forward, the others run their own
    plain_first = sorted(settings.methods,
                         key=lambda m: not (METHODS[m][0] is not None and not METHODS[m][1]))
    for method in plain_first:
        rule, smooth = METHODS[method]
        if rule is None:
            maps[method] = descendant_maps(net, view, classes, method, settings)
        elif not smooth and not settings.tencrop:
            maps[method] = backward_maps(net, classes, rule)
        else:
            maps[method] = _maps(net, view, classes, rule, smooth, settings, seed)
    return maps


def point_to_file(view, point):
    """(x, y) pixel of the view -> the pixel of the image file holding its centre."""
    (sx, sy), (ox, oy), (w, h) = view.scale, view.offset, view.size
    fx = math.floor((point[0] + 0.5) * sx + ox)
    fy = math.floor((point[1] + 0.5) * sy + oy)
    return [min(max(fx, 0), w - 1), min(max(fy, 0), h - 1)]


def mask_to_file(view, mask):
    """(h, w) bool mask in view pixels -> (H, W) bool in the image file's pixels (each file
    pixel takes the view pixel under its centre; outside the view: False)."""
    (sx, sy), (ox, oy), (w, h) = view.scale, view.offset, view.size
    if (sx, sy) == (1.0, 1.0) and (ox, oy) == (0.0, 0.0) and mask.shape == (h, w):
        return mask
    vy = np.floor(((np.arange(h) + 0.5) - oy) / sy).astype(np.int64)
    vx = np.floor(((np.arange(w) + 0.5) - ox) / sx).astype(np.int64)
    iny = (vy >= 0) & (vy < mask.shape[0])
    inx = (vx >= 0) & (vx < mask.shape[1])
    out = mask[np.clip(vy, 0, mask.shape[0] - 1)][:, np.clip(vx, 0, mask.shape[1] - 1)]
    return out & iny[:, None] & inx[None, :]


def localize_or_none(rgb, saliency_map, settings):
    """:func:`minicnn.viz.localize_map` with the settings, or None when the map is flat
    (no pixel stands out, e.g. every ReLU on the way is off): then there is no box, which
    counts as a localisation error, instead of an error that would stop the run."""
    if float(np.ptp(saliency_map)) == 0.0:
        return None
    return localize_map(rgb, saliency_map, settings.fg_quantile, settings.bg_quantile,
                        settings.components, settings.smoothness, settings.seed)


def evaluate_item(net, item, index, settings):
    """One labelled image -> its record (a JSON-able dict, see the module docstring)."""
    from threadpoolctl import threadpool_limits
    view = _view(net, item, settings.tencrop)
    scores = _scores(net, view, settings.tencrop)
    top = [int(c) for c in np.argsort(-scores, kind="stable")[:TOP_K]]
    label = int(item.label)
    if settings.boxes == "top5":
        classes = top + ([label] if label not in top else [])
    else:
        classes = [label]
    record = {"image": item.key, "label": label, "top5": top,
              "true_boxes": [list(map(int, b)) for b in item.true_boxes],
              "boxes": {}, "points": {}, "size": list(item.size),
              "scores": [round(float(scores[c]), 6) for c in top]}
    if item.mask is not None:
        record["mask_iou"] = {}
        record["mask_area"] = int(np.asarray(item.mask, bool).sum())
    all_maps = method_maps(net, view, classes, settings, (settings.seed, int(index)))
    for method in settings.methods:
        maps = all_maps[method]
        boxes = {}
        # small colour-model fits: one BLAS thread is faster and the same on every worker
        with threadpool_limits(1):
            for k, c in enumerate(classes):
                if c not in top and item.mask is None:
                    continue                     # the label's box is only needed for masks
                loc = localize_or_none(view.rgb, maps[k], settings)
                box = loc.box if loc is not None else None
                if c in top:
                    boxes[str(c)] = view.box_to_file(box) if box is not None else None
                if c == label and item.mask is not None:
                    record["mask_iou"][method] = round(metrics.mask_iou(
                        mask_to_file(view, loc.mask), item.mask), 6) if loc is not None else 0.0
        record["boxes"][method] = boxes
        m = maps[classes.index(label)]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        record["points"][method] = point_to_file(view, (int(x), int(y)))
    return record


# ----------------------------------------------------------------------------- summary

def mean_relative_box(records):
    """Mean (width / W, height / H) of all true boxes: the size of the centred baseline."""
    rel = [((b[2] - b[0]) / r["size"][0], (b[3] - b[1]) / r["size"][1])
           for r in records for b in r["true_boxes"]]
    return tuple(np.mean(rel, axis=0)) if rel else (0.5, 0.5)


def record_guesses(record, method, rel_size=None):
    """The (class, box) pairs of a record for ``method`` or a box baseline, top-5 order."""
    if method == "centre_box":
        box = metrics.centred_box(record["size"], rel_size)
        return [(c, box) for c in record["top5"]]
    if method == "full_image":
        box = [0, 0, record["size"][0], record["size"][1]]
        return [(c, box) for c in record["top5"]]
    boxes = record["boxes"][method]
    return [(c, boxes.get(str(c))) for c in record["top5"]]


def label_iou(record, method):
    """IoU of the label's box with its best true box (None when the label is not in the
    top 5, so the method made no box for it)."""
    box = record["boxes"][method].get(str(record["label"]), "missing")
    if box == "missing":
        return None
    return metrics.best_iou(box, record["true_boxes"])


def summarise(records, methods, tolerance=15.0, reference=224):
    """Records -> the summary dict written to summary.json."""
    n = len(records)
    rel = mean_relative_box(records)
    loc, point, mask = {}, {}, {}
    for name in list(methods) + list(BASELINES):
        top1 = [metrics.localisation_error(record_guesses(r, name, rel)[:1], r["label"],
                                           r["true_boxes"]) for r in records]
        top5 = [metrics.localisation_error(record_guesses(r, name, rel), r["label"],
                                           r["true_boxes"]) for r in records]
        loc[name] = {"top1": float(np.mean(top1)) if n else float("nan"),
                     "top1_ci95": metrics.ci95(top1),
                     "top5": float(np.mean(top5)) if n else float("nan"),
                     "top5_ci95": metrics.ci95(top5)}
    point_ci, mask_ci = {}, {}
    labels = [r["label"] for r in records]
    for name in list(methods) + [POINT_BASELINE]:
        hits = []
        for r in records:
            p = ([r["size"][0] // 2, r["size"][1] // 2] if name == POINT_BASELINE
                 else r["points"][name])
            tol = metrics.tolerance_pixels(tolerance, r["size"], reference)
            hits.append(metrics.pointing_hit(p, r["true_boxes"], tol))
        point[name] = metrics.class_mean_accuracy(labels, hits)
        point_ci[name] = metrics.ci95((labels, hits), metrics.class_mean_accuracy)
    with_mask = [r for r in records if "mask_iou" in r]
    if with_mask:
        for name in methods:
            values = [r["mask_iou"][name] for r in with_mask]
            mask[name], mask_ci[name] = float(np.mean(values)), metrics.ci95(values)
        values = [r["mask_area"] / (r["size"][0] * r["size"][1]) for r in with_mask]
        mask["full_image"], mask_ci["full_image"] = float(np.mean(values)), metrics.ci95(values)
    wrong1 = [r["top5"][0] != r["label"] for r in records]
    wrong5 = [r["label"] not in r["top5"] for r in records]
    return {"n": n, "localisation_error": loc, "pointing_game": point,
            "pointing_game_ci95": point_ci, "mask_iou": mask, "mask_iou_ci95": mask_ci,
            "classification_error": {"top1": float(np.mean(wrong1)) if n else float("nan"),
                                     "top1_ci95": metrics.ci95(wrong1),
                                     "top5": float(np.mean(wrong5)) if n else float("nan"),
                                     "top5_ci95": metrics.ci95(wrong5)},
            "centre_box_size": [float(rel[0]), float(rel[1])],
            "pointing_tolerance": {"pixels": float(tolerance), "at_shorter_side": reference}}
