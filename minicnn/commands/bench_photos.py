"""Benchmark the tools in the paper's setting: a VGG16 with 1000 classes on photos.

Each measurement runs in a fresh child process of its own (one at a time), which loads
the model, makes one warm-up call and then --rounds timed calls; the table gives the
median and each time as a multiple of one VGG16 gradient pass at 224x224 (batch 1,
measured the same way), which is the unit of the targets. Peak memory is the child's
VmHWM (Linux), model load included.

Photos: scikit-image's astronaut (512x512), chelsea (451x300) and coffee (600x400), the
last also resized to 500x375 for the box; nothing is downloaded.

  gradient pass     net.forward + net.backward of one class score, 224x224, batch 1
  saliency (N crops)  load_views + saliency_of_views on astronaut.png, as
                    tools/saliency.py computes it (--crops 5 is its default for photos)
  box 500x375       minicnn.viz.localize_map on the 500x375 photo and its saliency map
                    resized to it
  box 64 px         localize_map on the first shipped sample (64x64) and its gradient map
                    from the shipped model
  evaluate / image  minicnn.evaluate.evaluate_item (gradient, --boxes label) on the three
                    photos as JPEGs with one box each: wall time per image
  class models      minicnn.viz.class_model of 8 classes, 3 steps (two batches of 4):
                    seconds per class and step, and the peak memory
  method: NAME      minicnn.viz.attribution.attribute of one method with its defaults on
                    astronaut.png's network view (one image, its top-1 class): each
                    descendant's cost per image in gradient passes

Examples:
  python tools/bench_photos.py --weights vgg16.h5
  python tools/bench_photos.py --weights vgg16.h5 --rounds 5 --out bench_photos.md
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

METHOD_ROWS = ("method_gradient", "method_smoothgrad", "method_gradcam",
               "method_integrated_gradients", "method_occlusion", "method_gradient_x_input")
MEASUREMENTS = ("gradient", "saliency5", "saliency10", "box500", "box64", "evaluate",
                "classmodel") + METHOD_ROWS
LABELS = {"gradient": "gradient pass (the model's input size, batch 1)",
          "saliency5": "saliency, 512x512 photo, 5 crops (default)",
          "saliency10": "saliency, 512x512 photo, 10 crops",
          "box500": "box (localize_map), 500x375 photo",
          "box64": "box (localize_map), 64x64 canvas (shipped model)",
          "evaluate": "evaluate localize, gradient, --boxes label, per image",
          "classmodel": "class model, per class and step (8 classes, batches of 4)",
          "method_gradient": "method: gradient (the paper), one image at the input size",
          "method_smoothgrad": "method: SmoothGrad, 25 noisy copies",
          "method_gradcam": "method: Grad-CAM (last conv's ReLU)",
          "method_integrated_gradients": "method: Integrated Gradients, 32 steps",
          "method_occlusion": "method: occlusion, patch 1/8 of the side, stride half of it",
          "method_gradient_x_input": "method: gradient x input"}


def photos(folder):
    """Write the scikit-image photos into ``folder``; returns {name: path}."""
    from PIL import Image
    from skimage import data
    out = {}
    for name, array in (("astronaut", data.astronaut()), ("chelsea", data.chelsea()),
                        ("coffee", data.coffee())):
        out[name] = os.path.join(folder, f"{name}.jpg")
        Image.fromarray(array).save(out[name], quality=92)
    out["coffee500"] = os.path.join(folder, "coffee500.jpg")
    Image.fromarray(data.coffee()).resize((500, 375), Image.BILINEAR).save(out["coffee500"],
                                                                           quality=92)
    return out


def peak_bytes():
    """VmHWM of this process, model load included (bench's reader of it)."""
    from minicnn.commands.bench_children import _peak_rss_mb
    return int(_peak_rss_mb(reset=True) * 2**20)


def timed(call, rounds):
    """One warm-up call (first-call costs apart), then ``rounds`` timed calls."""
    from minicnn.commands.bench_children import timed_calls
    return timed_calls(call, rounds, warmup=1)


def _gradient(net, rounds):
    x = np.random.default_rng(0).standard_normal((1,) + net.input_shape).astype(np.float32)

    def call():
        scores = net.forward(x)
        seed = np.zeros(scores.shape, np.float32)
        seed[0, int(scores.argmax())] = 1.0
        net.backward(seed)
    return timed(call, rounds)


def _saliency(net, paths, rounds, crops):
    from minicnn.viz.inputs import load_views
    from minicnn.viz.saliency import saliency_of_views
    return timed(lambda: saliency_of_views(net, load_views(net, [paths["astronaut"]], crops)),
                 rounds)


def _box500(net, paths, rounds):
    from PIL import Image
    from minicnn.viz.inputs import load_views
    from minicnn.viz.localize import localize_map
    from minicnn.viz.saliency import saliency_of_views
    view, _ = load_views(net, [paths["coffee500"]], "5")[0]
    sal = saliency_of_views(net, [(view, 5)])[0]
    rgb = np.asarray(Image.open(paths["coffee500"]).convert("RGB"))
    smap = np.asarray(Image.fromarray(sal.map[0], "F").resize(rgb.shape[1::-1], Image.BILINEAR))
    return timed(lambda: localize_map(rgb, smap), rounds)


def _box64(rounds):
    import minicnn
    from minicnn import assets
    from minicnn.viz.inputs import load_view
    from minicnn.viz.localize import localize_map
    from minicnn.viz.saliency import saliency
    net = minicnn.load(assets.default_model())
    view = load_view(net, assets.default_image())
    sal = saliency(net, view.x[None])
    return timed(lambda: localize_map(view.rgb, sal.map[0]), rounds)


def _evaluate(net, paths, rounds):
    from PIL import Image
    from minicnn.evaluate import LocalizeSettings, evaluate_item
    from minicnn.evaluate.data import Item
    items = []
    for k, name in enumerate(("astronaut", "chelsea", "coffee500")):
        rgb = np.asarray(Image.open(paths[name]).convert("RGB"))
        h, w = rgb.shape[:2]
        items.append(Item(key=name, image=rgb, label=k,
                          true_boxes=[[w // 4, h // 4, 3 * w // 4, 3 * h // 4]]))
    settings = LocalizeSettings(methods=["gradient"], boxes="label")
    per_round = timed(lambda: [evaluate_item(net, item, i, settings)
                               for i, item in enumerate(items)], rounds)
    return [t / len(items) for t in per_round]


def _classmodel(net, rounds):
    from minicnn.viz.class_model import class_model
    classes, steps = list(range(8)), 3
    per_round = timed(lambda: class_model(net, classes, steps=steps, batch_size=4), rounds)
    return [t / (len(classes) * (steps + 1)) for t in per_round]   # +1: the final forward


def _method(net, paths, rounds, name):
    """One image (astronaut, the network's view) through the registry's method with its
    defaults (SmoothGrad: the gradient with 25 copies)."""
    from minicnn.viz.attribution import MethodSettings, attribute
    from minicnn.viz.inputs import load_views
    view, _ = load_views(net, [paths["astronaut"]], "1")[0]
    x = view.x[None]
    cls = [int(np.argmax(net.forward(x)))]
    method = "gradient" if name == "smoothgrad" else name
    settings = MethodSettings(smoothgrad=25 if name == "smoothgrad" else 0)
    return timed(lambda: attribute(net, x, cls, method, settings), rounds)


def child(name, weights, paths, rounds):
    import minicnn
    net = None if name == "box64" else minicnn.load(weights)
    runs = {"gradient": lambda: _gradient(net, rounds),
            "saliency5": lambda: _saliency(net, paths, rounds, "5"),
            "saliency10": lambda: _saliency(net, paths, rounds, "10"),
            "box500": lambda: _box500(net, paths, rounds),
            "box64": lambda: _box64(rounds),
            "evaluate": lambda: _evaluate(net, paths, rounds),
            "classmodel": lambda: _classmodel(net, rounds),
            **{row: (lambda row=row: _method(net, paths, rounds, row[len("method_"):]))
               for row in METHOD_ROWS}}
    times = runs[name]()
    return {"times": times, "peak": peak_bytes()}


def run_child(name, weights, paths, rounds):
    spec = json.dumps({"name": name, "weights": weights, "paths": paths, "rounds": rounds})
    out = subprocess.run([sys.executable, "-m", "minicnn.commands.bench_photos", "--child",
                          spec], capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise RuntimeError(f"{name}: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results, processor):
    unit = float(np.median(results["gradient"]["times"]))
    lines = [f"processor: {processor}; each row its own process, median of the timed calls",
             "", "| what | median s | x gradient pass | peak MB (process) |", "|---|---|---|---|"]
    for name in MEASUREMENTS:
        if name not in results:
            continue
        t = float(np.median(results[name]["times"]))
        lines.append(f"| {LABELS[name]} | {t:.3f} | {t / unit:.2f} | "
                     f"{results[name]['peak'] / 2**20:.0f} |")
    return "\n".join(lines)


def build_parser():
    from minicnn.commands import cli
    p = cli.parser("bench_photos.py", __doc__)
    p.add_argument("--weights", metavar="MODEL.h5", required=True,
                   help="a converted VGG16 (tools/convert_weights.py), 224x224 input (any "
                        "model runs the gradient and method rows: --only method_...)")
    p.add_argument("--rounds", type=cli.positive_int, default=3, help="timed calls per row")
    p.add_argument("--only", metavar="NAME", nargs="+", choices=MEASUREMENTS, default=None,
                   help="some rows only (gradient always runs: it is the unit)")
    p.add_argument("--out", metavar="MD", default=None, help="also write the table here")
    return p


def main(argv=None):
    from minicnn.commands.bench_children import processor
    from minicnn.commands import cli
    args = build_parser().parse_args(argv)
    out = cli.checked_output(args.out, (".md",), "--out")
    import minicnn
    minicnn.load(args.weights)     # a bad model file: one line before any child runs
    names = ["gradient"] + [n for n in (args.only or MEASUREMENTS) if n != "gradient"]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = photos(folder)
        for name in names:
            print(f"measuring {LABELS[name]} ...", file=sys.stderr, flush=True)
            results[name] = run_child(name, os.path.abspath(args.weights), paths, args.rounds)
    text = table(results, processor())
    print(text)
    if out:
        cli.write_outputs([(out, text + "\n", "table")])
    return 0


def entry():
    from minicnn.commands import cli
    return cli.run(main, "bench_photos.py")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        spec = json.loads(sys.argv[2])
        print(json.dumps(child(spec["name"], spec["weights"], spec["paths"], spec["rounds"])))
        sys.exit(0)
    sys.exit(entry())
