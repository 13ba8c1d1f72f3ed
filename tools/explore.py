#!/usr/bin/env python3
"""An explorer in the browser: look inside the network interactively.

The code is minicnn/commands/explore.py; `pip install` also installs it as the command `minicnn-explore`.
"""
import sys

from minicnn.commands.explore import entry

if __name__ == "__main__":
    sys.exit(entry())
