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

Examples:
  python tools/bench.py                       # CPU, batch 1 and 8
  python tools/bench.py --batch 1 --rounds 5 --out bench.md
  python tools/bench.py --device cuda --quick # CuPy (and PyTorch CUDA when present)
"""
import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


import minicnn
from minicnn import assets
from minicnn.backend import get_array_module, to_numpy
from minicnn.io import atomic_write
from minicnn.summary import summarize, totals
from minicnn.threads import set_threads
from minicnn.training import DataParallel

from minicnn.commands.train import DEFAULT_CONFIG, parse_config

SMALL_CONFIG = parse_config(DEFAULT_CONFIG)   # the shipped model's layout
GEMM_SHAPE = (512, 4608, 3136)


# ------------------------------------------------------------------ helpers

def blas_threads():
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                return int(info["num_threads"]), f"{info.get('internal_api')} {info.get('version')} " \
                                                  f"({info.get('architecture')})"
    except ImportError:
        pass
    return os.cpu_count() or 1, "unknown (threadpoolctl missing)"


AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")   # OpenBLAS core names


def blas_kernel_note(blas, processor_line, env):
    """A sentence when OPENBLAS_CORETYPE (read by OpenBLAS when NumPy loads it) chose the
    BLAS kernel instead of OpenBLAS's own detection, else "": on an AVX-512 processor a
    forced AVX2 kernel (Haswell, say) halves minicnn's GEMM rate, PyTorch's not at all."""
    forced = env.get("OPENBLAS_CORETYPE")
    if not forced:
        return ""
    note = f"OPENBLAS_CORETYPE={forced} in the environment chose this BLAS kernel"
    has_avx512 = "AVX-512" in processor_line and "no AVX-512" not in processor_line
    if has_avx512 and not any(k in blas.lower() for k in AVX512_KERNELS):
        note += ("; this processor has AVX-512, which OpenBLAS uses by itself when the "
                 "variable is unset (env -u OPENBLAS_CORETYPE python3 tools/bench.py)")
    return note


def import_torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def synchronizer(device, torch):
    def sync():
        if device == "cuda":
            import cupy
            cupy.cuda.Device().synchronize()
            if torch is not None and torch.cuda.is_available():
                torch.cuda.synchronize()
    return sync


def conv_flops(net, input_shape):
    """Multiply-adds x 2 of the convs and linears of one forward pass per example."""
    return 2 * totals(summarize(net, input_shape))["macs"]


def first_conv_flops(net, input_shape):
    """FLOPs of the first conv (its transposed conv is the one a gradient pass skips)."""
    rows = summarize(net, input_shape)
    return 2 * next((r["macs"] for r in rows if r["type"] == "conv2d"), 0)


def small_model():
    path = Path(assets.default_model())
    if path.is_file():
        return minicnn.load(path), f"{path.name}"
    net = minicnn.vgg_from_config(SMALL_CONFIG, num_classes=10, input_size=(64, 64),
                                  fc_sizes=(256,))
    return net, "stand-in " + str(SMALL_CONFIG)


def torch_model(net, torch, device):
    """The same network in PyTorch, with the same weights."""
    nn = torch.nn
    mods = []
    for _, layer in net:
        if layer.kind == "conv2d":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          layer.stride, layer.pad)
        elif layer.kind == "linear":
            m = nn.Linear(layer.in_features, layer.out_features)
        elif layer.kind == "relu":
            m = nn.ReLU()
        elif layer.kind == "maxpool2d":
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.pad)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        else:                                   # dropout: identity at inference
            m = nn.Identity()
        if "weight" in layer.params:
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(to_numpy(layer.params["weight"])))
                m.bias.copy_(torch.from_numpy(to_numpy(layer.params["bias"])))
        mods.append(m)
    tdev = "cuda" if device == "cuda" else "cpu"
    return nn.Sequential(*mods).to(tdev).eval()


# ------------------------------------------------------------------ workloads

def ours_workloads(net, x, cls, sync):
    xp = get_array_module(x)

    def forward():
        net.forward(x)
        sync()

    def passes(rule):
        def run():
            y = net.forward(x)
            g = xp.zeros_like(y)
            g[:, cls] = 1
            net.backward(g, rule)
            sync()
        return run

    state = {"x": x[:1].copy()}

    def class_model_step():
        y = net.forward(state["x"])
        g = xp.zeros_like(y)
        g[:, cls] = 1
        dx = net.backward(g, "gradient")
        state["x"] = state["x"] + np.float32(0.1) * (dx - np.float32(1e-4) * state["x"])
        sync()

    return {"forward": forward, "gradient": passes("gradient"),
            "deconvnet": passes("deconvnet"), "guided": passes("guided"),
            "class-model step": class_model_step}


def torch_workloads(model, x_np, cls, torch, device, sync):
    tdev = "cuda" if device == "cuda" else "cpu"
    x = torch.from_numpy(to_numpy(x_np)).to(tdev)
    for p in model.parameters():
        p.requires_grad_(False)

    def forward():
        with torch.no_grad():
            model(x)
        sync()

    def gradient():
        xx = x.clone().requires_grad_(True)
        model(xx)[:, cls].sum().backward()
        sync()

    state = {"x": x[:1].clone()}

    def class_model_step():
        xx = state["x"].clone().requires_grad_(True)
        model(xx)[0, cls].backward()
        with torch.no_grad():
            state["x"] = xx + 0.1 * (xx.grad - 1e-4 * xx)
        sync()

    return {"forward": forward, "gradient": gradient, "class-model step": class_model_step}


def train_workloads(net, tmodel, batch, torch, device, sync, xp, threads):
    """Forward + softmax cross-entropy + backward with parameter gradients; ours splits
    the batch over ``threads`` shards (DataParallel, as tools/train.py does)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + net.input_shape, dtype=np.float32)
    labels = rng.integers(0, net.num_classes, batch)
    xd = xp.asarray(x)
    parallel = DataParallel(net, threads)

    def ours():
        parallel.forward_backward(xd, labels)
        sync()

    runs = {"ours": ours}
    if tmodel is not None:
        tdev = "cuda" if device == "cuda" else "cpu"
        tx, tlabels = torch.from_numpy(x).to(tdev), torch.from_numpy(labels).to(tdev)
        tmodel.train()
        for p in tmodel.parameters():
            p.requires_grad_(True)

        def theirs():
            tmodel.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(tmodel(tx), tlabels).backward()
            sync()
        runs["torch"] = theirs
    return runs, x.shape


def timed_calls(fn, repeats, warmup=1):
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def gemm_runner(device):
    m, k, n = GEMM_SHAPE
    if device == "cuda":
        import cupy as xp
    else:
        xp = np
    rng = np.random.default_rng(1)
    a = xp.asarray(rng.standard_normal((m, k), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((k, n), dtype=np.float32))
    return lambda: a @ b, 2.0 * m * k * n


# ------------------------------------------------------------------ memory (child process)

def _reset_peak_rss():
    """Linux: reset the peak RSS (VmHWM) so that building the net (whose random weight
    init has large temporaries) does not count; the weights themselves stay resident."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset):
    if reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(args):
    """Run one configuration in this fresh process and print the peak RSS (MB) of the
    pass, weights included (since start-up where /proc/self/clear_refs is missing)."""
    kind, batch = args.memory_child, args.batch[0]
    if kind.startswith("torch-"):
        torch = import_torch()
        net = minicnn.vgg16()
        model = torch_model(net, torch, "cpu")
        del net
        import gc
        gc.collect()
        x = torch.zeros((batch, 3, 224, 224))
        for p in model.parameters():
            p.requires_grad_(False)
        reset = _reset_peak_rss()
        xx = x.clone().requires_grad_(True)
        model(xx)[:, 1].sum().backward()
    else:
        net = minicnn.vgg16()
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        reset = _reset_peak_rss()
        y = net.forward(x)
        if kind != "forward":
            g = np.zeros_like(y)
            g[:, 1] = 1
            net.backward(g, kind)
    print(json.dumps({"peak_rss_mb": _peak_rss_mb(reset)}))


def peak_rss(kind, batch):
    cmd = [sys.executable, "-m", __name__, "--memory-child", kind,
           "--batch", str(batch)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    except Exception as exc:  # report, do not abort the benchmark
        print(f"[memory child {kind} batch {batch} failed: {exc}]", file=sys.stderr)
        return None


# ------------------------------------------------------------------ the machine

def processor():
    """One line: CPU model, AVX-512 or not, CPUs available to this process."""
    model, flags = "unknown processor", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown processor":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        import platform
        model = platform.processor() or model
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    avx = "AVX-512" if "avx512f" in flags else ("AVX2, no AVX-512" if "avx2" in flags else
                                                "no AVX2")
    return f"{model}, {avx}, {cpus} CPUs"


def torch_available():
    """Whether PyTorch is importable, without importing it here (its threads would then
    live in the parent)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None


# ------------------------------------------------------------------ children

def engine_child(spec):
    """Run one engine's workloads in this fresh process; returns the JSON-able result:
    {"times": {workload: [s, ...]}, "scores": [...] (VGG16 forward scores), "info": ...}."""
    device, batch, repeats, threads = spec["device"], spec["batch"], spec["repeats"], spec["threads"]
    engine, kind = spec["engine"], spec.get("kind")
    if engine == "profile":
        return {"rows": profile_child(batch, repeats, threads)}
    rng = np.random.default_rng(0)
    if engine == "gemm":
        gemm, flops = gemm_runner(device)
        sync = synchronizer(device, None)
        times = timed_calls(lambda: (gemm(), sync()), repeats)
        return {"times": {"gemm": times}, "flops": flops}
    torch = import_torch() if engine == "torch" else None
    if engine == "minicnn":
        set_threads(threads)
    else:
        torch.set_num_threads(threads)
        # float32 against float32: cuDNN convs default to TF32 on Ampere and later
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    sync = synchronizer(device, torch)
    xp = np
    if device == "cuda" and engine == "minicnn":
        import cupy as xp
    out = {"info": {"threads": threads if torch is None else torch.get_num_threads(),
                    "blas": blas_threads()[1]}}
    if torch is not None:
        out["info"]["torch"] = torch.__version__
    if kind == "vgg16":
        net = minicnn.vgg16()                         # seeded: the same weights in both
        x_np = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        names = ["forward", "gradient", "deconvnet", "guided"] + (
            ["class-model step"] if batch == 1 else [])
        if torch is None:
            net.to("cuda" if device == "cuda" else "cpu")
            runs = ours_workloads(net, xp.asarray(x_np), 1, sync)
            scores = to_numpy(net.forward(xp.asarray(x_np)))
        else:
            model = torch_model(net, torch, device)
            del net
            runs = torch_workloads(model, x_np, 1, torch, device, sync)
            with torch.no_grad():
                tdev = "cuda" if device == "cuda" else "cpu"
                scores = model(torch.from_numpy(x_np).to(tdev)).cpu().numpy()
        out["times"] = {name: timed_calls(runs[name], repeats) for name in names if name in runs}
        out["scores"] = scores.astype(np.float64).ravel().tolist()
    else:                                             # the small model's training step
        small, name = small_model()
        small.to("cuda" if device == "cuda" and torch is None else "cpu")
        tsmall = torch_model(small, torch, device) if torch is not None else None
        runs, xshape = train_workloads(small, tsmall, spec["train_batch"], torch, device, sync,
                                       xp, threads)
        run = runs["torch"] if torch is not None else runs["ours"]
        out["times"] = {"train": timed_calls(run, repeats)}
        out["model"], out["shape"] = name, list(xshape)
        out["flops"] = 3 * conv_flops(small, tuple(xshape[1:])) * xshape[0]
    return out


def profile_child(batch, repeats, threads):
    """Per-layer times of a VGG16 gradient pass at ``batch``: each layer timed inside the
    pass (the pass run layer by layer, repeated) and alone (the same call repeated on the
    same input). -> list of rows {layer, forward_pass_ms, forward_alone_ms,
    backward_pass_ms, backward_alone_ms}."""
    set_threads(threads)
    net = minicnn.vgg16()
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    layers = list(net)
    inside = {name: ([], []) for name, _ in layers}
    outputs = {}

    def timed(name, method, which):
        @functools.wraps(method)         # seen through: the net still runs in place
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            out = method(*args, **kwargs)
            inside[name][which].append(time.perf_counter() - t0)
            if which == 0:
                outputs[name] = out
            return out
        return call

    for name, layer in layers:       # the net's own pass (in place, fused), layer by layer
        layer.forward = timed(name, layer.forward, 0)
        layer.backward = timed(name, layer.backward, 1)
    for _ in range(repeats + 1):                     # the first pass warms up
        h = net.forward(x)
        g = np.zeros_like(h)
        g[:, 1] = 1
        net.backward(g, "gradient")
    for _, layer in layers:
        del layer.forward, layer.backward            # back to the methods
    outputs = [outputs[name] for name, _ in layers]
    rows = []
    h = x
    for (name, layer), out in zip(layers, outputs):
        forward_alone = timed_calls(lambda: layer.forward(h), repeats)
        layer.forward(h)                             # its cache again, for backward
        grad = np.ones_like(out)
        backward_alone = timed_calls(lambda: layer.backward(grad, "gradient"), repeats)
        rows.append({"layer": name,
                     "forward_pass_ms": 1e3 * float(np.median(inside[name][0][1:])),
                     "forward_alone_ms": 1e3 * float(np.median(forward_alone)),
                     "backward_pass_ms": 1e3 * float(np.median(inside[name][1][1:])),
                     "backward_alone_ms": 1e3 * float(np.median(backward_alone))})
        h = out
    return rows


def print_profile(args):
    """--profile: the per-layer table, from a child process of its own."""
    threads, blas = blas_threads()
    batch = args.batch[0]
    rows = run_child({"engine": "profile", "batch": batch, "repeats": args.repeats,
                      "threads": threads, "device": "cpu"})["rows"]
    lines = [f"processor: {processor()}", f"BLAS: {blas}; minicnn threads {threads}",
             f"VGG16 gradient pass, batch {batch}: per layer, medians of {args.repeats} "
             "(inside the pass: the pass run layer by layer; alone: the same call repeated)",
             "", "| layer | forward in pass ms | forward alone ms | backward in pass ms | "
             "backward alone ms |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['forward_pass_ms']:.1f} | {r['forward_alone_ms']:.1f}"
                     f" | {r['backward_pass_ms']:.1f} | {r['backward_alone_ms']:.1f} |")
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "layer"}
    lines.append(f"| total | {total['forward_pass_ms']:.1f} | {total['forward_alone_ms']:.1f} | "
                 f"{total['backward_pass_ms']:.1f} | {total['backward_alone_ms']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write(Path(args.out).with_suffix(".md"),
                     lambda tmp: Path(tmp).write_text(text + "\n"))
    return 0


def run_child(spec):
    cmd = [sys.executable, "-m", "minicnn.commands.bench", "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['engine']} child failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (NumPy) or cuda (CuPy, with PyTorch CUDA when present)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per workload per child")
    p.add_argument("--rounds", type=int, default=3,
                   help="child processes per engine and configuration, alternating order")
    p.add_argument("--batch", type=lambda s: [int(b) for b in s.split(",")], default=[1, 8],
                   help="comma-separated VGG16 batch sizes (default 1,8)")
    p.add_argument("--train-batch", type=int, default=64,
                   help="batch of the small-model training step (default 64)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: batch 1 only, 2 repeats, 1 round, no memory children")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    p.add_argument("--out", help="also write the results: NAME.json and NAME.md "
                                 "(extension of NAME ignored)")
    p.add_argument("--profile", action="store_true",
                   help="instead: per-layer times of a VGG16 gradient pass at the first "
                        "--batch, each layer inside the pass and alone (minicnn only)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    if args.child:
        print(json.dumps(engine_child(json.loads(args.child))))
        return 0
    if args.quick:
        args.batch, args.repeats, args.rounds, args.no_memory = [1], 2, 1, True
    if args.profile:
        return print_profile(args)

    use_torch = not args.no_torch and torch_available()
    threads, blas = blas_threads()
    engines = ["minicnn"] + (["torch"] if use_torch else [])
    base = {"device": args.device, "repeats": args.repeats, "threads": threads,
            "train_batch": args.train_batch}

    def rounds_of(kind, batch):
        """{engine: [child result per round]}, engines (and the GEMM) alternating."""
        results = {e: [] for e in engines + ["gemm"]}
        for r in range(args.rounds):
            order = engines if r % 2 == 0 else engines[::-1]
            for engine in order + ["gemm"]:
                print(f"[round {r + 1}/{args.rounds}: {engine} {kind} batch {batch}]",
                      file=sys.stderr, flush=True)
                results[engine].append(run_child({**base, "engine": engine,
                                                  "kind": kind if engine != "gemm" else "gemm",
                                                  "batch": batch}))
        return results

    def stats(children, workload):
        """(median of all timed calls, min and max of the per-round medians) in s."""
        per_round = [c["times"][workload] for c in children if workload in c["times"]]
        if not per_round:
            return None, None, None
        medians = [float(np.median(t)) for t in per_round]
        return float(np.median(sum(per_round, []))), min(medians), max(medians)

    rows, gemm_rates, info = [], [], {}
    results = {"device": args.device, "processor": processor(), "blas": blas,
               "threads": threads, "repeats": args.repeats, "rounds": args.rounds,
               "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                                                       "OMP_NUM_THREADS", "MINICNN_THREADS")},
               "rows": rows}
    net = minicnn.vgg16()
    fwd_flops = conv_flops(net, (3, 224, 224))
    # gradient to the input: forward + one transposed conv per conv (none for the first)
    grad_flops = 2 * fwd_flops - first_conv_flops(net, (3, 224, 224))
    del net

    def add_row(workload, batch, ours, theirs, flops, rate, mem=None):
        limit = flops / rate
        rows.append({"workload": workload, "batch": batch,
                     "ours_ms": 1e3 * ours[0], "ours_spread_ms": [1e3 * v for v in ours[1:]],
                     "torch_ms": None if theirs[0] is None else 1e3 * theirs[0],
                     "torch_spread_ms": None if theirs[0] is None else [1e3 * v for v in theirs[1:]],
                     "vs_torch": None if theirs[0] is None else ours[0] / theirs[0],
                     "blas_limit_ms": 1e3 * limit, "vs_blas_limit": ours[0] / limit,
                     "peak_rss_mb": mem})

    for batch in args.batch:
        res = rounds_of("vgg16", batch)
        rate = res["gemm"][0]["flops"] / stats(res["gemm"], "gemm")[0]
        gemm_rates.append(rate / 1e9)
        info.update({e: res[e][0]["info"] for e in engines})
        if use_torch:
            diff = np.abs(np.array(res["minicnn"][0]["scores"]) - np.array(res["torch"][0]["scores"]))
            results.setdefault("max_abs_diff_vs_torch", {})[f"batch {batch}"] = float(diff.max())
        for name in res["minicnn"][0]["times"]:
            flops = {"forward": fwd_flops}.get(name, grad_flops) * batch
            mem = None
            if not args.no_memory and args.device == "cpu" and name != "class-model step":
                mem = peak_rss(name, batch)
            add_row(f"VGG16 {name}", batch, stats(res["minicnn"], name),
                    stats(res["torch"], name) if use_torch else (None,), flops, rate, mem)
        if not args.no_memory and args.device == "cpu" and use_torch and batch == args.batch[0]:
            results.setdefault("torch_gradient_peak_rss_mb", {})[f"batch {batch}"] = \
                peak_rss("torch-gradient", batch)

    res = rounds_of("train", args.train_batch)
    rate = res["gemm"][0]["flops"] / stats(res["gemm"], "gemm")[0]
    gemm_rates.append(rate / 1e9)
    first = res["minicnn"][0]
    add_row(f"small model training step ({first['model']})", first["shape"][0],
            stats(res["minicnn"], "train"),
            stats(res["torch"], "train") if use_torch else (None,), first["flops"], rate)
    results["gemm_gflops"], results["engines"] = gemm_rates, info

    torch_info = info.get("torch")
    lines = [f"processor: {results['processor']}",
             f"BLAS: {blas}; threads: minicnn {info['minicnn']['threads']}, BLAS {threads}"
             + (f", PyTorch {torch_info['torch']} {torch_info['threads']}" if torch_info else
                ", PyTorch absent"),
             *filter(None, [blas_kernel_note(blas, results["processor"], os.environ)]),
             f"device {args.device}; GEMM {GEMM_SHAPE} float32: "
             + ", ".join(f"{g:.1f}" for g in gemm_rates) + " GFLOP/s; each engine alone in "
             f"its own process, {args.rounds} rounds x {args.repeats} calls, medians "
             "(per-round range)", "",
             "| workload | batch | minicnn ms | PyTorch ms | vs PyTorch | BLAS limit ms | vs BLAS limit | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(value, spec, suffix=""):
        return "-" if value is None else f"{value:{spec}}{suffix}"

    def timing(value, spread):
        if value is None:
            return "-"
        if spread is None or args.rounds < 2:
            return f"{value:.1f}"
        return f"{value:.1f} ({spread[0]:.0f}-{spread[1]:.0f})"

    for r in rows:
        lines.append("| " + " | ".join([
            r["workload"], str(r["batch"]), timing(r["ours_ms"], r["ours_spread_ms"]),
            timing(r["torch_ms"], r["torch_spread_ms"]), cell(r["vs_torch"], ".2f", "x"),
            cell(r["blas_limit_ms"], ".1f"), cell(r["vs_blas_limit"], ".2f", "x"),
            cell(r["peak_rss_mb"], ".0f")]) + " |")
    extra = []
    if "torch_gradient_peak_rss_mb" in results:
        extra.append("PyTorch gradient pass peak RSS MB: " + ", ".join(
            f"{k}: {v:.0f}" for k, v in results["torch_gradient_peak_rss_mb"].items() if v))
    if "max_abs_diff_vs_torch" in results:
        extra.append("max |minicnn - PyTorch| VGG16 scores: " + ", ".join(
            f"{k}: {v:.2e}" for k, v in results["max_abs_diff_vs_torch"].items()))
    text = "\n".join(lines + [""] + extra)
    print(text)
    if args.out:
        base_path = Path(args.out).with_suffix("")
        for suffix, content in ((".json", json.dumps(results, indent=2)), (".md", text + "\n")):
            atomic_write(base_path.with_suffix(suffix), lambda tmp, c=content: Path(tmp).write_text(c))
    return 0


def entry():
    """The console command ``minicnn-bench`` (and tools/bench.py)."""
    return main()


if __name__ == "__main__":
    sys.exit(entry())
