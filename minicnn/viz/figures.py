"""The pictures the tools write: labelled panels composed with :mod:`minicnn.viz.render`.

Each function returns a PIL image; one row per image of the batch.
"""
import os

import numpy as np

from . import render
from .inputs import class_name
from .localize import bounding_box

RULE_TITLES = {"gradient": "gradient (backprop)", "deconvnet": "DeconvNet",
               "guided": "guided backprop"}
PRED_COLOUR = (255, 40, 40)


# the descendants of the paper's map name their own paper in the figure's title
FIGURE_TITLES = {"gradcam": "Grad-CAM (Selvaraju et al. 2017)",
                 "integrated_gradients": "Integrated Gradients (Sundararajan et al. 2017)",
                 "occlusion": "Occlusion (Zeiler & Fergus 2014): the class score's drop",
                 "gradient_x_input": "Gradient x input"}


def map_title(method):
    """What a map panel shows, by method (see minicnn.viz.attribution)."""
    if method in RULE_TITLES:
        return f"saliency max_k |{RULE_TITLES[method]}|"
    return {"gradcam": "Grad-CAM (upsampled)", "integrated_gradients": "|sum_k IG attribution|",
            "occlusion": "occlusion: mean score drop (>= 0)",
            "gradient_x_input": "|sum_k gradient x input|"}[method]
TRUTH_COLOUR = (40, 220, 40)
SUPPORT_COLOUR = (255, 220, 0)


def _label(net, cls, score, prob=None):
    text = f"{class_name(net, int(cls))} (class {int(cls)}) S_c={score:.2f}"
    return text + (f" p={prob:.2f}" if prob is not None else "")


def saliency_figure(net, views, results, rule="gradient", notes=None):
    """views: list of View; results: list of Saliency with N = 1 (one per view);
    notes: optional text per view added to the map's title."""
    rows = []
    notes = notes or [""] * len(views)
    for view, res, note in zip(views, results, notes):
        m = res.map[0]
        scale = render.upscale_factor(*m.shape)
        label = _label(net, res.classes[0], float(res.scores[0]), float(res.probs[0]))
        rows.append([
            render.panel(view.rgb, f"{os.path.basename(view.path)}\n{label}", scale),
            render.panel(render.heatmap(m), f"{map_title(rule)}"
                         f"\n{note}max {m.max():.3g}", scale),
            render.panel(render.overlay(view.rgb, m), "overlay", scale),
        ])
    return render.grid(rows, title=FIGURE_TITLES.get(
        rule, "Image-specific class saliency (Simonyan et al. 2013, Sect. 3)"))


def deconv_figure(net, views, rec, layer, zoom=False):
    """Input | gradient | DeconvNet | guided: signed reconstructions (grey = 0) on top,
    their max-over-channels magnitude below, one pair of rows per image. ``zoom``: crop
    every panel to where the signal reaches (plus 2 pixels), as Zeiler & Fergus show
    image patches."""
    order = net.preprocessing.channel_order
    rows = []
    for i, view in enumerate(views):
        where = "" if not rec.positions[i] else f" at {rec.positions[i]}"
        support = np.zeros(view.rgb.shape[:2], bool)
        for sig in rec.signals.values():
            support |= np.abs(sig[i]).max(axis=0) > 0
        box = bounding_box(support)
        crop = (slice(None), slice(None))
        if zoom and box:
            h, w = support.shape
            x0, y0, x1, y1 = max(box[0] - 2, 0), max(box[1] - 2, 0), min(box[2] + 2, w), \
                min(box[3] + 2, h)
            crop = (slice(y0, y1), slice(x0, x1))
            box = [box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]
        rgb = view.rgb[crop]
        scale = render.upscale_factor(*rgb.shape[:2])
        top = [render.panel(rgb, f"{os.path.basename(view.path)}\n{layer} channel "
                            f"{int(rec.channels[i])}{where}, value {rec.values[i]:.3g}"
                            + ("\nyellow: where the signal reaches" if box else "")
                            + (" (zoomed)" if zoom and box else ""), scale,
                            boxes=[(box, SUPPORT_COLOUR)] if box else [])]
        bottom = [render.panel(np.full_like(rgb, 255), "max over channels of |signal|, "
                               "each panel scaled to its own maximum", scale)]
        for rule, sig in rec.signals.items():
            s = sig[i][(slice(None),) + crop]
            top.append(render.panel(render.signed_rgb(s, order),
                                    f"{RULE_TITLES[rule]}\nsigned, grey = 0", scale))
            bottom.append(render.panel(render.heatmap(np.abs(s).max(axis=0)),
                                       f"{RULE_TITLES[rule]} |.|", scale))
        rows += [top, bottom]
    return render.grid(rows, title=f"One unit of {layer} projected back to the image: the three "
                                   "passes differ only in the ReLU rule (Simonyan et al. 2013, "
                                   "Sect. 4)")


def localize_figure(net, view, sal, loc, file_box=None, truth=None, truth_name=""):
    """Image with the predicted box (red) and the ground truth (green) | saliency |
    seeds (red foreground, blue background) | GraphCut mask with the kept component."""
    m = sal.map[0]
    scale = render.upscale_factor(*m.shape)
    boxes = []
    if truth is not None:
        boxes.append((truth, TRUTH_COLOUR))
    if loc.box is not None:
        boxes.append((loc.box, PRED_COLOUR))
    label = _label(net, sal.classes[0], float(sal.scores[0]), float(sal.probs[0]))
    where = f"box {file_box} (image pixels)" if file_box is not None else "no box"
    legend = "red: predicted" + (f", green: truth {truth_name}" if truth is not None else "")
    seeds = (view.rgb.astype(np.float64) * 0.45).astype(np.uint8)
    seeds[loc.fg_seeds] = (255, 40, 40)
    seeds[loc.bg_seeds] = (60, 110, 255)
    mask = np.zeros_like(view.rgb)
    mask[loc.segmentation] = (110, 110, 110)
    mask[loc.mask] = (255, 255, 255)
    note = " (GraphCut empty: seed fallback)" if loc.fallback else ""
    row = [render.panel(view.rgb, f"{os.path.basename(view.path)}\n{label}\n{legend}", scale,
                        boxes=boxes),
           render.panel(render.heatmap(m), "saliency map", scale),
           render.panel(seeds, "colour-model seeds\nred fg, blue bg", scale),
           render.panel(mask, f"GraphCut{note}\nwhite: largest component\n{where}", scale,
                        boxes=[(loc.box, PRED_COLOUR)] if loc.box else [])]
    return row


def class_model_figure(net, result, display="rescale", columns=5, title=""):
    """One tile per class: the optimised input with the mean added back."""
    p = net.preprocessing
    tiles = []
    for x, cls, score in zip(result.x, result.classes, result.scores):
        arr = p.input_to_array(x)
        rgb = render.rescaled_rgb(arr) if display == "rescale" else \
            np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        tiles.append(render.panel(rgb, f"{class_name(net, int(cls))}\nS_c={score:.2f}"))
    return render.grid(render.tile(tiles, columns), title=title)
