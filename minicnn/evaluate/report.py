"""What a person reads after an evaluation: the Markdown table and the figure."""
import numpy as np

from ..viz import render
from .localization import BASELINES, POINT_BASELINE, label_iou

PRED_COLOUR = (230, 30, 30)
TRUTH_COLOUR = (30, 200, 60)
LABELS = {"gradient": "gradient (Simonyan et al.)", "deconvnet": "DeconvNet",
          "guided": "guided backprop", "smoothgrad": "SmoothGrad (gradient)",
          "centre_box": "baseline: centred box of the mean true size",
          "full_image": "baseline: whole image", "centre_point": "baseline: image centre"}


def _fmt(value):
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def summary_markdown(summary, methods, command, data, model, skipped=0):
    """The summary as a Markdown document: one table row per method and baseline."""
    loc, point, mask = (summary["localisation_error"], summary["pointing_game"],
                        summary["mask_iou"])
    tol = summary["pointing_tolerance"]
    at = (f"{tol['pixels']:g} px at a shorter side of {tol['at_shorter_side']} px"
          if tol["at_shorter_side"] else f"{tol['pixels']:g} px")
    lines = [
        "# Weakly supervised localisation",
        "",
        f"Model `{model}`, data `{data}`: **{summary['n']} images**"
        + (f" ({skipped} skipped as unreadable)" if skipped else "") + ".",
        f"Classification error: top-1 {_fmt(summary['classification_error']['top1'])}, "
        f"top-5 {_fmt(summary['classification_error']['top5'])}.",
        "",
        "| method | localisation error top-1 | top-5 | pointing game | mask IoU |",
        "|---|---|---|---|---|",
    ]
    for name in list(methods) + list(BASELINES) + [POINT_BASELINE]:
        row_loc = loc.get(name, {})
        lines.append(f"| {LABELS.get(name, name)} | {_fmt(row_loc.get('top1'))} | "
                     f"{_fmt(row_loc.get('top5'))} | {_fmt(point.get(name))} | "
                     f"{_fmt(mask.get(name))} |")
    lines += [
        "",
        "Localisation error (ILSVRC rule): an image is wrong unless a guessed (class, box) "
        "pair has the true class and IoU >= 0.5 with one of its true boxes. Boxes: saliency "
        "map -> colour models of the pixels above the 95% / below the 30% saliency quantile "
        "-> GraphCut -> largest component. Pointing game: the arg-max of the true class's "
        f"map within {at} of a true box, accuracy averaged over classes. Mask IoU: the kept "
        "GraphCut component of the true class's map against the object's mask.",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
    ]
    return "\n".join(lines)


def ranked(records, method):
    """Records whose label is in the top 5, sorted by the label box's IoU (best first;
    ties in data order)."""
    scored = [(label_iou(r, method), i, r) for i, r in enumerate(records)]
    scored = [s for s in scored if s[0] is not None]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [(iou, r) for iou, _, r in scored]


def best_worst_figure(records, methods, load_item, class_names, count=4):
    """One row per method: its ``count`` best and ``count`` worst localised images (label
    box in red, true boxes in green). ``load_item(key)`` -> Item."""
    cache = {}

    def picture(key):
        if key not in cache:
            cache[key] = load_item(key).image
        return cache[key]

    rows = []
    for method in methods:
        order = ranked(records, method)
        if not order:
            continue
        picks = order[:count] + (order[-count:] if len(order) > count else [])
        panels = []
        for k, (iou, rec) in enumerate(picks):
            img = picture(rec["image"])
            box = rec["boxes"][method].get(str(rec["label"]))
            boxes = [(b, TRUTH_COLOUR) for b in rec["true_boxes"]]
            if box is not None:
                boxes.append((box, PRED_COLOUR))
            name = class_names[rec["label"]] if rec["label"] < len(class_names) else str(rec["label"])
            tag = "best" if k < min(count, len(order)) else "worst"
            panels.append(render.panel(img, f"{LABELS.get(method, method)}: {tag}\n"
                                            f"{name}, IoU {iou:.2f}",
                                       scale=render.upscale_factor(*img.shape[:2], target=160),
                                       boxes=boxes, font_size=12))
        rows.append(panels)
    return render.grid(rows, title="Best and worst localised images per method (red: box from "
                                   "the true class's saliency map; green: true boxes)")
