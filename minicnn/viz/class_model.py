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

``init_noise`` (default 0: the paper's zero image) starts from zero plus seeded Gaussian
noise of that standard deviation. The zero image can be a dead point: when every
first-layer bias is negative (as in the shipped model), every ReLU of the first layer is
off at the zero image and the gradient there is exactly zero, so plain ascent never moves.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, to_numpy


OBJECTIVES = ("score", "softmax", "log-softmax")
# the settings tools/class_model.py uses by default (chosen on the shipped model)
DEFAULTS = dict(steps=300, step=0.1, lam=0.01, jitter=2, blur_every=4, blur_sigma=1.0,
                decay=0.0, norm_pct=0.0, init_noise=0.01)


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


def class_model(net, classes, steps=300, step=1.0, l2=0.0, normalize=True, jitter=0,
                blur_every=0, blur_sigma=0.5, decay=0.0, norm_pct=0.0, seed=0,
                progress=False, init_noise=0.0, objective="score"):
    """Optimise one input per class in ``classes`` (indices), as one batch.

    See the module docstring for the algorithm and options. ``progress``: show a tqdm
    bar. Returns a :class:`ClassModel` with NumPy arrays."""
    classes = np.asarray(classes, np.int64).reshape(-1)
    if len(classes) == 0:
        raise ValueError("no classes to visualise")
    for name, value in (("steps", steps), ("blur_every", blur_every), ("jitter", jitter)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    if not 0.0 <= norm_pct < 100.0:
        raise ValueError(f"norm_pct must be in [0, 100), got {norm_pct}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of "
                         f"{', '.join(OBJECTIVES)}")
    for name, value in (("step", step), ("l2", l2), ("init_noise", init_noise)):
        if not 0 <= value <= np.finfo(np.float32).max:
            raise ValueError(f"{name} must be a number >= 0 within the float32 range, got "
                             f"{value}")
    rng = np.random.default_rng(seed)
    shape = (len(classes),) + net.input_shape
    xp = np
    if net.device == "cuda":
        from ..backend import require_cupy
        xp = require_cupy()
    x = xp.zeros(shape, dtype=xp.float32)
    if init_noise:
        x += xp.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(init_noise))
    history = np.zeros((int(steps), len(classes)))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(steps), desc="class model", unit="step", leave=False,
                   disable=None)   # None: no bar when stderr is not a terminal
    try:
        # overflow is checked once per step below (one clear error instead of warnings)
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(int(steps)):
                dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2)) if jitter else (0, 0)
                shifted = xp.roll(x, (dy, dx), axis=(2, 3)) if jitter else x
                obj, g, _ = objective_and_gradient(net, shifted, classes, l2, objective)
                if jitter:
                    g = xp.roll(g, (-dy, -dx), axis=(2, 3))
                history[t] = obj
                if normalize:
                    rms = xp.sqrt((g.astype(xp.float64) ** 2).reshape(len(classes), -1).mean(axis=1))
                    g = g / (rms.astype(xp.float32).reshape(-1, 1, 1, 1) + xp.float32(1e-12))
                x = x + xp.float32(step) * g
                if decay:
                    x = x * xp.float32(1.0 - decay)
                if blur_every and blur_sigma > 0 and (t + 1) % blur_every == 0:
                    x = gaussian_blur(x, blur_sigma).astype(xp.float32)
                if norm_pct:
                    norms = xp.sqrt((x ** 2).sum(axis=1))                      # (N, H, W)
                    cut = xp.percentile(norms.reshape(len(classes), -1), norm_pct, axis=1)
                    x = x * (norms >= cut.reshape(-1, 1, 1))[:, None].astype(xp.float32)
                if not bool(xp.isfinite(x).all()):
                    raise ValueError(f"the image left the float32 range at step {t + 1} (step "
                                     f"{step}, l2 {l2}, init_noise {init_noise}); use smaller values")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(objective=f"{float(obj.mean()):.2f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    logits = to_numpy(net.forward(x)).astype(np.float64)
    return ClassModel(x=to_numpy(x).astype(np.float32), classes=classes,
                      scores=logits[np.arange(len(classes)), classes], history=history,
                      logits=logits)
