"""VGG-style networks with the community's layer names (conv1_1, relu1_1, ..., fc8)."""
import numpy as np

from .layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from .net import Net

VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M"]
VGG19_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


class VGGNames:
    """The community's VGG layer names, handed out in network order (the builders here
    and the weight converters use this one naming):

    - ``conv()`` -> ("conv{b}_{i}", "relu{b}_{i}"): the i-th conv of block b and its ReLU;
    - ``pool()`` -> "pool{b}": the pool closing block b (the next conv starts block b+1);
    - ``FLATTEN``: the flatten before the first fully connected layer;
    - ``fc()`` -> ("fc{n}", "relu{n}", "drop{n}"), n = 6, 7, ...: a fully connected layer
      and the ReLU and dropout that follow it (the last fc has neither).
    """
    FLATTEN = "flatten"
    FIRST_FC = 6

    def __init__(self):
        self.block, self.conv_in_block, self.fc_number = 1, 0, self.FIRST_FC

    def conv(self):
        self.conv_in_block += 1
        suffix = f"{self.block}_{self.conv_in_block}"
        return f"conv{suffix}", f"relu{suffix}"

    def pool(self):
        name = f"pool{self.block}"
        self.block, self.conv_in_block = self.block + 1, 0
        return name

    def fc(self):
        number = self.fc_number
        self.fc_number += 1
        return f"fc{number}", f"relu{number}", f"drop{number}"


def vgg_from_config(config, num_classes=1000, in_channels=3, input_size=(224, 224),
                    fc_sizes=(4096, 4096), dropout=0.5, seed=0, meta=None, dtype="float32"):
    """Build a VGG-style Net.

    config: conv widths and "M" (2x2 stride-2 max-pool) or "G" (global max-pool: one
    window over the whole remaining square map, which makes the classifier's input
    independent of where in the image a feature fired); each width is a 3x3, stride 1,
    pad 1 conv followed by ReLU. Blocks are separated by pools and named conv{b}_{i},
    relu{b}_{i}, pool{b}. Then flatten, fully connected layers fc6, fc7, ... (with relu
    and drop between them) for ``fc_sizes``, and a final fc of ``num_classes`` outputs.
    Weights: He normal (std sqrt(2 / fan_in)) from ``seed``, biases zero.
    ``dtype``: "float32" or "float64" (see :meth:`Net.to`); the weights are drawn in
    float32 either way, so one seed gives the same network in both.
    """
    if not config or any(not (c in ("M", "G") or (isinstance(c, int) and c > 0))
                         for c in config):
        raise ValueError(f"config must list positive conv widths, 'M' and 'G', got {config!r}")
    rng = np.random.default_rng(seed)
    names, layers, channels = VGGNames(), [], in_channels
    h, w = input_size
    for item in config:
        if item in ("M", "G"):
            if item == "G" and h != w:
                raise ValueError(f"global pool 'G' needs a square map, got {h}x{w}")
            size = 2 if item == "M" else h
            layers.append((names.pool(), MaxPool2d(size, size)))
            h, w = h // size, w // size
            continue
        conv, relu = names.conv()
        layers += [(conv, Conv2d(channels, item, 3, 1, 1)), (relu, ReLU())]
        channels = item
    layers.append((names.FLATTEN, Flatten()))
    features = channels * h * w
    for number, size in enumerate(fc_sizes, start=VGGNames.FIRST_FC):
        fc, relu, drop = names.fc()
        layers += [(fc, Linear(features, size)), (relu, ReLU())]
        if dropout:
            layers.append((drop, Dropout(dropout, seed=seed + number)))
        features = size
    layers.append((names.fc()[0], Linear(features, num_classes)))
    net = Net(layers, meta=meta)
    for _, layer in net:
        if "weight" in layer.params:
            shape = layer.params["weight"].shape
            fan_in = int(np.prod(shape[1:]))
            layer.params["weight"] = (rng.standard_normal(shape, dtype=np.float32)
                                      * np.float32(np.sqrt(2.0 / fan_in)))
    net.meta.setdefault("preprocessing", {"input_size": [int(input_size[0]), int(input_size[1])]})
    return net.to(dtype=dtype)


def vgg16(num_classes=1000, seed=0, dtype="float32"):
    """VGG16 (Simonyan & Zisserman 2014, configuration D) for 224x224 RGB input."""
    return vgg_from_config(VGG16_CONFIG, num_classes=num_classes, seed=seed, dtype=dtype)


def vgg19(num_classes=1000, seed=0, dtype="float32"):
    """VGG19 (configuration E) for 224x224 RGB input."""
    return vgg_from_config(VGG19_CONFIG, num_classes=num_classes, seed=seed, dtype=dtype)
