"""Weakly supervised object localisation from a saliency map
(Simonyan et al. 2013, Sect. 3.2).

1. Seeds: foreground = saliency above its ``fg_quantile`` (0.95), background = below its
   ``bg_quantile`` (0.30); pixels in between do not enter the colour models.
2. One Gaussian mixture colour model per seed set (sklearn ``GaussianMixture``, full
   covariances, fitted on at most ``SEED_SAMPLE`` seeded seed pixels with at most
   ``EM_ITERATIONS`` EM steps); each distinct colour of the picture is scored once.
3. GraphCut (Boykov & Jolly 2001) with PyMaxflow: unary costs -log p(colour | model),
   4-connected contrast-sensitive pairwise cost
   ``smoothness * exp(-beta * ||I_i - I_j||^2)``, beta = 1 / (2 mean ||I_i - I_j||^2)
   (as GrabCut), colours in 0-255.
4. Largest 4-connected foreground component (scipy.ndimage.label) -> bounding box.

A picture larger than ``max_pixels`` (default 160 x 160) is segmented at that many pixels
(picture and map area-averaged to the same smaller size) and the mask is mapped back to
every pixel: a saliency map holds no finer detail than the network's input (224 x 224 for
an ImageNet VGG), and the cost of steps 2-4, the max-flow above all, then stays bounded
whatever the photo's size. (On 150 cluttered canvases upscaled to 256 x 256, boxes found
at 160 x 160 reached IoU 0.5 as often as those found at full size: 0.47 against 0.45.)
"""
from dataclasses import dataclass
import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

# at most this many pixels of each seed set enter its colour model
SEED_SAMPLE = 2000
# EM steps of each colour model
EM_ITERATIONS = 10
# pictures with more pixels are segmented at this many (160 x 160)
MAX_PIXELS = 160 * 160

# The EM cap is deliberate: a not-quite-converged mixture is still a colour model, and the
# cap bounds the time. sklearn warns about it; the filter is process-wide (a
# warnings.catch_warnings block is not thread-safe, and the explorer segments in
# threads) but covers only sklearn.mixture's convergence warning.
warnings.filterwarnings("ignore", category=ConvergenceWarning, module=r"sklearn\.mixture")


@dataclass(frozen=True)
class BoxSettings:
    """The procedure's settings and their defaults, shared by :func:`localize_map`, the
    tools (--fg-quantile, --bg-quantile, --components, --smoothness), the evaluation and
    the explorer. fg_quantile / bg_quantile: the seed quantiles of the map (the paper's
    95% / 30%); components: Gaussians per colour model; smoothness: weight of the
    pairwise term (GrabCut's 50); seed: of the seed sample and the mixtures."""
    fg_quantile: float = 0.95
    bg_quantile: float = 0.30
    components: int = 5
    smoothness: float = 50.0
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.bg_quantile < self.fg_quantile <= 1.0:
            raise ValueError(f"need 0 <= bg quantile ({self.bg_quantile}) < fg quantile "
                             f"({self.fg_quantile}) <= 1")
        if int(self.components) < 1 or not 0 <= self.smoothness < float("inf"):
            raise ValueError(f"need components >= 1 and a finite smoothness >= 0, got "
                             f"{self.components}, {self.smoothness}")


BOX = BoxSettings()


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


def seeds(saliency_map, fg_quantile=BOX.fg_quantile, bg_quantile=BOX.bg_quantile):
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


def colour_model(pixels, components=BOX.components, seed=BOX.seed, sample=SEED_SAMPLE,
                 iterations=EM_ITERATIONS):
    """Fit a Gaussian mixture to (P, 3) colours (0-255).

    At most ``sample`` pixels, drawn without replacement from ``seed``, enter the fit, and
    EM stops after ``iterations`` steps: a colour model of a few thousand seed pixels is as
    good as one of all of them, and the fit's cost then no longer grows with the image.
    Fewer components when there are few distinct colours; reg_covar keeps flat-coloured
    regions well posed."""
    from sklearn.mixture import GaussianMixture
    pixels = np.asarray(pixels, np.float64)
    if sample and len(pixels) > sample:
        rng = np.random.default_rng(seed)
        pixels = pixels[np.sort(rng.choice(len(pixels), sample, replace=False))]
    distinct = len(np.unique(_packed(pixels)))
    k = int(max(1, min(components, distinct, len(pixels) // 2)))
    model = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1.0,
                            max_iter=int(iterations), init_params="k-means++",
                            random_state=seed)
    return model.fit(pixels)


def _packed(pixels):
    """(P, 3) colours 0-255 -> (P,) one integer per colour (equal colours, equal ints)."""
    q = np.asarray(pixels, np.float64)
    if q.size and (q.min() < 0 or q.max() > 255 or not np.array_equal(q, np.round(q))):
        # not 8-bit colours: fall back to the exact values' bytes
        return np.ascontiguousarray(q).view(np.dtype((np.void, 24))).ravel()
    q = q.astype(np.int64)
    return (q[:, 0] << 16) | (q[:, 1] << 8) | q[:, 2]


def colour_costs(pixels, model):
    """-log p(colour | model) of (P, 3) colours, scored once per distinct colour (a
    picture has far fewer distinct colours than pixels; the costs are exact)."""
    _, first, inverse = np.unique(_packed(pixels), return_index=True, return_inverse=True)
    return -model.score_samples(np.asarray(pixels, np.float64)[first])[inverse.ravel()]


def pairwise_weights(rgb, smoothness=BOX.smoothness):
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


def graphcut(rgb, fg_seeds, bg_seeds, components=BOX.components, smoothness=BOX.smoothness,
             seed=BOX.seed):
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
    cost_fg = colour_costs(pixels, fg_model).reshape(h, w)     # -log p(I | foreground)
    cost_bg = colour_costs(pixels, bg_model).reshape(h, w)
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


def work_size(shape, max_pixels=MAX_PIXELS):
    """(H, W) -> the (h, w) the segmentation runs at: the same when H * W <= max_pixels,
    else scaled down by one factor so that h * w <= max_pixels."""
    h, w = int(shape[0]), int(shape[1])
    if max_pixels is None or h * w <= max_pixels:
        return h, w
    s = math.sqrt(max_pixels / float(h * w))
    return max(1, int(h * s)), max(1, int(w * s))


def _area_resize(array, size_hw):
    """(H, W) float or (H, W, 3) uint8 -> the same at (h, w), each pixel the mean of the
    picture under it (PIL's box filter)."""
    from PIL import Image
    h, w = size_hw
    if array.ndim == 2:
        img = Image.fromarray(np.ascontiguousarray(array, np.float32), "F")
        return np.asarray(img.resize((w, h), Image.BOX), np.float64)
    img = Image.fromarray(np.ascontiguousarray(array, np.uint8), "RGB")
    return np.asarray(img.resize((w, h), Image.BOX), np.uint8)


def _upsample(mask, shape_hw):
    """(h, w) bool -> (H, W) bool: each pixel takes the value under its centre."""
    h, w = mask.shape
    big_h, big_w = shape_hw
    rows = np.minimum(((np.arange(big_h) + 0.5) * h / big_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(big_w) + 0.5) * w / big_w).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def localize_map(rgb, saliency_map, fg_quantile=BOX.fg_quantile, bg_quantile=BOX.bg_quantile,
                 components=BOX.components, smoothness=BOX.smoothness, seed=BOX.seed,
                 max_pixels=MAX_PIXELS):
    """Box of the object in picture ``rgb`` (H, W, 3) uint8 given its saliency map
    (H, W). ``max_pixels``: segment larger pictures at this many pixels (None: never
    scale). Returns a :class:`Localization` in the picture's own pixels."""
    from .. import threads
    rgb = np.asarray(rgb)
    m = np.asarray(saliency_map)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB picture, got shape {rgb.shape}")
    if rgb.shape[:2] != m.shape:
        raise ValueError(f"picture {rgb.shape[:2]} and saliency map {m.shape} differ in size")
    full, size = m.shape, work_size(m.shape, max_pixels)
    if size != full:
        rgb, m = _area_resize(rgb, size), _area_resize(m, size)
    fg, bg = seeds(m, fg_quantile, bg_quantile)
    # small fits: one BLAS thread is faster, and the same result on every machine
    with threads.blas_on_one_thread():
        seg = graphcut(rgb, fg, bg, components, smoothness, seed)
    mask = largest_component(seg)
    fallback = not mask.any()
    if fallback:
        mask = largest_component(fg)
    if size != full:
        mask, seg, fg, bg = (_upsample(a, full) for a in (mask, seg, fg, bg))
    return Localization(box=bounding_box(mask), mask=mask, segmentation=seg, fg_seeds=fg,
                        bg_seeds=bg, fallback=fallback)
