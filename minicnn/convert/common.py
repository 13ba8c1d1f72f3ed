"""What every reader shares: the error type, a format-neutral layer list, and the builder
that turns that list into a minicnn Net with the community's layer names.

A reader (torch_pickle, keras, caffe) produces a list of *ops*::

    ConvOp(weight, bias, stride, pad)   weight (O, C, k, k) OIHW, bias (O,)
    PoolOp(kernel, stride)              max-pool
    FCOp(weight, bias)                  weight (out, in), in = C*H*W flattened in C,H,W order

where weight and bias are :class:`Source` objects: their shape is known (and checked)
before any array is allocated; ``load()`` returns a float32 array. Every conv is followed
by a ReLU and every fc but the last by ReLU + dropout, as in VGG (Simonyan & Zisserman 2014, Sect. 2.1 and 3.1).
"""
import math
import os
import re

import numpy as np

from ..layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from ..models import VGG16_CONFIG, VGG19_CONFIG, VGGNames
from ..net import Net

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

TORCHVISION_PREPROCESSING = {"channel_order": "RGB", "input_scale": 1.0,
                             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
CAFFE_PREPROCESSING = {"channel_order": "BGR", "input_scale": 255.0,
                       "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]}

ARCHS = {"vgg16": VGG16_CONFIG, "vgg19": VGG19_CONFIG}


class ConvertError(ValueError):
    """A file that cannot be converted; the message says what was expected and found."""


# ---------------------------------------------------------------------- sources
class Source:
    """A weight array known by its shape until ``load()`` (float32, C-contiguous)."""

    def __init__(self, shape, loader, name=""):
        self.shape = tuple(int(s) for s in shape)
        self._loader = loader
        self.name = name

    @classmethod
    def of(cls, array, name=""):
        array = np.asarray(array)
        return cls(array.shape, lambda: array, name)

    @property
    def nbytes(self):
        return 4 * math.prod(self.shape)

    def load(self):
        arr = np.ascontiguousarray(self._loader(), dtype=np.float32)
        if arr.shape != self.shape:   # a loader bug, not a file problem
            raise ConvertError(f"{self.name}: loaded shape {arr.shape}, expected {self.shape}")
        return arr


class ConvOp:
    def __init__(self, weight, bias, stride=1, pad=None, name=""):
        self.weight, self.bias, self.name = weight, bias, name
        self.stride = int(stride)
        # default: "same" padding for odd kernels, as every VGG conv (3x3, pad 1)
        self.pad = (weight.shape[-1] - 1) // 2 if pad is None else int(pad)


class PoolOp:
    def __init__(self, kernel=2, stride=2, name=""):
        self.kernel, self.stride, self.name = int(kernel), int(stride), name


class FCOp:
    def __init__(self, weight, bias, name=""):
        self.weight, self.bias, self.name = weight, bias, name


# ---------------------------------------------------------------------- arch
def parse_arch(arch):
    """'auto' -> None; 'vgg16' / 'vgg19' -> their config; '64,64,M,128,M' -> that config."""
    if arch is None or arch == "auto":
        return None
    if arch in ARCHS:
        return list(ARCHS[arch])
    items = [s.strip() for s in str(arch).split(",") if s.strip()]
    config = []
    for item in items:
        if item.upper() == "M":
            config.append("M")
        elif item.isdigit() and int(item) > 0:
            config.append(int(item))
        else:
            raise ConvertError(f"--arch: expected vgg16, vgg19, auto or a config like "
                               f"'64,64,M,128,M', found {arch!r}")
    if not config or "M" == config[0]:
        raise ConvertError(f"--arch: a config must start with a conv width, found {arch!r}")
    return config


def config_of(ops):
    """The VGG config (conv widths and 'M') that a list of ops describes."""
    return [op.weight.shape[0] if isinstance(op, ConvOp) else "M"
            for op in ops if not isinstance(op, FCOp)]


def arch_name(config):
    for name, known in ARCHS.items():
        if config == known:
            return name
    return None


def format_config(config):
    return ",".join(str(c) for c in config)


def check_arch(ops, arch_config, arch):
    """Raise unless the file's conv/pool layout is the one --arch asked for."""
    if arch_config is None:
        return
    found = config_of(ops)
    if found != arch_config:
        raise ConvertError(f"--arch {arch} expects layers {format_config(arch_config)}, "
                           f"the file has {format_config(found)}")


# ---------------------------------------------------------------------- checks
def check_chain(ops):
    """Shapes must chain: conv in = previous out, fc in = previous out, biases match."""
    channels, features, seen_fc = None, None, False
    for op in ops:
        if isinstance(op, PoolOp):
            if seen_fc:
                raise ConvertError(f"{op.name}: pooling after a fully connected layer")
            continue
        w, b = op.weight.shape, op.bias.shape
        if isinstance(op, ConvOp):
            if seen_fc:
                raise ConvertError(f"{op.name}: convolution after a fully connected layer")
            if len(w) != 4 or w[2] != w[3]:
                raise ConvertError(f"{op.name}: expected a square conv weight (out, in, k, k), "
                                   f"found shape {w}")
            if channels is not None and w[1] != channels:
                raise ConvertError(f"{op.name}: expected {channels} input channels (the previous "
                                   f"conv's outputs), found weight shape {w}")
            channels = w[0]
        else:
            if len(w) != 2:
                raise ConvertError(f"{op.name}: expected a 2-D linear weight (out, in), found "
                                   f"shape {w}")
            if features is not None and w[1] != features:
                raise ConvertError(f"{op.name}: expected {features} inputs (the previous layer's "
                                   f"outputs), found weight shape {w}")
            features, seen_fc = w[0], True
        if b != (w[0],):
            raise ConvertError(f"{op.name}: expected bias shape ({w[0]},), found {b}")
    if channels is None:
        raise ConvertError("no convolution layers found: expected a VGG-style network")


def infer_input_size(ops):
    """Input side so that the last conv map flattens to fc6's inputs (square maps, convs that
    keep the size, each pool dividing it by its stride). None when there is no fc."""
    fcs = [op for op in ops if isinstance(op, FCOp)]
    if not fcs:
        return None
    channels = [op for op in ops if isinstance(op, ConvOp)][-1].weight.shape[0]
    inputs = fcs[0].weight.shape[1]
    side = math.isqrt(inputs // channels) if inputs % channels == 0 else 0
    if side < 1 or side * side * channels != inputs:
        raise ConvertError(f"{fcs[0].name}: expected C*S*S inputs for the last conv's "
                           f"{channels} channels and a square S x S map, found {inputs}")
    scale = math.prod(op.stride for op in ops if isinstance(op, PoolOp))
    return side * scale


# ---------------------------------------------------------------------- build
def build_net(ops, dropout=0.5):
    """Ops -> (Net with zero weights, [(param key, Source)]) in file order, with the
    community's layer names (:class:`minicnn.models.VGGNames`)."""
    names = VGGNames()
    layers, assign = [], []
    last_fc = max((i for i, op in enumerate(ops) if isinstance(op, FCOp)), default=None)
    for i, op in enumerate(ops):
        if isinstance(op, ConvOp):
            o, c, k, _ = op.weight.shape
            name, relu = names.conv()
            layers += [(name, Conv2d(c, o, k, op.stride, op.pad)), (relu, ReLU())]
        elif isinstance(op, PoolOp):
            layers.append((names.pool(), MaxPool2d(op.kernel, op.stride)))
        else:
            if not any(n == names.FLATTEN for n, _ in layers):
                layers.append((names.FLATTEN, Flatten()))
            out, inp = op.weight.shape
            name, relu, drop = names.fc()
            layers.append((name, Linear(inp, out)))
            if i != last_fc:
                layers.append((relu, ReLU()))
                if dropout:
                    layers.append((drop, Dropout(dropout)))
        if not isinstance(op, PoolOp):
            assign += [(f"{name}.weight", op.weight), (f"{name}.bias", op.bias)]
    return Net(layers), assign


def fill_weights(net, assign, quiet=False):
    """Load each Source into its parameter, one at a time (peak memory: the weights plus
    one tensor's temporaries). Refuses non-finite values."""
    from tqdm import tqdm
    expected = {key: layer.params[p].shape for key, layer, p in net.parameters()}
    total = sum(src.nbytes for _, src in assign)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="converting", disable=True if quiet else None,
               leave=False)
    try:
        for key, src in assign:
            layer_name, pname = key.split(".")
            if tuple(src.shape) != tuple(expected[key]):
                raise ConvertError(f"{key}: expected shape {expected[key]}, found {src.shape}")
            arr = src.load()
            # float64 sum: NaN/inf propagate and nothing the size of the tensor is allocated
            # (inf + -inf is NaN: no warning line, the error says it)
            with np.errstate(invalid="ignore", over="ignore"):
                total = float(arr.sum(dtype=np.float64))
            if not math.isfinite(total):
                raise ConvertError(f"{src.name or key}: expected finite weights, found NaN or "
                                   f"infinite values")
            net[layer_name].params[pname] = arr
            bar.update(src.nbytes)
    finally:
        bar.close()


def imagenet_class_names():
    path = os.path.join(DATA_DIR, "imagenet_classes.txt")
    with open(path, encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f]
    if len(names) != 1000:
        raise ConvertError(f"{path}: expected 1000 class names, found {len(names)}")
    return names


MAX_CLASS_FILE_BYTES = 16 * 2**20     # ImageNet's 1000 names are 30 KB


def read_class_file(path, count):
    """--classes: ``count`` names, one per line, UTF-8 text."""
    try:
        if os.path.getsize(path) > MAX_CLASS_FILE_BYTES:
            raise ConvertError(f"--classes {path}: larger than {MAX_CLASS_FILE_BYTES} bytes; "
                               "expected a text file of class names")
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise ConvertError(f"--classes {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConvertError(f"--classes {path}: not UTF-8 text (byte {exc.start}); expected "
                           "class names, one per line") from None
    if any("\x00" in name for name in names):
        raise ConvertError(f"--classes {path}: holds NUL bytes; expected class names, one "
                           "per line")
    if len(names) != count:
        raise ConvertError(f"--classes {path}: expected {count} names (one per line, the "
                           f"model's outputs), found {len(names)}")
    return names


def class_names_for(ops, classes_file=None):
    fcs = [op for op in ops if isinstance(op, FCOp)]
    if not fcs:
        if classes_file:
            raise ConvertError("--classes given but the network has no classifier layers")
        return []
    count = fcs[-1].weight.shape[0]
    if classes_file:
        return read_class_file(classes_file, count)
    if count == 1000:
        return imagenet_class_names()
    return [f"class_{i}" for i in range(count)]


def natural_key(text):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
