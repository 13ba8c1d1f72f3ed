#!/usr/bin/env python3
"""Render the sample canvases shipped in weights/samples/ (PNG + samples.json).

They come from Fashion-MNIST's *test* images only (never seen in training), one per class
first, so every tool has a default image and the tests need no dataset package.

    python tools/make_samples.py            # writes weights/samples/
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image


from minicnn.datasets.cluttered import ClutteredFashion
from minicnn.datasets.fashion_mnist import CLASS_NAMES, DEFAULT_DIR, DatasetMissing, load_fashion_mnist
from minicnn.io import atomic_write


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DIR, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--out", default="weights/samples", help="output folder")
    p.add_argument("--per-class", type=int, default=2, help="samples of each class")
    p.add_argument("--seed", type=int, default=2024, help="canvas seed")
    args = p.parse_args(argv)
    try:
        images, labels = load_fashion_mnist("test", args.data)
    except (DatasetMissing, ValueError) as exc:
        print(f"make_samples.py: {exc}", file=sys.stderr)
        return 2
    gen = ClutteredFashion(images, labels)
    os.makedirs(args.out, exist_ok=True)
    entries = []
    # round r takes the r-th test item of each class: sample order is class 0..9, 0..9, ...
    for r in range(args.per_class):
        for c in range(len(CLASS_NAMES)):
            source = int(np.flatnonzero(labels == c)[r])
            canvas = gen.render(source, (args.seed, source))
            name = f"sample_{len(entries):02d}_{CLASS_NAMES[c].split('/')[0].replace(' ', '_').lower()}.png"
            atomic_write(os.path.join(args.out, name),
                         lambda tmp, img=canvas["image"]: Image.fromarray(img).save(tmp, format="PNG"))
            entries.append({"file": name, "label": c, "name": CLASS_NAMES[c],
                            "box": canvas["box"], "source": "fashion-mnist test", "index": source,
                            "seed": [args.seed, source]})
    index = os.path.join(args.out, "samples.json")
    def write_index(tmp):
        with open(tmp, "w") as fh:
            fh.write(json.dumps(entries, indent=1) + "\n")
    atomic_write(index, write_index)
    print(f"wrote {len(entries)} samples and {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
