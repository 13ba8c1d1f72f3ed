"""The numbers that say how good a saliency map is, as pure functions of boxes and points.

Boxes are ``[x0, y0, x1, y1]`` in an image's pixels with x1, y1 exclusive (the pixels
x0..x1-1 are inside). A point ``(x, y)`` is a pixel; its centre is (x + 0.5, y + 0.5).

- Localisation error, the ILSVRC rule: an image's guesses are (class, box) pairs (one for
  top-1, up to five for top-5). A pair is right when its class is the image's label and
  its box overlaps some true box of that class with IoU >= 0.5; the image is an error
  when no pair is right.
- Pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop"):
  a hit when the map's maximum lies within a tolerance of a true box of the label class;
  the accuracy is hits / images per class, averaged over the classes.
- Mask IoU: intersection over union of two bool masks.
"""
import math

import numpy as np

IOU_THRESHOLD = 0.5


def box_area(box):
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def iou(a, b):
    """Intersection over union of two boxes; 0 when either is None or both are empty."""
    if a is None or b is None:
        return 0.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def best_iou(box, true_boxes):
    """The largest IoU of ``box`` with any of ``true_boxes`` (0 when there are none)."""
    return max((iou(box, t) for t in true_boxes), default=0.0)


def pair_correct(cls, box, label, true_boxes, threshold=IOU_THRESHOLD):
    """ILSVRC: the guess (cls, box) is right when cls is the label and the box overlaps a
    true box of the label with IoU >= threshold."""
    return int(cls) == int(label) and best_iou(box, true_boxes) >= threshold


def localisation_error(guesses, label, true_boxes, threshold=IOU_THRESHOLD):
    """1 when none of the (class, box) ``guesses`` is right, else 0 (ILSVRC rule)."""
    return 0 if any(pair_correct(c, b, label, true_boxes, threshold) for c, b in guesses) else 1


def point_to_box_distance(point, box):
    """Euclidean distance from the centre of pixel ``point`` (x, y) to the region of
    ``box`` (0 inside)."""
    px, py = point[0] + 0.5, point[1] + 0.5
    dx = max(box[0] - px, 0.0, px - box[2])
    dy = max(box[1] - py, 0.0, py - box[3])
    return math.hypot(dx, dy)


def pointing_hit(point, true_boxes, tolerance):
    """True when ``point`` lies within ``tolerance`` pixels of one of ``true_boxes``."""
    return any(point_to_box_distance(point, b) <= tolerance for b in true_boxes)


def tolerance_pixels(tolerance, size, reference=224):
    """The pointing-game tolerance in an image's pixels: ``tolerance`` pixels at a shorter
    side of ``reference`` pixels, scaled to the image's shorter side (``size`` is
    (width, height)); reference 0 or None: ``tolerance`` pixels as given."""
    if not reference:
        return float(tolerance)
    return float(tolerance) * min(size) / float(reference)


def class_mean_accuracy(labels, hits):
    """Mean over the labels present of the fraction of hits per label (pointing game)."""
    labels = np.asarray(labels)
    hits = np.asarray(hits, dtype=np.float64)
    if labels.size == 0:
        return float("nan")
    return float(np.mean([hits[labels == c].mean() for c in np.unique(labels)]))


def mask_iou(a, b):
    """IoU of two (H, W) bool masks (0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes: {a.shape} and {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def centred_box(size, rel_size):
    """A box of relative size ``rel_size`` (w / W, h / H) centred in an image of ``size``
    (W, H)."""
    (w, h), (rw, rh) = size, rel_size
    bw, bh = max(1, round(rw * w)), max(1, round(rh * h))
    x0, y0 = (w - bw) // 2, (h - bh) // 2
    return [x0, y0, x0 + bw, y0 + bh]


# ----------------------------------------------------------------------------- confidence

CI_RESAMPLES = 2000
CI_SEED = 0


def ci95(values, statistic=None, seed=CI_SEED):
    """A seeded bootstrap 95% confidence interval [lo, hi] of ``statistic`` (default the
    mean) over the images: SciPy's ``bootstrap``, percentile method (well defined when
    every value is equal, where BCa is not), 2000 resamples. ``values``: one array, or a
    tuple of arrays resampled together (paired, e.g. labels and hits). None for fewer
    than 2 images."""
    import warnings
    from scipy.stats import bootstrap
    data = values if isinstance(values, tuple) else (values,)
    data = tuple(np.asarray(v, np.float64) for v in data)
    if len(data[0]) < 2:
        return None
    if statistic is None:
        statistic, vectorized = (lambda v, axis=-1: np.mean(v, axis=axis)), True
    else:
        vectorized = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # a constant sample: the interval is [v, v]
        # resamples drawn in batches: 2000 x 50,000 images at once would be 1.6 GB
        options = dict(paired=len(data) > 1, vectorized=vectorized, n_resamples=CI_RESAMPLES,
                       confidence_level=0.95, method="percentile",
                       batch=max(1, min(CI_RESAMPLES, 2_000_000 // max(len(data[0]), 1))))
        try:
            res = bootstrap(data, statistic, rng=np.random.default_rng(seed), **options)
        except TypeError:           # SciPy before 1.15 names the generator random_state
            res = bootstrap(data, statistic, random_state=np.random.default_rng(seed), **options)
    lo, hi = res.confidence_interval
    return [round(float(lo), 6), round(float(hi), 6)]
