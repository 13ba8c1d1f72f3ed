"""The scratch slots of minicnn.functional.workspace: one buffer per role and thread,
reused, grown, and never shared between roles or threads."""
import threading

import numpy as np

from minicnn.functional import workspace


def test_a_role_gives_views_of_one_buffer_that_grows_when_asked_for_more():
    workspace.release()
    a = workspace.scratch("test.a", (4, 5), np.float32, np.zeros(1))
    assert a.shape == (4, 5) and a.dtype == np.float32
    again = workspace.scratch("test.a", (2, 3), np.float64, np.zeros(1))
    assert np.shares_memory(a, again)                   # the same memory, reused
    bigger = workspace.scratch("test.a", (100, 100), np.float32, np.zeros(1))
    assert bigger.shape == (100, 100) and workspace.held_bytes() == 40000
    other = workspace.scratch("test.b", (4, 5), np.float32, np.zeros(1))
    assert not np.shares_memory(bigger, other)          # roles never share memory
    workspace.release()
    assert workspace.held_bytes() == 0


def test_threads_have_their_own_buffers():
    mine = workspace.scratch("test.thread", (1000,), np.float32, np.zeros(1))
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(
        workspace.scratch("test.thread", (1000,), np.float32, np.zeros(1))))
    t.start()
    t.join()
    assert not np.shares_memory(mine, theirs[0])
    workspace.release()


# ------------------------------------------------------------------ recycled results

def _fresh_pool(monkeypatch, limit=1 << 30):
    workspace.release()
    monkeypatch.setattr(workspace, "_recycled", {})
    monkeypatch.setattr(workspace, "_recycled_bytes", 0)
    monkeypatch.setattr(workspace, "RECYCLED_BYTES", limit)


def test_a_result_nobody_refers_to_is_handed_out_again(monkeypatch):
    _fresh_pool(monkeypatch)
    a = workspace.recycled((3, 4), np.float32, np.zeros(1))
    address = a.ctypes.data
    del a
    b = workspace.recycled((3, 4), np.float32, np.zeros(1))
    assert b.ctypes.data == address
    assert workspace.recycled_bytes() == 48


def test_a_result_still_held_or_viewed_is_never_handed_out_again(monkeypatch):
    _fresh_pool(monkeypatch)
    held = workspace.recycled((3, 4), np.float32, np.zeros(1))
    held[...] = 7
    view = workspace.recycled((5, 6), np.float32, np.zeros(1))[1:, ::2].T
    view[...] = 8
    for _ in range(3):                  # every later request gets other memory
        other = workspace.recycled((3, 4), np.float32, np.zeros(1))
        other[...] = -1
        more = workspace.recycled((5, 6), np.float32, np.zeros(1))
        more[...] = -1
        assert not np.shares_memory(other, held) and not np.shares_memory(more, view)
    assert (held == 7).all() and (view == 8).all()


def test_results_of_one_byte_size_share_and_of_another_never(monkeypatch):
    _fresh_pool(monkeypatch)
    a = workspace.recycled((3, 4), np.float32, np.zeros(1))
    address = a.ctypes.data
    del a
    b = workspace.recycled((2, 2, 3), np.uint32, np.zeros(1))       # 48 bytes too
    assert b.ctypes.data == address and b.shape == (2, 2, 3) and b.dtype == np.uint32
    assert b.flags.c_contiguous and b.flags.writeable
    c = workspace.recycled((3, 4), np.float64, np.zeros(1))         # 96 bytes
    assert c.ctypes.data != address and c.dtype == np.float64


def test_threads_never_get_the_same_array_at_once(monkeypatch):
    _fresh_pool(monkeypatch)
    taken, lock = [], threading.Lock()

    def take():
        for _ in range(200):
            a = workspace.recycled((64,), np.float32, np.zeros(1))
            a[...] = threading.get_ident() % 1000
            with lock:
                taken.append(a)          # all held: no two may share memory
    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({a.ctypes.data for a in taken}) == len(taken) == 800


def test_the_byte_limit_holds_and_idle_arrays_make_room(monkeypatch):
    _fresh_pool(monkeypatch, limit=1000)
    a = workspace.recycled((200,), np.float32, np.zeros(1))         # 800 bytes: kept
    b = workspace.recycled((100,), np.float32, np.zeros(1))         # 400: over, not kept
    assert workspace.recycled_bytes() == 800
    del a
    c = workspace.recycled((100,), np.float32, np.zeros(1))         # the idle 800 go
    assert workspace.recycled_bytes() == 400
    del b, c
    workspace.release()
    assert workspace.recycled_bytes() == 0


def test_a_kept_forward_output_survives_later_passes():
    """End to end: arrays the caller keeps are never written by the next passes."""
    import minicnn
    net = minicnn.vgg_from_config([8, "M", 16], num_classes=3, input_size=(16, 16),
                                  fc_sizes=(12,))
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 2, 3, 16, 16), dtype=np.float32)
    y1 = net.forward(x1)
    g1 = net.backward(np.ones_like(y1))
    kept_y, kept_g = y1.copy(), g1.copy()
    for _ in range(3):
        y2 = net.forward(x2)
        net.backward(np.ones_like(y2))
    assert np.array_equal(y1, kept_y) and np.array_equal(g1, kept_g)
    again = net.forward(x1)
    assert np.array_equal(again, kept_y)     # and reused memory gives the same results
