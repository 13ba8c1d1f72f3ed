"""Image-specific class saliency maps (Simonyan, Vedaldi & Zisserman 2013, Sect. 3).

    M[i, j] = max over colour channels k of |dS_c / dI[k, i, j]|

S_c is the unnormalised class score (the softmax input), by default of the top-1 class.
One backward pass per image (per crop); --method picks the ReLU rule of that pass
(gradient is the paper's map; deconvnet is Zeiler & Fergus's, which the paper's Sect. 4
relates to it; guided is Springenberg et al.'s combination of the two). An image
larger than the network input is rescaled to the ten-crop frame and its map blended from
five crops (four corners and centre; --crops 10 adds their mirrors, the paper's ten), so
the map covers the whole photo; --crops 1 gives the network's own view.

Writes one PNG (a row per image: image with class name and score | map | overlay) and,
with --npy, the raw input-space signal.

Examples:
    python tools/saliency.py                                  # shipped model and sample
    python tools/saliency.py --image a.png b.png --method guided --smoothgrad 25
    python tools/saliency.py --image x.png --class Sneaker --npy sneaker_grad.npy
Python: minicnn.viz.saliency(net, x, classes, rule) on a (N, C, H, W) batch.
"""
import sys


import numpy as np

from minicnn.commands import cli

from minicnn.viz import figures
from minicnn.viz.inputs import classes_per_image, load_views
from minicnn.viz.saliency import SALIENCY, saliency_of_views

PROG = "saliency.py"


def build_parser():
    p = cli.parser(PROG, __doc__)
    cli.add_model_args(p)
    cli.add_image_args(p)
    p.add_argument("--class", dest="classes", metavar="CLASS", nargs="+", default=None,
                   help="class index or name (case-insensitive); one for all images or one "
                        "per image (default: the top-1 class of each image)")
    cli.add_method_args(p, what="the map")
    p.add_argument("--smoothgrad", metavar="N", type=cli.smoothgrad_samples, default=0,
                   help="SmoothGrad: average the signal over N noisy copies (0: off; "
                        "Smilkov et al. use up to 50)")
    p.add_argument("--noise", type=cli.fraction, default=SALIENCY.noise,
                   help="SmoothGrad noise sigma as a fraction of the input's (max - min)")
    cli.add_crop_args(p)
    p.add_argument("--seed", type=cli.nonneg_int, default=0, help="seed of the SmoothGrad noise")
    p.add_argument("--out", metavar="PNG", default="saliency.png",
                   help="output picture (image | map | overlay, one row per image)")
    p.add_argument("--npy", metavar="PATH", default=None,
                   help="also save the raw input-space signal of the chosen pass and class "
                        "as float32. PATH.npy: (C, H, W) for one image, (N, C, H, W) for "
                        "several of one size; PATH.npz: one (C, H, W) array per image, "
                        "named by the image's file name (any sizes; numpy.load reads it)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = cli.checked_output(args.out, (".png",), "--out")
    npy = cli.checked_output(args.npy, (".npy", ".npz"), "--npy")
    net = cli.load_net(args)
    paths = cli.image_paths(args)
    classes = classes_per_image(net, args.classes, len(paths))
    views = load_views(net, paths, args.crops)
    if npy and npy.lower().endswith(".npy") and len({v.x.shape for v, _ in views}) > 1:
        raise ValueError("--npy PATH.npy holds images of one size; these differ after "
                         "preprocessing / crop rescaling: give PATH.npz for one array per image")
    results = saliency_of_views(net, views, classes, args.method, args.smoothgrad, args.noise,
                                args.seed, cli.method_settings(args))
    smooth = f"SmoothGrad n={args.smoothgrad}, " if args.smoothgrad else ""
    notes = [smooth + (f"blend of {crops} crops, " if crops > 1 else "") for _, crops in views]
    picture = figures.saliency_figure(net, [v for v, _ in views], results, args.method, notes)
    outputs = [(out, picture, "saliency picture")]
    if npy and npy.lower().endswith(".npz"):
        names = cli.array_names([v.path for v, _ in views])
        arrays = {n: r.signal[0] for n, r in zip(names, results)}
        outputs.append((npy, arrays, f"signals of {len(arrays)} image(s)"))
    elif npy:      # views of one size only (checked above)
        signal = np.concatenate([r.signal for r in results])
        signal = signal[0] if len(results) == 1 else signal
        outputs.append((npy, signal, f"signal {tuple(signal.shape)}"))
    cli.write_outputs(outputs)
    for view, r in zip((v for v, _ in views), results):
        print(f"{view.path}: class {int(r.classes[0])} ({figures.class_name(net, int(r.classes[0]))}) "
              f"score {float(r.scores[0]):.3f}")
    return 0


def entry():
    """The console command ``minicnn-saliency`` (and tools/saliency.py)."""
    return cli.run(main, PROG)


if __name__ == "__main__":
    sys.exit(entry())
