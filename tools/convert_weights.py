#!/usr/bin/env python3
"""Convert public VGG weights (torchvision .pth, Keras .h5, Caffe .caffemodel) to a minicnn model file.

The code is minicnn/commands/convert_weights.py; `pip install` also installs it as the command `minicnn-convert`.
"""
import sys

from minicnn.commands.convert_weights import entry

if __name__ == "__main__":
    sys.exit(entry())
