#!/usr/bin/env python3
"""Measure saliency maps over a data set (localisation error, pointing game, sanity checks).

The code is minicnn/commands/evaluate.py; `pip install` also installs it as the command `minicnn-evaluate`.
"""
import sys

from minicnn.commands.evaluate import entry

if __name__ == "__main__":
    sys.exit(entry())
