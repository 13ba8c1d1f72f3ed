#!/usr/bin/env python3
"""Image-specific class saliency maps (Simonyan, Vedaldi & Zisserman 2013, Sect. 3).

The code is minicnn/commands/saliency.py; `pip install` also installs it as the command `minicnn-saliency`.
"""
import sys

from minicnn.commands.saliency import entry

if __name__ == "__main__":
    sys.exit(entry())
