"""Benchmark minicnn against PyTorch and the BLAS limit, each engine alone in its own process.

Workloads (VGG16 at 224x224 with random weights, for each --batch):
  forward          net.forward(x)
  gradient         forward + backward of the class-score sum to the input
  deconvnet        the same with rule="deconvnet"
  guided           the same with rule="guided"
  class-model step (batch 1 only) forward + backward of one class score + an update of x
and the small model (weights/fashion_vgg.h5 if present, else a stand-in VGG for 64x64
input) for one training step at --train-batch: forward, softmax cross-entropy and backward
with param_grads, the batch split over the CPU threads as tools/train.py does.

How it is timed: every engine runs in a fresh child process of its own (minicnn, PyTorch
when importable, and a float32 GEMM (512, 4608) @ (4608, 3136), the conv4 GEMM shape, for
the BLAS rate), one after the other, never two at once: thread pools that keep spinning
after a call (OpenBLAS, minicnn's, PyTorch's OpenMP) would otherwise slow the other engine.
A child builds its net, makes one warm-up call per workload, then --repeats timed calls.
This is done for --rounds rounds, alternating which engine goes first; the table gives
the median of all timed calls and the spread of the per-round medians. Both engines use
as many threads as the BLAS (the CPUs available). PyTorch gets the same weights (the same
seeded minicnn.vgg16()) and its scores are compared with minicnn's. "BLAS limit" = FLOPs
of the work / the GEMM rate. Peak memory is the peak RSS (ru_maxrss, so BLAS buffers
count) of another fresh child per configuration, weights included (VmHWM reset after
building the net, on Linux).

Both children run as a library user runs them: no process-wide setting (minicnn reuses
its own result and scratch arrays between passes, see minicnn.functional.workspace).
Each minicnn child chooses its conv algorithms as the library does (MINICNN_CONV, by
default "rule", the fixed shape rule; with --conv measure the first call of each conv
shape times im2col, Winograd F(2x2) and F(4x4), inside the untimed warm-up call); the
table is followed by the algorithm each VGG16 conv used and by what the first call
cost.

Examples:
  python tools/bench.py                       # CPU, batch 1 and 8
  python tools/bench.py --batch 1 --rounds 5 --out bench.md
  python tools/bench.py --device cuda --quick # CuPy (and PyTorch CUDA when present)
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

import minicnn
from minicnn.io import atomic_write

from minicnn.commands.bench_children import (
    GEMM_SHAPE, blas_kernel_note, blas_threads, conv_flops, engine_child, first_conv_flops,
    memory_child, peak_rss, processor, run_child, torch_available)


def print_profile(args):
    """--profile: the per-layer table, from a child process of its own."""
    threads, blas = blas_threads()
    batch = args.batch[0]
    rows = run_child({"engine": "profile", "batch": batch, "repeats": args.repeats,
                      "threads": threads, "device": "cpu"})["rows"]
    lines = [f"processor: {processor()}", f"BLAS: {blas}; minicnn threads {threads}",
             f"VGG16 gradient pass, batch {batch}: per layer, medians of {args.repeats} "
             "(inside the pass: the pass run layer by layer; alone: the same call repeated)",
             "floor: the larger of the layer's GEMM multiply-adds at the GEMM rate and the "
             "bytes it must move at the memory copy rate (G / M: which one); x floor: "
             "in pass / floor",
             "", "| layer | forward in pass ms | forward alone ms | floor ms | x floor | "
             "backward in pass ms | backward alone ms | floor ms | x floor |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["layer"]]
        for d in ("forward", "backward"):
            cells += [f"{r[d + '_pass_ms']:.1f}", f"{r[d + '_alone_ms']:.1f}",
                      *floor_cells(r, d)]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["total"]
    for d in ("forward", "backward"):
        in_pass = sum(r[d + "_pass_ms"] for r in rows)
        floor = sum(layer_floor(r, d)[0] for r in rows)
        cells += [f"{in_pass:.1f}", f"{sum(r[d + '_alone_ms'] for r in rows):.1f}",
                  f"{floor:.1f}", f"{in_pass / floor:.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write(Path(args.out).with_suffix(".md"),
                     lambda tmp: Path(tmp).write_text(text + "\n"))
    return 0


def layer_floor(row, direction):
    """(floor ms, "G" or "M": which floor is the larger) of one direction of a profile
    row; (0, None) where the layer has no floor."""
    gemm, memory = row[direction + "_gemm_ms"], row[direction + "_memory_ms"]
    if gemm is None and memory is None:
        return 0, None
    return max((gemm or 0, "G"), (memory or 0, "M"))


def floor_cells(row, direction):
    """The floor and in-pass / floor cells of one direction of a profile row."""
    floor, which = layer_floor(row, direction)
    if which is None:
        return ["-", "-"]
    return [f"{floor:.2f} {which}", f"{row[direction + '_pass_ms'] / floor:.1f}"]


# ------------------------------------------------------------------ main

def build_parser():
    from minicnn.commands.cli import parser, positive_int
    p = parser("bench.py", __doc__)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (NumPy) or cuda (CuPy, with PyTorch CUDA when present)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed calls per workload per child")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="child processes per engine and configuration, alternating order")
    p.add_argument("--batch", type=batch_list, default=[1, 8],
                   help="comma-separated VGG16 batch sizes (default: 1,8)")
    p.add_argument("--train-batch", type=positive_int, default=64,
                   help="batch of the small-model training step")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: batch 1 only, 2 repeats, 1 round, no memory children")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    p.add_argument("--out", help="also write the results: NAME.json and NAME.md "
                                 "(extension of NAME ignored)")
    p.add_argument("--profile", action="store_true",
                   help="instead: per-layer times of a VGG16 gradient pass at the first "
                        "--batch, each layer inside the pass and alone, beside its floor: "
                        "its GEMM multiplies at the measured GEMM rate or the bytes it "
                        "must move at the measured copy rate, whichever is larger "
                        "(minicnn only)")
    p.add_argument("--conv", choices=("rule", "measure", "im2col", "winograd2", "winograd4"),
                   default=None,
                   help="minicnn's conv algorithm policy in the children (default: "
                        "MINICNN_CONV, else rule: the fixed shape rule; measure: each child "
                        "times the candidates on its first calls; or one algorithm)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def batch_list(text):
    """"1,8" -> [1, 8]; each an integer >= 1."""
    try:
        batches = [int(b) for b in text.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return batches


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    if args.child:
        print(json.dumps(engine_child(json.loads(args.child))))
        return 0
    if args.quick:
        args.batch, args.repeats, args.rounds, args.no_memory = [1], 2, 1, True
    if args.conv:
        os.environ["MINICNN_CONV"] = args.conv       # the children inherit it
    if args.out:     # both files' folder checked before minutes of measuring
        from minicnn.commands.cli import checked_output
        checked_output(Path(args.out).with_suffix(".md"), (".md",), "--out")
    if args.profile:
        return print_profile(args)
    results = Measurement(args).run()
    text = table_text(results, args.rounds)
    print(text)
    if args.out:
        base_path = Path(args.out).with_suffix("")
        for suffix, content in ((".json", json.dumps(results, indent=2)), (".md", text + "\n")):
            atomic_write(base_path.with_suffix(suffix), lambda tmp, c=content: Path(tmp).write_text(c))
    return 0


def stats(children, workload):
    """(median of all timed calls, min and max of the per-round medians) in s."""
    per_round = [c["times"][workload] for c in children if workload in c["times"]]
    if not per_round:
        return None, None, None
    medians = [float(np.median(t)) for t in per_round]
    return float(np.median(sum(per_round, []))), min(medians), max(medians)


class Measurement:
    """The children of one benchmark run, one after the other, and the results dict
    written to NAME.json (rows, GEMM rates, engines, the machine)."""

    def __init__(self, args):
        self.args = args
        self.use_torch = not args.no_torch and torch_available()
        self.threads, self.blas = blas_threads()
        self.engines = ["minicnn"] + (["torch"] if self.use_torch else [])
        self.base = {"device": args.device, "repeats": args.repeats, "threads": self.threads,
                     "train_batch": args.train_batch}
        self.rows, self.gemm_rates, self.info = [], [], {}
        self.results = {
            "device": args.device, "processor": processor(), "blas": self.blas,
            "threads": self.threads, "repeats": args.repeats, "rounds": args.rounds,
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                                                    "OMP_NUM_THREADS", "MINICNN_THREADS",
                                                    "MINICNN_CONV", "MINICNN_CONV_WISDOM")},
            "rows": self.rows}

    def rounds_of(self, kind, batch):
        """{engine: [child result per round]}, engines (and the GEMM) alternating."""
        results = {e: [] for e in self.engines + ["gemm"]}
        for r in range(self.args.rounds):
            order = self.engines if r % 2 == 0 else self.engines[::-1]
            for engine in order + ["gemm"]:
                print(f"[round {r + 1}/{self.args.rounds}: {engine} {kind} batch {batch}]",
                      file=sys.stderr, flush=True)
                results[engine].append(run_child({**self.base, "engine": engine,
                                                  "kind": kind if engine != "gemm" else "gemm",
                                                  "batch": batch}))
        return results

    def gemm_rate(self, res):
        """FLOP/s of the GEMM children of ``res`` (also kept, in GFLOP/s, for the table)."""
        rate = res["gemm"][0]["flops"] / stats(res["gemm"], "gemm")[0]
        self.gemm_rates.append(rate / 1e9)
        return rate

    def add_row(self, workload, batch, ours, theirs, flops, rate, mem=None):
        limit = flops / rate
        self.rows.append({
            "workload": workload, "batch": batch,
            "ours_ms": 1e3 * ours[0], "ours_spread_ms": [1e3 * v for v in ours[1:]],
            "torch_ms": None if theirs[0] is None else 1e3 * theirs[0],
            "torch_spread_ms": None if theirs[0] is None else [1e3 * v for v in theirs[1:]],
            "vs_torch": None if theirs[0] is None else ours[0] / theirs[0],
            "blas_limit_ms": 1e3 * limit, "vs_blas_limit": ours[0] / limit, "peak_rss_mb": mem})

    def vgg16_rows(self, batch, fwd_flops, grad_flops):
        args, results = self.args, self.results
        res = self.rounds_of("vgg16", batch)
        rate = self.gemm_rate(res)
        self.info.update({e: res[e][0]["info"] for e in self.engines})
        ours = res["minicnn"]
        if "conv" in ours[0]:
            results.setdefault("conv_choices", {})[f"batch {batch}"] = [c["conv"] for c in ours]
            results.setdefault("first_call_ms", {})[f"batch {batch}"] = {
                name: 1e3 * float(np.median([c["first_call_s"][name] for c in ours]))
                for name in ours[0]["first_call_s"]}
        if self.use_torch:
            diff = np.abs(np.array(res["minicnn"][0]["scores"]) - np.array(res["torch"][0]["scores"]))
            results.setdefault("max_abs_diff_vs_torch", {})[f"batch {batch}"] = float(diff.max())
        measure_memory = not args.no_memory and args.device == "cpu"
        for name in res["minicnn"][0]["times"]:
            flops = {"forward": fwd_flops}.get(name, grad_flops) * batch
            mem = peak_rss(name, batch) if measure_memory and name != "class-model step" else None
            self.add_row(f"VGG16 {name}", batch, stats(res["minicnn"], name),
                         stats(res["torch"], name) if self.use_torch else (None,), flops, rate, mem)
        if measure_memory and self.use_torch and batch == args.batch[0]:
            results.setdefault("torch_gradient_peak_rss_mb", {})[f"batch {batch}"] = \
                peak_rss("torch-gradient", batch)

    def training_row(self):
        res = self.rounds_of("train", self.args.train_batch)
        rate = self.gemm_rate(res)
        first = res["minicnn"][0]
        self.add_row(f"small model training step ({first['model']})", first["shape"][0],
                     stats(res["minicnn"], "train"),
                     stats(res["torch"], "train") if self.use_torch else (None,), first["flops"],
                     rate)

    def run(self):
        net = minicnn.vgg16()
        fwd_flops = conv_flops(net, (3, 224, 224))
        # gradient to the input: forward + one transposed conv per conv (none for the first)
        grad_flops = 2 * fwd_flops - first_conv_flops(net, (3, 224, 224))
        del net
        for batch in self.args.batch:
            self.vgg16_rows(batch, fwd_flops, grad_flops)
        self.training_row()
        self.results["gemm_gflops"], self.results["engines"] = self.gemm_rates, self.info
        return self.results


SHORT = {"im2col": "im2col", "winograd2": "F2", "winograd4": "F4"}


def conv_choice_lines(results):
    """The conv algorithms minicnn's children used, per batch (forward / transposed conv
    of each VGG16 conv), with the first call's cost (it times the candidates)."""
    lines = []
    for batch, children in results.get("conv_choices", {}).items():
        first = children[0]
        row = ", ".join(
            f"{r['layer']} {SHORT.get(r['forward'], r['forward'])}/"
            f"{SHORT.get(r['backward_input'], r['backward_input'])}" for r in first["rows"])
        same = all(c["rows"] == first["rows"] for c in children)
        unmeasured = ", 'rule: ' where not measured" if first["policy"] == "measure" else ""
        lines.append(f"conv algorithms, {batch} (policy {first['policy']}; forward/transposed; "
                     f"F2 = Winograd F(2x2), F4 = F(4x4){unmeasured}): {row}"
                     + ("" if same else " (the rounds' children chose differently: "
                        "see the JSON)"))
        calls = results.get("first_call_ms", {}).get(batch, {})
        if calls:
            ours = {r["workload"].removeprefix("VGG16 "): r["ours_ms"] for r in results["rows"]
                    if r["batch"] == int(batch.split()[-1]) and r["workload"].startswith("VGG16")}
            timed = " (choices timed there)" if first["policy"] == "measure" else ""
            lines.append(f"first call, {batch}{timed}: " + ", ".join(
                f"{name} {ms:.0f} ms ({ms / ours[name]:.1f}x a later call)"
                for name, ms in calls.items() if name in ours))
    return lines


def table_text(results, rounds):
    """The results as the text bench prints: the machine's lines, the Markdown table,
    PyTorch's peak memory and the score differences."""
    info, blas, threads = results["engines"], results["blas"], results["threads"]
    torch_info = info.get("torch")
    lines = [f"processor: {results['processor']}",
             f"BLAS: {blas}; threads: minicnn {info['minicnn']['threads']}, BLAS {threads}"
             + (f", PyTorch {torch_info['torch']} {torch_info['threads']}" if torch_info else
                ", PyTorch absent"),
             *filter(None, [blas_kernel_note(blas, results["processor"], os.environ)]),
             f"device {results['device']}; GEMM {GEMM_SHAPE} float32: "
             + ", ".join(f"{g:.1f}" for g in results["gemm_gflops"]) + " GFLOP/s; each engine "
             f"alone in its own process, {rounds} rounds x {results['repeats']} calls, medians "
             "(per-round range)", "",
             "| workload | batch | minicnn ms | PyTorch ms | vs PyTorch | BLAS limit ms | vs BLAS limit | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(value, spec, suffix=""):
        return "-" if value is None else f"{value:{spec}}{suffix}"

    def timing(value, spread):
        if value is None:
            return "-"
        if spread is None or rounds < 2:
            return f"{value:.1f}"
        return f"{value:.1f} ({spread[0]:.0f}-{spread[1]:.0f})"

    for r in results["rows"]:
        lines.append("| " + " | ".join([
            r["workload"], str(r["batch"]), timing(r["ours_ms"], r["ours_spread_ms"]),
            timing(r["torch_ms"], r["torch_spread_ms"]), cell(r["vs_torch"], ".2f", "x"),
            cell(r["blas_limit_ms"], ".1f"), cell(r["vs_blas_limit"], ".2f", "x"),
            cell(r["peak_rss_mb"], ".0f")]) + " |")
    extra = conv_choice_lines(results)
    if "torch_gradient_peak_rss_mb" in results:
        extra.append("PyTorch gradient pass peak RSS MB: " + ", ".join(
            f"{k}: {v:.0f}" for k, v in results["torch_gradient_peak_rss_mb"].items() if v))
    if "max_abs_diff_vs_torch" in results:
        extra.append("max |minicnn - PyTorch| VGG16 scores: " + ", ".join(
            f"{k}: {v:.2e}" for k, v in results["max_abs_diff_vs_torch"].items()))
    return "\n".join(lines + [""] + extra)


def entry():
    """The console command ``minicnn-bench`` (and tools/bench.py): errors are one line
    and exit status 1, usage errors exit status 2."""
    from minicnn.commands.cli import run
    return run(main, "bench.py")


if __name__ == "__main__":
    sys.exit(entry())
