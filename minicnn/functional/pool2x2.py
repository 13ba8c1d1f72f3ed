"""Fast path for the pools of every VGG: 2x2 windows, stride 2, no padding.

Same results as :func:`minicnn.functional.reference.maxpool2d_forward` and
:func:`~minicnn.functional.reference.maxpool2d_backward` (values, switches, ties), by
four strided views instead of k*k window copies and an argmax.
"""
from ..backend import get_array_module
from .layout import empty_laid_out_like, scratch_laid_out_like, zeros_laid_out_like


def is_2x2_pool(kernel, stride, pad):
    """True for the pools of every VGG: 2x2 windows, stride 2, no padding."""
    return kernel == 2 and stride == 2 and pad == 0


def maxpool2x2_forward(x, out=None):
    """2x2 stride-2 max-pool: the four offsets of every window are four strided views
    (raster order 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1)); a window's switch is chosen by
    three comparisons, each keeping the earlier offset on ties (like argmax). An odd last
    row/column belongs to no window. x (N, C, H, W) -> (y, switches uint8), (N, C, H//2, W//2),
    written into ``out`` = (y, switches) when given.
    """
    xp = get_array_module(x)
    ho, wo = x.shape[2] // 2, x.shape[3] // 2
    x00, x01 = x[:, :, 0:2 * ho:2, 0:2 * wo:2], x[:, :, 0:2 * ho:2, 1:2 * wo:2]
    x10, x11 = x[:, :, 1:2 * ho:2, 0:2 * wo:2], x[:, :, 1:2 * ho:2, 1:2 * wo:2]
    shape = x00.shape
    if out is None:     # laid out like x, as the temporaries
        out = empty_laid_out_like(shape, x), empty_laid_out_like(shape, x, xp.uint8)
    y, switches = out

    def temporary(role, dtype):     # valid within this call, laid out like x
        return scratch_laid_out_like("pool2x2." + role, shape, x, dtype)
    # strict comparisons: a tie keeps the earlier offset
    right_top = xp.greater(x01, x00, out=temporary("right_top", bool))
    right_bottom = xp.greater(x11, x10, out=temporary("right_bottom", bool))
    # max values by maximum and the switch by bit logic, not np.where: selecting on a
    # data-dependent mask mispredicts per element on the CPU
    top = xp.maximum(x00, x01, out=temporary("top", x.dtype))
    bottom = xp.maximum(x10, x11, out=y)
    down = xp.greater(bottom, top, out=temporary("down", bool))
    xp.maximum(top, bottom, out=y)
    switches[...] = down
    switches *= 2                                            # the winner's row
    right_bottom &= down
    right_top &= xp.logical_not(down, out=down)
    right_top |= right_bottom
    switches += right_top                                    # and its column
    return y, switches


def maxpool2x2_backward(dy, switches, x_shape, out=None):
    """Adjoint of :func:`maxpool2x2_forward` (unpooling): dy (N, C, Ho, Wo) goes to the
    offset its switch names -> dx (N, C, H, W) of shape ``x_shape``; offset k is written
    through its own strided view (windows do not overlap), as the product
    dy * 1[switch == k] (like the gradient's own formula, a non-finite dy also spreads
    NaN over its window). With ``out`` (of ``x_shape``, its odd last row or column
    already zero) dx is written there."""
    xp = get_array_module(dy)
    ho, wo = dy.shape[2:]
    dx = zeros_laid_out_like(x_shape, dy) if out is None else out
    for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        # dy * 1[switch == k]: a branch-free multiply, where a masked copy branches
        xp.multiply(dy, switches == k, out=dx[:, :, a:2 * ho:2, b:2 * wo:2])
    return dx
