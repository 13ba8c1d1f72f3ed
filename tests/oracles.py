"""Test oracles: naive loop implementations, the paper's ReLU formulas, a layer-by-layer
harness, and hypothesis strategies for small random networks.

Nothing here calls minicnn's math: the loops below are written from the definitions
(Simonyan et al. 2013, Sect. 4; cs231n style) so they can disagree with the engine. They are slow
and meant for tiny arrays, in float64.
"""
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import minicnn
from minicnn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, Net, ReLU

RULES = ("gradient", "deconvnet", "guided")


# ============================================================================ naive loops

def conv_out(size, kernel, stride, pad):
    """Number of window positions, counted one by one (not the closed formula)."""
    count, start = 0, -pad
    while start + kernel <= size + pad:
        count += 1
        start += stride
    return count


def pad_hw(x, pad, value=0.0):
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * pad, w + 2 * pad), value, dtype=np.float64)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def conv2d_naive(x, w, b, stride, pad):
    """Cross-correlation, one output pixel at a time. x (N,C,H,W), w (O,C,k,k)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = conv_out(h, kh, stride, pad), conv_out(wd, kw, stride, pad)
    xp = pad_hw(x, pad)
    y = np.zeros((n, o, ho, wo))
    for i in range(n):
        for f in range(o):
            for r in range(ho):
                for s in range(wo):
                    acc = 0.0 if b is None else float(b[f])
                    for ch in range(c):
                        for a in range(kh):
                            for q in range(kw):
                                acc += xp[i, ch, r * stride + a, s * stride + q] * w[f, ch, a, q]
                    y[i, f, r, s] = acc
    return y


def conv_transpose_naive(dy, w, x_shape, stride, pad):
    """Scatter every dy[n, o, r, s] * w[o] back onto the padded input, then crop."""
    dy, w = np.asarray(dy, np.float64), np.asarray(w, np.float64)
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    dxp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    for i in range(n):
        for f in range(o):
            for r in range(dy.shape[2]):
                for s in range(dy.shape[3]):
                    dxp[i, :, r * stride:r * stride + kh, s * stride:s * stride + kw] += dy[i, f, r, s] * w[f]
    return dxp[:, :, pad:pad + h, pad:pad + wd]


def conv_param_grads_naive(dy, x, w_shape, stride, pad):
    dy, x = np.asarray(dy, np.float64), np.asarray(x, np.float64)
    o, c, kh, kw = w_shape
    xp = pad_hw(x, pad)
    dw = np.zeros(w_shape)
    for i in range(x.shape[0]):
        for f in range(o):
            for r in range(dy.shape[2]):
                for s in range(dy.shape[3]):
                    dw[f] += dy[i, f, r, s] * xp[i, :, r * stride:r * stride + kh, s * stride:s * stride + kw]
    return dw, dy.sum(axis=(0, 2, 3))


def maxpool_naive(x, kernel, stride, pad):
    """Max-pool by loops. Returns y (N,C,Ho,Wo) and winners (N,C,Ho,Wo,2): the (row, col)
    in the unpadded input of the first maximum in raster order (padding never wins),
    plus gap (N,C,Ho,Wo): best minus second best value in the window (inf if alone)."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    ho, wo = conv_out(h, kernel, stride, pad), conv_out(w, kernel, stride, pad)
    y = np.zeros((n, c, ho, wo))
    win = np.zeros((n, c, ho, wo, 2), dtype=np.int64)
    gap = np.full((n, c, ho, wo), np.inf)
    for i in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    best, where, values = None, None, []
                    for a in range(kernel):
                        for b in range(kernel):
                            row, col = r * stride - pad + a, s * stride - pad + b
                            if not (0 <= row < h and 0 <= col < w):
                                continue
                            v = x[i, ch, row, col]
                            values.append(v)
                            if best is None or v > best:      # strict: first max wins
                                best, where = v, (row, col)
                    y[i, ch, r, s] = best
                    win[i, ch, r, s] = where
                    values.sort()
                    if len(values) > 1:
                        gap[i, ch, r, s] = values[-1] - values[-2]
    return y, win, gap


def unpool_naive(dy, winners, x_shape):
    """Add every dy[p] onto the input position that won window p."""
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(x_shape)
    n, c, ho, wo = dy.shape
    for i in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    row, col = winners[i, ch, r, s]
                    dx[i, ch, row, col] += dy[i, ch, r, s]
    return dx


def linear_naive(x, W, b):
    x, W = np.asarray(x, np.float64), np.asarray(W, np.float64)
    y = np.zeros((x.shape[0], W.shape[0]))
    for i in range(x.shape[0]):
        for o in range(W.shape[0]):
            y[i, o] = sum(W[o, j] * x[i, j] for j in range(W.shape[1])) + (0.0 if b is None else b[o])
    return y


# ============================================================================ ReLU rules
# Written from the table of Simonyan et al. 2013, Sect. 4 (docs/backward_rules.md),
# independently of minicnn.functional.

def relu_rule(rule, grad, x_in):
    """R_n from R_{n+1} (grad) and the ReLU's forward input X_n (x_in)."""
    if rule == "gradient":
        return grad * (x_in > 0)
    if rule == "deconvnet":
        return grad * (grad > 0)
    if rule == "guided":
        return grad * (x_in > 0) * (grad > 0)
    raise AssertionError(rule)


# ============================================================================ harness

def forward_layers(layers, x):
    """Run (name, layer) pairs one by one; returns (output, list of each layer's input)."""
    inputs = []
    for _, layer in layers:
        inputs.append(x)
        x = layer.forward(x)
    return x, inputs


def backward_layers(layers, inputs, grad, relu=None, param_grads=False):
    """Backward through (name, layer) pairs after :func:`forward_layers`.

    Non-ReLU layers always get rule "gradient" (their backward must not depend on the
    rule). ReLUs use ``relu(grad, x_in)`` when given (our own formula), else the layer's
    own "gradient" backward."""
    for (_, layer), x_in in reversed(list(zip(layers, inputs))):
        if relu is not None and isinstance(layer, ReLU):
            grad = relu(grad, x_in)
        else:
            grad = layer.backward(grad, "gradient", param_grads=param_grads)
    return grad


def kink_margin(layers, inputs):
    """Distance to the non-smooth set: min |pre-ReLU activation| and min gap between the
    best and second-best value of any pooling window. inputs from forward_layers."""
    margin = np.inf
    for (_, layer), x_in in zip(layers, inputs):
        x_in = minicnn.to_numpy(x_in)
        if isinstance(layer, ReLU) and x_in.size:
            margin = min(margin, float(np.abs(x_in).min()))
        if isinstance(layer, MaxPool2d):
            _, _, gap = maxpool_naive(x_in, layer.kernel_size, layer.stride, layer.pad)
            margin = min(margin, float(gap.min()))
    return margin


def to_np(a):
    return minicnn.to_numpy(a)


def on(device, array):
    """NumPy array -> array on ``device`` ('cpu' or 'cuda')."""
    return minicnn.to_device(np.asarray(array), device)


def layers_to(layers, device):
    """Move the parameters of (name, layer) pairs to ``device``; returns the pairs."""
    for _, layer in layers:
        for key in layer.params:
            layer.params[key] = minicnn.to_device(layer.params[key], device)
    return layers


# ============================================================================ random nets

@dataclass(frozen=True)
class NetSpec:
    """A small network: input shape (N, C, H, W), layers as (kind, args), weight seed."""
    input_shape: tuple
    layers: tuple
    seed: int

    @property
    def has_relu(self):
        return any(kind == "relu" for kind, _ in self.layers)


def conv_geometry(max_pad=2):
    """(kernel, stride, pad); VGG's 3x3 / 1 / 1 (which the engine may compute by a
    separate fast path, e.g. Winograd) is drawn a third of the time."""
    return st.one_of(st.just((3, 1, 1)), st.just((3, 1, 1)),
                     st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(0, max_pad)))


def conv2d_offsets(x, w, b, stride, pad):
    """Cross-correlation as a sum over kernel offsets (einsum), float64: an oracle fast
    enough for large inputs."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = conv_out(h, kh, stride, pad), conv_out(wd, kw, stride, pad)
    xp = pad_hw(x, pad)
    y = np.zeros((n, o, ho, wo))
    for a in range(kh):
        for q in range(kw):
            patch = xp[:, :, a:a + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, a, q])
    return y if b is None else y + np.asarray(b, np.float64).reshape(1, o, 1, 1)


def _fits(size, kernel, stride, pad):
    return size + 2 * pad >= kernel


@st.composite
def net_specs(draw, relu="random", batch=(1, 1), max_spatial=3, max_linear=2,
              min_hw=3, max_hw=9):
    """relu: "none" (no ReLU at all), "random" (anywhere, maybe none), "some" (>= 1)."""
    n = draw(st.integers(*batch))
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(min_hw, max_hw)), draw(st.integers(min_hw, max_hw))
    shape = (c, h, w)
    layers = []

    def maybe_relu_dropout():
        if relu != "none" and draw(st.booleans()):
            layers.append(("relu", {}))
        if draw(st.integers(0, 5)) == 0:
            layers.append(("dropout", {"p": draw(st.sampled_from([0.25, 0.5]))}))

    if relu != "none" and draw(st.integers(0, 4)) == 0:
        layers.append(("relu", {}))               # a ReLU on the input itself
    for _ in range(draw(st.integers(0, max_spatial))):
        cc, hh, ww = shape
        if draw(st.booleans()):
            k, s, p = draw(conv_geometry())
            if not (_fits(hh, k, s, p) and _fits(ww, k, s, p)):
                continue
            o = draw(st.integers(1, 4))
            layers.append(("conv2d", {"in_channels": cc, "out_channels": o, "kernel_size": k,
                                      "stride": s, "pad": p}))
            shape = (o, conv_out(hh, k, s, p), conv_out(ww, k, s, p))
        else:
            k = draw(st.integers(1, 3))
            s = draw(st.integers(1, k + 1))        # s < k: overlapping windows
            p = draw(st.integers(0, k // 2))
            if not (_fits(hh, k, s, p) and _fits(ww, k, s, p)):
                continue
            layers.append(("maxpool2d", {"kernel_size": k, "stride": s, "pad": p}))
            shape = (cc, conv_out(hh, k, s, p), conv_out(ww, k, s, p))
        maybe_relu_dropout()
    if draw(st.booleans()) or not layers:
        layers.append(("flatten", {}))
        features = int(np.prod(shape))
        for _ in range(draw(st.integers(0 if layers[:-1] else 1, max_linear))):
            out = draw(st.integers(1, 5))
            layers.append(("linear", {"in_features": features, "out_features": out}))
            features = out
            maybe_relu_dropout()
    if relu == "some" and not any(k == "relu" for k, _ in layers):
        layers.insert(draw(st.integers(0, len(layers))), ("relu", {}))
    seed = draw(st.integers(0, 2**32 - 1))
    return NetSpec((n,) + (c, h, w), tuple((k, tuple(sorted(a.items()))) for k, a in layers), seed)


_KINDS = {"conv2d": Conv2d, "linear": Linear, "relu": ReLU, "maxpool2d": MaxPool2d,
          "flatten": Flatten, "dropout": Dropout}


def build_layers(spec, dtype=np.float32):
    """Fresh (name, layer) pairs for ``spec`` with weights drawn from its seed, in ``dtype``
    (He-like scale so activations stay O(1); non-zero biases)."""
    rng = np.random.default_rng(spec.seed)
    layers = []
    for i, (kind, args) in enumerate(spec.layers):
        layer = _KINDS[kind](**dict(args))
        for pname in layer.param_names:
            shape = layer.params[pname].shape
            if pname == "weight":
                fan_in = int(np.prod(shape[1:]))
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            else:
                value = rng.standard_normal(shape) * 0.5
            layer.params[pname] = value.astype(dtype)
        layers.append((f"{kind}{i}", layer))
    return layers


def build_net(spec, device="cpu"):
    net = Net(build_layers(spec, np.float32)).eval()
    return net.to(device) if device != "cpu" else net


def draw_input(spec, dtype=np.float32, salt=1):
    rng = np.random.default_rng([spec.seed, salt])
    return rng.standard_normal(spec.input_shape).astype(dtype)


def output_shape(spec):
    net = Net(build_layers(spec))
    return (spec.input_shape[0],) + tuple(list(net.shapes(spec.input_shape[1:]).values())[-1])


def draw_upstream(spec, shape, dtype=np.float32, salt=2):
    rng = np.random.default_rng([spec.seed, salt])
    return rng.standard_normal(shape).astype(dtype)
