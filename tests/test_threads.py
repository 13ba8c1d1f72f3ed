"""minicnn.threads: the CPU thread pool behind DataParallel and the Winograd chunks."""
import threading

import numpy as np
import pytest

from minicnn import threads
from minicnn.functional import winograd
from minicnn.functional import conv_choice, winograd_schedule
from minicnn import functional


def test_parallel_map_keeps_item_order_and_uses_worker_threads(two_threads):
    import time
    caller = threading.current_thread().name

    def item(i):
        time.sleep(0.02)          # long enough that the pool thread takes some items
        return i, threading.current_thread().name
    names = threads.parallel_map(item, range(6))
    assert [i for i, _ in names] == list(range(6))
    # the caller takes items too, beside the pool's thread
    assert {name for _, name in names} == {caller, "minicnn_0"}


def test_nested_calls_run_serially_inside_the_worker(two_threads):
    def outer(i):
        inner = threads.parallel_map(lambda j: threading.current_thread().name, range(3))
        return len(set(inner)) == 1 and inner[0] == threading.current_thread().name
    assert all(threads.parallel_map(outer, range(4)))


def test_one_thread_runs_in_the_caller():
    previous = threads.set_threads(1)
    try:
        names = threads.parallel_map(lambda i: threading.current_thread().name, range(3))
    finally:
        threads.set_threads(previous)
    assert set(names) == {threading.current_thread().name}


def test_exceptions_propagate(two_threads):
    def fail(i):
        if i == 2:
            raise KeyError("boom")
        return i
    with pytest.raises(KeyError, match="boom"):
        threads.parallel_map(fail, range(4))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_set_threads_rejects_non_positive_integers(bad):
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        threads.set_threads(bad)


def test_environment_variable_is_validated(monkeypatch):
    monkeypatch.setenv("MINICNN_THREADS", "two")
    with pytest.raises(ValueError, match="MINICNN_THREADS must be an integer >= 1, got 'two'"):
        threads._threads_from_environment()
    monkeypatch.setenv("MINICNN_THREADS", "3")
    assert threads._threads_from_environment() == 3


def assert_same_on_one_and_more_threads(passes, count):
    """passes() returns arrays: bitwise the same on 1 thread and on ``count``."""
    previous = threads.set_threads(1)
    try:
        serial = passes()
        threads.set_threads(count)
        threaded = passes()
    finally:
        threads.set_threads(previous)
    assert len(serial) == len(threaded)
    for a, b in zip(threaded, serial):
        np.testing.assert_array_equal(a, b)


def test_the_winograd_split_depends_on_shapes_only():
    """Groups and chunks are the same whatever the thread count (so are the sums)."""
    splits = []
    for count in (1, 2, 3, 8):
        previous = threads.set_threads(count)
        try:
            splits.append([winograd_schedule.row_groups(th, tpr, ch) for th, tpr, ch in
                           ((112, 112, 64), (28, 28, 256), (7, 7, 512), (16, 512, 128))])
        finally:
            threads.set_threads(previous)
    assert all(split == splits[0] for split in splits)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_winograd_groups_in_threads_equal_the_serial_result(monkeypatch, count):
    """Many groups and chunks (tiny WINOGRAD_CHUNK) spread over threads: the conv, its
    transpose and its weight gradient equal the single-thread run bitwise (the same sums
    in the same order; BLAS splits GEMMs by rows/columns, never the summed axis)."""
    rng = np.random.default_rng(count)
    k = conv_choice.WINOGRAD_MIN_CHANNELS
    x = rng.standard_normal((2, k, 11, 9)).astype(np.float32)
    weight = rng.standard_normal((k, k, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, k, 11, 9)).astype(np.float32)
    monkeypatch.setattr(winograd_schedule, "WINOGRAD_CHUNK", 1)
    monkeypatch.setattr(winograd_schedule, "WINOGRAD_MIN_TILES", 1)

    def passes():
        return (functional.winograd_conv2d_forward(x, weight, None), functional.winograd_conv2d_backward_input(dy, weight),
                winograd.winograd_conv3x3_backward_params(dy, x)[0])
    assert_same_on_one_and_more_threads(passes, count)


def test_every_item_finishes_before_an_exception_is_raised(two_threads):
    import time
    finished = []

    def work(i):
        if i == 0:
            raise KeyError("first")
        time.sleep(0.05)
        finished.append(i)
    with pytest.raises(KeyError, match="first"):
        threads.parallel_map(work, range(4))
    assert sorted(finished) == [1, 2, 3]


def test_overlapping_calls_restore_the_blas_thread_count(two_threads):
    from threadpoolctl import threadpool_info
    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    before = blas_threads()
    barrier = threading.Barrier(2)

    def caller():
        threads.parallel_map(lambda i: barrier.wait() if i == 0 else None, range(2))
    outer = [threading.Thread(target=caller) for _ in range(2)]
    for t in outer:
        t.start()
    for t in outer:
        t.join()
    assert blas_threads() == before


def test_errstate_holds_inside_workers(two_threads):
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            threads.parallel_map(lambda i: np.float32(3e38) * np.float32(10), range(2))


def test_split_cuts_by_length_only():
    assert threads.split(10, 4) == [slice(0, 2), slice(2, 5), slice(5, 7), slice(7, 10)]
    assert threads.split(3, 4) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert threads.split(1, 4) == [slice(0, 1)]


def test_blas_on_one_thread_limits_and_restores(two_threads):
    # the BLAS libraries loaded when minicnn's pool started (NumPy's among them); other
    # test modules may load more into this process later, e.g. SciPy's
    _, controller = threads._pool(threads.get_threads())
    def blas_threads():
        return [i["num_threads"] for i in controller.info() if i["user_api"] == "blas"]
    assert blas_threads()
    before = blas_threads()
    with threads.blas_on_one_thread():
        assert all(count == 1 for count in blas_threads())
        with threads.blas_on_one_thread():          # nested scopes share the limit
            pass
        assert all(count == 1 for count in blas_threads())
    assert blas_threads() == before


def test_blas_on_one_thread_limits_in_any_python_thread(two_threads):
    """The limit holds when the engine runs in a thread other than the one that first
    limited BLAS (threadpoolctl 3.8 ignores every other thread unless told), and the
    engine's results are then those of the main thread, bitwise."""
    from minicnn import functional as F
    _, controller = threads._pool(threads.get_threads())

    def blas_threads():
        return [i["num_threads"] for i in controller.info() if i["user_api"] == "blas"]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 40, 40)).astype(np.float32)   # an im2col conv
    weight = rng.standard_normal((32, 3, 3, 3)).astype(np.float32)
    with threads.blas_on_one_thread():                # the main thread limits first
        pass
    in_main = F.conv2d_forward(x, weight, None, 1, 1)
    seen = {}

    def elsewhere():
        with threads.blas_on_one_thread():
            seen["inside"] = blas_threads()
        seen["conv"] = F.conv2d_forward(x, weight, None, 1, 1)
    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert seen["inside"] and all(count == 1 for count in seen["inside"])
    assert np.array_equal(seen["conv"], in_main)
    with threads.blas_on_one_thread():                # and the main thread still can
        assert all(count == 1 for count in blas_threads())


@pytest.mark.parametrize("count", [2, 3])
def test_sliced_convs_and_linear_layers_in_threads_equal_the_serial_result(count):
    """The paths cut by channels, Winograd components, features, rows and positions (a
    deep conv at batch 1 has too few tiles for row groups; fc layers; im2col convs)
    give the single-thread result bitwise."""
    from minicnn import functional as F
    rng = np.random.default_rng(count)
    x = rng.standard_normal((1, 40, 6, 6)).astype(np.float32)
    weight = rng.standard_normal((36, 40, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(36).astype(np.float32)
    dy = rng.standard_normal((1, 36, 6, 6)).astype(np.float32)
    assert len(winograd_schedule.row_groups(3, 3, 40)) == 1       # the in-parts path
    # fc sizes at which OpenBLAS would use its own threads (and round differently)
    xf = rng.standard_normal((2, 1000)).astype(np.float32)
    wf = rng.standard_normal((4096, 1000)).astype(np.float32)
    bf = rng.standard_normal(4096).astype(np.float32)
    dyf = rng.standard_normal((2, 4096)).astype(np.float32)
    # an im2col conv (5x5, stride 2): row slabs, position slices, channel slices
    xs = rng.standard_normal((2, 8, 37, 31)).astype(np.float32)
    ws = rng.standard_normal((24, 8, 5, 5)).astype(np.float32)
    dys = rng.standard_normal((2, 24, 19, 16)).astype(np.float32)

    def passes():
        return (F.conv2d_forward(x, weight, bias, 1, 1), F.conv2d_backward_input(dy, weight, x.shape, 1, 1),
                F.conv2d_backward_params(dy, x, weight.shape, 1, 1)[0],
                F.linear_forward(xf, wf, bf), F.linear_backward_input(dyf, wf),
                F.linear_backward_params(dyf, xf)[0],
                F.conv2d_forward(xs, ws, None, 2, 2), F.conv2d_backward_input(dys, ws, xs.shape, 2, 2),
                F.conv2d_backward_params(dys, xs, ws.shape, 2, 2)[0])
    assert_same_on_one_and_more_threads(passes, count)
