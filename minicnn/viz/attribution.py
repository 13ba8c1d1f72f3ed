"""The paper's map and its descendants, each one definition, in one registry.

Every method turns a batch x (N, C, H, W) and one class per image into

    signal  (N, C', H, W) float32: what the method computes in input space, signed
            (C' = C for the per-pixel-per-channel methods, 1 for Grad-CAM and occlusion)
    map     (N, H, W) float32 >= 0: what is shown and localised

through the engine's own passes (no autograd). The methods:

gradient, deconvnet, guided   one backward pass of the one-hot class score with that
                              ReLU rule (Simonyan et al. 2013; Sect. 4); map max_k |w_k|.
                              ``smoothgrad`` > 0 averages the signal over noisy copies.
gradcam        (Selvaraju et al. 2017) at a conv layer's rectified output A (N, K, h, w):
               alpha_k = mean over space of dS_c/dA_k (``Net.backward(..., until=layer)``),
               cam = ReLU(sum_k alpha_k A_k) at (h, w), upsampled to (H, W) bilinearly with
               half-pixel centres (``align_corners=False``: the centre of coarse cell i
               sits at input coordinate (i + 0.5) * H / h - 0.5; edges clamp).
integrated_gradients  (Sundararajan et al. 2017) from a baseline x' (default the zero
               network input): (x - x') * mean over k = 1..m of dS_c/dx at
               x' + (k - 1/2)/m * (x - x'): the midpoint rule with m = ``steps`` points;
               map |sum over channels|.
occlusion      (Zeiler & Fergus 2014) a ``patch`` x ``patch`` square of the baseline value
               slid with ``stride`` (the last position flush with the far edge, so every
               pixel is covered); each pixel's signal is the mean score drop
               S_c(x) - S_c(x occluded) over the patches that cover it; map max(signal, 0).
gradient_x_input  x * dS_c/dx; map |sum over channels|.
"""
from dataclasses import dataclass, field

import numpy as np

from ..backend import to_numpy
from ..functional import check_rule
from .batching import examples_per_batch

BATCH_BYTES = 192 * 2**20      # one batch of copies (noisy, interpolated, occluded)


@dataclass(frozen=True)
class MethodSettings:
    """The options of every method (each reads its own). smoothgrad: noisy copies (0:
    off) of the backward-rule methods, noise their sigma as a fraction of the input's
    range, seed of that noise; gradcam_layer: a layer name (None: the last conv's ReLU);
    ig_steps: Integrated Gradients' points; baseline: the network-input value of IG's
    baseline and of occlusion's patch; patch, stride: occlusion's square in input pixels
    (0: an eighth of the shorter side, half of that)."""
    smoothgrad: int = 0
    noise: float = 0.15
    seed: int = 0
    gradcam_layer: str = None
    ig_steps: int = 32
    baseline: float = 0.0
    patch: int = 0
    stride: int = 0


@dataclass(frozen=True)
class Method:
    name: str
    title: str            # for figures and tables
    run: object = field(repr=False)     # (net, x, classes, settings) -> (signal, map)
    rule: str = None      # the backward rule of the paper's family, else None


def one_hot(logits, classes):
    """The backward's starting signal: 1 at each image's class score, 0 elsewhere."""
    count = logits.shape[0]
    seed = np.zeros(tuple(logits.shape), np.float32)
    seed[np.arange(count), np.asarray(classes, np.int64)] = 1.0
    return seed


def input_gradient(net, x, classes, rule="gradient"):
    """(N, C, H, W) float64: the input signal of each image's class score, one forward and
    one backward with ``rule`` (:func:`class_signal`)."""
    return to_numpy(class_signal(net, x, classes, rule)[0]).astype(np.float64)


def class_signal(net, x, classes, rule="gradient"):
    """One forward and one backward: the input-space signal of class score S_c for each
    image. x (N, C, H, W); classes (N,) ints or None (top-1 per image).

    Returns (signal (N, C, H, W) on the net's device, logits (N, K) NumPy, classes (N,))."""
    check_rule(rule)
    logits = net.forward(x)
    logits_np = to_numpy(logits).astype(np.float64)
    classes = _classes_for(logits_np, classes)
    return net.backward(one_hot(logits, classes), rule=rule), logits_np, classes


def _classes_for(logits, classes):
    """classes (N,) ints, or None for the top-1 of each row of logits (N, K)."""
    classes = logits.argmax(axis=1) if classes is None else classes
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if classes.shape[0] != logits.shape[0]:
        raise ValueError(f"{classes.shape[0]} classes for a batch of {logits.shape[0]} images")
    return classes


def smooth_signal(net, x, classes, rule="gradient", samples=0, noise=0.15, seed=0,
                  batch_size=None):
    """SmoothGrad: mean of ``class_signal`` over ``samples`` noisy copies of each image
    (Gaussian noise, sigma = noise * (max - min) of the image). samples=0: plain signal.
    classes (N,) ints must be given. batch_size: noisy copies per pass (default: as many
    as :data:`BATCH_BYTES` hold). Returns (N, C, H, W) NumPy float32."""
    x = np.asarray(to_numpy(x), np.float32)
    if samples <= 0:
        return to_numpy(class_signal(net, x, classes, rule)[0]).astype(np.float32)
    if batch_size is None:
        batch_size = _batch_size(net, x)
    rng = np.random.default_rng(seed)
    classes = np.asarray(classes, np.int64)
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        sigma = np.float32(float(noise) * float(x[i].max() - x[i].min()))
        for start in range(0, samples, batch_size):
            # drawn a batch at a time: the same numbers as drawing all at once, in
            # memory for one batch only
            count = min(batch_size, samples - start)
            chunk = x[i][None] + rng.standard_normal((count,) + x.shape[1:]).astype(
                np.float32) * sigma
            sig = class_signal(net, chunk, np.full(len(chunk), classes[i]), rule)[0]
            out[i] += to_numpy(sig).astype(np.float64).sum(axis=0)
    return (out / samples).astype(np.float32)


def backward_signals(net, count, classes, rule):
    """(K, C, H, W) float64: for each class, the input signal of its score summed over the
    ``count`` examples of the forward pass the net has just run (one backward pass per
    class, no second forward)."""
    out = []
    for c in classes:
        seed_signal = np.zeros((count, net.num_classes), np.float32)
        seed_signal[:, c] = 1.0
        out.append(to_numpy(net.backward(seed_signal, rule)).astype(np.float64).sum(axis=0))
    return np.stack(out)


def class_signals(net, x, classes, rule="gradient", samples=0, noise=0.15, seed=0,
                  batch_size=32):
    """Input-space signals of one image for several classes: (K, C, H, W) float64.

    x (C, H, W) preprocessed. One forward pass (per chunk of SmoothGrad's noisy copies)
    serves every class: each class is one backward pass of its one-hot score signal.
    samples > 0: SmoothGrad (Smilkov et al. 2017), the signal averaged over ``samples``
    copies with Gaussian noise of sigma = noise * (max - min) of x, drawn from ``seed``."""
    x = np.asarray(to_numpy(x), np.float32)
    classes = [int(c) for c in classes]
    rng = np.random.default_rng(seed)
    sigma = np.float32(float(noise) * float(x.max() - x.min()))
    count = max(int(samples), 1)
    # at most as many copies a pass as fit the saliency memory budget (one for VGG16)
    batch_size = max(1, min(int(batch_size), _batch_size(net, x[None])))
    total = np.zeros((len(classes),) + x.shape, np.float64)
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        # the noise drawn a batch at a time: the same numbers as all at once
        chunk = (x[None] + rng.standard_normal((n,) + x.shape).astype(np.float32) * sigma
                 if samples else x[None])
        net.forward(chunk)
        total += backward_signals(net, len(chunk), classes, rule)
    return total / count


def _batch_size(net, x):
    return examples_per_batch(net, BATCH_BYTES, x.shape[1:])


def _rule_method(rule):
    def run(net, x, classes, s):
        signal = smooth_signal(net, x, classes, rule, s.smoothgrad, s.noise, s.seed)
        return signal, np.abs(signal).max(axis=1).astype(np.float32)
    return run


def default_gradcam_layer(net):
    """The last ReLU that follows a conv before the net leaves space (flatten or global
    pooling): ``relu5_3`` in VGG16, ``relu4_2`` in the shipped model."""
    found = None
    previous = None
    for name, layer in net:
        if layer.kind in ("flatten", "global_avgpool"):
            break
        if layer.kind == "relu" and previous == "conv2d":
            found = name
        previous = layer.kind
    if found is None:
        raise ValueError("Grad-CAM needs a conv layer followed by a ReLU before the net "
                         "flattens; name one with gradcam_layer")
    return found


def upsample(maps, size):
    """(N, h, w) -> (N, H, W) bilinear with half-pixel centres (align_corners=False),
    edges clamped; Pillow's resampling (exact for upsampling, float32)."""
    from PIL import Image
    H, W = size
    return np.stack([np.asarray(Image.fromarray(np.asarray(m, np.float32), "F").resize(
        (W, H), Image.BILINEAR)) for m in maps]).astype(np.float32)


def gradcam_coarse(net, x, classes, layer=None):
    """(N, h, w) float64 Grad-CAM at ``layer``'s resolution (ReLU applied)."""
    layer = layer or default_gradcam_layer(net)
    # the activations of the layer, then the full forward whose caches the backward reads
    acts = to_numpy(net.forward(x, until=layer)).astype(np.float64)
    if acts.ndim != 4:
        raise ValueError(f"Grad-CAM needs a layer with (K, h, w) maps; {layer!r} gives "
                         f"{acts.shape[1:]}")
    logits = net.forward(x)
    grads = to_numpy(net.backward(one_hot(logits, classes), until=layer)).astype(np.float64)
    alpha = grads.mean(axis=(2, 3))
    return np.maximum(np.einsum("nk,nkhw->nhw", alpha, acts), 0.0)


def _gradcam(net, x, classes, s):
    cam = upsample(gradcam_coarse(net, x, classes, s.gradcam_layer), x.shape[2:])
    return cam[:, None], cam


def integrated_gradients(net, x, classes, steps=32, baseline=0.0):
    """(N, C, H, W) float64 attributions by the midpoint rule with ``steps`` points on the
    straight path from the baseline (a value, or an array shaped like x) to x."""
    x64 = np.asarray(x, np.float64)
    base = np.broadcast_to(np.asarray(baseline, np.float64), x64.shape)
    out = np.zeros(x64.shape, np.float64)
    size = _batch_size(net, x64)
    alphas = (np.arange(steps) + 0.5) / steps
    for i in range(len(x64)):
        for start in range(0, steps, size):
            a = alphas[start:start + size][:, None, None, None]
            points = (base[i][None] + a * (x64[i] - base[i])[None]).astype(net.dtype)
            out[i] += input_gradient(net, points, [classes[i]] * len(a)).sum(axis=0)
    return (x64 - base) * out / steps


def _ig(net, x, classes, s):
    attr = integrated_gradients(net, x, classes, s.ig_steps, s.baseline)
    return attr.astype(np.float32), np.abs(attr.sum(axis=1)).astype(np.float32)


def occlusion_positions(length, patch, stride):
    """Start offsets of the patch along one axis: every ``stride``, the last flush with
    the end, so that every pixel is covered."""
    starts = list(range(0, max(length - patch, 0) + 1, stride))
    if starts[-1] != max(length - patch, 0):
        starts.append(length - patch)
    return starts


def occlusion_geometry(shape, patch=0, stride=0):
    """(patch, stride) in input pixels: 0 means an eighth of the shorter side (at least
    2), and half the patch."""
    patch = int(patch) or max(2, min(shape) // 8)
    stride = int(stride) or max(1, patch // 2)
    if not 1 <= patch <= min(shape) or not 1 <= stride <= patch:
        raise ValueError(f"occlusion: patch must be 1-{min(shape)} pixels and stride 1 to "
                         f"the patch (every pixel covered), got {patch} and {stride}")
    return patch, stride


def occlusion(net, x, classes, patch=0, stride=0, baseline=0.0):
    """(N, H, W) float64: each pixel's mean score drop over the patches covering it."""
    x = np.asarray(x, net.dtype)
    H, W = x.shape[2:]
    patch, stride = occlusion_geometry((H, W), patch, stride)
    boxes = [(r, c) for r in occlusion_positions(H, patch, stride)
             for c in occlusion_positions(W, patch, stride)]
    size = _batch_size(net, x)
    out = np.zeros((len(x), H, W), np.float64)
    cover = np.zeros((H, W), np.float64)
    for r, c in boxes:
        cover[r:r + patch, c:c + patch] += 1
    for i in range(len(x)):
        clean = float(to_numpy(net.forward(x[i][None]))[0, classes[i]])
        for start in range(0, len(boxes), size):
            chunk = boxes[start:start + size]
            batch = np.repeat(x[i][None], len(chunk), axis=0)
            for k, (r, c) in enumerate(chunk):
                batch[k, :, r:r + patch, c:c + patch] = baseline
            drops = clean - to_numpy(net.forward(batch))[:, classes[i]].astype(np.float64)
            for (r, c), d in zip(chunk, drops):
                out[i, r:r + patch, c:c + patch] += d
    return out / cover


def _occlusion(net, x, classes, s):
    drop = occlusion(net, x, classes, s.patch, s.stride, s.baseline)
    return drop[:, None].astype(np.float32), np.maximum(drop, 0).astype(np.float32)


def gradient_x_input(net, x, classes):
    """(N, C, H, W) float64: x * dS_c/dx."""
    return np.asarray(x, np.float64) * input_gradient(net, x, classes)


def _gxi(net, x, classes, s):
    attr = gradient_x_input(net, x, classes)
    return attr.astype(np.float32), np.abs(attr.sum(axis=1)).astype(np.float32)


METHODS = {m.name: m for m in (
    Method("gradient", "gradient (the paper)", _rule_method("gradient"), "gradient"),
    Method("deconvnet", "DeconvNet", _rule_method("deconvnet"), "deconvnet"),
    Method("guided", "guided backprop", _rule_method("guided"), "guided"),
    Method("gradcam", "Grad-CAM", _gradcam),
    Method("integrated_gradients", "Integrated Gradients", _ig),
    Method("occlusion", "occlusion", _occlusion),
    Method("gradient_x_input", "gradient x input", _gxi),
)}


def method(name):
    """The registered method ``name``; ValueError naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def attribute(net, x, classes, name="gradient", settings=MethodSettings()):
    """(signal (N, C', H, W), map (N, H, W)) float32 NumPy of method ``name`` for a batch
    x (N, C, H, W) and one class per image."""
    x = np.asarray(to_numpy(x), net.dtype)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if x.ndim != 4 or len(classes) != len(x):
        raise ValueError(f"expected a (N, C, H, W) batch and N classes, got {x.shape} and "
                         f"{len(classes)}")
    return method(name).run(net, x, classes, settings)
