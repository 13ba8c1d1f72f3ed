"""A model file shaped like a converted torchvision VGG16, small enough for the tests.

``imagenet_vgg16_like(path)`` writes (minicnn.save) a VGG16-shaped net: 13 3x3 convs in
five blocks with 2x2 max-pools, three fully connected layers and 1000 outputs named
with ImageNet's class names, for 224x224 RGB input with torchvision's preprocessing
(mean/std, shorter side resized to 256): what ``tools/convert_weights.py`` writes for
torchvision's vgg16, but with narrow layers (8-32 channels, fc 64) and seeded random
weights, so a forward pass takes milliseconds. The net is built once per process and
the file copied to each path asked for.
"""
import functools
import os
import shutil
import tempfile

# VGG16's layer pattern (configuration D: 2, 2, 3, 3, 3 convs per block), narrow widths
CONFIG = (8, 8, "M", 16, 16, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32, "M")
FC_SIZES = (64, 64)
INPUT_SIZE = (224, 224)
SEED = 16


def imagenet_meta():
    """The metadata tools/convert_weights.py gives a torchvision VGG16 (minicnn.convert)."""
    from minicnn.convert import common
    preprocessing = dict(common.TORCHVISION_PREPROCESSING)
    preprocessing.update({"input_size": list(INPUT_SIZE),
                          "resize": int(round(INPUT_SIZE[0] * 256 / 224))})
    return {"preprocessing": preprocessing, "class_names": common.imagenet_class_names(),
            "source": {"format": "torchvision", "container": "test", "file": "vgg16-like",
                       "arch": "vgg16-like (narrow, random weights)"}}


@functools.lru_cache(maxsize=None)
def _built():
    """Path of this process's one copy of the file (its folder lives until exit)."""
    import minicnn
    from minicnn.models import vgg_from_config
    net = vgg_from_config(list(CONFIG), num_classes=1000, input_size=INPUT_SIZE,
                          fc_sizes=FC_SIZES, seed=SEED)
    folder = tempfile.TemporaryDirectory(prefix="minicnn-imagenet-like-")
    _built.folder = folder          # kept: removed at exit
    path = os.path.join(folder.name, "vgg16_like.h5")
    minicnn.save(net, path, imagenet_meta())
    return path


def imagenet_vgg16_like(path):
    """Write the VGG16-shaped 1000-class model file to ``path``; returns ``path`` (str)."""
    path = os.fspath(path)
    shutil.copyfile(_built(), path)
    return path
