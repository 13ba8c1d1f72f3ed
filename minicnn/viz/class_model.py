"""Class model visualisation (Simonyan et al. 2013, Sect. 2).

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2

S_c is the unnormalised class score, as in the paper. ``objective="softmax"`` maximises the
softmax probability P_c instead, and ``"log-softmax"`` log P_c = S_c - log sum_k exp S_k:
the paper argues that P_c can be raised by pushing the other scores down rather than S_c
up, which ``tools/evaluate.py class-objective`` measures. Gradient ascent from the zero
image (the mean image once the mean is added back), all requested classes as one batch.
Each step, in this order (Yosinski et al. 2015 for the optional regularisers):

1. jitter: shift the batch by a random (dy, dx) in [-jitter, jitter] (circular roll);
2. gradient of the objective at the shifted image, rolled back;
3. ascent step ``x += step * g / rms(g)`` (``normalize=True``, per image: the step size
   is in input units per pixel whatever the model's score scale) or ``x += step * g``;
4. ``x *= (1 - decay)``;
5. every ``blur_every`` steps a Gaussian blur of width ``blur_sigma`` pixels;
6. zero pixels whose norm (over channels) is below the ``norm_pct`` percentile.

The stationary points of steps 2-3 are those of the paper's objective; the regularisers
are off when set to 0. Same seed, same result.

``init_noise`` starts from zero plus seeded Gaussian noise of that standard deviation
(0: the paper's exact zero image). The zero image can be a dead point: where every
first-layer ReLU is off at zero the gradient there is exactly zero and plain ascent never
moves, so the default starts from a little noise.

:class:`ClassModelSettings` holds the defaults that ``tools/class_model.py``, the explorer
and :func:`class_model` share. Classes are optimised in batches of at most ``batch_size``
(by default as many as fit a memory budget), each class from its own seeded start noise,
so a class's picture does not depend on which other classes were asked for.
"""
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..backend import get_array_module, to_numpy
from .batching import examples_per_batch


OBJECTIVES = ("score", "softmax", "log-softmax")
# the classes of the paper's Fig. 1, shown by default for a model with ImageNet's names
IMAGENET_FIGURE_CLASSES = ("washer", "computer keyboard", "kit fox", "goose", "ostrich",
                           "limousine")
# memory for one batch's passes (the model's own weights come on top)
BATCH_BYTES = 768 * 2**20


@dataclass(frozen=True)
class ClassModelSettings:
    """Everything a class model depends on besides the net and the class (the defaults
    of ``tools/class_model.py``, chosen by looking at the shipped model's class models).

    steps: ascent iterations; step: step size (input units per pixel when ``normalize``);
    lam: the paper's lambda of S_c - lambda ||I||^2; normalize: divide the gradient by its
    RMS per image; jitter: random shift in pixels (0: off); blur_every / blur_sigma: a
    Gaussian blur every k steps (0: off); decay: x *= 1 - decay each step; norm_pct: zero
    pixels whose norm is below this percentile; init_noise: std of the start noise;
    objective: "score" (S_c, the paper), "softmax" or "log-softmax"; seed."""
    steps: int = 300
    step: float = 0.1
    lam: float = 0.01
    normalize: bool = True
    jitter: int = 2
    blur_every: int = 4
    blur_sigma: float = 1.0
    decay: float = 0.0
    norm_pct: float = 0.0
    init_noise: float = 0.01
    objective: str = "score"
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "blur_every", "jitter", "seed"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        if not 0.0 <= self.norm_pct < 100.0:
            raise ValueError(f"norm_pct must be in [0, 100), got {self.norm_pct}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; expected one of "
                             f"{', '.join(OBJECTIVES)}")
        for name in ("step", "lam", "init_noise", "blur_sigma"):
            value = getattr(self, name)
            if not 0 <= value <= np.finfo(np.float32).max:
                raise ValueError(f"{name} must be a number >= 0 within the float32 range, "
                                 f"got {value}")

    def with_options(self, **options):
        """A copy with some fields changed; unknown names raise TypeError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown class-model option(s) {', '.join(unknown)}; expected "
                            f"{', '.join(sorted(known))}")
        return replace(self, **options)

    def as_dict(self):
        return asdict(self)


# the tools' defaults, as a plain dict (name -> value)
DEFAULTS = ClassModelSettings().as_dict()


def default_classes(net):
    """The classes shown when none are asked for: the paper's Fig. 1 classes for a model
    with ImageNet's class names, else every class."""
    names = list(net.class_names)
    if len(names) == 1000:
        from ..convert.common import imagenet_class_names
        if names == imagenet_class_names():
            return [names.index(n) for n in IMAGENET_FIGURE_CLASSES]
    return list(range(net.num_classes))


@dataclass
class ClassModel:
    """x (N, C, H, W) float32 optimised inputs (network space: add the mean back for
    display); classes (N,); scores (N,) final S_c; history (steps, N) objective -
    lambda*||x||^2 at each step (evaluated on the step's jittered input); logits (N, K)
    final scores of every class."""
    x: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    history: np.ndarray
    logits: np.ndarray = None


def softmax(logits):
    """Row-wise softmax of (N, K) float64."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def objective_signal(logits, classes, objective="score"):
    """The objective per row of (N, K) logits (float64) and its gradient with respect to
    the logits (N, K):

    score        S_c                       d/dS_k = [k = c]
    softmax      P_c = exp S_c / sum exp   d/dS_k = P_c ([k = c] - P_k)
    log-softmax  log P_c                   d/dS_k = [k = c] - P_k
    """
    logits = np.asarray(logits, np.float64)
    n = logits.shape[0]
    rows, cols = np.arange(n), np.asarray(classes, np.int64)
    onehot = np.zeros_like(logits)
    onehot[rows, cols] = 1.0
    if objective == "score":
        return logits[rows, cols], onehot
    p = softmax(logits)
    if objective == "log-softmax":
        return np.log(p[rows, cols]), onehot - p
    if objective == "softmax":
        pc = p[rows, cols]
        return pc, pc[:, None] * (onehot - p)
    raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")


def objective_and_gradient(net, x, classes, l2, objective="score"):
    """objective(x) - l2 * ||x||^2 per image and its gradient w.r.t. x (the objective:
    S_c, P_c or log P_c, see :func:`objective_signal`).

    x (N, C, H, W) on the net's device; classes (N,). Returns (objective (N,) NumPy
    float64, gradient (N, C, H, W) on x's device, scores S_c (N,) NumPy float64)."""
    logits = net.forward(x)
    xp = get_array_module(logits)
    n = logits.shape[0]
    logits_np = to_numpy(logits).astype(np.float64)
    value, dlogits = objective_signal(logits_np, classes, objective)
    grad = net.backward(xp.asarray(dlogits.astype(np.float32)), rule="gradient")
    x = xp.asarray(x)
    scores = logits_np[np.arange(n), np.asarray(classes, np.int64)]
    sq = to_numpy((x.astype(xp.float64) ** 2).reshape(n, -1).sum(axis=1))
    grad = grad - xp.float32(2.0 * l2) * x
    return value - l2 * sq, grad, scores


def gaussian_blur(x, sigma):
    """Blur the two spatial axes of (N, C, H, W) with a Gaussian of ``sigma`` pixels."""
    xp = get_array_module(x)
    if xp is np:
        from scipy.ndimage import gaussian_filter
    else:
        from cupyx.scipy.ndimage import gaussian_filter
    return gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="reflect")


def class_model(net, classes, settings=None, progress=False, batch_size=None, **options):
    """Optimise one input per class in ``classes`` (indices).

    settings: a :class:`ClassModelSettings` (default: the tools' defaults); ``options``
    override single fields (``steps=50, lam=0``). batch_size: classes per batch (default:
    as many as :data:`BATCH_BYTES` of activations hold). ``progress``: a tqdm bar per
    batch. Returns a :class:`ClassModel` with NumPy arrays."""
    s = (settings or ClassModelSettings()).with_options(**options)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if len(classes) == 0:
        raise ValueError("no classes to visualise")
    bad = classes[(classes < 0) | (classes >= net.num_classes)]
    if len(bad):
        raise ValueError(f"class index {int(bad[0])} out of range: the model has "
                         f"{net.num_classes} classes (0-{net.num_classes - 1})")
    if batch_size is None:
        batch_size = examples_per_batch(net, BATCH_BYTES)
    batch_size = max(1, int(batch_size))
    parts = []
    starts = range(0, len(classes), batch_size)
    for number, start in enumerate(starts):
        chunk = classes[start:start + batch_size]
        desc = (f"class models {start + 1}-{start + len(chunk)} of {len(classes)}"
                if len(starts) > 1 else "class model")
        parts.append(_ascend(net, chunk, s, progress and desc))
    return ClassModel(x=np.concatenate([p.x for p in parts]), classes=classes,
                      scores=np.concatenate([p.scores for p in parts]),
                      history=np.concatenate([p.history for p in parts], axis=1),
                      logits=np.concatenate([p.logits for p in parts]))


def start_images(shape, classes, init_noise, seed):
    """(N, C, H, W) float32 start: zeros plus noise of std ``init_noise``, drawn for each
    class from (seed, class), so a class starts alike in any batch."""
    x = np.zeros((len(classes),) + tuple(shape), np.float32)
    if init_noise:
        for i, c in enumerate(classes):
            rng = np.random.default_rng((int(seed), int(c)))
            x[i] = rng.standard_normal(shape, dtype=np.float32) * np.float32(init_noise)
    return x


def _ascend(net, classes, s, progress):
    """Gradient ascent for one batch of classes (see the module docstring)."""
    rng = np.random.default_rng(s.seed)          # the jitter: the same shifts in every batch
    xp = np
    if net.device == "cuda":
        from ..backend import require_cupy
        xp = require_cupy()
    n = len(classes)
    x = xp.asarray(start_images(net.input_shape, classes, s.init_noise, s.seed))
    history = np.zeros((int(s.steps), n))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(s.steps), desc=progress, unit="step", leave=False,
                   disable=None)   # None: no bar when stderr is not a terminal
    try:
        # overflow is checked once per step below (one clear error instead of warnings)
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(int(s.steps)):
                dy, dx = ((int(v) for v in rng.integers(-s.jitter, s.jitter + 1, size=2))
                          if s.jitter else (0, 0))
                shifted = xp.roll(x, (dy, dx), axis=(2, 3)) if s.jitter else x
                obj, g, _ = objective_and_gradient(net, shifted, classes, s.lam, s.objective)
                if s.jitter:
                    g = xp.roll(g, (-dy, -dx), axis=(2, 3))
                history[t] = obj
                if s.normalize:
                    rms = xp.sqrt((g.astype(xp.float64) ** 2).reshape(n, -1).mean(axis=1))
                    g = g / (rms.astype(xp.float32).reshape(-1, 1, 1, 1) + xp.float32(1e-12))
                x = x + xp.float32(s.step) * g
                if s.decay:
                    x = x * xp.float32(1.0 - s.decay)
                if s.blur_every and s.blur_sigma > 0 and (t + 1) % s.blur_every == 0:
                    x = gaussian_blur(x, s.blur_sigma).astype(xp.float32)
                if s.norm_pct:
                    norms = xp.sqrt((x ** 2).sum(axis=1))                      # (N, H, W)
                    cut = xp.percentile(norms.reshape(n, -1), s.norm_pct, axis=1)
                    x = x * (norms >= cut.reshape(-1, 1, 1))[:, None].astype(xp.float32)
                if not bool(xp.isfinite(x).all()):
                    raise ValueError(f"the image left the float32 range at step {t + 1} (step "
                                     f"{s.step}, lambda {s.lam}, init_noise {s.init_noise}); use "
                                     "smaller values")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(objective=f"{float(obj.mean()):.2f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    logits = to_numpy(net.forward(x)).astype(np.float64)
    return ClassModel(x=to_numpy(x).astype(np.float32), classes=classes,
                      scores=logits[np.arange(n), classes], history=history, logits=logits)
