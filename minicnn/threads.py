"""CPU threads for the array work NumPy runs on one core.

NumPy releases the GIL inside array operations, so independent pieces of work (the
shards of a training batch, the tile-row chunks of a Winograd conv) run in parallel in
plain threads. While they do, each BLAS call is limited to one thread (threadpoolctl),
so that the pieces' GEMMs share the cores instead of oversubscribing them. A call made
from inside a worker runs its items serially: no nested pools, no deadlock.

The thread count is ``os.cpu_count()``, or the environment variable MINICNN_THREADS
when set; :func:`set_threads` changes it (1: everything runs serially, as NumPy would).
"""
import os
import threading

_local = threading.local()
_lock = threading.Lock()
_state = {"threads": None, "pool": None, "pool_size": 0, "controller": None}


def _threads_from_environment():
    text = os.environ.get("MINICNN_THREADS")
    if text is None:
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"MINICNN_THREADS must be an integer >= 1, got {text!r}")
    return value


def get_threads():
    """Number of threads :func:`parallel_map` uses."""
    if _state["threads"] is None:
        _state["threads"] = _threads_from_environment()
    return _state["threads"]


def set_threads(count):
    """Use ``count`` (>= 1) threads from now on; returns the previous count."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"threads must be an integer >= 1, got {count!r}")
    previous, _state["threads"] = get_threads(), count
    return previous


def _pool_and_controller(count):
    with _lock:
        if _state["pool"] is None or _state["pool_size"] != count:
            from concurrent.futures import ThreadPoolExecutor
            from threadpoolctl import ThreadpoolController
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=False)
            _state["pool"] = ThreadPoolExecutor(count, thread_name_prefix="minicnn")
            _state["pool_size"] = count
            if _state["controller"] is None:
                _state["controller"] = ThreadpoolController()
        return _state["pool"], _state["controller"]


def parallel_map(function, items):
    """[function(item) for item in items], the items spread over the threads (results in
    item order). Serial when there is one thread or one item, or inside a worker."""
    items = list(items)
    count = min(get_threads(), len(items))
    if count <= 1 or getattr(_local, "inside", False):
        return [function(item) for item in items]
    pool, controller = _pool_and_controller(get_threads())

    def run(item):
        _local.inside = True
        try:
            return function(item)
        finally:
            _local.inside = False

    with controller.limit(limits=1, user_api="blas"):
        return list(pool.map(run, items))
