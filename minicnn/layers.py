"""Layers: thin classes holding parameters, gradients and one named cache.

The math lives in :mod:`minicnn.functional` (read :mod:`minicnn.functional.reference`
for each layer kind's forward beside its backward); a layer checks its input, keeps what
its backward needs in ``self.cache`` and calls those functions. The interface every
layer implements is :class:`Layer`'s.
"""

import numpy as np

from . import functional as F
from .backend import get_array_module


def check_int(owner, name, value, low):
    """``value`` as an int, or ValueError unless it is an integer >= ``low``."""
    if not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{owner} {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def window_output_size(what, h, w, kernel, stride, pad):
    """(Ho, Wo) of a kernel x kernel window sliding over an h x w input, or ValueError
    "{what} does not fit a HxW input" when no window position fits."""
    ho, wo = F.out_size(h, kernel, stride, pad), F.out_size(w, kernel, stride, pad)
    if ho < 1 or wo < 1:
        raise ValueError(f"{what} does not fit a {h}x{w} input")
    return ho, wo


class Layer:
    """The interface of every layer.

    - ``forward(x)``: the output for a batch x (batch axis first); caches in
      ``self.cache`` exactly what ``backward`` needs (a dict with named entries).
    - ``backward(grad, rule="gradient", param_grads=False)``: maps the signal at the
      layer's output (the shape ``forward`` returned) to the signal at its input (the
      shape ``forward`` was given), using the cache of the last forward. ``rule`` is
      ``"gradient"``, ``"deconvnet"`` or ``"guided"``; only :class:`ReLU` looks at it
      (Simonyan et al. 2013, Sect. 4; docs/backward_rules.md). With
      ``param_grads=True`` a layer with parameters also fills ``self.grads`` (same keys
      and shapes as ``self.params``) for training.
    - ``output_shape(in_shape)``: shape inference on per-example shapes (no batch axis);
      raises ValueError when the input does not fit. Default: the shape unchanged.
    - ``config()``: the constructor arguments as a JSON-able dict, for model files
      (``type(layer)(**layer.config())`` builds an equal layer). Default: no arguments.

    Subclasses set ``kind`` (the type name in model files) and ``param_names``.

    Optional speed flags (``fresh_output``, ``fresh_signal``, ``in_place``,
    ``fuses_relu``) let a :class:`minicnn.net.Net` pass skip copies; only the pass
    planner reads them, and a layer that sets none runs the plain interface above (see
    :mod:`minicnn.passes` for what they promise).
    """
    kind = None           # the type name used in model files
    param_names = ()
    fresh_output = False  # forward returns a new array that the layer does not keep
    fresh_signal = False  # backward returns a new array that the layer does not keep
    in_place = False      # forward and backward accept overwrite=True
    fuses_relu = False    # forward accepts relu=True

    def __init__(self):
        self.params = {}  # name -> array (weight, bias)
        self.grads = {}
        self.cache = None
        self.training = False

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad, rule="gradient", param_grads=False):
        raise NotImplementedError(f"{type(self).__name__} must implement "
                                  "backward(grad, rule, param_grads)")

    def backward_params(self, grad):
        """Only the parameter gradients, into ``self.grads``, from the signal at the
        output (the gradient rule): what training needs of the lowest layer with
        parameters, whose input signal nobody reads. By default the whole backward with
        ``param_grads=True``, its input signal dropped; layers with parameters skip that
        work."""
        self.backward(grad, "gradient", param_grads=True)

    def config(self):
        return {}

    @classmethod
    def parameter_shapes(cls, config):
        """{parameter name: shape} a layer built from ``config`` holds, known before it is
        built (model files are costed with it before anything is allocated)."""
        return {}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def _cached(self):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called without a forward pass "
                               "(run forward first; its cache is used by backward)")
        return self.cache

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"




class Conv2d(Layer):
    """(N, C, H, W) -> (N, O, Ho, Wo), Ho = (H + 2*pad - kernel) // stride + 1.

    weight (O, C, kh, kw) (PyTorch OIHW), bias (O,)."""
    kind = "conv2d"
    param_names = ("weight", "bias")
    fresh_output = fresh_signal = True     # keeps its input, not its output
    fuses_relu = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0):
        super().__init__()
        self.in_channels = check_int("Conv2d", "in_channels", in_channels, 1)
        self.out_channels = check_int("Conv2d", "out_channels", out_channels, 1)
        self.kernel_size = check_int("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = check_int("Conv2d", "stride", stride, 1)
        self.pad = check_int("Conv2d", "pad", pad, 0)
        self._kernels = F.KernelTransforms()   # the weight's Winograd transform, between passes
        self.params = {name: np.zeros(shape, np.float32)
                       for name, shape in self.parameter_shapes(self.config()).items()}

    @classmethod
    def parameter_shapes(cls, config):
        out = check_int("Conv2d", "out_channels", config.get("out_channels"), 1)
        k = check_int("Conv2d", "kernel_size", config.get("kernel_size"), 1)
        return {"weight": (out, check_int("Conv2d", "in_channels", config.get("in_channels"), 1),
                           k, k),
                "bias": (out,)}

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "pad": self.pad}

    def output_shape(self, in_shape):
        c, h, w = in_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2d expects {self.in_channels} input channels, got {c}")
        ho, wo = window_output_size(f"Conv2d kernel {self.kernel_size} (pad {self.pad})",
                                    h, w, self.kernel_size, self.stride, self.pad)
        return (self.out_channels, ho, wo)

    def forward(self, x, relu=False):
        self.output_shape(x.shape[1:])
        self.cache = {"x": x}
        return F.conv2d_forward(x, self.params["weight"], self.params["bias"], self.stride,
                                self.pad, kernels=self._kernels, relu=relu)

    def backward(self, grad, rule="gradient", param_grads=False):
        x = self._cached()["x"]
        if param_grads:
            self.backward_params(grad)
        return F.conv2d_backward_input(grad, self.params["weight"], x.shape, self.stride,
                                       self.pad, kernels=self._kernels)

    def backward_params(self, grad):
        self.grads["weight"], self.grads["bias"] = F.conv2d_backward_params(
            grad, self._cached()["x"], self.params["weight"].shape, self.stride, self.pad)


class Linear(Layer):
    """(N, in_features) -> (N, out_features): y = x W^T + b; weight (out, in) as PyTorch."""
    kind = "linear"
    param_names = ("weight", "bias")
    fresh_output = fresh_signal = True     # keeps its input, not its output

    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, 1)
        self.out_features = check_int("Linear", "out_features", out_features, 1)
        self.params = {name: np.zeros(shape, np.float32)
                       for name, shape in self.parameter_shapes(self.config()).items()}

    @classmethod
    def parameter_shapes(cls, config):
        out = check_int("Linear", "out_features", config.get("out_features"), 1)
        return {"weight": (out, check_int("Linear", "in_features", config.get("in_features"), 1)),
                "bias": (out,)}

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features}

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"Linear expects input of shape ({self.in_features},) per example, "
                             f"got {tuple(in_shape)} (add a Flatten?)")
        return (self.out_features,)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        self.cache = {"x": x}
        return F.linear_forward(x, self.params["weight"], self.params["bias"])

    def backward(self, grad, rule="gradient", param_grads=False):
        self._cached()                   # a clear error without a forward
        if param_grads:
            self.backward_params(grad)
        return F.linear_backward_input(grad, self.params["weight"])

    def backward_params(self, grad):
        self.grads["weight"], self.grads["bias"] = F.linear_backward_params(
            grad, self._cached()["x"])


class ReLU(Layer):
    """Elementwise max(x, 0), any shape. The one layer whose backward depends on the rule."""
    kind = "relu"
    fresh_signal = True   # a new signal, or its own incoming one rectified in place
    in_place = True

    def forward(self, x, overwrite=False, rectified=False):
        # rectified: x is already max(., 0), made so by the layer before (fused)
        y = x if rectified else F.relu_forward(x, out=x if overwrite else None)
        # the output doubles as the backward mask (y > 0 exactly where x > 0; a NaN
        # passes through, as in PyTorch): one pass here instead of two. Where a conv
        # follows it keeps y anyway; before a pool y costs 4 bytes per element, not 1
        self.cache = {"output": y}
        return y

    def backward(self, grad, rule="gradient", param_grads=False, overwrite=False):
        return F.relu_backward(grad, self._cached()["output"], rule,
                               out=grad if overwrite else None)


class MaxPool2d(Layer):
    """(N, C, H, W) -> (N, C, Ho, Wo), Ho = (H + 2*pad - kernel) // stride + 1.

    Caches the switches; backprop and DeconvNet both unpool through them."""
    kind = "maxpool2d"
    fresh_output = fresh_signal = True     # keeps its switches, not its output

    def __init__(self, kernel_size, stride=None, pad=0):
        super().__init__()
        stride = kernel_size if stride is None else stride
        self.kernel_size = check_int("MaxPool2d", "kernel_size", kernel_size, 1)
        self.stride = check_int("MaxPool2d", "stride", stride, 1)
        self.pad = check_int("MaxPool2d", "pad", pad, 0)
        if self.pad > self.kernel_size // 2:
            raise ValueError(f"MaxPool2d pad must be <= kernel_size // 2 = "
                             f"{self.kernel_size // 2}, got {pad}")

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "pad": self.pad}

    def output_shape(self, in_shape):
        c, h, w = in_shape
        ho, wo = window_output_size(f"MaxPool2d window {self.kernel_size}",
                                    h, w, self.kernel_size, self.stride, self.pad)
        return (c, ho, wo)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y, switches = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.pad)
        self.cache = {"switches": switches, "x_shape": x.shape}
        return y

    def backward(self, grad, rule="gradient", param_grads=False):
        cache = self._cached()
        return F.maxpool2d_backward(grad, cache["switches"], cache["x_shape"],
                          self.kernel_size, self.stride, self.pad)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (as PyTorch)."""
    kind = "flatten"

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        self.cache = {"x": x}
        return F.flatten_forward(x)

    def backward(self, grad, rule="gradient", param_grads=False):
        return F.flatten_backward(grad, self._cached()["x"])


class Dropout(Layer):
    """Identity at inference; in training zeroes with probability p and scales by 1/(1-p)."""
    kind = "dropout"

    def __init__(self, p=0.5, seed=0):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def config(self):
        return {"p": self.p}

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.cache = {"mask": None}
            return x
        y, mask = F.dropout_forward(x, self.p, self.rng)
        self.cache = {"mask": mask}
        return y

    def backward(self, grad, rule="gradient", param_grads=False):
        mask = self._cached()["mask"]
        return grad if mask is None else F.dropout_backward(grad, mask)


class GlobalAvgPool(Layer):
    """(N, C, H, W) -> (N, C): the mean of each channel over space (CAM's pooling, Zhou et
    al. 2016). Linear, so every rule sends dy back the same way: dy / (H*W) at each
    position of its channel."""
    kind = "global_avgpool"

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"GlobalAvgPool expects (C, H, W) maps, got shape {tuple(in_shape)}")
        return (int(in_shape[0]),)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        self.cache = {"x_shape": x.shape}
        return x.mean(axis=(2, 3))

    def backward(self, grad, rule="gradient", param_grads=False):
        n, c, h, w = self._cached()["x_shape"]
        xp = get_array_module(grad)
        return xp.broadcast_to((grad / (h * w))[:, :, None, None], (n, c, h, w)).copy()


LAYER_TYPES = {cls.kind: cls for cls in (Conv2d, Linear, ReLU, MaxPool2d, Flatten, Dropout,
                                         GlobalAvgPool)}
