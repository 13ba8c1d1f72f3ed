#!/usr/bin/env python3
"""Class model visualisation (Simonyan, Vedaldi & Zisserman 2013, Sect. 2).

The code is minicnn/commands/class_model.py; `pip install` also installs it as the command `minicnn-class-model`.
"""
import sys

from minicnn.commands.class_model import entry

if __name__ == "__main__":
    sys.exit(entry())
