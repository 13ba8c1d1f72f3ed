"""VGG-style networks with the community's layer names (conv1_1, relu1_1, ..., fc8)."""
import numpy as np

from .layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from .net import Net

VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M"]
VGG19_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def vgg_from_config(config, num_classes=1000, in_channels=3, input_size=(224, 224),
                    fc_sizes=(4096, 4096), dropout=0.5, seed=0, meta=None):
    """Build a VGG-style Net.

    config: conv widths and "M" (2x2 stride-2 max-pool) or "G" (global max-pool: one
    window over the whole remaining square map, which makes the classifier's input
    independent of where in the image a feature fired); each width is a 3x3, stride 1,
    pad 1 conv followed by ReLU. Blocks are separated by pools and named conv{b}_{i},
    relu{b}_{i}, pool{b}. Then flatten, fully connected layers fc6, fc7, ... (with relu
    and drop between them) for ``fc_sizes``, and a final fc of ``num_classes`` outputs.
    Weights: He normal (std sqrt(2 / fan_in)) from ``seed``, biases zero.
    """
    if not config or any(not (c in ("M", "G") or (isinstance(c, int) and c > 0))
                         for c in config):
        raise ValueError(f"config must list positive conv widths, 'M' and 'G', got {config!r}")
    rng = np.random.default_rng(seed)
    layers, channels, block, conv_in_block = [], in_channels, 1, 0
    h, w = input_size
    for item in config:
        if item in ("M", "G"):
            if item == "G" and h != w:
                raise ValueError(f"global pool 'G' needs a square map, got {h}x{w}")
            size = 2 if item == "M" else h
            layers.append((f"pool{block}", MaxPool2d(size, size)))
            h, w = h // size, w // size
            block, conv_in_block = block + 1, 0
            continue
        conv_in_block += 1
        layers.append((f"conv{block}_{conv_in_block}", Conv2d(channels, item, 3, 1, 1)))
        layers.append((f"relu{block}_{conv_in_block}", ReLU()))
        channels = item
    layers.append(("flatten", Flatten()))
    features = channels * h * w
    number = 6
    for size in fc_sizes:
        layers += [(f"fc{number}", Linear(features, size)), (f"relu{number}", ReLU())]
        if dropout:
            layers.append((f"drop{number}", Dropout(dropout, seed=seed + number)))
        features, number = size, number + 1
    layers.append((f"fc{number}", Linear(features, num_classes)))
    net = Net(layers, meta=meta)
    for _, layer in net:
        if "weight" in layer.params:
            shape = layer.params["weight"].shape
            fan_in = int(np.prod(shape[1:]))
            layer.params["weight"] = (rng.standard_normal(shape, dtype=np.float32)
                                      * np.float32(np.sqrt(2.0 / fan_in)))
    net.meta.setdefault("preprocessing", {"input_size": [int(input_size[0]), int(input_size[1])]})
    return net


def vgg16(num_classes=1000, seed=0):
    """VGG16 (Simonyan & Zisserman 2014, configuration D) for 224x224 RGB input."""
    return vgg_from_config(VGG16_CONFIG, num_classes=num_classes, seed=seed)


def vgg19(num_classes=1000, seed=0):
    """VGG19 (configuration E) for 224x224 RGB input."""
    return vgg_from_config(VGG19_CONFIG, num_classes=num_classes, seed=seed)
