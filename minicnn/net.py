"""Net: an ordered, named sequence of layers with explicit forward and backward passes.

How a pass calls its layers (in place, ReLUs fused) is planned by
:mod:`minicnn.passes`; outside a pass, and in :func:`minicnn.reference_mode`, layers run
the plain interface of :class:`minicnn.layers.Layer`.
"""
import difflib
import functools
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .backend import check_device, get_array_module, require_cupy, to_device, to_numpy
from .functional import check_rule
from .layers import Layer
from .passes import backward_plan, forward_plan, runs_own
from .threads import blas_on_one_thread

DTYPES = ("float32", "float64")


def check_dtype(dtype):
    """The numpy dtype for "float32" / "float64" (or those dtypes); ValueError otherwise."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if dtype is None or name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return np.dtype(name)


class LastRun(NamedTuple):
    """What backward needs to know about the last forward."""
    stop: int        # index of the last layer it ran
    shapes: list     # output shape of each layer it ran, batch axis included


def unknown_name_error(kind, name, valid):
    """ValueError naming the close matches (or all valid names when few)."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=5, cutoff=0.5)
    hint = (f"close matches: {', '.join(close)}" if close
            else f"valid: {', '.join(valid[:40])}{' ...' if len(valid) > 40 else ''}")
    return ValueError(f"unknown {kind} {name!r}; {hint}")


def _blas_on_one_thread_on_cpu(method):
    """Run a pass with BLAS held on one thread from start to end on the CPU. The engine
    calls BLAS on one thread anyway (:mod:`minicnn.threads`); holding the limit for the
    whole pass, instead of setting and restoring it around each of the pass's hundred
    parallel steps, spares OpenBLAS's own threads from waking up between them."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if self.device != "cpu":
            return method(self, *args, **kwargs)
        with blas_on_one_thread():
            return method(self, *args, **kwargs)
    return run


class Net:
    """Ordered, named layers, e.g. ``Net([("conv1", Conv2d(3, 8, 3)), ("relu1", ReLU())])``.

    ``meta`` carries what a model file stores beside the weights: ``preprocessing``
    (see :mod:`minicnn.preprocess`) and ``class_names``.
    """

    def __init__(self, layers, meta=None):
        self.layers = OrderedDict()
        for name, layer in (layers.items() if isinstance(layers, dict) else layers):
            if not isinstance(name, str) or not name or "." in name or "/" in name:
                raise ValueError(f"layer names must be non-empty strings without '.' or '/', "
                                 f"got {name!r}")
            if name in self.layers:
                raise ValueError(f"duplicate layer name {name!r}")
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} is not a minicnn Layer: {layer!r}")
            self.layers[name] = layer
        if not self.layers:
            raise ValueError("a Net needs at least one layer")
        self.meta = dict(meta or {})
        self.device = "cpu"
        self.dtype = np.dtype(np.float32)   # of the parameters and of every pass
        self._last_run = None   # LastRun of the last complete forward

    # ------------------------------------------------------------------ access
    @property
    def names(self):
        return list(self.layers)

    def __getitem__(self, name):
        if name not in self.layers:
            raise unknown_name_error("layer", name, self.layers)
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers.items())

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        rows = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers.items())
        return f"Net(\n{rows}\n)"

    def index(self, name):
        if name not in self.layers:
            raise unknown_name_error("layer", name, self.layers)
        return self.names.index(name)

    @property
    def input_channels(self):
        """Channels of the input: the first conv's in_channels (3 when there is none)."""
        for layer in self.layers.values():
            if hasattr(layer, "in_channels"):
                return layer.in_channels
        return 3

    @property
    def input_shape(self):
        """(C, H, W) the network takes, from its preprocessing's input_size."""
        return (self.input_channels,) + tuple(self.preprocessing.input_size)

    @property
    def num_classes(self):
        """Number of outputs of the last layer for ``input_shape``."""
        return int(list(self.shapes(self.input_shape).values())[-1][0])

    @property
    def class_names(self):
        return list(self.meta.get("class_names") or [])

    @property
    def preprocessing(self):
        from .preprocess import Preprocessing
        return Preprocessing.from_dict(self.meta.get("preprocessing") or {})

    def preprocess(self, image):
        """PIL image -> (C, H, W) float32 input, as the model's metadata says."""
        return self.preprocessing.image_to_input(image)

    # ------------------------------------------------------------------ shapes
    def shapes(self, input_shape):
        """Per-example output shape of each layer for an input of shape (C, H, W).

        Returns an OrderedDict name -> shape; raises ValueError naming the first layer
        that does not fit."""
        shape, out = tuple(int(s) for s in input_shape), OrderedDict()
        for name, layer in self.layers.items():
            try:
                shape = layer.output_shape(shape)
            except ValueError as exc:
                raise ValueError(f"layer {name!r}: {exc}") from None
            out[name] = shape
        return out

    # ------------------------------------------------------------------ passes
    def _on_net(self, array):
        """``array`` on the net's device, in the net's dtype (no copy when it is)."""
        xp = np if self.device == "cpu" else require_cupy()
        if get_array_module(array) is not xp:
            array = to_device(array, self.device)
        return array.astype(self.dtype, copy=False)

    @_blas_on_one_thread_on_cpu
    def forward(self, x, until=None):
        """x: (N, C, H, W) preprocessed input, cast to the net's dtype (float32 unless
        :meth:`to` chose float64) -> output of the last layer (class scores before any
        softmax) or of layer ``until``. Layers keep references to their outputs for the
        backward pass (a ReLU's output is its mask): edit a copy."""
        stop = len(self.layers) - 1 if until is None else self.index(until)
        x = self._on_net(x)
        if x.ndim != 4:
            raise ValueError(f"forward expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        self._last_run = None   # a forward that fails part-way leaves nothing to backward
        shapes = []
        plan = forward_plan(list(self.layers.values()), stop)
        for i, (name, layer) in enumerate(self.layers.items()):
            if i > stop:
                layer.cache = None   # stale caches must not pair with this forward
                continue
            try:
                # the last pass's cache goes first: the arrays only it held can then be
                # recycled for this layer's output (minicnn.functional.workspace)
                layer.cache = None
                x = layer.forward(x, **plan[i])
            except ValueError as exc:
                for later in list(self.layers.values())[i:]:
                    later.cache = None
                raise ValueError(f"layer {name!r}: {exc}") from None
            shapes.append(tuple(x.shape))
        self._last_run = LastRun(stop, shapes)
        return x

    @_blas_on_one_thread_on_cpu
    def backward(self, grad, rule="gradient", start=None, param_grads=False,
                 input_signal=True, until=None):
        """Send ``grad`` (the signal at the output of layer ``start``, default the last
        layer) back to the input with ``rule`` ("gradient", "deconvnet", "guided").

        Returns the signal at the input, (N, C, H, W), or with ``until`` (a layer name
        below ``start``) the signal at that layer's output, in the shape it produced in
        the last forward (Grad-CAM reads it at the last conv's ReLU). Uses the caches of
        the last forward. ``param_grads=True`` (gradient rule only) also fills each layer's
        ``grads``; with ``input_signal=False`` as well (training), the signal below the
        lowest layer with parameters is not computed and None is returned."""
        check_rule(rule)
        if param_grads and rule != "gradient":
            raise ValueError("param_grads=True needs rule='gradient'")
        if not (input_signal or param_grads):
            raise ValueError("input_signal=False leaves nothing to compute without "
                             "param_grads=True")
        if self._last_run is None:
            raise RuntimeError("backward called before forward: run net.forward(x) first")
        last, shapes = self._last_run.stop, self._last_run.shapes
        begin = len(self.layers) - 1 if start is None else self.index(start)
        if begin > last:
            raise RuntimeError(f"backward from layer {self.names[begin]!r} but the last forward "
                               f"stopped at {self.names[last]!r}")
        grad = self._on_net(grad)
        if tuple(grad.shape) != shapes[begin]:
            raise ValueError(f"grad has shape {tuple(grad.shape)} but layer "
                             f"{self.names[begin]!r} produced {shapes[begin]} in the last forward")
        items = list(self.layers.items())[:begin + 1]
        if until is not None:
            stop = self.index(until)
            if stop >= begin:
                raise ValueError(f"backward until {until!r}: it must come before the layer "
                                 f"the signal starts at ({self.names[begin]!r})")
            if param_grads or not input_signal:
                raise ValueError("until= returns a signal inside the net: it cannot be "
                                 "combined with param_grads or input_signal=False")
            items = items[stop + 1:]
        lowest = None
        if not input_signal:    # the layers below the lowest one with parameters: nothing
            with_params = [i for i, (_, layer) in enumerate(items) if layer.param_names]
            if not with_params:
                return None
            lowest = items[with_params[0]][1]
            items = items[with_params[0] + 1:]
        top_down = [layer for _, layer in reversed(items)]
        for layer, options in zip(top_down, backward_plan(top_down)):
            grad = layer.backward(grad, rule, param_grads=param_grads, **options)
        if lowest is not None:
            if runs_own(lowest, "backward_params", "backward"):
                lowest.backward_params(grad)
            else:           # a backward of its own: backward_params would bypass it
                lowest.backward(grad, "gradient", param_grads=True)
            return None
        return grad

    # ------------------------------------------------------------------ modes / devices
    def train(self, mode=True):
        for layer in self.layers.values():
            layer.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move parameters to ``device`` 'cpu' (NumPy) or 'cuda' (CuPy) and/or cast them
        to ``dtype`` "float32" (the default of every net) or "float64"; None keeps the
        current one. Every later pass runs in that dtype: its inputs and signals are cast
        to it. float64 is for study (finite-difference checks; docs/float64.md); model
        files store float32. Returns self."""
        device = self.device if device is None else check_device(device)
        dtype = self.dtype if dtype is None else check_dtype(dtype)
        if device == "cuda":
            require_cupy()
        for layer in self.layers.values():
            for key in layer.params:
                layer.params[key] = to_device(layer.params[key], device).astype(dtype, copy=False)
            layer.grads = {}
            layer.cache = None
        self._last_run = None
        self.device, self.dtype = device, dtype
        return self

    # ------------------------------------------------------------------ parameters
    def parameters(self):
        """Yield (key, layer, param_name) for every parameter, in layer order."""
        for name, layer in self.layers.items():
            for pname in layer.param_names:
                yield f"{name}.{pname}", layer, pname

    def state_dict(self):
        """OrderedDict "<layer>.weight" / "<layer>.bias" -> NumPy array in the net's dtype
        (copies)."""
        return OrderedDict((key, to_numpy(layer.params[p]).copy())
                           for key, layer, p in self.parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters (PyTorch layouts).

        strict: every key must be present, none unexpected, every shape must match;
        the error lists all problems at once. Non-strict loads the matching keys and
        still refuses mis-shaped ones. Nothing is changed when an error is raised."""
        from collections.abc import Mapping
        from .terminal import short
        if not isinstance(state, Mapping):
            raise ValueError(f"load_state_dict: expected a mapping of 'layer.param' names to "
                             f"arrays, got {type(state).__name__}")
        odd = [short(k, 40) for k in state if not isinstance(k, str)]
        if odd:
            raise ValueError("load_state_dict: keys must be 'layer.param' strings, got "
                             + ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else ""))
        expected = {key: (layer, p) for key, layer, p in self.parameters()}
        missing = [k for k in expected if k not in state]
        unexpected = [short(k, 60) for k in state if k not in expected]
        bad_shape, bad_value, converted = [], [], {}
        for key, value in state.items():
            if key not in expected:
                continue
            layer, p = expected[key]
            arr = to_numpy(value)
            want = tuple(layer.params[p].shape)
            if tuple(arr.shape) != want:
                bad_shape.append(f"{key}: expected {want}, got {tuple(arr.shape)}")
                continue
            if arr.dtype.kind not in "fiu":
                bad_value.append(f"{key}: dtype {arr.dtype}, expected real numbers")
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                cast = arr.astype(self.dtype)
            if not np.isfinite(cast).all():
                bad_value.append(f"{key}: NaN, infinite or beyond {self.dtype.name}'s range")
                continue
            converted[key] = cast
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if bad_shape:
            problems.append("shape mismatch: " + "; ".join(bad_shape))
        if bad_value:
            problems.append("bad values: " + "; ".join(bad_value))
        if problems:
            raise ValueError("load_state_dict: " + " | ".join(problems))
        for key, arr in converted.items():
            layer, p = expected[key]
            layer.params[p] = to_device(arr, self.device)
        return self

    def replica(self):
        """A net with its own layer objects (caches, gradients, dropout generators) that
        shares this net's parameter dicts, so updates to either are seen by both: for
        running shards of one batch in threads (:class:`minicnn.training.DataParallel`)."""
        layers = []
        for name, layer in self.layers.items():
            twin = type(layer)(**layer.config())
            twin.params, twin.training = layer.params, layer.training
            if hasattr(layer, "rng"):       # dropout: an independent child stream
                twin.rng = layer.rng.spawn(1)[0]
            layers.append((name, twin))
        twin_net = Net(layers, self.meta)
        twin_net.device, twin_net.dtype = self.device, self.dtype
        return twin_net

    def num_parameters(self):
        return int(sum(layer.params[p].size for _, layer, p in self.parameters()))

    def architecture(self):
        """JSON-able description: [{"name", "type", "config"}] in layer order."""
        return [{"name": name, "type": layer.kind, "config": layer.config()}
                for name, layer in self.layers.items()]
