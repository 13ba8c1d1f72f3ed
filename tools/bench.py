#!/usr/bin/env python3
"""Benchmark minicnn against PyTorch and the BLAS limit, each engine alone in its own process.

The code is minicnn/commands/bench.py; `pip install` also installs it as the command `minicnn-bench`.
"""
import sys

from minicnn.commands.bench import entry

if __name__ == "__main__":
    sys.exit(entry())
