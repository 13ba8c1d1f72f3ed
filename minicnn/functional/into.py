"""Reference formulas written into a buffer the caller owns: what the fast paths use to
rectify in place, send a signal back through a ReLU in place, or fill a recycled im2col
buffer. Each computes exactly its namesake in :mod:`.reference` (the tests compare the
passes that use them with the reference mode); only where the result goes differs."""
import numpy

from ..backend import get_array_module
from .reference import _window, check_rule, out_size, pad_spatial


# NumPy's maximum against a 0-d zero runs a scalar loop, several times slower than
# against an array of zeros (SIMD); so the zero operand is an array whose innermost
# axes (in the memory order of the data) run over at least this many contiguous zeros,
# the others with stride 0: the loop then runs contiguous rows of data and zeros alike.
ZERO_ROW = 4096
ZERO_ROW_MAX = 1 << 16           # elements: no zero buffer as large as the data itself
_zero_rows = {}                # (dtype, shape, strides) -> zeros


def zero_operand(x):
    """Zeros broadcastable to ``x`` for ``maximum(x, 0)``: on the CPU, a read-only view of
    a small zero buffer laid out like x's innermost axes (see ZERO_ROW); elsewhere a 0-d
    zero. The values are those of ``zeros(())``, so results are the same bit for bit."""
    xp = get_array_module(x)
    if xp is not numpy or x.ndim == 0:
        return xp.zeros((), dtype=x.dtype)
    key = (x.dtype, x.shape, x.strides)     # a pass meets the same few layouts each time
    zeros = _zero_rows.get(key)
    if zeros is None:
        strides, span = [0] * x.ndim, 1
        for axis in sorted(range(x.ndim), key=lambda a: abs(x.strides[a])):  # innermost first
            if span >= ZERO_ROW or span * x.shape[axis] > ZERO_ROW_MAX:
                break
            strides[axis] = span * x.itemsize
            span *= x.shape[axis]
        if span == 1:                        # one axis longer than ZERO_ROW_MAX: scalar
            zeros = numpy.zeros((), dtype=x.dtype)
        else:
            buffer = numpy.zeros(max(span, 1), dtype=x.dtype)    # span 0: an empty axis
            zeros = numpy.ndarray(x.shape, x.dtype, buffer, strides=strides)
        zeros.flags.writeable = False
        if len(_zero_rows) >= 128:
            _zero_rows.clear()
        _zero_rows[key] = zeros
    return zeros


def relu_into(x, out):
    """:func:`.reference.relu_forward` into ``out`` (``out=x``: in place)."""
    return get_array_module(x).maximum(x, zero_operand(x), out=out)


def relu_backward_into(dy, relu_output, rule, out):
    """:func:`.reference.relu_backward` into ``out`` (``out=dy``: in place). The masks
    are multiplied in, not selected with ``where``: branch-free on the CPU."""
    xp = get_array_module(dy)
    check_rule(rule)
    zero = xp.zeros((), dtype=dy.dtype)
    if rule == "deconvnet":             # R * 1[R > 0] is max(R, 0): no forward mask read
        return xp.maximum(dy, zero_operand(dy), out=out)
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
