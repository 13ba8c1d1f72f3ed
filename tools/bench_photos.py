#!/usr/bin/env python3
"""tools/bench_photos.py: the tools' speed and memory with a VGG16 on photos (see --help)."""
import sys

from minicnn.commands.bench_photos import entry

if __name__ == "__main__":
    sys.exit(entry())
