"""Memory-layout helpers for the CPU fast paths.

On the CPU the convs return (N, C, H, W) arrays that are views of channels-last
(N, H, W, C) buffers (see :mod:`minicnn.functional.winograd`). The values and shapes are
those of any (N, C, H, W) array; only the strides differ. These helpers keep the signals
of the backward pass in the layout of the forward arrays they meet, so elementwise
passes run over matching, contiguous rows instead of one strided operand.
"""
from ..backend import get_array_module
from .workspace import recycled, scratch


def is_channels_last(a):
    """True for a 4-D (N, C, H, W) array stored with channels innermost."""
    return a.ndim == 4 and a.strides[1] < a.strides[3]


def laid_out_like(a, like):
    """``a`` (N, C, H, W), copied channels-last when ``like`` is stored so and ``a`` is not
    (same values and dtype)."""
    if is_channels_last(like) and not is_channels_last(a):
        out = zeros_laid_out_like(a.shape, like, a.dtype)
        out[...] = a
        return out
    return a


def zeros_laid_out_like(shape, like, dtype=None):
    """Zeros of (N, C, H, W) ``shape`` (dtype: like's by default), stored channels-last
    when ``like`` is (the CPU conv outputs are)."""
    return _laid_out_like(get_array_module(like).zeros, shape, like, dtype)


def empty_laid_out_like(shape, like, dtype=None):
    """Like :func:`zeros_laid_out_like`, uninitialised, for a result written whole (from
    :func:`.workspace.recycled`: on the CPU an earlier result nothing refers to any more)."""
    return _laid_out_like(lambda s, dtype: recycled(s, dtype, like), shape, like, dtype)


def scratch_laid_out_like(role, shape, like, dtype=None):
    """This thread's scratch slot ``role`` (:func:`.workspace.scratch`: valid until the
    thread asks for ``role`` again) as an array of (N, C, H, W) ``shape``, stored
    channels-last when ``like`` is, so elementwise passes over both run in memory order."""
    return _laid_out_like(lambda s, dtype: scratch(role, s, dtype, like), shape, like, dtype)


def _laid_out_like(allocate, shape, like, dtype):
    dtype = like.dtype if dtype is None else dtype
    if is_channels_last(like):
        n, c, h, w = shape
        return allocate((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)
    return allocate(shape, dtype=dtype)
