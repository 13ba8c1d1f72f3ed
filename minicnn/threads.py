"""CPU threads for the array work NumPy runs on one core.

NumPy releases the GIL inside array operations, so independent pieces of work (the
shards of a training batch, the tile-row groups of a Winograd conv) run in parallel in
plain threads. While they do, each BLAS call is limited to one thread (threadpoolctl),
so that the pieces' GEMMs share the cores instead of oversubscribing them. A call made
from inside a worker runs its items serially: no nested pools, no deadlock. Callers
split work by shape only, never by the thread count, so results do not depend on it.

The thread count is the number of CPUs this process may use, or the environment
variable MINICNN_THREADS when set; :func:`set_threads` changes it (1: everything runs
serially in the calling thread). Whatever the count, the engine's BLAS calls run on one
BLAS thread (:func:`blas_on_one_thread`), so the same algorithms give the same results
at any count. (Under the measuring conv policy, not the default, the count is part of
what a conv's algorithm is chosen for: see minicnn/functional/conv_choice.py.)
"""
import contextlib
import contextvars
import os
import threading

_local = threading.local()
_lock = threading.Lock()
_state = {"threads": None, "pool": None, "pool_size": 0, "controller": None, "limit": None,
          "active": 0}


def _available_cpus():
    try:
        return len(os.sched_getaffinity(0))    # honours taskset / container CPU sets
    except AttributeError:                     # not on Linux
        return os.cpu_count() or 1


def _threads_from_environment():
    text = os.environ.get("MINICNN_THREADS")
    if text is None:
        return _available_cpus()
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
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"threads must be an integer >= 1, got {count!r}")
    with _lock:
        previous, _state["threads"] = get_threads(), count
    return previous


def _pool(workers):
    """The shared pool with ``workers`` threads (a new one when the count changed; a map
    still running on the old one keeps it alive until it ends); the BLAS controller."""
    with _lock:
        if _state["pool"] is None or _state["pool_size"] != workers:
            from concurrent.futures import ThreadPoolExecutor
            _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="minicnn")
            _state["pool_size"] = workers
        pool = _state["pool"]
    return pool, _controller()


def _controller():
    """The threadpoolctl controller of the BLAS libraries loaded now (made once)."""
    with _lock:
        if _state["controller"] is None:
            from threadpoolctl import ThreadpoolController
            _state["controller"] = ThreadpoolController()
        return _state["controller"]


def _release_blas_control():
    """Let the calling thread change OpenBLAS's thread count. threadpoolctl 3.8 lets
    only one Python thread at a time (the first to set a limit) change the
    process-wide pool of a pthreads OpenBLAS, and silently ignores the others: without
    this, the engine running in any thread but that one (a server's worker, say) would
    call BLAS on several threads, and round differently."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:                        # threadpoolctl before 3.0
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:                      # before 3.8 any thread could set it
        clear(force=True)


def _enter_blas_limit(controller):
    # process-global: the first of overlapping parallel_map calls limits BLAS to one
    # thread, the last restores it (each from whichever thread it runs in)
    with _lock:
        if _state["active"] == 0:
            _release_blas_control()
            _state["limit"] = controller.limit(limits=1, user_api="blas")
        _state["active"] += 1


def _leave_blas_limit():
    with _lock:
        _state["active"] -= 1
        if _state["active"] == 0:
            _release_blas_control()
            _state["limit"].restore_original_limits()
            _release_blas_control()
            _state["limit"] = None


def parallel_map(function, items):
    """[function(item) for item in items], the items spread over the threads (results in
    item order). Serial when there is one thread or one item, or inside a worker. Every
    item runs to the end before an exception (the first in item order) is re-raised;
    each runs in a copy of the caller's context (np.errstate holds there).

    The caller is one of the threads: it and count - 1 pool threads take the next item
    until none is left. Waking a pool thread costs tens of microseconds, and a VGG16
    pass makes over a hundred such calls, so the caller does not sit idle waiting for
    helpers it could have done without; which thread runs an item never changes its
    result (BLAS runs on one thread in all of them)."""
    items = list(items)
    count = min(get_threads(), len(items))
    if getattr(_local, "inside", False):
        return [function(item) for item in items]
    if count <= 1:
        # serially, but with BLAS on one thread as in the workers: the products then
        # round the same whatever the thread count
        with blas_on_one_thread():
            return [function(item) for item in items]
    pool, controller = _pool(get_threads() - 1)
    results, errors = [None] * len(items), [None] * len(items)
    indices = iter(range(len(items)))
    take = threading.Lock()

    def drain():
        _local.inside = True
        try:
            while True:
                with take:
                    i = next(indices, None)
                if i is None:
                    return
                try:
                    results[i] = function(items[i])
                except BaseException as exc:      # re-raised below, after every item
                    errors[i] = exc
        finally:
            _local.inside = False

    _enter_blas_limit(controller)
    try:
        helpers = [pool.submit(contextvars.copy_context().run, drain) for _ in range(count - 1)]
        contextvars.copy_context().run(drain)
        for helper in helpers:          # wait for all: no worker may outlive the call
            # one not yet started has nothing left to take (the caller drained the items):
            # cancelled, it cannot keep this call waiting behind a pool whose threads are
            # busy elsewhere (another thread's items)
            if not helper.cancel():
                helper.result()
    finally:
        _leave_blas_limit()
    for error in errors:
        if error is not None:
            raise error
    return results


def effective_threads():
    """The threads a parallel_map called here would use: 1 inside a worker (its calls run
    serially), else :func:`get_threads`."""
    return 1 if getattr(_local, "inside", False) else get_threads()


@contextlib.contextmanager
def blas_on_one_thread():
    """Run the block with BLAS limited to one thread (nested scopes and parallel_map
    share one limit). The engine's own threads do the parallel work: a BLAS call on
    several threads leaves OpenBLAS's threads spinning for a while after it returns,
    and they take the cores from minicnn's threads in the layers that follow. OpenBLAS
    on several threads may also round some products differently, so the engine's
    products run on one BLAS thread whatever minicnn's thread count."""
    if getattr(_local, "inside", False):
        yield
        return
    _enter_blas_limit(_controller())
    try:
        yield
    finally:
        _leave_blas_limit()


def split(length, parts):
    """``length`` cut into at most ``parts`` contiguous, non-empty slices of near-equal
    size (by shape alone: the same on every machine)."""
    parts = max(1, min(parts, length))
    bounds = [length * g // parts for g in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]
