#!/usr/bin/env python3
"""Make docs/methods.png: every method of minicnn.viz.attribution (the paper's gradient,
its other backward rules, SmoothGrad and the descendants) on the same images and classes,
one row per image, as tools/saliency.py computes each map (the network's view, the
image's true class, the methods' defaults).

    python tools/make_methods_figure.py                        # shipped model, 4 samples
    python tools/make_methods_figure.py --weights vgg16.h5 --image astronaut.png --out m.png
"""
import argparse
import os
import sys

import numpy as np

import minicnn
from minicnn import assets
from minicnn.viz import render
from minicnn.viz.inputs import load_views
from minicnn.viz.saliency import saliency_of_views

METHODS = ("gradient", "smoothgrad", "deconvnet", "guided", "gradcam",
           "integrated_gradients", "occlusion", "gradient_x_input")
TITLES = {"smoothgrad": "SmoothGrad (25 copies)", "gradient": "gradient (the paper)",
          "deconvnet": "DeconvNet", "guided": "guided backprop", "gradcam": "Grad-CAM",
          "integrated_gradients": "Integrated Gradients", "occlusion": "occlusion",
          "gradient_x_input": "gradient x input"}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="model file (default: the shipped one)")
    p.add_argument("--image", nargs="+", default=None,
                   help="images (default: four of the shipped samples)")
    p.add_argument("--out", default="docs/methods.png")
    args = p.parse_args()
    net = minicnn.load(args.weights or assets.default_model())
    if args.image:
        paths, classes = args.image, None
    else:
        chosen = [s for s in assets.samples()][:8:2]
        paths, classes = [s["file"] for s in chosen], [int(s["label"]) for s in chosen]
    views = load_views(net, paths, "1")
    rows = []
    for k, (view, _) in enumerate(views):
        cls = None if classes is None else [classes[k]]
        row = [render.panel(view.rgb, os.path.basename(paths[k]), scale=None)]
        for method in METHODS:
            rule, smooth = ("gradient", 25) if method == "smoothgrad" else (method, 0)
            sal = saliency_of_views(net, [(view, 1)], cls, rule, smooth)[0]
            row.append(render.panel(render.heatmap(sal.map[0]), TITLES[method], scale=None))
        rows.append(row)
    picture = render.grid(rows, title="The paper's map and its descendants on the same images "
                                      "and classes (each method's defaults; brightest = most "
                                      "important)")
    picture.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
