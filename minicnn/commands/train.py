"""Train the shipped VGG-style model on cluttered Fashion-MNIST with minicnn's own engine.

Minibatch SGD with momentum and weight decay, linear warm-up then cosine learning-rate
decay, fresh canvases every epoch (the augmentation), dropout in the classifier.
Deterministic from --seed: batch t of epoch e is the same on every run, so a run resumed
from a checkpoint continues exactly where it stopped.

Needs Fashion-MNIST: apt-get install dataset-fashion-mnist (or --data DIR).

The command that made weights/fashion_vgg.h5 (see weights/README.md; about 80 minutes on
2 CPU cores; --device cuda runs the same code on CuPy):
    python tools/train.py --epochs 8 --threads 2 --workers 1
"""
import argparse
import io
import json
import os
import signal
import sys
import time
import multiprocessing
from collections import deque

import numpy as np


import minicnn
from minicnn.commands import cli
from minicnn.datasets.cluttered import ClutteredFashion, evaluation_split
from minicnn.datasets.fashion_mnist import (CLASS_NAMES, DEFAULT_DIR, DatasetMissing,
                                            load_fashion_mnist)
from minicnn.io import atomic_write
from minicnn.outfolder import FolderLock, open_append, regular_or_absent
from minicnn.preprocess import Preprocessing
from minicnn.threads import get_threads, set_threads
from minicnn.training import (SGD, DataParallel, learning_rate, predict,
                              softmax_cross_entropy, train_step)

DEFAULT_CONFIG = "32,M,64,M,128,128,M,256,256,M"


def parse_args(argv=None):
    p = cli.Parser(
        prog="train.py",
        description="Train a VGG-style net on cluttered Fashion-MNIST (64x64 RGB canvases) "
                    "with minicnn's own forward/backward passes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DIR,
                   help="folder with the Fashion-MNIST IDX files (.gz or raw)")
    p.add_argument("--out", default="weights/fashion_vgg.h5",
                   help="where the final model file is written")
    p.add_argument("--run-dir", default="runs/fashion",
                   help="folder for checkpoints, the cached test canvases and log.jsonl")
    p.add_argument("--config", default=DEFAULT_CONFIG, type=config_type,
                   help="conv widths, M (2x2 max-pool) and G (global max-pool), comma separated")
    p.add_argument("--fc", default="256", type=sizes_type, help="hidden fully connected sizes, comma separated")
    p.add_argument("--dropout", type=cli.unit_interval_open, default=None,
                   help="dropout after each hidden fc (default: 0.5; with --init, the "
                        "model's own unless given)")
    p.add_argument("--epochs", type=cli.positive_int, default=8, help="passes over the training items")
    p.add_argument("--train-size", type=cli.positive_int, default=60000,
                   help="canvases per epoch (each a fresh rendering of a training item)")
    p.add_argument("--batch", type=cli.positive_int, default=64, help="minibatch size")
    p.add_argument("--lr", type=cli.positive_float, default=0.03, help="peak learning rate")
    p.add_argument("--final-init-std", type=cli.positive_float, default=0.01,
                   help="std of the last layer's initial weights (He init elsewhere); small, "
                        "so the first loss is about ln(10) instead of exploding logits")
    p.add_argument("--warmup", type=cli.nonneg_int, default=300, help="linear warm-up steps")
    p.add_argument("--momentum", type=cli.unit_interval_open, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=cli.nonneg_float, default=5e-4, help="L2 weight decay (weights)")
    p.add_argument("--clip", type=cli.nonneg_float, default=5.0,
                   help="clip the global gradient norm to this (0: no clipping)")
    p.add_argument("--seed", type=cli.nonneg_int, default=0, help="seed of weights, data and dropout")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="engine backend")
    p.add_argument("--checkpoint-every", type=cli.positive_int, default=200,
                   help="steps between checkpoints in --run-dir")
    p.add_argument("--eval-size", type=cli.positive_int, default=2000,
                   help="test canvases evaluated at the end of each epoch")
    p.add_argument("--test-size", type=cli.positive_int, default=10000,
                   help="test canvases for the final accuracy (one per test item)")
    p.add_argument("--workers", type=cli.positive_int, default=1,
                   help="processes rendering canvases ahead of the training step")
    p.add_argument("--threads", type=cli.positive_int, default=None,
                   help="CPU: every batch is split into this many shards, run in as many "
                        "threads (default: the CPUs available, or MINICNN_THREADS); the "
                        "result depends on it (one dropout stream per shard)")
    p.add_argument("--init", metavar="MODEL.h5", default=None,
                   help="start from this model's weights and metadata (fine-tuning; fresh "
                        "momentum) instead of a random initialisation")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even when --run-dir holds a checkpoint")
    args = p.parse_args(argv)
    if min(args.train_size, 60000) < args.batch:
        p.error(f"--train-size ({args.train_size}) must be at least --batch ({args.batch}): "
                "an epoch would have no step")
    return args


def parse_config(text):
    return [c.strip() if c.strip() in ("M", "G") else int(c) for c in text.split(",") if c.strip()]


def config_type(text):
    """--config: conv widths (integers >= 1), M and G, comma separated."""
    try:
        config = parse_config(text)
    except ValueError:
        config = None
    if not config or any(isinstance(c, int) and c < 1 for c in config):
        raise argparse.ArgumentTypeError(f"expected conv widths (integers >= 1), M and G, comma "
                                         f"separated, got {text!r}")
    return text


def sizes_type(text):
    """--fc: hidden layer sizes (integers >= 1), comma separated."""
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = None
    if sizes is None or any(v < 1 for v in sizes):
        raise argparse.ArgumentTypeError(f"expected sizes (integers >= 1), comma separated, "
                                         f"got {text!r}")
    return text


def channel_stats(gen, seed, count=512):
    """Per-channel mean and std of training canvases in [0, 1] (the preprocessing)."""
    count = min(count, len(gen))
    images, _, _ = gen.batch(range(count), [(seed, 10**6, k) for k in range(count)])
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return [round(float(v), 3) for v in x.mean(0)], [round(float(v), 3) for v in x.std(0)]


class Batches:
    """Deterministic batches: epoch e uses permutation(seed, e) of the training items and
    renders position k with canvas seed (seed, e, k)."""

    def __init__(self, gen, seed, train_size, batch):
        self.gen, self.seed, self.batch = gen, seed, batch
        self.train_size = min(train_size, len(gen))
        self.steps_per_epoch = self.train_size // batch

    def __call__(self, step):
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.gen))
        positions = range(k * self.batch, (k + 1) * self.batch)
        images, labels, _ = self.gen.batch([perm[i] for i in positions],
                                           [(self.seed, epoch, i) for i in positions])
        return images, labels


_BATCHES = None   # set before the worker pool forks; workers render from their copy


def _render_batch(step):
    return _BATCHES(step)


def save_checkpoint(run_dir, net, optimizer, step, meta):
    """Weights (with their step) and optimiser state, each written atomically; resume
    checks that the two files name the same step."""
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, step=step, **{"v/" + k: v for k, v in optimizer.state().items()})
    atomic_write(os.path.join(run_dir, "checkpoint_opt.npz"), write)
    minicnn.save(net, os.path.join(run_dir, "checkpoint.h5"), {**meta, "checkpoint_step": step})


def load_optimiser_state(run_dir):
    """checkpoint_opt.npz -> (step, {parameter key: velocity}); ValueError with one line
    for a missing, corrupt or malformed file."""
    path = os.path.join(run_dir, "checkpoint_opt.npz")
    try:
        with np.load(path, allow_pickle=False) as opt:
            if not isinstance(opt, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            step = opt["step"]
            if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
                raise ValueError(f"'step' must be one integer >= 0, found {step.dtype} "
                                 f"{step.shape}")
            return int(step), {k[2:]: opt[k] for k in opt.files if k.startswith("v/")}
    except Exception as exc:   # BadZipFile, KeyError, OSError, EOFError, ValueError ...
        raise ValueError(f"{path}: unreadable optimiser state ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); start afresh with --no-resume") from None


def main(argv=None):
    """Train; one line and exit status 1 for a bad file or state, 130 on Ctrl-C (the
    last checkpoint stays for the resume)."""
    try:
        return _main(argv)
    except (minicnn.ModelFileError, ValueError, OSError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train.py: interrupted; run the same command again to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130


class RunError(Exception):
    """A data or state problem of the run: one line, exit status 1."""


def _main(argv=None):
    args = parse_args(argv)
    from minicnn.terminal import protect
    protect()
    try:
        if args.threads is not None:
            set_threads(args.threads)
        args.threads = get_threads()
    except ValueError as exc:     # a bad MINICNN_THREADS (--threads is checked by the parser)
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    try:
        # the output's folder, as every tool checks it: before any work, exit status 1
        cli.checked_output(args.out, (".h5",), "--out")
        return _train(args, argv)
    except RunError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1


def _load_data(args):
    """(train images, train labels, test images, test labels) of the Fashion-MNIST files."""
    try:
        train_images, train_labels = load_fashion_mnist("train", args.data)
        test_images, test_labels = load_fashion_mnist("test", args.data)
    except (DatasetMissing, ValueError, OSError, EOFError) as exc:   # missing, bad, truncated
        raise RunError(str(exc)) from None
    if len(train_images) < args.batch:
        raise RunError(f"{args.data} holds {len(train_images)} training items, fewer than "
                       f"--batch {args.batch}")
    return train_images, train_labels, test_images, test_labels


def _start(args, gen):
    """(net, meta, first step, optimiser velocities): the run's checkpoint to resume, the
    --init model, or a new net."""
    ckpt = os.path.join(args.run_dir, "checkpoint.h5")
    if os.path.exists(ckpt) and not args.no_resume:
        net = minicnn.load(ckpt)
        start, velocity = load_optimiser_state(args.run_dir)
        if net.meta.get("checkpoint_step") != start:
            raise RunError(f"{ckpt} holds step {net.meta.get('checkpoint_step')} but the "
                           f"optimiser state step {start} (interrupted between the two "
                           "writes); start afresh with --no-resume")
        meta = net.meta = {k: v for k, v in net.meta.items() if k != "checkpoint_step"}
        return net, meta, start, velocity
    if args.init:
        net = minicnn.load(args.init)
        if args.dropout is not None:      # fine-tuning with another dropout rate
            for _, layer in net:
                if layer.kind == "dropout":
                    layer.p = args.dropout
        meta = {k: v for k, v in net.meta.items() if k in ("class_names", "preprocessing")}
        meta["init"] = {"model": os.path.basename(args.init),
                        "training": net.meta.get("training")}
        net.meta = dict(meta)
        return net, meta, 0, {}
    mean, std = channel_stats(gen, args.seed)
    meta = {"class_names": CLASS_NAMES,
            "preprocessing": {"input_size": [64, 64], "channel_order": "RGB",
                              "input_scale": 1.0, "mean": mean, "std": std, "resize": None}}
    net = minicnn.vgg_from_config(parse_config(args.config), num_classes=10,
                                  input_size=(64, 64),
                                  fc_sizes=[int(v) for v in args.fc.split(",") if v],
                                  dropout=0.5 if args.dropout is None else args.dropout,
                                  seed=args.seed, meta=meta)
    last = net[net.names[-1]]
    last.params["weight"] = (np.random.default_rng([args.seed, 1]).standard_normal(
        last.params["weight"].shape) * args.final_init_std).astype(np.float32)
    return net, meta, 0, {}


def _test_canvases(args, test_images, test_labels):
    """(RGB canvases, labels) of the first --test-size test items, rendered once per run
    folder and kept there."""
    test_cache = os.path.join(args.run_dir, f"test_canvases_{args.test_size}.npz")
    if os.path.exists(test_cache):
        with np.load(test_cache) as d:
            return d["images"], d["labels"]
    print("rendering the test canvases ...", file=sys.stderr)
    images, labels, _ = evaluation_split(test_images[:args.test_size],
                                         test_labels[:args.test_size])

    def write_cache(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images, labels=labels)
    atomic_write(test_cache, write_cache)
    return images, labels


def _train(args, argv):
    from tqdm import tqdm
    train_images, train_labels, test_images, test_labels = _load_data(args)
    os.makedirs(args.run_dir, exist_ok=True)
    # the run folder is this run's alone (two runs would interleave checkpoints), and its
    # files are read and written only as regular files (never through a symbolic link)
    lock = FolderLock(args.run_dir, f"--run-dir {args.run_dir}",
                      "train.py " + " ".join(argv or sys.argv[1:]))
    for name in ("checkpoint.h5", "checkpoint_opt.npz", "log.jsonl",
                 f"test_canvases_{args.test_size}.npz"):
        regular_or_absent(os.path.join(args.run_dir, name))
    gen = ClutteredFashion(train_images, train_labels)
    batches = Batches(gen, args.seed, args.train_size, args.batch)
    total_steps = batches.steps_per_epoch * args.epochs
    global _BATCHES
    _BATCHES = batches
    # worker processes render the next batches while the engine trains (a bounded window);
    # forked before any GPU context exists
    # (the workers ignore Ctrl-C: the main process alone reports it)
    pool = multiprocessing.get_context("fork").Pool(
        max(1, args.workers), initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))

    net, meta, start, velocity = _start(args, gen)
    net.to(args.device)
    parallel = DataParallel(net, args.threads)
    optimizer = SGD(net, args.momentum, args.weight_decay, args.clip or None)
    try:
        optimizer.load_state(velocity)   # after the move: the velocities go to the net's device
    except ValueError as exc:
        raise ValueError(f"{os.path.join(args.run_dir, 'checkpoint_opt.npz')}: {exc}; "
                         "start afresh with --no-resume") from None
    if start:
        print(f"resuming from {os.path.join(args.run_dir, 'checkpoint.h5')} at step "
              f"{start}/{total_steps}", file=sys.stderr)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    test_x_rgb, test_y = _test_canvases(args, test_images, test_labels)

    def evaluate(count):
        """(accuracy, mean cross-entropy) on the first ``count`` test canvases."""
        scores = predict(net, prep.array_to_input(test_x_rgb[:count]))
        loss, _ = softmax_cross_entropy(scores, test_y[:count])
        return float((scores.argmax(1) == test_y[:count]).mean()), loss

    log = io.TextIOWrapper(open_append(os.path.join(args.run_dir, "log.jsonl")))
    dropouts = [[layer for _, layer in shard_net if layer.kind == "dropout"]
                for shard_net in parallel.nets]
    pending = deque(pool.apply_async(_render_batch, (s,))
                    for s in range(start, min(total_steps, start + 2 * max(1, args.workers))))
    t0, run_loss, run_correct, run_seen = time.time(), 0.0, 0, 0
    bar = tqdm(range(start, total_steps), initial=start, total=total_steps, unit="step",
               dynamic_ncols=True, mininterval=5)
    for step in bar:
        images, labels = pending.popleft().get()
        if step + len(pending) + 1 < total_steps:
            pending.append(pool.apply_async(_render_batch, (step + len(pending) + 1,)))
        for shard, layers in enumerate(dropouts):   # masks depend on step and shard only
            for i, layer in enumerate(layers):
                layer.rng = np.random.default_rng([args.seed, step, i] + [shard] * (shard > 0))
        lr = learning_rate(step, total_steps, args.lr, args.warmup)
        loss, correct = train_step(net, optimizer, prep.array_to_input(images), labels, lr,
                                   parallel)
        if not np.isfinite(loss):
            raise RunError(f"loss became {loss} at step {step}; lower --lr")
        run_loss, run_correct, run_seen = run_loss + loss * len(labels), run_correct + correct, run_seen + len(labels)
        if (step + 1) % 20 == 0:
            bar.set_postfix(loss=f"{run_loss / run_seen:.3f}", acc=f"{run_correct / run_seen:.3f}",
                            lr=f"{lr:.4f}")
        end_of_epoch = (step + 1) % batches.steps_per_epoch == 0
        if (step + 1) % args.checkpoint_every == 0 or end_of_epoch or step + 1 == total_steps:
            record = {"step": step + 1, "epoch": (step + 1) / batches.steps_per_epoch,
                      "train_loss": run_loss / run_seen, "train_acc": run_correct / run_seen,
                      "lr": lr, "elapsed_s": round(time.time() - t0, 1)}
            if end_of_epoch:
                record["test_acc_subset"], record["test_loss_subset"] = evaluate(args.eval_size)
                bar.write(f"epoch {record['epoch']:.0f}: test accuracy on {args.eval_size} "
                          f"canvases {record['test_acc_subset']:.4f}")
            save_checkpoint(args.run_dir, net, optimizer, step + 1, meta)
            log.write(json.dumps(record) + "\n")
            log.flush()
            run_loss, run_correct, run_seen = 0.0, 0, 0
    bar.close()
    pool.close()
    _save_model(args, argv, net, meta, parallel, evaluate(len(test_y))[0], total_steps, len(test_y))
    log.close()
    lock.release()
    return 0


def _save_model(args, argv, net, meta, parallel, accuracy, total_steps, test_count):
    """Report the final test accuracy and write --out with the run's recipe."""
    print(f"test accuracy on {test_count} cluttered test canvases: {accuracy:.4f}")
    meta = dict(meta)
    meta["training"] = {"command": "python tools/train.py " + " ".join(argv or sys.argv[1:]),
                        "seed": args.seed, "epochs": args.epochs, "train_size": args.train_size,
                        "batch": args.batch, "lr": args.lr, "steps": total_steps,
                        "threads": parallel.threads,
                        "test_accuracy": accuracy, "test_canvases": int(test_count)}
    minicnn.save(net.to("cpu"), args.out, meta)
    print(f"wrote {args.out}")


def entry():
    """The console command ``minicnn-train`` (and tools/train.py)."""
    return main()


if __name__ == "__main__":
    sys.exit(entry())
