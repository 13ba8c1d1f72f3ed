#!/usr/bin/env python3
"""Zeiler & Fergus reconstruction of one unit with each backward rule (Simonyan et al.

The code is minicnn/commands/deconv.py; `pip install` also installs it as the command `minicnn-deconv`.
"""
import sys

from minicnn.commands.deconv import entry

if __name__ == "__main__":
    sys.exit(entry())
