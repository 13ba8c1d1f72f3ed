#!/usr/bin/env python3
"""Describe a minicnn model file: the layer table (output shape for the model's input size,

The code is minicnn/commands/info.py; `pip install` also installs it as the command `minicnn-info`.
"""
import sys

from minicnn.commands.info import entry

if __name__ == "__main__":
    sys.exit(entry())
