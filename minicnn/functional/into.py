"""Reference formulas written into a buffer the caller owns: what the fast paths use to
rectify in place, send a signal back through a ReLU in place, or fill a recycled im2col
buffer. Each computes exactly its namesake in :mod:`.reference` (the tests compare the
passes that use them with the reference mode); only where the result goes differs."""
from ..backend import get_array_module
from .reference import _window, check_rule, out_size, pad_spatial


def relu_into(x, out):
    """:func:`.reference.relu_forward` into ``out`` (``out=x``: in place)."""
    xp = get_array_module(x)
    return xp.maximum(x, xp.zeros((), dtype=x.dtype), out=out)


def relu_backward_into(dy, relu_output, rule, out):
    """:func:`.reference.relu_backward` into ``out`` (``out=dy``: in place). The masks
    are multiplied in, not selected with ``where``: branch-free on the CPU."""
    xp = get_array_module(dy)
    check_rule(rule)
    zero = xp.zeros((), dtype=dy.dtype)
    if rule == "deconvnet":             # R * 1[R > 0] is max(R, 0): no forward mask read
        return xp.maximum(dy, zero, out=out)
    positive_input = relu_output > 0
    if rule == "gradient":
        return xp.multiply(dy, positive_input, out=out)
    return xp.multiply(dy, positive_input & (dy > zero), out=out)


def im2col_into(x, kh, kw, stride, pad, out):
    """:func:`.reference.im2col` into ``out`` (N, C, kh, kw, Ho, Wo), a recycled buffer;
    returns the (N, C*kh*kw, Ho*Wo) view of it."""
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    xpad = pad_spatial(x, pad)
    for a in range(kh):
        for b in range(kw):
            out[:, :, a, b] = _window(xpad, a, b, stride, ho, wo)
    return out.reshape(n, c * kh * kw, ho * wo)
