#!/usr/bin/env python3
"""Weakly supervised object localisation from a saliency map (Simonyan et al. 2013,

The code is minicnn/commands/localize.py; `pip install` also installs it as the command `minicnn-localize`.
"""
import sys

from minicnn.commands.localize import entry

if __name__ == "__main__":
    sys.exit(entry())
