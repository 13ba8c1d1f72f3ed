"""The measuring side of tools/bench.py: what runs in each fresh child process (minicnn's,
PyTorch's and the GEMM's workloads, the peak-memory runs, the per-layer profile) and the
facts of the machine. ``bench.py`` starts the children and writes the tables."""
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
from minicnn.summary import summarize, totals
from minicnn.threads import set_threads, split
from minicnn.training import DataParallel

from minicnn.commands.train import DEFAULT_CONFIG, parse_config

SMALL_CONFIG = parse_config(DEFAULT_CONFIG)   # the shipped model's layout
GEMM_SHAPE = (512, 4608, 3136)
# the module whose command line runs a child (``--child`` / ``--memory-child``)
CHILD_MODULE = "minicnn.commands.bench"


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
    cmd = [sys.executable, "-m", CHILD_MODULE, "--memory-child", kind,
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
        out["times"], first = {}, {}
        for name in names:
            if name in runs:
                t0 = time.perf_counter()
                runs[name]()            # the warm-up: the first call (conv choices timed)
                first[name] = time.perf_counter() - t0
                out["times"][name] = timed_calls(runs[name], repeats, warmup=0)
        out["scores"] = scores.astype(np.float64).ravel().tolist()
        if torch is None and device == "cpu":
            out["first_call_s"] = first
            out["conv"] = conv_choice_rows(net, batch)
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


def conv_algorithm(direction, x_shape, weight_shape, stride, pad):
    """(algorithm, decided) for a float32 CPU conv in this process: the algorithm it
    runs with (:func:`conv_choice.decided`), or the rule's choice, decided False, where
    the measuring policy has not measured it yet."""
    from minicnn.functional import conv_choice
    chosen, _ = conv_choice.decided(direction, x_shape, weight_shape, np.float32, stride, pad)
    if chosen:
        return chosen, True
    return conv_choice.rule_choice(direction, x_shape, weight_shape, stride, pad), False


def conv_choice_rows(net, batch, size=224):
    """The conv algorithm this process uses for each conv of ``net`` at ``batch``
    (:func:`conv_choice.decided`): {"policy", "rows": [{layer, forward, backward_input,
    backward_params}]} ("rule: ..." where the measuring policy has not measured one)."""
    from minicnn.functional import conv_choice
    rows, c, h = [], net.input_shape[0], size
    for name, layer in net:
        if layer.kind == "maxpool2d":
            h //= 2
        elif layer.kind == "conv2d":
            w = tuple(layer.params["weight"].shape)
            row = {"layer": name}
            for direction, shape in (("forward", (batch, c, h, h)),
                                     ("backward_input", (batch, w[0], h, h)),
                                     ("backward_params", (batch, c, h, h))):
                algorithm, decided = conv_algorithm(direction, shape, w, 1, 1)
                row[direction] = algorithm if decided else "rule: " + algorithm
            rows.append(row)
            c = w[0]
        elif layer.kind in ("flatten", "global_avgpool"):
            break
    return {"policy": conv_choice.conv_policy(), "rows": rows}


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
    floors = layer_floors(layers, x.shape, [o.shape for o in outputs], *machine_rates())
    for row, floor in zip(rows, floors):
        row.update(floor)
    return rows


def machine_rates():
    """(GEMM FLOP/s, memory bytes/s) of this process: the bench's GEMM shape with the
    BLAS's threads (as the BLAS limit), and a 256 MiB copy cut over minicnn's threads,
    counting the bytes read and written (medians of 5 after a warm-up each)."""
    from minicnn.threads import get_threads, parallel_map
    gemm, flops = gemm_runner("cpu")
    gemm_s = float(np.median(timed_calls(gemm, 5)))
    src = np.ones(1 << 26, dtype=np.float32)        # 256 MiB: far beyond any cache
    dst = np.empty_like(src)
    bounds = [(s.start, s.stop) for s in split(src.size, 4 * get_threads())]
    copy_s = float(np.median(timed_calls(
        lambda: parallel_map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds), 5)))
    return flops / gemm_s, 2 * src.nbytes / copy_s


def conv_multiplies(algorithm, weight_shape, out_shape):
    """Multiplies of one conv's GEMMs with ``algorithm``: weight (O, C, kh, kw), output
    (N, O, Ho, Wo) (Winograd: 16 or 36 per 2x2 or 4x4 tile and channel pair)."""
    o, c, kh, kw = weight_shape
    n, _, ho, wo = out_shape
    if algorithm == "winograd2":
        return 16 * n * -(-ho // 2) * -(-wo // 2) * c * o
    if algorithm == "winograd4":
        return 36 * n * -(-ho // 4) * -(-wo // 4) * c * o
    return kh * kw * n * ho * wo * c * o


def layer_floors(layers, input_shape, output_shapes, gemm_rate, memory_rate):
    """Per layer of a float32 gradient pass (no parameter gradients), the least time its
    work can take on this machine: its GEMMs' multiply-adds at ``gemm_rate`` (FLOP/s), and
    the bytes it must move at ``memory_rate`` (bytes/s; both from :func:`machine_rates`).
    Forward: read the input and the parameters as the GEMMs read them (a Winograd conv:
    its kernel transform), write the output; backward: read the incoming signal and the
    parameters, or what the forward kept (a ReLU's output, a pool's switches), write the
    outgoing signal. A conv's ReLU runs inside it, so a ReLU's forward has no floor.
    layers: [(name, layer)]; shapes (N, ...). -> [{forward_gemm_ms, forward_memory_ms,
    backward_gemm_ms, backward_memory_ms}] (None where a floor does not apply)."""
    floors, shape = [], tuple(input_shape)
    for (_, layer), out_shape in zip(layers, output_shapes):
        size_in, size_out = 4 * int(np.prod(shape)), 4 * int(np.prod(out_shape))
        row = dict.fromkeys(("forward_gemm_ms", "forward_memory_ms", "backward_gemm_ms",
                             "backward_memory_ms"))
        if layer.kind == "conv2d":
            w = tuple(layer.params["weight"].shape)
            for direction, key, signal in (("forward", "forward", shape),
                                           ("backward_input", "backward", out_shape)):
                algorithm, _ = conv_algorithm(direction, signal, w, layer.stride, layer.pad)
                # the kernel as the GEMMs read it: its transform, or the weight itself
                per_pair = {"winograd2": 16, "winograd4": 36}.get(algorithm, w[2] * w[3])
                multiplies = conv_multiplies(algorithm, w, out_shape)
                moved = size_in + size_out + 4 * per_pair * w[0] * w[1]
                row[key + "_gemm_ms"] = 1e3 * 2 * multiplies / gemm_rate
                row[key + "_memory_ms"] = 1e3 * moved / memory_rate
        elif layer.kind == "linear":
            weight = int(np.prod(layer.params["weight"].shape))
            for key in ("forward", "backward"):
                row[key + "_gemm_ms"] = 1e3 * 2 * weight * shape[0] / gemm_rate
                row[key + "_memory_ms"] = 1e3 * (size_in + size_out + 4 * weight) / memory_rate
        elif layer.kind == "maxpool2d":
            switches = size_out // 4                              # one byte a window
            row["forward_memory_ms"] = row["backward_memory_ms"] = (
                1e3 * (size_in + size_out + switches) / memory_rate)
        elif layer.kind == "relu":                        # signal and output in, signal out
            row["backward_memory_ms"] = 1e3 * 3 * size_in / memory_rate
        floors.append(row)
        shape = tuple(out_shape)
    return floors


def run_child(spec):
    cmd = [sys.executable, "-m", CHILD_MODULE, "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['engine']} child failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
