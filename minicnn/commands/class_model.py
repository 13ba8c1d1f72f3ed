"""Class model visualisation (Simonyan, Vedaldi & Zisserman 2013, Sect. 2).

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2

by gradient ascent on the UNNORMALISED class score S_c (never the softmax), from the
zero image, the classes in batches of bounded memory; the picture shows each I*
with the model's mean added back, rescaled to 0-255 (the paper's display).

Each step: random jitter of the input (--jitter pixels), gradient of the objective,
ascent step of --step in input units per pixel (the gradient is divided by its RMS per
image, so the step size does not depend on the model's score scale), weight decay
(--decay), a Gaussian blur every --blur-every steps (--blur-sigma pixels), and zeroing
of the pixels whose norm is below the --norm-pct percentile (Yosinski et al. 2015).
The paper gives no values. The defaults were chosen by looking at the shipped model's
class models (weights/fashion_vgg.h5): with them each class shows one recognisable item
(lambda 0.002 and blur 0.5 give several smaller copies per tile instead). The start is
the zero image plus a little seeded noise (--init-noise; see there why). Same --seed,
same picture.

Examples:
    python tools/class_model.py                               # all classes, shipped model
    python tools/class_model.py --class Sneaker "Ankle boot" 3 --steps 500 --npy cm.npy
    python tools/class_model.py --jitter 0 --blur-every 0 --init-noise 0 --raw-step   # the paper's
        # bare procedure; on the shipped model it starts slowly (gradient < 0.019 at zero)
Python: minicnn.viz.class_model(net, classes) -> ClassModel, with these defaults
(minicnn.viz.ClassModelSettings; change any: class_model(net, classes, steps=50)).
"""
import sys


from minicnn.commands import cli


from minicnn.viz import figures
from minicnn.viz.class_model import (DEFAULTS, IMAGENET_FIGURE_CLASSES, OBJECTIVES,
                                      ClassModelSettings, class_model, default_classes)
from minicnn.viz.inputs import resolve_classes

PROG = "class_model.py"


def build_parser():
    p = cli.parser(PROG, __doc__)
    cli.add_model_args(p)
    p.add_argument("--class", dest="classes", metavar="CLASS", nargs="+", default=None,
                   help="class indices or names (case-insensitive), several at once "
                        "(default: every class of the model; for a model with ImageNet's "
                        f"1000 names the classes of the paper's Fig. 1: "
                        f"{', '.join(IMAGENET_FIGURE_CLASSES)})")
    p.add_argument("--steps", type=cli.nonneg_int, default=DEFAULTS["steps"],
                   help="gradient-ascent iterations")
    p.add_argument("--step", type=cli.positive_float, default=DEFAULTS["step"],
                   help="step size: input units per pixel per step (the gradient is "
                        "RMS-normalised per image; see --raw-step)")
    p.add_argument("--raw-step", action="store_true",
                   help="plain gradient ascent x += step * gradient (no normalisation)")
    p.add_argument("--objective", choices=OBJECTIVES, default="score",
                   help="what to maximise: the unnormalised score S_c (the paper), the "
                        "softmax probability P_c, or log P_c")
    p.add_argument("--lam", "--lambda", dest="lam", type=cli.nonneg_float,
                   default=DEFAULTS["lam"], help="L2 penalty lambda of the objective "
                                                  "S_c(I) - lambda * ||I||^2")
    p.add_argument("--jitter", type=cli.nonneg_int, default=DEFAULTS["jitter"],
                   help="random shift of up to this many pixels each step (0: off)")
    p.add_argument("--blur-every", type=cli.nonneg_int, default=DEFAULTS["blur_every"],
                   help="Gaussian blur every k steps (0: off)")
    p.add_argument("--blur-sigma", type=cli.nonneg_float, default=DEFAULTS["blur_sigma"],
                   help="width of that blur, pixels")
    p.add_argument("--decay", type=cli.unit_interval_open, default=DEFAULTS["decay"],
                   help="x *= (1 - decay) each step (0: off)")
    p.add_argument("--norm-pct", type=cli.percentile, default=DEFAULTS["norm_pct"],
                   help="zero pixels whose norm is below this percentile each step (0: off)")
    p.add_argument("--init-noise", type=cli.nonneg_float, default=DEFAULTS["init_noise"],
                   help="start from the zero image plus Gaussian noise of this std (input "
                        "units), drawn per class from (--seed, class). 0 is the paper's exact "
                        "start, but the gradient at the zero image can be (nearly) zero: "
                        "where the first-layer biases are negative their ReLUs are off there "
                        "(24 of the shipped model's 32)")
    p.add_argument("--seed", type=cli.nonneg_int, default=0, help="seed of the jitter and start noise")
    p.add_argument("--display", choices=("rescale", "clip"), default="rescale",
                   help="rescale each tile's min..max to 0-255 (the paper) or clip to 0-255")
    p.add_argument("--columns", type=cli.positive_int, default=5, help="tiles per row")
    p.add_argument("--batch", type=cli.positive_int, default=None,
                   help="classes optimised together (default: as many as fit in about "
                        "768 MB of activations: 4 for VGG16, all for the shipped model); "
                        "more classes run batch after batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one per batch)")
    p.add_argument("--out", metavar="PNG", default="class_model.png",
                   help="output picture, one labelled tile per class")
    p.add_argument("--npy", metavar="PATH", default=None,
                   help="also save the raw optimised inputs (N, C, H, W) float32 (network "
                        "space, mean not added)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = cli.checked_output(args.out, (".png",), "--out")
    npy = cli.checked_output(args.npy, (".npy",), "--npy")
    net = cli.load_net(args)
    classes = resolve_classes(net, args.classes) if args.classes else default_classes(net)
    classes = list(dict.fromkeys(classes))     # a class named twice (goose and 99) is drawn once
    settings = ClassModelSettings(
        steps=args.steps, step=args.step, lam=args.lam, normalize=not args.raw_step,
        jitter=args.jitter, blur_every=args.blur_every, blur_sigma=args.blur_sigma,
        decay=args.decay, norm_pct=args.norm_pct, init_noise=args.init_noise,
        objective=args.objective, seed=args.seed)
    result = class_model(net, classes, settings, progress=not args.no_progress,
                         batch_size=args.batch)
    what = {"score": "S_c(I)", "softmax": "P_c(I)", "log-softmax": "log P_c(I)"}[args.objective]
    title = (f"Class models: argmax_I {what} - {args.lam:g} ||I||^2, {args.steps} steps of "
             f"{args.step:g}{' (raw)' if args.raw_step else ''}, jitter {args.jitter}, blur "
             f"{args.blur_sigma:g} every {args.blur_every}, decay {args.decay:g}, norm pct "
             f"{args.norm_pct:g}, start noise {args.init_noise:g}, seed {args.seed}")
    cli.write_outputs([
        (out, figures.class_model_figure(net, result, args.display, args.columns, title),
         f"class models of {len(classes)} classes"),
        (npy, result.x, f"optimised inputs {tuple(result.x.shape)}")])
    return 0


def entry():
    """The console command ``minicnn-class-model`` (and tools/class_model.py)."""
    return cli.run(main, PROG)


if __name__ == "__main__":
    sys.exit(entry())
