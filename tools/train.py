#!/usr/bin/env python3
"""Train the shipped VGG-style model on cluttered Fashion-MNIST with minicnn's own engine.

The code is minicnn/commands/train.py; `pip install` also installs it as the command `minicnn-train`.
"""
import sys

from minicnn.commands.train import entry

if __name__ == "__main__":
    sys.exit(entry())
