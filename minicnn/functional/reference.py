"""The reference layer math: every layer kind's forward beside its backward.

Pure functions on NumPy or CuPy arrays (``xp = get_array_module(x)``), batch first.
Read this module to learn what each layer computes; ``minicnn.functional`` (the package)
runs these functions, or a fast path with the same results, on every layer. The tests
check these functions against naive loops (tests/oracles.py), and the fast paths
against these functions.

Backward functions map the signal at a layer's output to the signal at its input.
Backprop, DeconvNet and guided backprop use the same backward for every layer but the
ReLU (Simonyan, Vedaldi & Zisserman 2013, Sect. 4, for backprop and DeconvNet; guided
backprop, Springenberg et al. 2015, combines their two ReLU rules; docs/backward_rules.md).

Output size of a convolution or pooling window along one axis (H or W)::

    out = (size + 2 * pad - kernel) // stride + 1
"""
import numpy

from ..backend import get_array_module

RULES = ("gradient", "deconvnet", "guided")


def out_size(size, kernel, stride, pad):
    """Output length along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def check_rule(rule):
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    return rule


def pad_spatial(x, pad, value=0.0):
    """Zero- (or value-) pad the two spatial axes of (N, C, H, W) by ``pad``."""
    if pad == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * pad, w + 2 * pad), value, dtype=x.dtype)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def _window(xpad, a, b, stride, ho, wo):
    """View of the padded input seen by kernel offset (a, b): (N, C, Ho, Wo)."""
    return xpad[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]


# ----------------------------------------------------------------------------- conv

def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> columns (N, C*kh*kw, Ho*Wo), rows ordered (c, a, b) like OIHW:
    column p holds the kh x kw window under output position p, every channel."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    xpad = pad_spatial(x, pad)
    cols = xp.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, a, b] = _window(xpad, a, b, stride, ho, wo)
    return cols.reshape(n, c * kh * kw, ho * wo)


def col2im(cols, x_shape, kh, kw, stride, pad):
    """Adjoint of :func:`im2col`: (N, C*kh*kw, Ho*Wo) -> (N, C, H, W), overlaps summed."""
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    xpad = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            _window(xpad, a, b, stride, ho, wo)[...] += cols[:, :, a, b]
    return xpad[:, :, pad:pad + h, pad:pad + w]


def conv2d_forward(x, weight, bias, stride=1, pad=0):
    """Cross-correlation (as PyTorch and Caffe), one GEMM over im2col columns.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None -> y (N, O, Ho, Wo),
    Ho = (H + 2*pad - kh) // stride + 1 (likewise Wo)::

        y[n, o, i, j] = bias[o] + sum_{c,a,b} weight[o, c, a, b] * xpad[n, c, s*i + a, s*j + b]
    """
    n = x.shape[0]
    o, c, kh, kw = weight.shape
    ho, wo = out_size(x.shape[2], kh, stride, pad), out_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)                                 # (N, CKK, L)
    w2 = weight.reshape(o, c * kh * kw)
    y = w2 @ cols                                                         # (N, O, L)
    if bias is not None:
        y += bias.reshape(1, o, 1)
    return y.reshape(n, o, ho, wo)


def conv2d_backward_input(dy, weight, x_shape, stride=1, pad=0):
    """Transposed convolution: dy (N, O, Ho, Wo) -> dx (N, C, H, W) of shape ``x_shape``,
    computed as a GEMM, then col2im sums the overlapping windows. At stride 1 this is the
    correlation of dy with the flipped kernel (channels swapped); at a larger stride, of
    dy dilated by the stride (zeros between its entries).

    The same for backprop, DeconvNet and guided backprop (Simonyan et al. 2013, Sect. 4;
    Springenberg et al. 2015 for guided backprop)."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight.shape
    cols = weight.reshape(o, c * kh * kw).T @ dy.reshape(n, o, -1)       # (N, C*kh*kw, L)
    return col2im(cols, x_shape, kh, kw, stride, pad)


def conv2d_backward_params(dy, x, weight_shape, stride=1, pad=0):
    """Parameter gradients: dy (N, O, Ho, Wo), x (N, C, H, W) -> dW (O, C, kh, kw), db (O,).

    dW[o, c, a, b] = sum_{n,i,j} dy[n, o, i, j] * xpad[n, c, s*i + a, s*j + b]."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight_shape
    cols = im2col(x, kh, kw, stride, pad)                                 # (N, CKK, L)
    dy3 = dy.reshape(n, o, -1)
    dw = (dy3 @ cols.transpose(0, 2, 1)).sum(axis=0)                      # (O, CKK)
    return dw.reshape(weight_shape), dy3.sum(axis=(0, 2))


# ----------------------------------------------------------------------------- linear

def linear_forward(x, weight, bias):
    """y = x W^T + b: x (N, in), weight (out, in) (PyTorch layout), bias (out,) -> (N, out)."""
    return x @ weight.T + bias


def linear_backward_input(dy, weight):
    """dy (N, out) -> dx = dy W, (N, in). The same for every rule."""
    return dy @ weight


def linear_backward_params(dy, x):
    """dy (N, out), x (N, in) -> dW = dy^T x (out, in), db (out,)."""
    return dy.T @ x, dy.sum(axis=0)


# ----------------------------------------------------------------------------- ReLU

def relu_forward(x):
    """max(x, 0) elementwise, any shape (a NaN passes through, as in PyTorch).

    Its output doubles as the backward mask: y > 0 exactly where x > 0."""
    xp = get_array_module(x)
    return xp.maximum(x, xp.zeros((), dtype=x.dtype))


def relu_backward(dy, relu_output, rule):
    """The only place the three passes differ (Simonyan et al. 2013, Sect. 4, for the
    gradient and DeconvNet; Springenberg et al. 2015 for guided backprop).

    dy: signal R_{n+1} at the ReLU output; relu_output: the forward output
    max(X_n, 0) (same shape; its positive entries are exactly those with X_n > 0; a
    boolean mask 1[X_n > 0] works too).

    - gradient:  R_n = R_{n+1} * 1[X_n > 0]
    - deconvnet: R_n = R_{n+1} * 1[R_{n+1} > 0]
    - guided:    R_n = R_{n+1} * 1[X_n > 0] * 1[R_{n+1} > 0]
    """
    check_rule(rule)
    forward_mask = relu_output > 0
    signal_mask = dy > 0
    if rule == "gradient":
        return dy * forward_mask
    if rule == "deconvnet":
        return dy * signal_mask
    return dy * (forward_mask & signal_mask)


# ----------------------------------------------------------------------------- max-pool

def maxpool2d_forward(x, kernel, stride, pad=0):
    """Max-pool with switches, any square kernel, stride and pad.

    x (N, C, H, W) -> (y (N, C, Ho, Wo), switches (N, C, Ho, Wo) uint8 or int32),
    Ho = (H + 2*pad - kernel) // stride + 1 (likewise Wo).
    A switch is the raster index ``a*kernel + b`` of the winning offset (a, b) inside its
    window; ties go to the first in raster order (argmax returns the first maximum).
    Padding is -inf, so it never wins (pad <= kernel // 2 keeps a real pixel in every
    window).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    xpad = pad_spatial(x, pad, value=-xp.inf)
    windows = xp.empty((kernel * kernel, n, c, ho, wo), dtype=x.dtype)
    for a in range(kernel):
        for b in range(kernel):
            windows[a * kernel + b] = _window(xpad, a, b, stride, ho, wo)
    switch_dtype = xp.uint8 if kernel * kernel <= 255 else xp.int32
    switches = windows.argmax(axis=0).astype(switch_dtype)
    y = xp.take_along_axis(windows, switches[None].astype(xp.intp), axis=0)[0]
    return y, switches


def maxpool2d_backward(dy, switches, x_shape, kernel, stride, pad=0):
    """Unpooling: route dy (N, C, Ho, Wo) to the switch positions -> dx (N, C, H, W).

    Backprop and DeconvNet unpooling are this same function (the switches are the
    forward's, whatever the rule). Each kernel offset is written in its own pass, so
    overlapping windows (stride < kernel) add up and no two writes of one pass hit the
    same position (no undefined duplicate scatter). It selects with ``where``: a NaN in
    dy stays at its switch.
    """
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    ho, wo = dy.shape[2:]
    dxpad = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dy.dtype)
    for a in range(kernel):
        for b in range(kernel):
            routed = xp.where(switches == a * kernel + b, dy, 0)
            _window(dxpad, a, b, stride, ho, wo)[...] += routed
    return dxpad[:, :, pad:pad + h, pad:pad + w]


# ----------------------------------------------------------------------------- flatten

def flatten_forward(x):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (as PyTorch)."""
    return x.reshape(x.shape[0], -1)


def flatten_backward(dy, x):
    """(N, C*H*W) -> (N, C, H, W), the shape of the forward input ``x``."""
    return dy.reshape(x.shape)


# ----------------------------------------------------------------------------- dropout

def dropout_forward(x, p, rng):
    """Training-mode dropout: each entry is kept with probability 1 - p and scaled by
    1 / (1 - p), so the expected output is x. x any shape; rng a NumPy Generator (the
    draws are float32 on every backend, so a seed gives the same mask everywhere).

    Returns (y, mask), mask of x's shape and dtype (0 or 1 / (1 - p)).
    At inference dropout is the identity and no function is called."""
    xp = get_array_module(x)
    keep = rng.random(x.shape, dtype=numpy.float32) >= p
    mask = xp.asarray(keep.astype(x.dtype) / x.dtype.type(1.0 - p))
    return x * mask, mask


def dropout_backward(dy, mask):
    """dy * mask (the forward's mask), the same for every rule."""
    return dy * mask
