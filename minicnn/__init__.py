"""minicnn: a from-scratch NumPy/CuPy ConvNet engine for seeing inside image classifiers.

Reference implementation of Simonyan, Vedaldi & Zisserman (2013), "Deep Inside
Convolutional Networks". Every layer has an explicit forward and one backward with the
rule "gradient", "deconvnet" or "guided"; only ReLU depends on the rule.
"""
from .backend import cuda_available, get_array_module, to_device, to_numpy
from .functional import RULES, reference_mode
from .io import ModelFileError, load, save
from .layers import Conv2d, Dropout, Flatten, Layer, Linear, MaxPool2d, ReLU
from .models import VGG16_CONFIG, VGG19_CONFIG, vgg16, vgg19, vgg_from_config
from .net import Net
from .preprocess import ImageError, Preprocessing, load_image

__version__ = "0.1.0"

__all__ = [
    "Conv2d", "Dropout", "Flatten", "ImageError", "Layer", "Linear", "MaxPool2d",
    "ModelFileError", "Net", "Preprocessing", "RULES", "ReLU", "VGG16_CONFIG",
    "VGG19_CONFIG", "cuda_available", "get_array_module", "load", "load_image", "save",
    "reference_mode", "to_device", "to_numpy", "vgg16", "vgg19", "vgg_from_config",
]
