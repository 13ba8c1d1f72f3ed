#!/usr/bin/env python3
"""Measure saliency maps over a data set (localisation error, pointing game, sanity checks).

The code is minicnn/evaluate/cli.py; `pip install` also installs it as the command `minicnn-evaluate`.
"""
import sys

from minicnn.evaluate.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
