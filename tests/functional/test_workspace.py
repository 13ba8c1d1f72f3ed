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
