#!/usr/bin/env python3
"""Make weights/training_curve.png: the shipped model's training, stage after stage, from
the logs tools/train.py writes (RUN_DIR/log.jsonl; one line per 200 steps and one at each
epoch's end): the training loss and accuracy (mean over the steps since the previous line,
with dropout on) and the test accuracy (and, in logs written since, the test loss) on the
first 2,000 test canvases at each epoch's end.

    python tools/make_training_curve.py                    # the shipped model's three logs
    python tools/make_training_curve.py runs/a/log.jsonl runs/b/log.jsonl --out curve.png
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minicnn.io import atomic_write  # noqa: E402

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
STAGES = [WEIGHTS / "training" / f"stage{k}.jsonl" for k in (1, 2, 3)]


def read_log(path):
    """The log's records, in order; one clear line when a line is not a training record."""
    records = []
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SystemExit(f"make_training_curve.py: cannot read {path}: {exc.strerror}")
    with f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
                float(record["epoch"]), float(record["train_loss"]), float(record["train_acc"])
            except (ValueError, KeyError, TypeError):
                raise SystemExit(f"make_training_curve.py: {path} line {number} is not a "
                                 "tools/train.py log record (JSON with epoch, train_loss, "
                                 "train_acc)")
            records.append(record)
    if not records:
        raise SystemExit(f"make_training_curve.py: {path} holds no records")
    return records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="*", default=[str(s) for s in STAGES],
                   help="log.jsonl of each stage, in training order (default: the shipped "
                        "model's weights/training/stage1-3.jsonl)")
    p.add_argument("--out", default=str(WEIGHTS / "training_curve.png"))
    args = p.parse_args(argv)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    offset, labelled = 0.0, set()

    def series(ax, points, style, colour, label):
        """One stage's (epoch, value) points; the legend names each kind once."""
        if points:           # test values exist only at an epoch's end (test loss: newer logs)
            ax.plot(*zip(*points), style, color=colour, ms=3.5, lw=1.2,
                    label=None if label in labelled else label)
            labelled.add(label)

    for k, path in enumerate(args.logs, 1):
        records = read_log(path)
        at = (lambda key: [(offset + r["epoch"], r[key]) for r in records if key in r])
        series(ax_loss, at("train_loss"), "-", "C0", "training loss (dropout on)")
        series(ax_loss, at("test_loss_subset"), "o-", "C3", "test loss, first 2,000 test canvases")
        series(ax_acc, at("train_acc"), "-", "C0", "training accuracy (dropout on)")
        series(ax_acc, at("test_acc_subset"), "o-", "C3",
               "test accuracy, first 2,000 test canvases")
        for ax in (ax_loss, ax_acc):
            if offset:
                ax.axvline(offset, color="0.6", ls=":", lw=1)
            ax.text(offset + 0.2, 0.02, f"stage {k}", transform=ax.get_xaxis_transform(),
                    color="0.4", fontsize=8)
        offset += records[-1]["epoch"]
    ax_loss.set(xlabel="epoch (60,000 fresh canvases each)", ylabel="cross-entropy",
                title="loss")
    ax_acc.set(xlabel="epoch (60,000 fresh canvases each)", ylabel="top-1 accuracy",
               title="accuracy", ylim=(0.4, 1.0))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right" if ax is ax_loss else "lower right", fontsize=8)
    fig.tight_layout()
    try:            # whole or not at all: a failed write leaves no half-written PNG
        atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png"))
    except OSError as exc:
        raise SystemExit(f"make_training_curve.py: cannot write {args.out}: {exc.strerror}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
