"""Weakly supervised object localisation from a saliency map (Simonyan et al. 2013,
Sect. 3.2).

For each image and class (default top-1): saliency map (as tools/saliency.py) ->
Gaussian-mixture colour models of the pixels above the --fg-quantile (0.95) and below
the --bg-quantile (0.30) of the map -> GraphCut (PyMaxflow; unary -log likelihoods,
contrast-sensitive pairwise term) -> largest connected component -> its bounding box.
Boxes are reported in the pixels of the given image (x1, y1 exclusive), also when the
image was resized or ten-cropped for the network.

Writes one PNG (a row per image: image with the predicted box in red and, for a shipped
sample, the ground-truth box in green | saliency | seeds | GraphCut mask) and, with
--json, the boxes.

Examples:
    python tools/localize.py                                  # shipped model and sample
    python tools/localize.py --image a.png b.png --json boxes.json
Python: minicnn.viz.localize_map(rgb, saliency_map) -> Localization (box, mask, ...).
"""
import sys


from minicnn.commands import cli


from minicnn.viz import figures, render
from minicnn.viz.inputs import class_name, classes_per_image, load_views
from minicnn.viz.localize import BoxSettings, localize_map
from minicnn.viz.saliency import SALIENCY, saliency_of_views

PROG = "localize.py"


def iou(a, b):
    """Intersection over union of two [x0, y0, x1, y1] boxes (0 when a is None)."""
    if a is None:
        return 0.0
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def build_parser():
    p = cli.parser(PROG, __doc__)
    cli.add_model_args(p)
    cli.add_image_args(p)
    p.add_argument("--class", dest="classes", metavar="CLASS", nargs="+", default=None,
                   help="class index or name; one for all images or one per image "
                        "(default: the top-1 class of each image)")
    cli.add_method_args(p, what="the saliency map")
    p.add_argument("--smoothgrad", metavar="N", type=cli.smoothgrad_samples, default=0,
                   help="SmoothGrad samples for the saliency map (0: off)")
    p.add_argument("--noise", type=cli.fraction, default=SALIENCY.noise,
                   help="SmoothGrad noise sigma as a fraction of the input range")
    cli.add_crop_args(p)
    cli.add_graphcut_args(p)
    p.add_argument("--seed", type=cli.nonneg_int, default=0, help="seed of the mixtures and SmoothGrad")
    p.add_argument("--out", metavar="PNG", default="localize.png",
                   help="output picture, one row per image")
    p.add_argument("--json", metavar="PATH", default=None,
                   help='also write {"box": [x0, y0, x1, y1], "class", "name", "score", '
                        '"image"} (a list of them for several images); box in the image\'s '
                        "pixels, x1/y1 exclusive, null when nothing was found")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    BoxSettings(args.fg_quantile, args.bg_quantile, args.components, args.smoothness)
    out = cli.checked_output(args.out, (".png",), "--out")
    js = cli.checked_output(args.json, (".json",), "--json")
    net = cli.load_net(args)
    paths = cli.image_paths(args)
    classes = classes_per_image(net, args.classes, len(paths))
    views = load_views(net, paths, args.crops)
    sals = saliency_of_views(net, views, classes, args.method, args.smoothgrad, args.noise,
                             args.seed, cli.method_settings(args))
    rows, records = [], []
    for (view, _), sal in zip(views, sals):
        loc = localize_map(view.rgb, sal.map[0], args.fg_quantile, args.bg_quantile,
                           args.components, args.smoothness, args.seed)
        file_box = view.box_to_file(loc.box) if loc.box is not None else None
        truth, record = None, {}
        sample = cli.sample_entry(view.path)
        if sample is not None:
            record = {"truth_box": sample["box"], "truth_name": sample["name"],
                      "iou": iou(file_box, sample["box"])}
            if view.size == tuple(view.rgb.shape[1::-1]):
                truth = sample["box"]           # same pixels as the view: draw it
        rows.append(figures.localize_figure(net, view, sal, loc, file_box, truth,
                                            record.get("truth_name", "")))
        cls = int(sal.classes[0])
        records.append({"image": view.path, "box": file_box, "class": cls,
                        "name": class_name(net, cls), "score": float(sal.scores[0]),
                        "fallback": bool(loc.fallback), **record})
    picture = render.grid(rows, title="Weakly supervised localisation: saliency -> colour "
                                      "models -> GraphCut -> largest component (Simonyan et "
                                      "al. 2013, Sect. 3.2)")
    cli.write_outputs([(out, picture, "localisation picture"),
                       (js, records[0] if len(records) == 1 else records, "boxes")])
    for r in records:
        truth = (f"; truth {r['truth_name']} {r['truth_box']}, IoU {r['iou']:.2f}"
                 if "iou" in r else "")
        print(f"{r['image']}: {r['name']} (class {r['class']}, score {r['score']:.3f}) "
              f"box {r['box']}{truth}")
    return 0


def entry():
    """The console command ``minicnn-localize`` (and tools/localize.py)."""
    return cli.run(main, PROG)


if __name__ == "__main__":
    sys.exit(entry())
