#!/usr/bin/env python3
"""Measure saliency maps over a data set: see `python3 tools/evaluate.py --help` and
minicnn/evaluate/cli.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicnn.evaluate.cli import PROG, main  # noqa: E402
from minicnn.viz import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
