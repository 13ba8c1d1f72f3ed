"""Measure saliency maps over a data set (tools/evaluate.py).

Sub-commands:
  localize   weakly supervised localisation error (ILSVRC rule), pointing game and mask
             IoU of each saliency method, against baselines
  sanity     model-parameter randomisation test: how much each method's map changes as
             the learned weights are replaced by random ones
  faithfulness  deletion and insertion curves: does each map rank the pixels the
             network needs first? (against a random order)
  class-objective  class models maximising S_c, P_c or log P_c, compared

Methods: gradient, deconvnet, guided, smoothgrad (the default four) and the descendants
gradcam, integrated_gradients, occlusion, gradient_x_input (--methods). Every mean comes
with a seeded bootstrap 95% confidence interval.

Examples:
  python3 tools/evaluate.py localize --limit 200
  python3 tools/evaluate.py localize --data cluttered-test --workers 2 --out eval-fashion
  python3 tools/evaluate.py localize --weights vgg16.h5 --data ILSVRC/Data/CLS-LOC/val \\
      --synsets LOC_synset_mapping.txt --methods gradient --scheduler tcp://10.0.0.5:8786
  python3 tools/evaluate.py localize --out eval-fashion --resume    # after an interruption
  python3 tools/evaluate.py faithfulness --methods gradient,gradcam --limit 300
"""
from contextlib import contextmanager
import argparse
import os

import numpy as np
import shlex
import signal
import sys

from . import cli
from ..viz.saliency import SALIENCY
from ..evaluate import data as data_mod
from ..evaluate import report
from ..evaluate.localization import METHODS, PAPER_METHODS, LocalizeSettings, evaluate_item, summarise
from ..evaluate.runner import Job, RecordStore, file_digest, run, scheduler_address

PROG = "evaluate.py"
FIGURE = "localize_best_worst.png"


def _name_list(choices):
    """An option type: a comma-separated list of distinct names from ``choices``."""
    def parse(text):
        import argparse
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or any(n not in choices for n in names) or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of "
                                             f"{', '.join(choices)}, got {text!r}")
        return names
    return parse


_methods = _name_list(list(METHODS))


def _add_data_args(p):
    p.add_argument("--data", default=data_mod.ClutteredTest.name, metavar="DATA",
                   help="'cluttered-test' (the shipped model's 10,000 cluttered test canvases, "
                        "rendered from the Debian package dataset-fashion-mnist) or a folder in "
                        "the ILSVRC localisation layout: JPEG/PNG images in any sub-folders, one "
                        "Pascal-VOC XML each (same stem, beside it or in a parallel "
                        "Annotations/ tree)")
    p.add_argument("--synsets", metavar="FILE", default=None,
                   help="with a folder: line k is 'SYNSET description' and names class k "
                        "(LOC_synset_mapping.txt)")
    p.add_argument("--box-origin", type=int, choices=(0, 1), default=1,
                   help="pixel numbering of the XML boxes: 1 (Pascal VOC, inclusive corners "
                        "counted from 1) or 0")
    p.add_argument("--fashion-dir", metavar="DIR", default=None,
                   help="folder of the Fashion-MNIST IDX files (default: the Debian package's)")
    p.add_argument("--limit", type=cli.positive_int, default=None, metavar="N",
                   help="only the first N images (default: all)")


_curve_steps = cli._typed(int, lambda v: 1 <= v <= 1000, "an integer from 1 to 1000")


def _scheduler_type(text):
    try:
        return scheduler_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_run_args(p, default_out):
    p.add_argument("--out", metavar="DIR", default=default_out,
                   help="folder for the results (created if needed)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out: keep its records, compute the "
                        "rest (the settings must be the same; --limit may grow)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=cli.positive_int, default=None, metavar="N",
                       help="run on a local Dask cluster of N worker processes (pip install "
                            "-e '.[dask]'); default: in this process")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                       type=_scheduler_type,
                       help="run on an existing Dask cluster (its workers need minicnn and "
                            "the same paths to the model and the data)")
    p.add_argument("--chunk-size", type=cli.positive_int, default=8, metavar="N",
                   help="images per task sent to a worker")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _map_command(sub, name, description, summary):
    """A sub-command that measures maps: the model, the data and the methods' options."""
    p = sub.add_parser(name, formatter_class=cli._Formatter, help=summary,
                       description=description)
    cli.add_model_args(p)
    _add_data_args(p)
    _add_method_args(p)
    return p


def build_parser():
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=cli.Parser)
    sub.required = True
    loc = _map_command(sub, "localize", LOCALIZE_HELP, "localisation error, pointing game "
                       "and mask IoU of the saliency methods")
    loc.add_argument("--tencrop", choices=("on", "off"), default="off",
                     help="average the maps over ten crops (the paper's protocol; 10x the "
                          "passes)")
    loc.add_argument("--boxes", choices=("top5", "label"), default="top5",
                     help="top5: a map and box for each top-5 class (the ILSVRC submission); "
                          "label: only for the true class, about 5x less work and the same "
                          "numbers (a pair whose class is wrong is an error whatever its box)")
    cli.add_graphcut_args(loc)
    loc.add_argument("--seed", type=cli.nonneg_int, default=0,
                     help="seed of SmoothGrad's noise (with the image index) and the mixtures")
    loc.add_argument("--tolerance", type=cli.nonneg_float, default=15.0, metavar="PX",
                     help="pointing game: hit within this many pixels of a true box")
    loc.add_argument("--tolerance-at", type=cli.nonneg_int, default=224, metavar="PX",
                     help="the tolerance holds at this shorter image side and scales with "
                          "it (0: PX in each image's own pixels)")
    _add_run_args(loc, "eval-localize")

    san = _map_command(sub, "sanity", SANITY_HELP, "do the maps depend on the learned "
                       "weights? (model-parameter randomisation)")
    san.add_argument("--seed", type=cli.nonneg_int, default=0,
                     help="seed of the re-initialised weights and of SmoothGrad's noise")
    _add_run_args(san, "eval-sanity")

    fai = _map_command(sub, "faithfulness", FAITHFULNESS_HELP, "deletion and insertion "
                       "curves: do the maps rank what the network needs first?")
    fai.add_argument("--curve-steps", type=_curve_steps, default=20, metavar="N",
                     help="points of each curve after the first: pixels deleted or inserted "
                          "in N equal parts (each a forward pass)")
    fai.add_argument("--seed", type=cli.nonneg_int, default=0,
                     help="seed of SmoothGrad's noise and of the random order (with the image "
                          "index)")
    _add_run_args(fai, "eval-faithfulness")

    obj = sub.add_parser(
        "class-objective", formatter_class=cli._Formatter,
        help="class models maximising S_c, P_c or log P_c, compared",
        description=OBJECTIVE_HELP)
    cli.add_model_args(obj)
    from ..viz.class_model import DEFAULTS, OBJECTIVES
    obj.add_argument("--objectives", type=_name_list(OBJECTIVES), default=list(OBJECTIVES),
                     metavar="O,O",
                     help=f"comma-separated, from {', '.join(OBJECTIVES)} (default: all)")
    obj.add_argument("--class", dest="classes", metavar="CLASS", nargs="+", default=None,
                     help="class indices or names (default: every class)")
    obj.add_argument("--steps", type=cli.nonneg_int, default=DEFAULTS["steps"])
    obj.add_argument("--step", type=cli.positive_float, default=DEFAULTS["step"],
                     help="RMS-normalised step size")
    obj.add_argument("--lam", type=cli.nonneg_float, default=DEFAULTS["lam"],
                     help="L2 penalty lambda")
    obj.add_argument("--jitter", type=cli.nonneg_int, default=DEFAULTS["jitter"])
    obj.add_argument("--blur-every", type=cli.nonneg_int, default=DEFAULTS["blur_every"])
    obj.add_argument("--blur-sigma", type=cli.nonneg_float, default=DEFAULTS["blur_sigma"])
    obj.add_argument("--init-noise", type=cli.nonneg_float, default=DEFAULTS["init_noise"])
    obj.add_argument("--seed", type=cli.nonneg_int, default=0)
    obj.add_argument("--out", metavar="DIR", default="eval-class-objective",
                     help="folder for the results (created if needed)")
    obj.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_method_args(p):
    p.add_argument("--methods", type=_methods, default=list(PAPER_METHODS), metavar="M,M",
                   help=f"comma-separated, from {', '.join(METHODS)} (default: "
                        f"{','.join(PAPER_METHODS)}: the paper's passes and SmoothGrad)")
    cli.add_method_options(p)
    p.add_argument("--smoothgrad", type=cli.smoothgrad_samples_on, default=25, metavar="N",
                   help="samples of the smoothgrad method")
    p.add_argument("--noise", type=cli.fraction, default=SALIENCY.noise,
                   help="SmoothGrad noise sigma as a fraction of the input range")


LOCALIZE_HELP = """\
Weakly supervised localisation over a data set (Simonyan et al. 2013, Sect. 3.2).

For every image: the top-5 classes; for each method, the saliency map of each top-5 class
and of the true class, a box per top-5 class from saliency -> colour models -> GraphCut ->
largest component (the code of tools/localize.py), and the arg-max point of the true
class's map.

Writes into --out:
  records.jsonl        one JSON object per image, as it finishes
  skipped.jsonl        images that could not be read, with the reason
  summary.json / .md   localisation error (top-1, top-5), pointing game, mask IoU per
                       method and for the baselines (centred box, whole image, centre)
  localize_best_worst.png  best and worst localised images per method
  run.json             the settings (checked by --resume)
"""


FAITHFULNESS_HELP = """\
Deletion and insertion curves (Petsiuk et al. 2018). For every image and method: the map
of the network's top-1 class orders the pixels, most salient first; deleting them (set
to the baseline value, --baseline) should make the class probability fall fast, and
inserting them into a blurred copy should make it rise fast. The area under each curve
(trapezoid rule over the fraction of pixels) is the score; a random pixel order is the
baseline every map must beat.

Writes into --out:
  records.jsonl              one JSON object per image: every curve
  skipped.jsonl              images that could not be read, with the reason
  faithfulness.json / .md    mean deletion and insertion AUC per method and of the
                             random order, with bootstrap 95% intervals, and mean curves
  faithfulness_curves.png    the mean curves
  run.json                   the settings (checked by --resume)
"""


SANITY_HELP = """\
The model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency
maps"). The weights of the network are re-initialised as at training start (He normal,
zero biases, seeded), cascading from the top layer down to the first conv, and one layer
at a time (the others trained). At each step, each method's map of the image's original
top-1 class is compared with the trained network's: Spearman rank correlation of the
absolute maps and of the signed signals, and SSIM of the maps scaled to [0, 1].

Writes into --out:
  records.jsonl        one JSON object per image: the similarities at every step
  sanity.json / .md    means and standard deviations over the images
  sanity_plot.png      correlation against the layers randomised, one line per method
  sanity_cascade.png   one image's maps along the cascade, a row per method
  run.json             the settings (checked by --resume)
"""


OBJECTIVE_HELP = """\
Class models (Simonyan et al. 2013, Sect. 2) of every class, optimised with each
objective: the unnormalised score S_c (the paper), the softmax probability P_c, and
log P_c; same steps, regulariser, seed and start. Reports per class the final S_c, P_c and
the mean and max of the other classes' scores: does maximising P_c raise S_c, or push
the others down?

Writes into --out: class_objective.json, class_objective.md, class_objective.png (a row
per class, a column per objective).
"""


def _settings(args):
    return LocalizeSettings(methods=args.methods, smoothgrad_samples=args.smoothgrad,
                            noise=args.noise, seed=args.seed, tencrop=args.tencrop == "on",
                            fg_quantile=args.fg_quantile, bg_quantile=args.bg_quantile,
                            components=args.components, smoothness=args.smoothness,
                            boxes=args.boxes, **_method_option_values(args))


def _method_option_values(args):
    return dict(gradcam_layer=args.layer, ig_steps=args.steps, baseline=args.baseline,
                patch=args.patch, stride=args.stride)


def _records_check(summarise):
    """A resumed folder's records must be what the sub-command writes: ``summarise`` (its
    own) runs on them before any work and before the folder is changed, so a record
    edited by hand or made by another tool is refused in one line instead of failing at
    the end."""
    def check(records):
        try:
            summarise(records)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise ValueError(f"--resume: records.jsonl holds records this sub-command did "
                             f"not write ({type(exc).__name__}: {str(exc)[:80]}); choose a "
                             "new --out") from None
    return check


class Evaluation:
    """What every sub-command shares: the model, the data, the record store in --out,
    and running a per-image function over the images not yet recorded.
    ``records_check(records, evaluation)``: the sub-command's check of resumed records."""

    def __init__(self, args, argv, settings, records_check=lambda records, ev: None):
        from .. import assets
        self.args = args
        self.command = "python3 tools/evaluate.py " + shlex.join(argv)
        self.model = os.fspath(args.weights) if args.weights else str(assets.default_model())
        self.net = cli.load_net(args)
        self.source = data_mod.open_source(args.data, args.synsets, args.box_origin,
                                           args.fashion_dir)
        self.names = self.source.class_names()
        if self.net.num_classes != len(self.names):
            raise ValueError(f"the model has {self.net.num_classes} classes but the data names "
                             f"{len(self.names)}"
                             + (f" (--synsets {args.synsets})" if args.synsets else ""))
        root = getattr(self.source, "root", None) or getattr(self.source, "folder", None)
        record = {"command": args.command, "model": os.path.abspath(self.model),
                  "model_sha256": file_digest(self.model), "data": args.data,
                  "data_root": root, "box_origin": args.box_origin,
                  "settings": settings.to_dict()}
        self.store = RecordStore(args.out, record, resume=args.resume, note=self.command,
                                 check=_records_check(lambda recs: records_check(recs, self)))
        self.total = (len(self.source) if args.limit is None
                      else min(args.limit, len(self.source)))
        self.keys = [self.source.key(i) for i in range(self.total)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.store.close()

    def run(self, evaluate):
        """Records for every image (``evaluate(net, item, index)``). Returns None when
        done, or the exit status after an interruption (the records are kept)."""
        args = self.args
        job = Job(self.model, evaluate, device=args.device)
        try:
            with _stop_on_signals():
                run(job, self.source, self.store, limit=args.limit, chunk_size=args.chunk_size,
                    workers=args.workers, scheduler=args.scheduler,
                    progress=not args.no_progress, desc=args.command)
        except KeyboardInterrupt as exc:
            sys.stderr.write(f"{PROG}: interrupted; {len(self.store.records)} records kept in "
                             f"{os.path.abspath(args.out)} (--resume continues)\n")
            return 128 + getattr(exc, "signum", signal.SIGINT)
        return None

    def run_all(self, evaluate):
        """:meth:`run`, then the records: (None, records), or (exit status, None) after
        an interruption; ValueError (one line) when no image could be evaluated."""
        status = self.run(evaluate)
        if status is not None:
            return status, None
        records = self.records()
        if not records:
            raise ValueError(f"no image could be evaluated ({data_mod.skip_words(self.skipped()) or 'no images'}; "
                             f"see {self.path('skipped.jsonl')})")
        return None, records

    def records(self):
        """The records of the first --limit images, in data order."""
        keys = set(self.keys)
        return [r for r in self.store.records if r["image"] in keys]

    def skipped(self):
        """{"no annotation": n, "unusable": m} of the first --limit images."""
        keys = set(self.keys)
        return data_mod.skip_counts([s for s in self.store.skipped if s["image"] in keys])

    def item(self, key):
        return self.source.item(self.keys.index(key))

    def path(self, name):
        return os.path.join(self.args.out, name)


def localize(args, argv):
    settings = _settings(args)
    with Evaluation(args, argv, settings,
                    lambda recs, ev: _check_localize(recs, settings, args)) as ev:
        return _localize(args, ev, settings)


def _check_localize(records, settings, args):
    summarise(records, settings.methods, args.tolerance, args.tolerance_at)
    for rec in records:     # what the figure reads beyond the summary
        for method in settings.methods:
            rec["boxes"][method].get(str(rec["label"]))


def _localize(args, ev, settings):
    from functools import partial
    status, records = ev.run_all(partial(evaluate_item, settings=settings))
    if status is not None:
        return status
    skipped = ev.skipped()
    summary = summarise(records, settings.methods, args.tolerance, args.tolerance_at)
    summary["skipped"] = skipped
    md = report.summary_markdown(summary, settings.methods, ev.command, args.data, ev.model,
                                 skipped)
    figure = report.best_worst_figure(records, settings.methods, ev.item, ev.names)
    print(md)
    cli.write_outputs([(ev.path("summary.json"), summary, "summary"),
                       (ev.path("summary.md"), md, "table"), (ev.path(FIGURE), figure, "figure")])
    return 0


def sanity(args, argv):
    from ..evaluate import sanity as san
    settings = san.SanitySettings(methods=args.methods, smoothgrad_samples=args.smoothgrad,
                                  noise=args.noise, seed=args.seed,
                                  **_method_option_values(args))
    def check(recs, ev):
        san.summarise(recs, settings.methods)
        for r in recs:
            ev.names[int(r["class"])]
    with Evaluation(args, argv, settings, check) as ev:
        return _sanity(args, ev, settings)


def _sanity(args, ev, settings):
    from functools import partial
    from ..evaluate import sanity as san
    status, records = ev.run_all(partial(san.evaluate_item, settings=settings))
    if status is not None:
        return status
    summary = san.summarise(records, settings.methods)
    summary["skipped"] = ev.skipped()
    first = ev.item(records[0]["image"])
    steps, maps, rgb = san.cascade_maps(ev.net, first, settings, ev.keys.index(first.key))
    strip = report.cascade_strip(rgb, maps, steps, settings.methods,
                                 title=f"{first.key}: saliency maps of class "
                                       f"{ev.names[records[0]['class']]} as the layers are "
                                       "randomised from the top down (cascade)")
    md = report.sanity_markdown(summary, settings.methods, ev.command, args.data, ev.model)
    print(md)
    cli.write_outputs([(ev.path("sanity.json"), summary, "summary"),
                       (ev.path("sanity.md"), md, "table"),
                       (ev.path("sanity_plot.png"), report.sanity_plot(summary, settings.methods),
                        "plot"),
                       (ev.path("sanity_cascade.png"), strip, "cascade strip")])
    return 0


def faithfulness(args, argv):
    from ..evaluate import faithfulness as fai
    settings = fai.FaithfulnessSettings(methods=args.methods, steps=args.curve_steps,
                                        smoothgrad_samples=args.smoothgrad, noise=args.noise,
                                        seed=args.seed, **_method_option_values(args))
    with Evaluation(args, argv, settings,
                    lambda recs, ev: fai.summarise(recs, settings.methods, settings.steps)) as ev:
        return _faithfulness(args, ev, settings)


def _faithfulness(args, ev, settings):
    from functools import partial
    from ..evaluate import faithfulness as fai
    status, records = ev.run_all(partial(fai.evaluate_item, settings=settings))
    if status is not None:
        return status
    summary = fai.summarise(records, settings.methods, settings.steps)
    summary["skipped"] = ev.skipped()
    md = report.faithfulness_markdown(summary, settings.methods, ev.command, args.data, ev.model)
    print(md)
    cli.write_outputs([(ev.path("faithfulness.json"), summary, "summary"),
                       (ev.path("faithfulness.md"), md, "table"),
                       (ev.path("faithfulness_curves.png"),
                        report.faithfulness_plot(summary, settings.methods), "plot")])
    return 0


def class_objective(args, argv):
    from ..viz import figures, render
    from ..viz.inputs import class_name, resolve_classes
    from ..evaluate import objective as objective_mod
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    net = cli.load_net(args)
    classes = (resolve_classes(net, args.classes) if args.classes
               else list(range(net.num_classes)))
    settings = dict(steps=args.steps, step=args.step, lam=args.lam, jitter=args.jitter,
                    blur_every=args.blur_every, blur_sigma=args.blur_sigma,
                    init_noise=args.init_noise, seed=args.seed)
    results, rows = objective_mod.compare_objectives(net, classes, args.objectives,
                                                     progress=not args.no_progress, **settings)
    for row in rows:
        row["name"] = class_name(net, row["class"])
    summary = {"classes": rows, "mean": objective_mod.means(rows, args.objectives),
               "settings": settings}
    command = "python3 tools/evaluate.py " + shlex.join(argv)
    tiles = []
    for k, c in enumerate(classes):
        row = []
        for o in args.objectives:
            single = type(results[o])(x=results[o].x[k:k + 1], classes=results[o].classes[k:k + 1],
                                      scores=results[o].scores[k:k + 1], history=None)
            panel = figures.class_model_figure(net, single, columns=1)
            nums = rows[k]["objectives"][o]
            row.append(render.panel(np.asarray(panel),
                                    f"max {o}: S_c={nums['S_c']:.1f} P_c={nums['P_c']:.2f}\n"
                                    f"others mean {nums['others_mean']:.1f} max "
                                    f"{nums['others_max']:.1f}", scale=1, font_size=12))
        tiles.append(row)
    picture = render.grid(tiles, title="Class models maximising " + ", ".join(args.objectives)
                                       + " (columns), same steps, regulariser, seed and start")
    md = report.objective_markdown(summary, args.objectives, command, args.weights or "shipped model")
    os.makedirs(args.out, exist_ok=True)
    print(md)
    cli.write_outputs([(os.path.join(args.out, "class_objective.json"), summary, "summary"),
                       (os.path.join(args.out, "class_objective.md"), md, "table"),
                       (os.path.join(args.out, "class_objective.png"), picture, "picture grid")])
    return 0


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C (close the cluster, keep the records)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stop_on_signals():
    def stop(signum, frame):
        raise Stopped(signum)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "localize":
        if not args.bg_quantile < args.fg_quantile:
            raise ValueError(f"--bg-quantile ({args.bg_quantile}) must be below "
                             f"--fg-quantile ({args.fg_quantile})")
        return localize(args, argv)
    if args.command == "sanity":
        return sanity(args, argv)
    if args.command == "faithfulness":
        return faithfulness(args, argv)
    return class_objective(args, argv)


def entry():
    """The console command ``minicnn-evaluate`` (and tools/evaluate.py)."""
    return cli.run(main, PROG)
