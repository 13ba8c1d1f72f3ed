"""Scratch arrays and result arrays that the CPU fast paths reuse from call to call.

A pass asks for temporaries of the same sizes again and again (the transforms of every
Winograd chunk, the phases of every conv input). New arrays each time come from malloc,
and once malloc has handed freed memory back to the operating system they come back as
fresh pages, each of which faults on first touch: thousands of page faults per training
step. Instead each thread keeps one buffer per *role* (the name of a temporary), grown
to the largest size asked for, and hands out views of it.

The rule that makes this safe: an array from :func:`scratch` is valid until the same
thread asks for the same role again, so a role names one temporary of one step, never
two that are alive together, and the array never leaves the function that asked for it
(results come from :func:`recycled`).

Results (a layer's output, a signal, a parameter gradient) leave the function and may be
kept by anyone, so :func:`recycled` hands out an array again only once nothing refers to
it any more: not the caller, not a layer's cache, not a view of it. It keeps the buffers
it made, by byte size, and reuses one whose only reference is its own: the outputs
of the last pass once the next pass has replaced them in the caches, a signal as soon as
the layer below has consumed it (results of the same byte size share them). So the engine
owns its memory from pass to pass without any process-wide malloc setting.

On a GPU every call gives a new array: CuPy's memory pool already reuses device memory.
"""
import math
import os
import sys
import threading

import numpy

from ..backend import get_array_module

_local = threading.local()


def scratch(role, shape, dtype, like):
    """An uninitialised array of ``shape`` and ``dtype``, on ``like``'s device; on the CPU
    a view of this thread's buffer for ``role`` (valid until this thread asks for
    ``role`` again)."""
    xp = get_array_module(like)
    if xp is not numpy:
        return xp.empty(shape, dtype=dtype)
    dtype = numpy.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(role)
    if buffer is None or buffer.size < nbytes:
        buffers.pop(role, None)                 # free the smaller one before growing
        buffer = buffers[role] = numpy.empty(nbytes, dtype=numpy.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


def held_bytes():
    """Bytes this thread's scratch buffers hold."""
    return sum(b.size for b in _local.__dict__.get("buffers", {}).values())


def release():
    """Free this thread's scratch buffers (they grow back on the next pass), and the
    result arrays :func:`recycled` keeps that nothing else refers to."""
    _local.__dict__.pop("buffers", None)
    with _recycled_lock:
        _drop_all_idle()


def _quarter_of_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (AttributeError, OSError, ValueError):      # not POSIX
        return 1 << 30


# The buffers recycled() made, by byte size: at most RECYCLED_PER_SIZE of a size (as
# many as are alive together: two passes' worth for a pass whose caches still hold the
# last one, times the threads of a training step) and RECYCLED_BYTES in all (a quarter
# of the memory: the results of a VGG16 gradient pass at batch 8 take ~1 GiB a pass);
# beyond that results are plain new arrays. release() gives the idle ones back.
RECYCLED_PER_SIZE = 8
RECYCLED_BYTES = _quarter_of_memory()
_recycled = {}
_recycled_bytes = 0
_recycled_lock = threading.Lock()


def _reference_counts(kept):
    """sys.getrefcount of each array of the list ``kept``."""
    return [sys.getrefcount(array) for array in kept]


# the count of an array that only its list holds, measured the way recycled() looks
_IDLE = _reference_counts([numpy.empty(0)])[0]


def recycled(shape, dtype, like):
    """An uninitialised array of ``shape`` and ``dtype`` on ``like``'s device, for a
    result: on the CPU a view of a buffer of the same byte size that this function made
    before and that nothing refers to any more, else of a new one (kept for later while
    the limits allow)."""
    xp = get_array_module(like)
    if xp is not numpy:
        return xp.empty(shape, dtype=dtype)
    global _recycled_bytes
    shape, dtype = tuple(int(d) for d in shape), numpy.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    # by size, not shape: the output of a Winograd conv (N, H/2, 2, W/2, 2, C) and of the
    # im2col conv before it (N, H, W, C), or a pool's switches and a signal, share
    with _recycled_lock:    # taking an idle buffer and handing out a view is one step
        kept = _recycled.setdefault(nbytes, [])
        for buffer, count in zip(kept, _reference_counts(kept)):
            if count == _IDLE:
                return buffer.view(dtype).reshape(shape)
        buffer = numpy.empty(nbytes, dtype=numpy.uint8)
        if len(kept) < RECYCLED_PER_SIZE:
            if _recycled_bytes + nbytes > RECYCLED_BYTES:      # room from idle ones
                _drop_all_idle()
                kept = _recycled.setdefault(nbytes, [])
            if _recycled_bytes + nbytes <= RECYCLED_BYTES:
                kept.append(buffer)
                _recycled_bytes += nbytes
        return buffer.view(dtype).reshape(shape)


def _drop_all_idle():
    """Forget every kept buffer that nothing else refers to (lock held)."""
    global _recycled_bytes
    for size in list(_recycled):
        kept = _recycled[size]
        busy = [b for b, count in zip(kept, _reference_counts(kept)) if count != _IDLE]
        _recycled_bytes -= size * (len(kept) - len(busy))
        if busy:
            kept[:] = busy
        else:
            del _recycled[size]


def recycled_bytes():
    """Bytes of the result arrays :func:`recycled` keeps (idle or in use)."""
    return _recycled_bytes
