"""Weakly supervised object localisation from a saliency map
(Simonyan et al. 2013, Sect. 3.2).

1. Seeds: foreground = saliency above its ``fg_quantile`` (0.95), background = below its
   ``bg_quantile`` (0.30); pixels in between do not enter the colour models.
2. One Gaussian mixture colour model per seed set (sklearn ``GaussianMixture``).
3. GraphCut (Boykov & Jolly 2001) with PyMaxflow: unary costs -log p(colour | model),
   4-connected contrast-sensitive pairwise cost
   ``smoothness * exp(-beta * ||I_i - I_j||^2)``, beta = 1 / (2 mean ||I_i - I_j||^2)
   (as GrabCut), colours in 0-255.
4. Largest 4-connected foreground component (scipy.ndimage.label) -> bounding box.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class Localization:
    """box [x0, y0, x1, y1] (x1, y1 exclusive) in the pixels of the given picture, or
    None when nothing was segmented; mask (H, W) bool: the kept component;
    segmentation (H, W) bool: all GraphCut foreground; fg_seeds / bg_seeds (H, W) bool;
    fallback: True when GraphCut found no foreground and the box is that of the largest
    foreground-seed component."""
    box: list
    mask: np.ndarray
    segmentation: np.ndarray
    fg_seeds: np.ndarray
    bg_seeds: np.ndarray
    fallback: bool = False


def seeds(saliency_map, fg_quantile=0.95, bg_quantile=0.30):
    """(H, W) map -> (foreground seeds M > q_fg, background seeds M < q_bg).

    Ties at the quantile: foreground uses >=, background <= when the strict test is
    empty (flat maps)."""
    m = np.asarray(saliency_map, np.float64)
    if not 0.0 <= bg_quantile < fg_quantile <= 1.0:
        raise ValueError(f"need 0 <= bg quantile < fg quantile <= 1, got {bg_quantile}, {fg_quantile}")
    hi, lo = np.quantile(m, fg_quantile), np.quantile(m, bg_quantile)
    fg, bg = m > hi, m < lo
    if not fg.any():
        fg = m >= hi
    if not bg.any():
        bg = (m <= lo) & ~fg
    return fg, bg


def colour_model(pixels, components=5, seed=0):
    """Fit a Gaussian mixture to (P, 3) colours (0-255); fewer components when there are
    few pixels. reg_covar keeps flat-coloured regions well posed."""
    from sklearn.mixture import GaussianMixture
    pixels = np.asarray(pixels, np.float64)
    k = int(max(1, min(components, len(np.unique(pixels, axis=0)), len(pixels) // 2)))
    return GaussianMixture(n_components=k, covariance_type="full", reg_covar=1.0,
                           random_state=seed).fit(pixels)


def pairwise_weights(rgb, smoothness=50.0):
    """Contrast-sensitive weights of the right and down neighbour edges: (H, W) each,
    ``smoothness * exp(-beta * ||I_p - I_q||^2)`` (zero where there is no neighbour)."""
    img = np.asarray(rgb, np.float64)
    dr = ((img[:, 1:] - img[:, :-1]) ** 2).sum(axis=2)
    dd = ((img[1:] - img[:-1]) ** 2).sum(axis=2)
    mean = (dr.sum() + dd.sum()) / max(dr.size + dd.size, 1)
    beta = 1.0 / (2.0 * mean) if mean > 0 else 0.0
    right = np.zeros(img.shape[:2])
    down = np.zeros(img.shape[:2])
    right[:, :-1] = smoothness * np.exp(-beta * dr)
    down[:-1] = smoothness * np.exp(-beta * dd)
    return right, down


def graphcut(rgb, fg_seeds, bg_seeds, components=5, smoothness=50.0, seed=0):
    """GraphCut foreground (H, W) bool of picture ``rgb`` (H, W, 3) with GMM colour models
    fitted on the seed pixels."""
    import maxflow
    img = np.asarray(rgb, np.float64)
    h, w = img.shape[:2]
    pixels = img.reshape(-1, 3)
    if not fg_seeds.any() or not bg_seeds.any():
        raise ValueError("localisation needs foreground and background seed pixels; the "
                         "saliency map is flat")
    fg_model = colour_model(pixels[fg_seeds.reshape(-1)], components, seed)
    bg_model = colour_model(pixels[bg_seeds.reshape(-1)], components, seed)
    cost_fg = -fg_model.score_samples(pixels).reshape(h, w)     # -log p(I | foreground)
    cost_bg = -bg_model.score_samples(pixels).reshape(h, w)
    low = np.minimum(cost_fg, cost_bg)                          # only differences matter
    cost_fg, cost_bg = cost_fg - low, cost_bg - low
    right, down = pairwise_weights(img, smoothness)
    g = maxflow.Graph[float]()
    nodes = g.add_grid_nodes((h, w))
    g.add_grid_edges(nodes, weights=right, structure=np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]]),
                     symmetric=True)
    g.add_grid_edges(nodes, weights=down, structure=np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]]),
                     symmetric=True)
    # source = foreground: a foreground pixel cuts its sink edge (pays cost_fg)
    g.add_grid_tedges(nodes, cost_bg, cost_fg)
    g.maxflow()
    return ~g.get_grid_segments(nodes)


def largest_component(mask):
    """The largest 4-connected component of a bool mask (ties: lowest label)."""
    from scipy import ndimage
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(sizes.argmax()) + 1)


def bounding_box(mask):
    """[x0, y0, x1, y1] (x1, y1 exclusive) of a non-empty bool mask, else None."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def localize_map(rgb, saliency_map, fg_quantile=0.95, bg_quantile=0.30, components=5,
                 smoothness=50.0, seed=0):
    """Box of the object in picture ``rgb`` (H, W, 3) uint8 given its saliency map
    (H, W). Returns a :class:`Localization`."""
    rgb = np.asarray(rgb)
    m = np.asarray(saliency_map)
    if rgb.shape[:2] != m.shape:
        raise ValueError(f"picture {rgb.shape[:2]} and saliency map {m.shape} differ in size")
    fg, bg = seeds(m, fg_quantile, bg_quantile)
    seg = graphcut(rgb, fg, bg, components, smoothness, seed)
    mask = largest_component(seg)
    fallback = not mask.any()
    if fallback:
        mask = largest_component(fg)
    return Localization(box=bounding_box(mask), mask=mask, segmentation=seg, fg_seeds=fg,
                        bg_seeds=bg, fallback=fallback)
