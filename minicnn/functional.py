"""The layer math as pure functions on (N, C, H, W) arrays.

Everything here works on NumPy and CuPy arrays alike (``xp = get_array_module(x)``).
Loops run over kernel offsets (at most kh*kw iterations), never over pixels; the
multiply-adds go through BLAS matrix products.

Output size of a convolution or pooling window along one axis::

    out = (size + 2 * pad - kernel) // stride + 1
"""
from .backend import get_array_module

RULES = ("gradient", "deconvnet", "guided")


def out_size(size, kernel, stride, pad):
    """Output length along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def check_rule(rule):
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    return rule


def _pad(x, pad, value=0.0):
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
    """(N, C, H, W) -> columns (N, C*kh*kw, Ho*Wo), rows ordered (c, a, b) like OIHW."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    xpad = _pad(x, pad)
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


def conv2d(x, weight, bias, stride=1, pad=0):
    """Cross-correlation (as PyTorch/Caffe): x (N, C, H, W), weight (O, C, kh, kw),
    bias (O,) or None -> (N, O, Ho, Wo)."""
    n = x.shape[0]
    o, c, kh, kw = weight.shape
    ho, wo = out_size(x.shape[2], kh, stride, pad), out_size(x.shape[3], kw, stride, pad)
    y = weight.reshape(o, c * kh * kw) @ im2col(x, kh, kw, stride, pad)   # (N, O, Ho*Wo)
    if bias is not None:
        y += bias.reshape(1, o, 1)
    return y.reshape(n, o, ho, wo)


def conv2d_backward_input(dy, weight, x_shape, stride=1, pad=0):
    """Transposed convolution: dy (N, O, Ho, Wo) -> (N, C, H, W) = conv(dy, flip(K)).

    The same for backprop, DeconvNet and guided backprop (PAPER.md Sect. 4)."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight.shape
    cols = weight.reshape(o, c * kh * kw).T @ dy.reshape(n, o, -1)       # (N, C*kh*kw, L)
    return col2im(cols, x_shape, kh, kw, stride, pad)


def conv2d_backward_params(dy, x, weight_shape, stride=1, pad=0):
    """Parameter gradients: dy (N, O, Ho, Wo), x (N, C, H, W) -> dW (O, C, kh, kw), db (O,)."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight_shape
    cols = im2col(x, kh, kw, stride, pad)                                 # (N, CKK, L)
    dy3 = dy.reshape(n, o, -1)
    dw = (dy3 @ cols.transpose(0, 2, 1)).sum(axis=0)                      # (O, CKK)
    return dw.reshape(weight_shape), dy3.sum(axis=(0, 2))


# ----------------------------------------------------------------------------- pooling

def maxpool2d(x, kernel, stride, pad=0):
    """Max-pool with switches.

    x (N, C, H, W) -> (y (N, C, Ho, Wo), switches (N, C, Ho, Wo) uint8 or int32).
    A switch is the raster index ``a*kernel + b`` of the winning offset inside its
    window; ties go to the first in raster order (argmax returns the first maximum).
    Padding is -inf, so it never wins (pad <= kernel // 2 keeps a real pixel in every
    window).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    xpad = _pad(x, pad, value=-xp.inf)
    windows = xp.empty((kernel * kernel, n, c, ho, wo), dtype=x.dtype)
    for a in range(kernel):
        for b in range(kernel):
            windows[a * kernel + b] = _window(xpad, a, b, stride, ho, wo)
    switch_dtype = xp.uint8 if kernel * kernel <= 255 else xp.int32
    switches = windows.argmax(axis=0).astype(switch_dtype)
    y = xp.take_along_axis(windows, switches[None].astype(xp.intp), axis=0)[0]
    return y, switches


def unpool2d(dy, switches, x_shape, kernel, stride, pad=0):
    """Route dy (N, C, Ho, Wo) to the switch positions -> (N, C, H, W).

    Backprop and DeconvNet unpooling are this same function. Each kernel offset is
    written in its own pass, so overlapping windows (stride < kernel) add up and no
    two writes of one pass hit the same position (no undefined duplicate scatter).
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


# ----------------------------------------------------------------------------- ReLU

def relu_backward(grad, positive_input, rule):
    """The only place the three passes differ (PAPER.md Sect. 4).

    grad: signal R_{n+1} at the ReLU output; positive_input: the mask 1[X_n > 0] from
    the forward pass (same shape).

    - gradient:  R_{n+1} * 1[X_n > 0]
    - deconvnet: R_{n+1} * 1[R_{n+1} > 0]
    - guided:    R_{n+1} * 1[X_n > 0] * 1[R_{n+1} > 0]
    """
    xp = get_array_module(grad)
    check_rule(rule)
    if rule == "gradient":
        keep = positive_input
    elif rule == "deconvnet":
        keep = grad > 0
    else:
        keep = positive_input & (grad > 0)
    return xp.where(keep, grad, xp.zeros((), dtype=grad.dtype))
