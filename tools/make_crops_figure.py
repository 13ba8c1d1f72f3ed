#!/usr/bin/env python3
"""Make docs/crops_blend.png: a photo's saliency map from the ten crops averaged plainly
where they overlap (what tools/saliency.py did before; each crop's edge shows as a line)
beside the five crops blended with weights that fall off towards each crop's edge (its
default now).

    python tools/make_crops_figure.py --weights vgg16.h5 --image astronaut.png
"""
import argparse
import sys

import numpy as np

import minicnn
from minicnn.viz import render
from minicnn.viz.inputs import load_views
from minicnn.viz.saliency import blend, crop_saliency


def normalised(m):
    m = m / max(float(np.percentile(m, 99.5)), 1e-12)
    return np.repeat((np.clip(m, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--out", default="docs/crops_blend.png")
    args = p.parse_args()
    net = minicnn.load(args.weights)
    view, _ = load_views(net, [args.image], "5")[0]
    blended = crop_saliency(net, view.x, crops=5)
    saliency_module = sys.modules[crop_saliency.__module__]
    saliency_module.blend = lambda f, w, c, v, weight=None: blend(f, w, c, v, np.ones(c))
    try:
        plain = crop_saliency(net, view.x, crops=10)
    finally:
        saliency_module.blend = blend
    panels = [render.panel(view.rgb, "photo (ten-crop frame)"),
              render.panel(normalised(plain.map[0]), "before: mean of 10 crops"),
              render.panel(normalised(blended.map[0]), "now: 5 crops, blended")]
    render.grid([panels], title="Saliency of a photo: crops averaged vs blended").save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
