#!/usr/bin/env python
"""Benchmark minicnn against PyTorch and the BLAS limit, in one process.

Workloads (VGG16 at 224x224 with random weights, for each --batch):
  forward          net.forward(x)
  gradient         forward + backward of the class-score sum to the input
  deconvnet        the same with rule="deconvnet"
  guided           the same with rule="guided"
  class-model step (batch 1 only) forward + backward of one class score + an update of x
and the small model (weights/fashion_vgg.h5 if present, else a stand-in VGG for 64x64
input) for one training step at --train-batch: forward, softmax cross-entropy and backward
with param_grads, the batch split over the CPU threads as tools/train.py does.

PyTorch (when importable) does the same work with the same weights in the same process
(forward under no_grad; backward to the input with frozen weights; the training step
with weight gradients), with torch.set_num_threads equal to the BLAS thread count.
A float32 GEMM (512, 4608) @ (4608, 3136) (the conv4 GEMM shape) measures the BLAS rate;
"BLAS limit" = FLOPs of the work / that rate. Repeats are interleaved (ours, torch, GEMM
in turn) and medians are reported, since the machine may be shared. Peak memory is the
peak RSS (ru_maxrss, so BLAS buffers count) of a fresh child process per configuration,
weights included (VmHWM reset after building the net, on Linux).

Examples:
  python tools/bench.py                       # CPU, batch 1 and 8, 5 repeats
  python tools/bench.py --batch 1 --repeats 9 --out bench.md
  python tools/bench.py --device cuda --quick # CuPy (and PyTorch CUDA when present)
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minicnn  # noqa: E402
from minicnn.backend import get_array_module, keep_freed_memory, to_numpy  # noqa: E402
from minicnn.io import atomic_write  # noqa: E402
from minicnn.summary import summarize, totals  # noqa: E402
from minicnn.threads import set_threads  # noqa: E402
from minicnn.training import DataParallel  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from train import DEFAULT_CONFIG, parse_config  # noqa: E402

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
    path = ROOT / "weights" / "fashion_vgg.h5"
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


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(runs, repeats, warmup=1):
    """runs: {label: fn}; every repeat runs each fn once, in turn. -> {label: median s}."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k].append(timed(fn))
    return {k: float(np.median(v)) for k, v in times.items()}


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
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", kind,
           "--batch", str(batch)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    except Exception as exc:  # report, do not abort the benchmark
        print(f"[memory child {kind} batch {batch} failed: {exc}]", file=sys.stderr)
        return None


# ------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (NumPy) or cuda (CuPy, with PyTorch CUDA when present)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per workload (median)")
    p.add_argument("--batch", type=lambda s: [int(b) for b in s.split(",")], default=[1, 8],
                   help="comma-separated VGG16 batch sizes (default 1,8)")
    p.add_argument("--train-batch", type=int, default=64,
                   help="batch of the small-model training step (default 64)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: batch 1 only, 2 repeats, no memory children")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    p.add_argument("--out", help="also write the results: NAME.json and NAME.md "
                                 "(extension of NAME ignored)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    keep_freed_memory()    # as every minicnn tool does; PyTorch runs in this process too
    if args.memory_child:
        return memory_child(args)
    if args.quick:
        args.batch, args.repeats, args.no_memory = [1], 2, True

    torch = None if args.no_torch else import_torch()
    threads, blas = blas_threads()
    set_threads(threads)   # minicnn's own threads = BLAS's = PyTorch's
    if torch is not None:
        torch.set_num_threads(threads)
        # float32 against float32: PyTorch's cuDNN convs default to TF32 on Ampere and
        # later, which would compare 10-bit-mantissa products with our full float32
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.device == "cuda":
        net_device = "cuda"
        import cupy as xp
    else:
        net_device, xp = "cpu", np
    sync = synchronizer(args.device, torch)
    torch_dev_ok = torch is not None and (args.device == "cpu" or torch.cuda.is_available())

    gemm, gemm_flops = gemm_runner(args.device)
    gemm_sync = lambda: (gemm(), sync())  # noqa: E731
    rows = []
    results = {"device": args.device, "blas": blas, "threads": threads,
                         "torch": None if torch is None else torch.__version__,
                         "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                                 "OMP_NUM_THREADS")},
                         "repeats": args.repeats, "rows": rows}

    net = minicnn.vgg16().to(net_device)
    tmodel = torch_model(net, torch, args.device) if torch_dev_ok else None
    fwd_flops = conv_flops(net, (3, 224, 224))
    # gradient to the input: forward + one transposed conv per conv (none for the first)
    grad_flops = 2 * fwd_flops - first_conv_flops(net, (3, 224, 224))
    rng = np.random.default_rng(0)
    for batch in args.batch:
        x_np = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        x = xp.asarray(x_np)
        ours = ours_workloads(net, x, 1, sync)
        theirs = torch_workloads(tmodel, x_np, 1, torch, args.device, sync) if tmodel else {}
        if tmodel is not None:     # same weights: the outputs must agree
            with torch.no_grad():
                ref = tmodel(torch.from_numpy(x_np).to("cuda" if args.device == "cuda" else "cpu"))
            err = float(np.abs(to_numpy(net.forward(x)) - ref.cpu().numpy()).max())
            results.setdefault("max_abs_diff_vs_torch", {})[f"batch {batch}"] = err
        names = ["forward", "gradient", "deconvnet", "guided"] + (["class-model step"] if batch == 1 else [])
        runs = {}
        for name in names:
            runs[("ours", name)] = ours[name]
            if name in theirs:
                runs[("torch", name)] = theirs[name]
        runs[("gemm", "")] = gemm_sync
        med = interleave(runs, args.repeats)
        rate = gemm_flops / med[("gemm", "")]
        results.setdefault("gemm_gflops", []).append(rate / 1e9)
        for name in names:
            flops = {"forward": fwd_flops}.get(name, grad_flops) * batch
            limit = flops / rate
            mine, ref = med[("ours", name)], med.get(("torch", name))
            mem = None
            if not args.no_memory and name in ("forward", "gradient", "deconvnet", "guided") \
                    and args.device == "cpu":
                mem = peak_rss(name, batch)
            rows.append({"workload": f"VGG16 {name}", "batch": batch, "ours_ms": 1e3 * mine,
                         "torch_ms": None if ref is None else 1e3 * ref,
                         "vs_torch": None if ref is None else mine / ref,
                         "blas_limit_ms": 1e3 * limit, "vs_blas_limit": mine / limit,
                         "peak_rss_mb": mem})
        if not args.no_memory and args.device == "cpu" and torch is not None and batch == args.batch[0]:
            results.setdefault("torch_gradient_peak_rss_mb", {})[f"batch {batch}"] = \
                peak_rss("torch-gradient", batch)
    del net, tmodel

    small, small_name = small_model()
    small.to(net_device)
    tsmall = torch_model(small, torch, args.device) if torch_dev_ok else None
    runs, xshape = train_workloads(small, tsmall, args.train_batch, torch, args.device, sync, xp,
                                   threads)
    runs["gemm"] = gemm_sync
    med = interleave(runs, args.repeats)
    rate = gemm_flops / med["gemm"]
    flops = 3 * conv_flops(small, xshape[1:]) * xshape[0]   # forward + input and weight grads
    rows.append({"workload": f"small model training step ({small_name})", "batch": xshape[0],
                 "ours_ms": 1e3 * med["ours"],
                 "torch_ms": 1e3 * med["torch"] if "torch" in med else None,
                 "vs_torch": med["ours"] / med["torch"] if "torch" in med else None,
                 "blas_limit_ms": 1e3 * flops / rate, "vs_blas_limit": med["ours"] * rate / flops,
                 "peak_rss_mb": None})

    lines = [f"device {args.device}; BLAS {blas}, {threads} threads; "
             f"torch {results['torch'] or 'absent'}; GEMM {GEMM_SHAPE} float32: "
             + ", ".join(f"{g:.1f}" for g in results["gemm_gflops"]) + " GFLOP/s; "
             f"medians of {args.repeats} interleaved repeats", "",
             "| workload | batch | minicnn ms | PyTorch ms | vs PyTorch | BLAS limit ms | vs BLAS limit | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    def cell(value, spec, suffix=""):
        return "-" if value is None else f"{value:{spec}}{suffix}"

    for r in rows:
        lines.append("| " + " | ".join([
            r["workload"], str(r["batch"]), cell(r["ours_ms"], ".1f"), cell(r["torch_ms"], ".1f"),
            cell(r["vs_torch"], ".2f", "x"), cell(r["blas_limit_ms"], ".1f"),
            cell(r["vs_blas_limit"], ".2f", "x"), cell(r["peak_rss_mb"], ".0f")]) + " |")
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
        base = Path(args.out).with_suffix("")
        for suffix, content in ((".json", json.dumps(results, indent=2)), (".md", text + "\n")):
            atomic_write(base.with_suffix(suffix), lambda tmp, c=content: Path(tmp).write_text(c))


if __name__ == "__main__":
    main()
