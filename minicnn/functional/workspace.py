"""Scratch arrays that the CPU fast paths reuse from call to call.

A pass asks for temporaries of the same sizes again and again (the transforms of every
Winograd chunk, the phases of every conv input). New arrays each time come from malloc,
and once malloc has handed freed memory back to the operating system they come back as
fresh pages, each of which faults on first touch: thousands of page faults per training
step. Instead each thread keeps one buffer per *role* (the name of a temporary), grown
to the largest size asked for, and hands out views of it.

The rule that makes this safe: an array from :func:`scratch` is valid until the same
thread asks for the same role again, so a role names one temporary of one step, never
two that are alive together, and the array never leaves the function that asked for it
(results are always new arrays). On a GPU every call gives a new array: CuPy's memory
pool already reuses device memory.
"""
import math
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
    """Free this thread's scratch buffers (they grow back on the next pass)."""
    _local.__dict__.pop("buffers", None)
