"""The layer math as pure functions on (N, C, H, W) (or (N, F)) arrays, one dispatcher
per operation.

- :mod:`.reference`: every layer kind's forward beside its backward, written to be read
  (im2col/col2im conv, k x k max-pool with switches and its unpooling, the three ReLU
  rules, linear, flatten, dropout). Shapes and the output-size formula are in its
  docstrings.
- :mod:`.winograd`: Winograd F(2x2, 3x3) for the 3x3, stride-1, pad-1 convs of a VGG
  (forward, transposed conv, weight gradient); docs/winograd.md derives it.
- :mod:`.winograd4`: Winograd F(4x4, 3x3) for the forward and transposed conv.
- :mod:`.conv_choice`: which of im2col, F(2x2) and F(4x4) computes a conv: a fixed shape
  rule (the default), measured per shape on this machine, or one forced algorithm.
- :mod:`.winograd_schedule`: how both cut a conv into chunks over the threads;
  :mod:`.winograd_kernels`: their kernel transforms and the memo a Conv2d keeps.
- :mod:`.pool2x2`: 2x2, stride-2 max-pool and unpooling by four strided views.
- :mod:`.layout`: the channels-last layout the CPU convs return, and helpers that keep
  backward signals in the layout of the forward arrays they meet.

The functions below are what the layers call. Each chooses the fast path or the
reference function (by shape and backend; a conv's algorithm by :mod:`.conv_choice`);
all compute the same values (up to rounding for the conv). Everything works on NumPy and CuPy arrays alike
(``xp = get_array_module(x)``) and in any float dtype (float32 and float64).

Inside ``with reference_mode():`` every one of them calls :mod:`.reference` and nothing
else, so a student can step from ``Net.forward`` into each layer's plain math.
"""
import contextlib
import contextvars
import math

import numpy

from ..backend import get_array_module
from . import conv_choice, pool2x2, reference, winograd, winograd4
from .into import im2col_into, relu_backward_into, relu_into
from .winograd_kernels import KernelTransforms, transform_for
from .winograd_schedule import result_dtype
from .layout import empty_laid_out_like, is_channels_last, laid_out_like
from .workspace import recycled, scratch
from .reference import RULES, check_rule, dropout_backward, dropout_forward, out_size
from ..threads import parallel_map, split

__all__ = [
    "RULES", "check_rule", "conv2d_backward_input", "conv2d_backward_params", "conv2d_forward",
    "dropout_backward", "dropout_forward", "flatten_backward", "flatten_forward",
    "is_channels_last", "laid_out_like", "linear_backward_input", "linear_backward_params",
    "linear_forward", "maxpool2d_backward", "maxpool2d_forward", "out_size", "relu_backward",
    "KernelTransforms", "reference_mode", "in_reference_mode", "relu_forward", "use_winograd",
    "winograd_conv2d_backward_input", "winograd_conv2d_forward",
]

_REFERENCE = contextvars.ContextVar("minicnn_reference_mode", default=False)


@contextlib.contextmanager
def reference_mode(on=True):
    """Within the block (this thread, and minicnn's pool threads it starts), every layer
    runs :mod:`.reference` only: no Winograd, no slabs over threads, no scratch or
    recycled buffers. The results agree with the fast paths up to rounding."""
    token = _REFERENCE.set(bool(on))
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def in_reference_mode():
    """True inside :func:`reference_mode`."""
    return _REFERENCE.get()


# How many slices the CPU paths below cut a layer's work into (by shape alone, so that
# results never depend on the thread count), run over minicnn's threads with BLAS on one
# thread each. Every BLAS call of the engine runs so: a BLAS call on several threads
# leaves OpenBLAS's threads spinning after it returns, taking the cores from minicnn's
# threads in the layers that follow.
CPU_PARTS = 4
# An im2col GEMM cut into slices of positions needs this many rows a slice to be
# efficient; with fewer (VGG16's conv5 at batch 1: 49 a slice) it is cut by channels.
IM2COL_MIN_ROWS = 128
# ... and its output is written in chunks of about this many elements (4 MiB in float32),
# so that adding the bias and rectifying run on values still in cache.
IM2COL_CHUNK = 1 << 20
# A linear layer's forward with 2 to this many examples computes (W x^T)^T (see
# linear_forward); with one, NumPy makes it a matrix-vector product either way.
LINEAR_TRANSPOSED_MAX = 32
# Elementwise passes (ReLU, pooling) over fewer elements than this run in the caller:
# handing them to threads costs more than it saves.
ELEMENTWISE_MIN = 1 << 18


def _on_cpu_in_slabs(a):
    """True when an elementwise pass over ``a`` runs in slabs over the threads."""
    return get_array_module(a) is numpy and a.size >= ELEMENTWISE_MIN


def _slabs(function, length, axis):
    """function(index) for index picking slab s along ``axis``, for the CPU_PARTS slabs
    of ``length``, over the threads."""
    parallel_map(lambda s: function((slice(None),) * axis + (s,)), split(length, CPU_PARTS))


def _row_axis(a):
    """The axis the elementwise slabs cut: H of (N, C, H, W), else the last."""
    return 2 if a.ndim == 4 else a.ndim - 1


# ----------------------------------------------------------------------------- ReLU
# On the CPU in slabs of rows (the H axis of (N, C, H, W); the feature axis of (N, F)):
# a single NumPy pass runs on one core.

def relu_forward(x, out=None):
    """max(x, 0) elementwise, any shape (see :func:`.reference.relu_forward`); written
    into ``out`` when given (``out=x`` rectifies in place)."""
    if in_reference_mode() or not _on_cpu_in_slabs(x):
        return reference.relu_forward(x) if out is None else relu_into(x, out)
    y = empty_laid_out_like(x.shape, x) if out is None else out   # in x's memory layout
    axis = _row_axis(x)
    _slabs(lambda i: relu_into(x[i], y[i]), x.shape[axis], axis)
    return y


def relu_backward(dy, relu_output, rule, out=None):
    """The signal through a ReLU under ``rule`` (see :func:`.reference.relu_backward`);
    written into ``out`` when given (``out=dy`` works in place)."""
    check_rule(rule)
    if in_reference_mode() or not _on_cpu_in_slabs(dy):
        return (reference.relu_backward(dy, relu_output, rule) if out is None
                else relu_backward_into(dy, relu_output, rule, out))
    out = empty_laid_out_like(dy.shape, dy) if out is None else out
    axis = _row_axis(dy)
    _slabs(lambda i: relu_backward_into(dy[i], relu_output[i], rule, out[i]),
           dy.shape[axis], axis)
    return out


# ----------------------------------------------------------------------------- conv
# Which algorithm computes a conv (im2col + GEMM, Winograd F(2x2) or F(4x4)) is chosen per
# shape by :mod:`.conv_choice`: a fixed shape rule by default, or measured on this machine.

def use_winograd(x, weight_shape, stride, pad):
    """Whether a Winograd algorithm can compute this conv here: a 3x3, stride-1, pad-1 conv
    with enough channels, on the CPU (on a GPU, im2col + one large cuBLAS GEMM beats
    Winograd's many small GEMMs and elementwise transforms, each a kernel launch)."""
    return (get_array_module(x) is numpy
            and len(conv_choice.candidates("forward", x.shape, weight_shape, stride, pad)) > 1)


def winograd_conv2d_forward(x, weight, bias, kernels=None, relu=False, f4=None):
    """A VGG conv (3x3, stride 1, pad 1) by Winograd on any backend: F(4x4, 3x3) with
    ``f4``, else F(2x2, 3x3) (None: as :func:`.conv_choice.rule_choice` picks). x (N, C,
    H, W), weight (O, C, 3, 3), bias (O,) or None -> (N, O, H, W), a view of a
    channels-last buffer, rectified with ``relu``. ``kernels``: a :class:`KernelTransforms`
    memo."""
    if f4 is None:
        f4 = conv_choice.rule_choice("forward", x.shape, weight.shape, 1, 1) == "winograd4"
    u = transform_for(weight, result_dtype(x, weight), kernels, flipped=False, f4=f4)
    return (winograd4.winograd4_conv3x3 if f4 else winograd.winograd_conv3x3)(x, u, bias, relu)


def winograd_conv2d_backward_input(dy, weight, kernels=None, f4=None):
    """The transposed VGG conv by Winograd: dy (N, O, H, W) -> (N, C, H, W), the 3x3 pad-1
    conv of dy with the flipped, transposed kernel (F(4x4) with ``f4``, else F(2x2))."""
    if f4 is None:
        f4 = conv_choice.rule_choice("backward_input", dy.shape, weight.shape, 1, 1) == "winograd4"
    u = transform_for(weight, result_dtype(dy, weight), kernels, flipped=True, f4=f4)
    return (winograd4.winograd4_conv3x3 if f4 else winograd.winograd_conv3x3)(dy, u, None)


def conv2d_forward(x, weight, bias, stride=1, pad=0, kernels=None, relu=False):
    """Cross-correlation: x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None
    -> (N, O, Ho, Wo), Ho = (H + 2*pad - kh) // stride + 1; with ``relu``, max(that, 0)
    (a ReLU fused into the conv: each part of the output is rectified while in cache).

    ``kernels``: a :class:`KernelTransforms` that remembers the weight's
    Winograd transform between calls (a Conv2d layer keeps one). On the CPU the result is
    an (N, O, Ho, Wo) view of a channels-last buffer (same values; ``reshape`` of it
    copies)."""
    if in_reference_mode() or get_array_module(x) is not numpy:
        y = reference.conv2d_forward(x, weight, bias, stride, pad)
        return reference.relu_forward(y) if relu else y

    def run(algorithm, memo=kernels):
        if algorithm == "im2col":
            return _im2col_conv2d_forward(x, weight, bias, stride, pad, relu)
        return winograd_conv2d_forward(x, weight, bias, memo, relu, algorithm == "winograd4")
    chosen = conv_choice.choose("forward", x, weight.shape, stride, pad, _timing(run, kernels))
    return run(chosen)


def _timing(run, kernels):
    """``run`` as the candidates are timed: each with a memo of its own, thrown away
    after, so that a layer's memo keeps only the transforms of the algorithm chosen."""
    memos = {}

    def timed(algorithm):
        if kernels is None:
            return run(algorithm)
        return run(algorithm, memos.setdefault(algorithm, KernelTransforms()))
    return timed


def _im2col_conv2d_forward(x, weight, bias, stride, pad, relu):
    """im2col + GEMM over the threads, channels-last output: in slabs of output rows
    (rows [a, b) read padded rows [a*stride, (b-1)*stride + kh)), or, when a slab would
    give the GEMM fewer than IM2COL_MIN_ROWS rows (a deep layer at a small batch), with
    the columns of the whole image and the GEMM in slices of output channels: thin
    slabs would each pack the whole weight for a few dozen rows."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    xpad = reference.pad_spatial(x, pad)
    dtype = numpy.result_type(x, weight, *(() if bias is None else (bias,)))
    y = recycled((n, ho, wo, o), dtype, x)                  # channels-last
    w2t = weight.reshape(o, c * kh * kw).T                  # (CKK, O)

    def finish(out, s=slice(None)):
        if bias is not None:
            out += bias[s]
        if relu:
            relu_into(out, out)

    if n * wo * -(-ho // CPU_PARTS) < IM2COL_MIN_ROWS:
        cols = scratch("im2col.cols", (n, c, kh, kw, ho, wo), x.dtype, x)
        cols_t = im2col_into(xpad, kh, kw, stride, 0, cols).transpose(0, 2, 1)  # (N, L, CKK)
        y3 = y.reshape(n, ho * wo, o)

        def channels(s):
            numpy.matmul(cols_t, w2t[:, s], out=y3[:, :, s])
            finish(y3[:, :, s], s)
        parallel_map(channels, split(o, CPU_PARTS))
        return y.transpose(0, 3, 1, 2)

    def chunk(s):
        # the columns of output rows [a, b) times W^T: (N, L, CKK) @ (CKK, O) is the
        # channels-last output itself, written in place
        rows = xpad[:, :, s.start * stride:(s.stop - 1) * stride + kh]
        cols = scratch("im2col.cols", (n, c, kh, kw, s.stop - s.start, wo), x.dtype, x)
        im2col_into(rows, kh, kw, stride, 0, cols)
        out = y[:, s].reshape(n, -1, o)                     # a view: rows are contiguous
        numpy.matmul(cols.reshape(n, c * kh * kw, -1).transpose(0, 2, 1), w2t, out=out)
        finish(out)

    # each slab of rows in chunks whose output stays in cache for the bias and the ReLU
    step = max(-(-IM2COL_MIN_ROWS // (n * wo)), IM2COL_CHUNK // (n * wo * o))

    def slab(s):
        for r0 in range(s.start, s.stop, step):
            chunk(slice(r0, min(s.stop, r0 + step)))
    parallel_map(slab, split(ho, CPU_PARTS))
    return y.transpose(0, 3, 1, 2)


def conv2d_backward_input(dy, weight, x_shape, stride=1, pad=0, kernels=None):
    """Transposed convolution: dy (N, O, Ho, Wo) -> (N, C, H, W) of shape ``x_shape``,
    the same for every rule. ``kernels`` as for :func:`conv2d_forward`."""
    if in_reference_mode() or get_array_module(dy) is not numpy:
        return reference.conv2d_backward_input(dy, weight, x_shape, stride, pad)

    def run(algorithm, memo=kernels):
        if algorithm == "im2col":
            return _im2col_conv2d_backward_input(dy, weight, x_shape, stride, pad)
        return winograd_conv2d_backward_input(dy, weight, memo, algorithm == "winograd4")
    chosen = conv_choice.choose("backward_input", dy, weight.shape, stride, pad,
                                _timing(run, kernels))
    return run(chosen)


def _im2col_conv2d_backward_input(dy, weight, x_shape, stride, pad):
    """The columns W^T dy over the threads, then col2im: in slices of positions, or, when
    a slice would give the GEMM fewer than IM2COL_MIN_ROWS positions, in slices of the
    columns' rows (each then packs only its part of the weight)."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight.shape
    dy_last = dy.transpose(0, 2, 3, 1)
    if dy_last.flags.c_contiguous:      # channels-last memory: (N, O, L) as a view, no copy
        dy3 = dy_last.reshape(n, -1, o).transpose(0, 2, 1)
    else:
        dy3 = dy.reshape(n, o, -1)
    w2t = weight.reshape(o, c * kh * kw).T
    cols = numpy.empty((n, c * kh * kw, dy3.shape[2]), dtype=numpy.result_type(dy, weight))
    if n * -(-dy3.shape[2] // CPU_PARTS) < IM2COL_MIN_ROWS:
        parallel_map(lambda s: numpy.matmul(w2t[s], dy3, out=cols[:, s]),
                     split(c * kh * kw, CPU_PARTS))
    else:
        parallel_map(lambda s: numpy.matmul(w2t, dy3[:, :, s], out=cols[:, :, s]),
                     split(dy3.shape[2], CPU_PARTS))
    return reference.col2im(cols, x_shape, kh, kw, stride, pad)


def conv2d_backward_params(dy, x, weight_shape, stride=1, pad=0):
    """Parameter gradients: dy (N, O, Ho, Wo), x (N, C, H, W) -> dW (O, C, kh, kw), db (O,)."""
    if in_reference_mode() or get_array_module(dy) is not numpy:
        return reference.conv2d_backward_params(dy, x, weight_shape, stride, pad)

    def run(algorithm):
        if algorithm == "winograd2":
            return winograd.winograd_conv3x3_backward_params(dy, x)
        return _im2col_conv2d_backward_params(dy, x, weight_shape, stride, pad)
    return run(conv_choice.choose("backward_params", x, weight_shape, stride, pad, run))


def _im2col_conv2d_backward_params(dy, x, weight_shape, stride, pad):
    """The products dy cols^T in slices of output channels over the threads."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight_shape
    ho, wo = out_size(x.shape[2], kh, stride, pad), out_size(x.shape[3], kw, stride, pad)
    cols = scratch("params.cols", (n, c, kh, kw, ho, wo), x.dtype, x)
    cols_t = im2col_into(x, kh, kw, stride, pad, cols).transpose(0, 2, 1)  # (N, L, CKK)
    dy3 = dy.reshape(n, o, -1)
    dw = recycled((o, c * kh * kw), numpy.result_type(dy, x), dy)
    parallel_map(lambda s: numpy.sum(dy3[:, s] @ cols_t, axis=0, out=dw[s]), split(o, CPU_PARTS))
    return dw.reshape(weight_shape), dy3.sum(axis=(0, 2))


# ----------------------------------------------------------------------------- linear
# On the CPU each product is cut into slices of features, one GEMM per slice; every
# output element is still one dot product over the whole of its inputs.

def _linear_on_cpu(a, weight):
    """The sliced CPU path applies: a NumPy (N, features) signal and a 2-D weight."""
    return (not in_reference_mode() and get_array_module(a) is numpy and a.ndim == 2
            and weight.ndim == 2)


def linear_forward(x, weight, bias):
    """y = x W^T + b: x (N, in), weight (out, in), bias (out,) -> (N, out)."""
    if not (_linear_on_cpu(x, weight) and getattr(bias, "shape", None) == weight.shape[:1]):
        return reference.linear_forward(x, weight, bias)
    n = x.shape[0]
    y = recycled((n, weight.shape[0]), numpy.result_type(x, weight, bias), x)

    def part(s):
        if 1 < n <= LINEAR_TRANSPOSED_MAX:
            # (W x^T)^T: with a few examples OpenBLAS's AVX-512 kernel runs the product
            # faster with the weight as the left operand (README, "Per layer")
            yt = scratch("linear.yt", (s.stop - s.start, n), y.dtype, y)
            numpy.matmul(weight[s], x.T, out=yt)
            y[:, s] = yt.T
        else:
            numpy.matmul(x, weight[s].T, out=y[:, s])
        y[:, s] += bias[s]

    parallel_map(part, split(weight.shape[0], CPU_PARTS))
    return y


def linear_backward_input(dy, weight):
    """dy (N, out) -> dx = dy W, (N, in). The same for every rule."""
    if not _linear_on_cpu(dy, weight):
        return reference.linear_backward_input(dy, weight)
    dx = recycled((dy.shape[0], weight.shape[1]), numpy.result_type(dy, weight), dy)
    parallel_map(lambda s: numpy.matmul(dy, weight[:, s], out=dx[:, s]),
                 split(weight.shape[1], CPU_PARTS))
    return dx


def linear_backward_params(dy, x):
    """dy (N, out), x (N, in) -> dW = dy^T x (out, in), db (out,)."""
    if not (_linear_on_cpu(dy, x) and x.ndim == 2):
        return reference.linear_backward_params(dy, x)
    dw = recycled((dy.shape[1], x.shape[1]), numpy.result_type(dy, x), dy)
    parallel_map(lambda s: numpy.matmul(dy[:, s].T, x, out=dw[s]), split(dy.shape[1], CPU_PARTS))
    return dw, dy.sum(axis=0)


# ----------------------------------------------------------------------------- max-pool

def maxpool2d_forward(x, kernel, stride, pad=0):
    """Max-pool with switches: x (N, C, H, W) -> (y, switches), both (N, C, Ho, Wo),
    Ho = (H + 2*pad - kernel) // stride + 1. A switch is the raster index
    ``a*kernel + b`` of the window's first maximum (see
    :func:`.reference.maxpool2d_forward`)."""
    if not in_reference_mode() and pool2x2.is_2x2_pool(kernel, stride, pad):
        if not _on_cpu_in_slabs(x):
            return pool2x2.maxpool2x2_forward(x)
        n, c, h, w = x.shape
        y = empty_laid_out_like((n, c, h // 2, w // 2), x)
        switches = empty_laid_out_like(y.shape, x, numpy.uint8)

        def slab(i):                  # output rows s from input rows 2s
            s = i[2]
            pool2x2.maxpool2x2_forward(x[:, :, 2 * s.start:2 * s.stop], out=(y[i], switches[i]))
        _slabs(slab, h // 2, 2)
        return y, switches
    return reference.maxpool2d_forward(x, kernel, stride, pad)


def maxpool2d_backward(dy, switches, x_shape, kernel, stride, pad=0):
    """Unpooling: dy (N, C, Ho, Wo) routed to the switch positions -> (N, C, H, W).
    Backprop and DeconvNet unpooling are this same function."""
    if not in_reference_mode() and pool2x2.is_2x2_pool(kernel, stride, pad):
        if get_array_module(dy) is not numpy or math.prod(x_shape) < ELEMENTWISE_MIN:
            return pool2x2.maxpool2x2_backward(dy, switches, x_shape)
        n, c, h, w = x_shape
        dx = empty_laid_out_like(x_shape, dy)
        dx[:, :, 2 * (h // 2):] = 0                  # an odd last row or column is in no
        dx[:, :, :, 2 * (w // 2):] = 0               # window: its signal is zero

        def slab(i):
            s = i[2]
            rows = (slice(None), slice(None), slice(2 * s.start, 2 * s.stop))
            pool2x2.maxpool2x2_backward(dy[i], switches[i], dx[rows].shape, out=dx[rows])
        _slabs(slab, h // 2, 2)
        return dx
    return reference.maxpool2d_backward(dy, switches, x_shape, kernel, stride, pad)


# ----------------------------------------------------------------------------- flatten

def flatten_forward(x):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (as PyTorch)."""
    return reference.flatten_forward(x)


def flatten_backward(dy, x):
    """(N, C*H*W) -> (N, C, H, W) like the forward input ``x``, in the memory layout ``x``
    had (channels-last after a CPU conv), so the layers below see one layout."""
    if in_reference_mode():
        return reference.flatten_backward(dy, x)
    return laid_out_like(reference.flatten_backward(dy, x), x)
