"""Which algorithm computes a conv: a fixed shape rule, or chosen by measuring the
candidates on this machine.

A 3x3, stride-1, pad-1 conv has three algorithms on the CPU: im2col + one GEMM, Winograd
F(2x2, 3x3) and F(4x4, 3x3) (F(2x2) only for the weight gradient). Which is fastest
depends on the shape, the batch, the direction and the processor (its cache, its memory
bandwidth, the GEMM kernel its BLAS picks), so, as cuDNN's benchmark mode or FFTW's
wisdom do, the dispatcher can time them once per *key* (direction, input shape, weight
shape, dtype, threads) and keep the fastest for the rest of the process.

The policy (``MINICNN_CONV`` in the environment, or :func:`conv_policy` /
:func:`set_conv_policy`):

- ``rule`` (the default): the shape rule measured on this project's machine (F(2x2) for
  the VGG convs, F(4x4) for the wide ones with enough tiles; :func:`rule_choice`). The
  same choice on every machine, so results agree between machines bit for bit (given
  the same BLAS kernel).
- ``measure``: the first call of a key times each candidate (one warm-up
  call, then the best of :data:`TIMED_ROUNDS` calls taken in turn), a dozen or so calls; later
  calls look the key up. The choices are remembered in a small JSON file per machine
  (``~/.cache/minicnn/conv-wisdom-<machine>.json``, or the file ``MINICNN_CONV_WISDOM``
  names; ``off``: none), read at the first measurement and written atomically after
  each, so later processes on this machine start with them and agree with each other.
  Not the default: on this project's machine (a shared 2-core virtual machine whose
  timings drift by tens of percent) the choices it measured made the VGG16 pass slower
  than the rule (README, "Which conv algorithm").
- ``im2col``, ``winograd2``, ``winograd4``: that algorithm wherever it applies (the rule
  elsewhere): for tests, study and reproducible benchmarks.

A given choice computes the same values every time; different choices agree up to
rounding. :func:`frozen` runs a block with a fixed table of choices (keys not in it take
the rule): the evaluation measures once in its main process and hands that table to
every worker, so records do not depend on which process computed them. On a GPU the
choice is im2col (one large cuBLAS GEMM beats Winograd's many small ones and its
elementwise kernels; not measured there).
"""
import contextlib
import contextvars
import functools
import json
import os
import threading
import time

import numpy

from ..backend import get_array_module

ALGORITHMS = ("im2col", "winograd2", "winograd4")
POLICIES = ("rule", "measure") + ALGORITHMS
DIRECTIONS = ("forward", "backward_input", "backward_params")
# one warm-up call each (scratch buffers, kernel transforms), then this many rounds of
# one timed call each, the candidates in turn
TIMED_ROUNDS = 4
# a candidate whose first timed call takes this many times the fastest one's is dropped
SKIP_SLOWER = 3.0
# another algorithm replaces the rule's choice only when it is this much faster: single
# timings on a shared machine vary by tens of percent
MARGIN = 0.15
# a conv this small is not worth timing (the timing costs more than any choice saves)
MEASURE_MIN_MACS = 1 << 22
# F(2x2) / F(4x4) only pay off once both channel counts are this large (see winograd.py);
# below it the candidates are not even timed
WINOGRAD_MIN_CHANNELS = 16
F4_MIN_CHANNELS = 256
F4_MIN_TILES = 256
MAX_WISDOM_BYTES = 1 << 20

_lock = threading.RLock()
_table = {}                 # key -> algorithm, this process's measurements
# a policy() block's policy and a frozen() block's table: context variables, so that
# minicnn's pool threads (which run in a copy of the caller's context) see them too
_policy_block = contextvars.ContextVar("minicnn_conv_policy", default=None)
_frozen = contextvars.ContextVar("minicnn_conv_frozen", default=None)
_recording = contextvars.ContextVar("minicnn_conv_recording", default=None)
_policy = None
_wisdom_loaded = None       # the wisdom file read so far (its path)


class ConvPolicyError(ValueError):
    """A bad MINICNN_CONV value or policy name."""


def _checked(name, what="conv policy"):
    if name not in POLICIES:
        raise ConvPolicyError(f"{what} must be one of {', '.join(POLICIES)}, got {name!r}")
    return name


@contextlib.contextmanager
def _within(variable, value):
    """``variable`` (a ContextVar) set to ``value`` for the block."""
    token = variable.set(value)
    try:
        yield value
    finally:
        variable.reset(token)


def conv_policy():
    """The policy in force: a :func:`policy` block's, else set_conv_policy's, else
    MINICNN_CONV, else "rule"."""
    if _policy_block.get() is not None:
        return _policy_block.get()
    if _policy is not None:
        return _policy
    return _checked(os.environ.get("MINICNN_CONV", "").strip() or "rule", "MINICNN_CONV")


def set_conv_policy(policy):
    """Set the policy for this process (None: back to MINICNN_CONV / "rule")."""
    global _policy
    _policy = None if policy is None else _checked(policy)


def policy(name):
    """Run a block under another policy (this thread and the pool threads it starts)."""
    return _within(_policy_block, _checked(name))


def conv_key(direction, x_shape, weight_shape, dtype):
    """The text key of a conv call, e.g. ``forward 1x64x224x224 64x64x3x3 float32``."""
    return " ".join((direction, "x".join(map(str, x_shape)), "x".join(map(str, weight_shape)),
                     numpy.dtype(dtype).name))


def _measured_key(key):
    """The key of this process's measurements and the wisdom file: the conv's key and the
    threads it runs on (minicnn's count; 1 inside a worker thread, such as a training
    shard, where it runs serially), which changes what is fastest."""
    from ..threads import effective_threads
    return f"{key} @{effective_threads()}t"


def _tiles4(x_shape):
    n, _, h, w = x_shape
    return n * -(-h // 4) * -(-w // 4)


def candidates(direction, x_shape, weight_shape, stride, pad):
    """The algorithms that can compute this CPU conv and may win: im2col always; the
    Winograd ones for a 3x3, stride-1, pad-1 conv with enough channels (F(4x4) not for the
    weight gradient). ``x_shape`` is the conv's input (for backward_input: dy's)."""
    o, c, kh, kw = weight_shape
    if not ((kh, kw) == (3, 3) and stride == 1 and pad == 1
            and min(o, c) >= WINOGRAD_MIN_CHANNELS):
        return ("im2col",)
    if direction == "backward_params":
        return ("im2col", "winograd2")
    return ALGORITHMS


def rule_choice(direction, x_shape, weight_shape, stride, pad):
    """The shape rule (the choice measured on this project's AMD EPYC, docs/winograd.md):
    F(2x2) for every VGG conv, F(4x4) instead for the forward and transposed conv when
    both channel counts are >= 256 and there are >= 256 4x4 tiles."""
    options = candidates(direction, x_shape, weight_shape, stride, pad)
    if "winograd4" in options and (min(weight_shape[:2]) >= F4_MIN_CHANNELS
                                   and _tiles4(x_shape) >= F4_MIN_TILES):
        return "winograd4"
    return "winograd2" if "winograd2" in options else "im2col"


def choices():
    """{"key @Nt": algorithm} this process has measured (or read from the wisdom file) at
    N threads."""
    with _lock:
        return dict(_table)


def frozen(table):
    """Within the block (this thread and minicnn's pool threads it starts), choices come
    from ``table`` ({key: algorithm}); keys not in it take the rule; nothing is timed."""
    return _within(_frozen, _valid_table(table))


def frozen_table():
    """The table of the innermost :func:`frozen` block, or None."""
    return _frozen.get()


def recording():
    """Yields a dict that collects {key: algorithm} of every measured conv call in the
    block (whether measured now or looked up), e.g. to hand a run's choices to others."""
    return _within(_recording, {})


def _valid_table(table):
    """{str key: known algorithm} from ``table``; anything else is left out."""
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items()
            if isinstance(k, str) and len(k) < 300 and v in ALGORITHMS}


def decided(direction, x_shape, weight_shape, dtype, stride, pad):
    """(algorithm, key) for a CPU conv without timing anything: the algorithm this
    process runs it with, None where the measuring policy has yet to measure it; the key
    when the measuring policy decides this conv, else None."""
    options = candidates(direction, x_shape, weight_shape, stride, pad)
    if len(options) == 1:
        return options[0], None
    rule = rule_choice(direction, x_shape, weight_shape, stride, pad)
    key = conv_key(direction, x_shape, weight_shape, dtype)
    table = frozen_table()
    if table is not None:
        return (table[key] if table.get(key) in options else rule), None
    name = conv_policy()
    if name in ALGORITHMS:
        return (name if name in options else rule), None
    if name == "rule" or _macs(x_shape, weight_shape) < MEASURE_MIN_MACS:
        return rule, None
    chosen = _table.get(_measured_key(key))
    return (chosen if chosen in options else None), key


def choose(direction, x, weight_shape, stride, pad, run):
    """The algorithm for this call (see :func:`decided`), measured now when the measuring
    policy has not yet. ``run(algorithm)`` computes the conv with it (used only to time
    the candidates, its results thrown away)."""
    if get_array_module(x) is not numpy:
        return "im2col"
    chosen, key = decided(direction, x.shape, weight_shape, x.dtype, stride, pad)
    if key is None:
        return chosen
    if chosen is None:
        with _lock:    # one measurement at a time: two would disturb each other's timings
            _load_wisdom()
            chosen, _ = decided(direction, x.shape, weight_shape, x.dtype, stride, pad)
            if chosen is None:       # not in the wisdom file, nor from another thread
                default = rule_choice(direction, x.shape, weight_shape, stride, pad)
                chosen = _table[_measured_key(key)] = _fastest(
                    candidates(direction, x.shape, weight_shape, stride, pad), run, default)
                _save_wisdom()
    if _recording.get() is not None:
        _recording.get()[key] = chosen
    return chosen


def _macs(x_shape, weight_shape):
    n, _, h, w = x_shape
    o, c, kh, kw = weight_shape
    return n * h * w * o * c * kh * kw


def _fastest(options, run, default):
    """The candidate with the shortest best time over TIMED_ROUNDS rounds, each round
    timing every candidate once in turn (so that the machine's drift, which on a shared
    virtual machine is tens of percent within seconds, falls on all of them alike). Each
    is warmed up first, untimed: a warm-up computes the Winograd kernel transforms (100
    ms for a 512x512 conv), which later calls reuse. One whose first timed call takes
    SKIP_SLOWER times the fastest first call is not timed again. Another than
    ``default`` (the rule's choice) must beat it by MARGIN, so that a near tie keeps the
    same choice from run to run."""
    for algorithm in options:
        run(algorithm)
    times = {a: _timed(run, a) for a in options}
    kept = [a for a in options if times[a] <= SKIP_SLOWER * min(times.values())]
    for _ in range(TIMED_ROUNDS - 1):
        for algorithm in kept:
            times[algorithm] = min(times[algorithm], _timed(run, algorithm))
    _evict.clear()                  # the eviction buffer is not kept between measurements
    best = min(kept, key=times.get)
    if default in kept and times[best] * (1 + MARGIN) > times[default]:
        return default
    return best


def _timed(run, algorithm):
    """Seconds of one call, started with cold caches: inside a pass a conv's weights and
    input come from memory (the layers before have filled the caches), so a candidate
    timed on a warm repeat of itself looks faster than it runs there."""
    _evict_caches()
    start = time.perf_counter()
    run(algorithm)
    return time.perf_counter() - start


# more than the last-level cache of today's processors (32-256 MiB): written through once
# before each timed call
EVICT_BYTES = 1 << 26
_evict = []


def _evict_caches():
    if not _evict:
        _evict.append(numpy.zeros(EVICT_BYTES // 4, numpy.float32))
    _evict[0] += 1.0


# ----------------------------------------------------------------------------- wisdom file

def wisdom_path():
    """The wisdom file: MINICNN_CONV_WISDOM's, None for "off", by default one per machine
    in the user's cache folder (XDG_CACHE_HOME, else ~/.cache)."""
    path = os.environ.get("MINICNN_CONV_WISDOM", "").strip()
    if path.lower() == "off":
        return None
    if path:
        return path
    import hashlib
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = hashlib.sha256(machine_tag().encode()).hexdigest()[:12]
    return os.path.join(cache, "minicnn", f"conv-wisdom-{tag}.json")


@functools.lru_cache(maxsize=1)
def machine_tag():
    """What a wisdom file's choices hold for: processor model, the BLAS and its kernel,
    NumPy's version."""
    model = "unknown processor"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        import platform
        model = platform.processor() or model
    return f"{model} | {_numpy_blas()} | numpy {numpy.__version__}"


def _numpy_blas():
    """NumPy's own BLAS and the kernel it runs (other libraries, SciPy's OpenBLAS say, may
    be loaded too, in an order that changes from run to run)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown BLAS"
    site = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    blas = {}                                       # description -> NumPy's own?
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            folder = os.path.dirname(info.get("filepath", ""))
            text = f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
            blas[text] = blas.get(text, False) or (
                os.path.basename(folder).startswith("numpy") and os.path.dirname(folder) == site)
    own = sorted(text for text, numpys in blas.items() if numpys)
    return own[0] if own else " + ".join(sorted(blas)) or "unknown BLAS"


def _load_wisdom():
    """Adopt the wisdom file's choices once per path (lock held). A file that is not a
    regular file, too large, not JSON, or made for another machine is ignored (and
    replaced by the next save)."""
    global _wisdom_loaded
    path = wisdom_path()
    if path is None or path == _wisdom_loaded:
        return
    _wisdom_loaded = path
    for key, algorithm in _read_wisdom(path).items():
        _table.setdefault(key, algorithm)


def _read_wisdom(path):
    """{key: algorithm} of the wisdom file at ``path`` when it is sound and made on this
    machine, else {}."""
    from ..outfolder import read_bounded
    try:
        data = json.loads(read_bounded(path, MAX_WISDOM_BYTES, follow_links=True))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if isinstance(data, dict) and data.get("machine") == machine_tag():
        return _valid_table(data.get("choices"))
    return {}


def _save_wisdom():
    """Write this process's choices to the wisdom file, atomically (lock held); a file
    that cannot be written costs only the next process's measurements."""
    path = wisdom_path()
    if path is None:
        return
    from pathlib import Path
    from ..io import atomic_write
    # another process may have added choices since this one read the file: keep them
    merged = {**_read_wisdom(path), **_table}
    text = json.dumps({"machine": machine_tag(), "choices": dict(sorted(merged.items()))},
                      indent=1)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
    except (OSError, ValueError):
        pass
