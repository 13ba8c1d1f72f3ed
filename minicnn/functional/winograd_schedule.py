"""How a Winograd conv (F(2x2) in :mod:`.winograd`, F(4x4) in :mod:`.winograd4`) is cut
into chunks of tile rows and run over minicnn's threads; both variants share it."""
import math

import numpy

from ..backend import get_array_module
from ..threads import parallel_map, split
from .workspace import scratch


def result_dtype(*arrays):
    """The dtype a computation on ``arrays`` gives (NumPy / CuPy promotion)."""
    return get_array_module(*arrays).result_type(*(a.dtype for a in arrays))


# Tile rows are processed in chunks of about WINOGRAD_CHUNK elements of V (or M), so
# that the transforms of one chunk work in cache and V and M (4x the size of the input
# and output) never exist whole. A chunk's temporaries live in three scratch slots of
# the thread (:mod:`.workspace`), each reused as soon as its last value is dead, so
# that the next step writes into memory that is still in cache: "chunk1" holds the
# column pass of the input transform, then M; "chunk2" holds V, then the row pass of
# the output transform; "chunk3" the column pass of the output transform, the running
# sums of F(4x4) and dM of the weight gradient. A chunk has at least
# WINOGRAD_MIN_TILES tiles (GEMM rows), so that the GEMMs stay efficient. The chunks
# come in up to WINOGRAD_GROUPS groups of contiguous rows, which run on the CPU threads
# (:func:`chunk_map`), each group's chunks in order. The split depends on the shapes
# only, never on the thread count, so the sums (and their rounding) are the same on
# any machine whose BLAS picks the same GEMM kernel (the GEMMs' own rounding is the
# kernel's).
WINOGRAD_CHUNK = 1 << 20
WINOGRAD_MIN_TILES = 128
WINOGRAD_GROUPS = 4


def chunk_map(xp):
    """How the groups of a conv run: spread over CPU threads (each group's transforms
    and GEMMs are independent; see :mod:`minicnn.threads`), in order on a GPU."""
    if xp is numpy:
        return parallel_map
    return lambda function, items: [function(item) for item in items]


def row_groups(th, tiles_per_row, channels, components=16):
    """Tile rows 0..th-1 as groups of chunks: [[(r0, r1), ...], ...], in row order
    (``components`` transformed values per tile and channel: 16, or 36 for F(4x4))."""
    min_rows = max(-(-WINOGRAD_MIN_TILES // tiles_per_row), 1)
    groups = max(1, min(WINOGRAD_GROUPS, th // min_rows))
    step = max(WINOGRAD_CHUNK // (components * channels * tiles_per_row), min_rows)
    bounds = [th * g // groups for g in range(groups + 1)]
    return [[(r0, min(g1, r0 + step)) for r0 in range(g0, g1, step)]
            for g0, g1 in zip(bounds, bounds[1:])]


def run_transforms(src, u_t, bias, y, transform_input, transform_output, relu=False):
    """The steps of a Winograd conv, scheduled over the CPU threads; shared by F(2x2) and
    F(4x4). src: the input as its transforms read it (channels
    last); u_t (K, C, O), K = 16 or 36 components; y (N, th, m, tw, m, O), the output
    tiles, written in place. transform_input(src, r0, r1, out=None) -> V (K, T, C) of
    tile rows r0..r1-1; transform_output(M, y_rows, bias, relu) writes those rows,
    rectified with ``relu`` while still in cache (a ReLU after the conv, fused: no pass
    of its own over the output).

    Tile rows run in chunks and groups (:func:`row_groups`). With too few tiles for
    more than one group (deep layers at a small batch) the three steps are cut another
    way each: the input transform by channel slices, the K GEMMs in groups of
    components, the output transform by output-channel slices. The sums are the same
    either way."""
    xp = get_array_module(src)
    n, th, _, tw = y.shape[:4]
    components, c, o = u_t.shape
    side = math.isqrt(components)                                 # 4 or 6 values a side
    run = chunk_map(xp)
    groups = row_groups(th, n * tw, max(c, o), components)
    if len(groups) > 1:
        def group(chunks):
            for r0, r1 in chunks:                                  # (T, C) @ (C, O)
                v = transform_input(src, r0, r1)
                m = scratch("chunk1", v.shape[:2] + (o,), y.dtype, y)
                transform_output(xp.matmul(v, u_t, out=m), y[:, r0:r1], bias, relu)
        run(group, groups)
        return
    tiles = n * th * tw
    v = scratch("few.v", (side, side, n, th, tw, c), y.dtype, y)
    run(lambda s: transform_input(src[..., s], 0, th, out=v[..., s]), split(c, WINOGRAD_GROUPS))
    v = v.reshape(components, tiles, c)
    m = scratch("few.m", (components, tiles, o), y.dtype, y)
    run(lambda k: xp.matmul(v[k], u_t[k], out=m[k]), split(components, WINOGRAD_GROUPS))
    run(lambda s: transform_output(m[:, :, s], y[..., s], None if bias is None else bias[s],
                                   relu), split(o, WINOGRAD_GROUPS))
