"""Layers: thin classes holding parameters, gradients and one named cache.

Every layer implements

- ``forward(x)``: computes the output and caches exactly what ``backward`` needs;
- ``backward(grad, rule, param_grads=False)``: maps the signal at the layer's output to
  the signal at its input. ``rule`` is ``"gradient"``, ``"deconvnet"`` or ``"guided"``;
  only :class:`ReLU` looks at it (PAPER.md Sect. 4). With ``param_grads=True`` layers with
  parameters also fill ``self.grads`` (training);
- ``output_shape(in_shape)``: shape inference on per-example shapes (no batch axis);
- ``config()``: the constructor arguments, for model files.
"""
import numpy as np

from . import functional as F
from .backend import get_array_module


class Layer:
    kind = None           # the type name used in model files
    param_names = ()

    def __init__(self):
        self.params = {}  # name -> array (weight, bias)
        self.grads = {}
        self.cache = None
        self.training = False

    def config(self):
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

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                 ("pad", pad, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"Conv2d {name} must be an integer >= {low}, got {value!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.pad = int(kernel_size), int(stride), int(pad)
        k = self.kernel_size
        self.params = {"weight": np.zeros((self.out_channels, self.in_channels, k, k), np.float32),
                       "bias": np.zeros((self.out_channels,), np.float32)}

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "pad": self.pad}

    def output_shape(self, in_shape):
        c, h, w = in_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2d expects {self.in_channels} input channels, got {c}")
        ho = F.out_size(h, self.kernel_size, self.stride, self.pad)
        wo = F.out_size(w, self.kernel_size, self.stride, self.pad)
        if ho < 1 or wo < 1:
            raise ValueError(f"Conv2d kernel {self.kernel_size} (pad {self.pad}) does not fit "
                             f"a {h}x{w} input")
        return (self.out_channels, ho, wo)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        self.cache = {"x": x}
        weight, bias = self.params["weight"], self.params["bias"]
        if F.use_winograd(x, weight.shape, self.stride, self.pad):
            return F.winograd_conv3x3(x, self._winograd_weight(x.dtype), bias)
        return F.conv2d(x, weight, bias, self.stride, self.pad)

    def backward(self, grad, rule="gradient", param_grads=False):
        x = self._cached()["x"]
        weight = self.params["weight"]
        if param_grads:
            self.grads["weight"], self.grads["bias"] = F.conv2d_backward_params(
                grad, x, weight.shape, self.stride, self.pad)
        if F.use_winograd(grad, weight.shape, self.stride, self.pad):
            return F.winograd_conv3x3(grad, self._winograd_weight(grad.dtype, flipped=True), None)
        return F.conv2d_backward_input(grad, weight, x.shape, self.stride, self.pad)

    def _winograd_weight(self, dtype, flipped=False):
        """The kernel transform U of the current weight (F.winograd_weight), or of the
        flipped, transposed kernel for the backward pass, remembered between calls:
        visualisation runs hundreds of passes with fixed weights. Reused only while
        ``params["weight"]`` is the same array with the same values (so replacing or
        editing the weight in place is always seen)."""
        weight = self.params["weight"]
        xp = get_array_module(weight)
        dtype = xp.result_type(dtype, weight.dtype)
        memo = getattr(self, "_winograd_memo", None)
        if not (memo is not None and memo["weight"] is weight and memo["u"].dtype == dtype
                and bool(xp.array_equal(memo["values"], weight))):
            memo = {"weight": weight, "values": weight.copy(),
                    "u": F.winograd_weight(weight, dtype), "u_flipped": None}
            self._winograd_memo = memo
        if not flipped:
            return memo["u"]
        if memo["u_flipped"] is None:
            memo["u_flipped"] = F.winograd_weight_flipped(memo["u"])
        return memo["u_flipped"]


class Linear(Layer):
    """(N, in_features) -> (N, out_features): y = x W^T + b; weight (out, in) as PyTorch."""
    kind = "linear"
    param_names = ("weight", "bias")

    def __init__(self, in_features, out_features):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Linear {name} must be an integer >= 1, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.params = {"weight": np.zeros((self.out_features, self.in_features), np.float32),
                       "bias": np.zeros((self.out_features,), np.float32)}

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
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, grad, rule="gradient", param_grads=False):
        x = self._cached()["x"]
        if param_grads:
            self.grads["weight"] = grad.T @ x
            self.grads["bias"] = grad.sum(axis=0)
        return grad @ self.params["weight"]


class ReLU(Layer):
    """Elementwise max(x, 0), any shape. The one layer whose backward depends on the rule."""
    kind = "relu"

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.maximum(x, xp.zeros((), dtype=x.dtype))
        # the output doubles as the backward mask (y > 0 exactly where x > 0; a NaN
        # passes through, as in PyTorch): one pass here instead of two. Where a conv
        # follows it keeps y anyway; before a pool y costs 4 bytes per element, not 1
        self.cache = {"output": y}
        return y

    def backward(self, grad, rule="gradient", param_grads=False):
        return F.relu_backward(grad, self._cached()["output"], rule)


class MaxPool2d(Layer):
    """(N, C, H, W) -> (N, C, Ho, Wo), Ho = (H + 2*pad - kernel) // stride + 1.

    Caches the switches; backprop and DeconvNet both unpool through them."""
    kind = "maxpool2d"

    def __init__(self, kernel_size, stride=None, pad=0):
        super().__init__()
        stride = kernel_size if stride is None else stride
        for name, value, low in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                 ("pad", pad, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"MaxPool2d {name} must be an integer >= {low}, got {value!r}")
        if pad > kernel_size // 2:
            raise ValueError(f"MaxPool2d pad must be <= kernel_size // 2 = {kernel_size // 2}, "
                             f"got {pad}")
        self.kernel_size, self.stride, self.pad = int(kernel_size), int(stride), int(pad)

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "pad": self.pad}

    def output_shape(self, in_shape):
        c, h, w = in_shape
        ho = F.out_size(h, self.kernel_size, self.stride, self.pad)
        wo = F.out_size(w, self.kernel_size, self.stride, self.pad)
        if ho < 1 or wo < 1:
            raise ValueError(f"MaxPool2d window {self.kernel_size} does not fit a {h}x{w} input")
        return (c, ho, wo)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y, switches = F.maxpool2d(x, self.kernel_size, self.stride, self.pad)
        self.cache = {"switches": switches, "x_shape": x.shape}
        return y

    def backward(self, grad, rule="gradient", param_grads=False):
        cache = self._cached()
        return F.unpool2d(grad, cache["switches"], cache["x_shape"],
                          self.kernel_size, self.stride, self.pad)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (as PyTorch)."""
    kind = "flatten"

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        self.cache = {"x": x}
        return x.reshape(x.shape[0], -1)

    def backward(self, grad, rule="gradient", param_grads=False):
        x = self._cached()["x"]
        # back in the memory layout the input had (channels-last after a Winograd conv),
        # so the layers below see one layout
        return F.laid_out_like(grad.reshape(x.shape), x)


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
        xp = get_array_module(x)
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        mask = xp.asarray(keep.astype(np.float32) / np.float32(1.0 - self.p))
        self.cache = {"mask": mask}
        return x * mask

    def backward(self, grad, rule="gradient", param_grads=False):
        mask = self._cached()["mask"]
        return grad if mask is None else grad * mask


LAYER_TYPES = {cls.kind: cls for cls in (Conv2d, Linear, ReLU, MaxPool2d, Flatten, Dropout)}
