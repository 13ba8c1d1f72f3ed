"""The layer math as pure functions on (N, C, H, W) (or (N, F)) arrays, one dispatcher
per operation.

- :mod:`.reference`: every layer kind's forward beside its backward, written to be read
  (im2col/col2im conv, k x k max-pool with switches and its unpooling, the three ReLU
  rules, linear, flatten, dropout). Shapes and the output-size formula are in its
  docstrings.
- :mod:`.winograd`: Winograd F(2x2, 3x3) for the 3x3, stride-1, pad-1 convs of a VGG
  (forward, transposed conv, weight gradient); docs/winograd.md derives it.
- :mod:`.pool2x2`: 2x2, stride-2 max-pool and unpooling by four strided views.
- :mod:`.layout`: the channels-last layout the CPU convs return, and helpers that keep
  backward signals in the layout of the forward arrays they meet.

The functions below are what the layers call. Each chooses, by shape and backend
alone, the fast path or the reference function; both compute the same values (up to
rounding for the conv). Everything works on NumPy and CuPy arrays alike
(``xp = get_array_module(x)``) and in any float dtype (float32 and float64).
"""
import numpy

from ..backend import get_array_module
from . import pool2x2, reference, winograd
from .layout import is_channels_last, laid_out_like
from .reference import (RULES, check_rule, dropout_backward, dropout_forward, linear_backward_input,
                        linear_backward_params, linear_forward, out_size, relu_backward,
                        relu_forward)

__all__ = [
    "RULES", "check_rule", "conv2d_backward_input", "conv2d_backward_params", "conv2d_forward",
    "dropout_backward", "dropout_forward", "flatten_backward", "flatten_forward",
    "is_channels_last", "laid_out_like", "linear_backward_input", "linear_backward_params",
    "linear_forward", "maxpool2d_backward", "maxpool2d_forward", "out_size", "relu_backward",
    "relu_forward", "use_winograd",
]


# ----------------------------------------------------------------------------- conv

def use_winograd(x, weight_shape, stride, pad):
    """Winograd for the VGG convs (:func:`.winograd.is_winograd_conv`), on the CPU only.
    On a GPU, im2col + one large cuBLAS GEMM per conv beats Winograd's many small GEMMs
    and elementwise transforms (each a kernel launch)."""
    return get_array_module(x) is numpy and winograd.is_winograd_conv(weight_shape, stride, pad)


def conv2d_forward(x, weight, bias, stride=1, pad=0, kernels=None):
    """Cross-correlation: x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None
    -> (N, O, Ho, Wo), Ho = (H + 2*pad - kh) // stride + 1.

    ``kernels``: a :class:`.winograd.KernelTransforms` that remembers the weight's
    Winograd transform between calls (a Conv2d layer keeps one). On the CPU the result is
    an (N, O, Ho, Wo) view of a channels-last buffer (same values; ``reshape`` of it
    copies)."""
    if use_winograd(x, weight.shape, stride, pad):
        return winograd.conv2d_forward(x, weight, bias, kernels)
    return reference.conv2d_forward(x, weight, bias, stride, pad)


def conv2d_backward_input(dy, weight, x_shape, stride=1, pad=0, kernels=None):
    """Transposed convolution: dy (N, O, Ho, Wo) -> (N, C, H, W) of shape ``x_shape``,
    the same for every rule. ``kernels`` as for :func:`conv2d_forward`."""
    if use_winograd(dy, weight.shape, stride, pad):
        return winograd.conv2d_backward_input(dy, weight, kernels)
    return reference.conv2d_backward_input(dy, weight, x_shape, stride, pad)


def conv2d_backward_params(dy, x, weight_shape, stride=1, pad=0):
    """Parameter gradients: dy (N, O, Ho, Wo), x (N, C, H, W) -> dW (O, C, kh, kw), db (O,)."""
    if use_winograd(x, weight_shape, stride, pad):
        return winograd.conv2d_backward_params(dy, x)
    return reference.conv2d_backward_params(dy, x, weight_shape, stride, pad)


# ----------------------------------------------------------------------------- max-pool

def maxpool2d_forward(x, kernel, stride, pad=0):
    """Max-pool with switches: x (N, C, H, W) -> (y, switches), both (N, C, Ho, Wo),
    Ho = (H + 2*pad - kernel) // stride + 1. A switch is the raster index
    ``a*kernel + b`` of the window's first maximum (see
    :func:`.reference.maxpool2d_forward`)."""
    if pool2x2.is_2x2_pool(kernel, stride, pad):
        return pool2x2.maxpool2x2_forward(x)
    return reference.maxpool2d_forward(x, kernel, stride, pad)


def maxpool2d_backward(dy, switches, x_shape, kernel, stride, pad=0):
    """Unpooling: dy (N, C, Ho, Wo) routed to the switch positions -> (N, C, H, W).
    Backprop and DeconvNet unpooling are this same function."""
    if pool2x2.is_2x2_pool(kernel, stride, pad):
        return pool2x2.maxpool2x2_backward(dy, switches, x_shape)
    return reference.maxpool2d_backward(dy, switches, x_shape, kernel, stride, pad)


# ----------------------------------------------------------------------------- flatten

def flatten_forward(x):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (as PyTorch)."""
    return reference.flatten_forward(x)


def flatten_backward(grad, x):
    """(N, C*H*W) -> (N, C, H, W) like the forward input ``x``, in the memory layout ``x``
    had (channels-last after a CPU conv), so the layers below see one layout."""
    return laid_out_like(reference.flatten_backward(grad, x.shape), x)
