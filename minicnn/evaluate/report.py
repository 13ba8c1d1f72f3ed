"""What a person reads after an evaluation: the Markdown table and the figure."""
import numpy as np

from ..viz import render
from .data import skip_words
from .localization import BASELINES, POINT_BASELINE, label_iou

PRED_COLOUR = (230, 30, 30)
TRUTH_COLOUR = (30, 200, 60)
LABELS = {"gradient": "gradient (Simonyan et al.)", "deconvnet": "DeconvNet",
          "guided": "guided backprop", "smoothgrad": "SmoothGrad (gradient)",
          "centre_box": "baseline: centred box of the mean true size",
          "full_image": "baseline: whole image", "centre_point": "baseline: image centre",
          "gradcam": "Grad-CAM (Selvaraju et al.)",
          "integrated_gradients": "Integrated Gradients (Sundararajan et al.)",
          "occlusion": "occlusion (Zeiler & Fergus)", "gradient_x_input": "gradient x input"}


def _fmt(value):
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _fmt_ci(value, ci):
    """A mean with its 95% interval: 0.414 [0.404, 0.424]."""
    text = _fmt(value)
    return text if not ci or text == "-" else f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"


def summary_markdown(summary, methods, command, data, model, skipped=None):
    """The summary as a Markdown document: one table row per method and baseline."""
    loc, point, mask = (summary["localisation_error"], summary["pointing_game"],
                        summary["mask_iou"])
    tol = summary["pointing_tolerance"]
    cls_err = summary["classification_error"]
    at = (f"{tol['pixels']:g} px at a shorter side of {tol['at_shorter_side']} px"
          if tol["at_shorter_side"] else f"{tol['pixels']:g} px")
    skipped_text = skip_words(skipped or {})
    lines = [
        "# Weakly supervised localisation",
        "",
        f"Model `{model}`, data `{data}`: **{summary['n']} images**"
        + (f" (skipped: {skipped_text}; see skipped.jsonl)" if skipped_text else "") + ".",
        f"Classification error: top-1 {_fmt_ci(cls_err['top1'], cls_err.get('top1_ci95'))}, "
        f"top-5 {_fmt_ci(cls_err['top5'], cls_err.get('top5_ci95'))}. Each mean is followed "
        "by its 95% confidence interval (seeded bootstrap over the images, 2000 resamples).",
        "",
        "| method | localisation error top-1 | top-5 | pointing game | mask IoU |",
        "|---|---|---|---|---|",
    ]
    point_ci, mask_ci = summary.get("pointing_game_ci95", {}), summary.get("mask_iou_ci95", {})
    for name in list(methods) + list(BASELINES) + [POINT_BASELINE]:
        row_loc = loc.get(name, {})
        lines.append(f"| {LABELS.get(name, name)} | "
                     f"{_fmt_ci(row_loc.get('top1'), row_loc.get('top1_ci95'))} | "
                     f"{_fmt_ci(row_loc.get('top5'), row_loc.get('top5_ci95'))} | "
                     f"{_fmt_ci(point.get(name), point_ci.get(name))} | "
                     f"{_fmt_ci(mask.get(name), mask_ci.get(name))} |")
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
        # no image twice, and "worst" only below every "best"
        best = min(count, (len(order) + 1) // 2)
        worst = min(count, len(order) - best)
        picks = order[:best] + order[len(order) - worst:]
        panels = []
        for k, (iou, rec) in enumerate(picks):
            img = picture(rec["image"])
            box = rec["boxes"][method].get(str(rec["label"]))
            boxes = [(b, TRUTH_COLOUR) for b in rec["true_boxes"]]
            if box is not None:
                boxes.append((box, PRED_COLOUR))
            name = class_names[rec["label"]] if rec["label"] < len(class_names) else str(rec["label"])
            tag = "best" if k < best else "worst"
            panels.append(render.panel(img, f"{LABELS.get(method, method)}: {tag}\n"
                                            f"{name}, IoU {iou:.2f}",
                                       scale=render.upscale_factor(*img.shape[:2], target=160),
                                       boxes=boxes, font_size=12))
        rows.append(panels)
    return render.grid(rows, title="Best and worst localised images per method (red: box from "
                                   "the true class's saliency map; green: true boxes)")


# ----------------------------------------------------------------------------- sanity

def _figure_to_image(fig):
    import io
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def sanity_plot(summary, methods, key="spearman_abs"):
    """Similarity to the trained net's map against the layers randomised: cascade (left;
    x: randomised from the top down to this layer) and independent (right; x: the one
    layer randomised). One line per method, the band is +-1 standard deviation over
    images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, mode in zip(axes, ("cascade", "independent")):
        for method in methods:
            rows = summary[mode][method]
            x = np.arange(len(rows))
            mean = np.array([r[key] for r in rows])
            std = np.array([r[key + "_std"] for r in rows])
            line, = ax.plot(x, mean, marker="o", label=LABELS.get(method, method))
            ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=line.get_color())
        ax.set_xticks(np.arange(len(rows)))
        ax.set_xticklabels([r["layer"] for r in rows], rotation=45, ha="right")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{mode} randomisation" + (" (top layer first)" if mode == "cascade" else ""))
        ax.set_xlabel("randomised from the top down to" if mode == "cascade"
                      else "the one randomised layer")
        ax.grid(alpha=0.3)
    names = {"spearman_abs": "Spearman rank correlation (absolute map)",
             "spearman_signed": "Spearman rank correlation (signed signal)", "ssim": "SSIM"}
    axes[0].set_ylabel(names.get(key, key))
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Model-parameter randomisation test: similarity to the trained model's map, "
                 f"{summary['n']} images")
    image = _figure_to_image(fig)
    plt.close(fig)
    return image


def cascade_strip(rgb, maps, steps, methods, title=""):
    """One row per method: the image, then its saliency map at each cascade step.
    maps: {method: [(H, W) map per step]}; steps: the step labels."""
    rows = []
    scale = render.upscale_factor(*rgb.shape[:2], target=112)
    for method in methods:
        panels = [render.panel(rgb, LABELS.get(method, method), scale=scale, font_size=12)]
        for label, m in zip(steps, maps[method]):
            panels.append(render.panel(render.heatmap(m), label, scale=scale, font_size=12))
        rows.append(panels)
    return render.grid(rows, title=title)


def sanity_markdown(summary, methods, command, data, model):
    """sanity.json as Markdown: a table per mode, rows = steps, columns = methods."""
    lines = ["# Model-parameter randomisation test", "",
             f"Model `{model}`, data `{data}`: **{summary['n']} images**. Mean over images "
             "of the similarity between the trained model's map and the map after "
             "randomisation, its 95% confidence interval (seeded bootstrap, 2000 resamples) "
             "and the standard deviation over images.", ""]
    for mode in ("cascade", "independent"):
        for key, what in (("spearman_abs", "Spearman, absolute map"),
                          ("spearman_signed", "Spearman, signed signal"), ("ssim", "SSIM")):
            lines += [f"## {mode}: {what}", "",
                      "| randomised | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
                      "|---|" + "---|" * len(methods)]
            rows = summary[mode][methods[0]]
            for k, row in enumerate(rows):
                cells = [_fmt_ci(summary[mode][m][k][key], summary[mode][m][k].get(key + "_ci95"))
                         + f" (sd {summary[mode][m][k][key + '_std']:.2f})" for m in methods]
                lines.append(f"| {row['layer']} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["Made by:", "", f"    {command}", ""]
    return "\n".join(lines)


def objective_markdown(summary, objectives, command, model):
    """class_objective.json as Markdown: per class and objective the final S_c, P_c and
    the other classes' mean / max score, then the means over classes."""
    lines = ["# Class models: score versus softmax objective", "",
             f"Model `{model}`. Each cell: S_c / P_c / mean of the other scores / max of the "
             "other scores, at the end of the optimisation.", "",
             "| class | " + " | ".join(f"max {o}" for o in objectives) + " |",
             "|---|" + "---|" * len(objectives)]
    fmt = "{S_c:.2f} / {P_c:.3f} / {others_mean:.2f} / {others_max:.2f}"
    for row in summary["classes"]:
        lines.append(f"| {row['name']} | "
                     + " | ".join(fmt.format(**row["objectives"][o]) for o in objectives) + " |")
    lines.append("| **mean** | " + " | ".join(fmt.format(**summary["mean"][o]) for o in objectives)
                 + " |")
    lines += ["", "Made by:", "", f"    {command}", ""]
    return "\n".join(lines)


def faithfulness_markdown(summary, methods, command, data, model):
    """faithfulness.json as Markdown: a row per method and the random order."""
    lines = ["# Deletion and insertion (Petsiuk et al. 2018)", "",
             f"Model `{model}`, data `{data}`: **{summary['n']} images**, {summary['steps']} "
             "steps per curve. Area under the curve of the top-1 class's softmax probability "
             "as the map's pixels are deleted (set to the baseline; lower is better) or "
             "inserted into a blurred copy (higher is better), most salient first. Each "
             "mean is followed by its 95% confidence interval (seeded bootstrap over the "
             "images, 2000 resamples).", "",
             "| method | deletion AUC (lower: better) | insertion AUC (higher: better) |",
             "|---|---|---|"]
    for name in list(methods) + ["random"]:
        row = summary["random"] if name == "random" else summary["methods"][name]
        label = "random order (baseline)" if name == "random" else LABELS.get(name, name)
        lines.append(f"| {label} | {_fmt_ci(row['deletion_auc'], row['deletion_auc_ci95'])} | "
                     f"{_fmt_ci(row['insertion_auc'], row['insertion_auc_ci95'])} |")
    lines += ["", "Made by:", "", f"    {command}", ""]
    return "\n".join(lines)


def faithfulness_plot(summary, methods):
    """The mean deletion (left) and insertion (right) curves per method and of the random
    order."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    steps = summary["steps"]
    x = np.linspace(0, 1, steps + 1)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for name in list(methods) + ["random"]:
            row = summary["random"] if name == "random" else summary["methods"][name]
            label = "random order" if name == "random" else LABELS.get(name, name)
            ax.plot(x, row[f"{kind}_curve"], label=f"{label} (AUC {row[f'{kind}_auc']:.3f})",
                    ls="--" if name == "random" else "-", color="grey" if name == "random" else None)
        ax.set_xlabel("fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"))
        ax.set_title(f"{kind}: " + ("lower is better" if kind == "deletion" else "higher is better"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("softmax probability of the top-1 class (mean)")
    fig.suptitle(f"Deletion and insertion curves, {summary['n']} images")
    image = _figure_to_image(fig)
    plt.close(fig)
    return image
