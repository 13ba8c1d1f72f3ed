"""Winograd F(2x2, 3x3): the fast path for the 3x3, stride-1, pad-1 convs of every VGG.

Same sums as the im2col path of :mod:`minicnn.functional.reference` (up to rounding),
with 4 multiplies per output pixel and channel pair instead of 9. The forward, the
transposed conv of the backward pass and the weight gradient all use the transforms
below; docs/winograd.md derives them and shows how the backward passes reuse them.
Works in any float dtype (float32 and float64 alike) on NumPy and CuPy; the dispatcher
(:mod:`minicnn.functional`) runs it on the CPU only.
"""
import math

import numpy

from ..backend import get_array_module
from ..threads import parallel_map, split
from .reference import relu_forward
from .workspace import recycled, scratch

# Winograd trades GEMM work (about C*O per pixel) for transforms of the input and output
# (about C + O per pixel): it pays off once both channel counts are at least this. The
# first conv of an RGB network (C = 3) and its transpose stay on im2col.
WINOGRAD_MIN_CHANNELS = 16


def is_winograd_conv(weight_shape, stride, pad):
    """True for the convs of every VGG (3x3 kernel, stride 1, pad 1: output size = input
    size) with at least WINOGRAD_MIN_CHANNELS input and output channels."""
    o, c, kh, kw = weight_shape
    return ((kh, kw) == (3, 3) and stride == 1 and pad == 1
            and min(o, c) >= WINOGRAD_MIN_CHANNELS)


def conv2d_forward(x, weight, bias, kernels=None, relu=False):
    """3x3 stride-1 pad-1 conv: x (N, C, H, W), weight (O, C, 3, 3), bias (O,) or None
    -> (N, O, H, W), a view of a channels-last buffer; rectified (max(y, 0)) with
    ``relu``. F(4x4, 3x3) where :func:`.winograd4.use_f4` picks it by shape, else
    F(2x2, 3x3). ``kernels``: a :class:`KernelTransforms` that remembers the weight's
    transforms between calls."""
    from . import winograd4
    f4 = winograd4.use_f4(x.shape, weight.shape)
    u = _kernel(weight, _dtype(x, weight), kernels, flipped=False, f4=f4)
    return (winograd4.winograd4_conv3x3 if f4 else winograd_conv3x3)(x, u, bias, relu)


def conv2d_backward_input(dy, weight, kernels=None):
    """Transposed 3x3 stride-1 pad-1 conv: dy (N, O, H, W) -> (N, C, H, W), the 3x3
    pad-1 conv of dy with the flipped, transposed kernel, by Winograd (F(4x4) or F(2x2)
    as for a forward conv of that kernel)."""
    from . import winograd4
    o, c = weight.shape[:2]
    f4 = winograd4.use_f4(dy.shape, (c, o, 3, 3))
    u = _kernel(weight, _dtype(dy, weight), kernels, flipped=True, f4=f4)
    return (winograd4.winograd4_conv3x3 if f4 else winograd_conv3x3)(dy, u, None)


def conv2d_backward_params(dy, x):
    """Parameter gradients of a 3x3 stride-1 pad-1 conv: dy (N, O, H, W), x (N, C, H, W)
    -> dW (O, C, 3, 3), db (O,) (by the adjoint of F(2x2, 3x3))."""
    return winograd_conv3x3_backward_params(dy, x)


def _kernel(weight, dtype, kernels, flipped, f4):
    if kernels is not None:
        return kernels.get(weight, dtype, flipped=flipped, f4=f4)
    return kernel_transform(weight, dtype, flipped=flipped, f4=f4)


def kernel_transform(weight, dtype, flipped=False, f4=False):
    """The Winograd transform a conv runs with: weight (O, C, 3, 3) -> U (16, O, C)
    (F(2x2)) or (36, O, C) (F(4x4)), or with ``flipped`` that of the flipped, transposed
    kernel, (16 or 36, C, O). Stored so that U's transpose, the GEMMs' right operand, is
    contiguous."""
    xp = get_array_module(weight)
    if f4:
        from .winograd4 import flipped_kernel, winograd4_weight
        u = winograd4_weight(flipped_kernel(weight) if flipped else weight, dtype)
    else:
        u = winograd_weight(weight, dtype)
        if flipped:
            return winograd_weight_flipped(u)       # contiguous transpose already
    u_t = recycled((u.shape[0], u.shape[2], u.shape[1]), u.dtype, u)
    u_t[...] = u.transpose(0, 2, 1)
    return u_t.transpose(0, 2, 1)


def _dtype(*arrays):
    return get_array_module(*arrays).result_type(*(a.dtype for a in arrays))


class KernelTransforms:
    """Remembers the kernel transforms of a conv weight (:func:`kernel_transform`:
    F(2x2) or F(4x4), of the kernel or of its flipped, transposed kernel for the
    backward pass) between calls: visualisation runs hundreds of passes with fixed
    weights. Reused only while the weight is the same array with the same values and
    the dtype is the same (so replacing or editing the weight in place is always seen)."""

    def __init__(self):
        self._weight = self._values = self._dtype = None
        self._transforms = {}

    def get(self, weight, dtype, flipped=False, f4=False):
        """The transform of ``weight`` (O, C, 3, 3) in ``dtype`` (promoted with the
        weight's) that :func:`kernel_transform` gives for these arguments."""
        xp = get_array_module(weight)
        dtype = xp.result_type(dtype, weight.dtype)
        if not (self._weight is weight and self._dtype == dtype and self._same_values(weight)):
            self._transforms = {}        # first, so that their arrays can be recycled
            if (self._values is not None and self._values.shape == weight.shape
                    and self._values.dtype == weight.dtype
                    and get_array_module(self._values) is xp):
                self._values[...] = weight     # its own copy, never handed out: reused
            else:
                self._values = weight.copy()
            self._weight, self._dtype = weight, dtype
        key = (flipped, f4)
        if key not in self._transforms:
            self._transforms[key] = kernel_transform(weight, dtype, flipped, f4)
        return self._transforms[key]

    def _same_values(self, weight):
        """The remembered values equal ``weight``'s (compared in slices over the threads)."""
        xp = get_array_module(weight)
        parts = split(weight.shape[0], WINOGRAD_GROUPS)
        same = _chunk_map(xp)(lambda s: bool(xp.array_equal(self._values[s], weight[s])), parts)
        return all(same)


# Winograd F(2x2, 3x3) (Lavin & Gray 2015). The output is cut into 2x2 tiles; tile t
# reads a 4x4 patch d of the padded input (patches overlap by 2) and, for a 3x3 kernel g,
#
#     Y_t = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, 4x4)
#
#     B^T = [[1, 0,-1, 0],     G = [[ 1,   0,   0 ],     A^T = [[1, 1, 1, 0],
#            [0, 1, 1, 0],          [1/2, 1/2, 1/2],            [0, 1,-1,-1]]
#            [0,-1, 1, 0],          [1/2,-1/2, 1/2],
#            [0, 1, 0,-1]]          [ 0,   0,   1 ]]
#
# Summing over input channels turns the 16 elementwise products into 16 GEMMs
# V[k] (tiles, C) @ U[k]^T (C, O), k = 4*i + j: 4 multiplies per output pixel and channel
# pair instead of 9. Every transform is separable: a 1-D transform along the rows, then
# the same along the columns, each a few whole-array adds on strided views (no loops
# over pixels).
#
# The transforms work channels-last: V (16, N*th*tw, C), M (16, N*th*tw, O), where
# th = ceil(H / 2), tw = ceil(W / 2) tiles; odd sizes are padded by one zero row/column
# and the extra output row/column is cropped. With channels innermost every add runs
# over rows of tw*C contiguous values; channels-first (NCHW) rows would be only tw long,
# 4 to 16 values in the deeper VGG layers, and the per-row overhead would dominate. The
# output is written channels-last too and returned as an (N, O, H, W) *view* of that
# buffer (strides of NHWC): the values are the same, and the next layer (ReLU, pool,
# the next conv's input transform) reads channels-contiguous rows without a transpose.

def _bt(d0, d1, d2, d3, out):
    """B^T along one axis: (d0 - d2, d1 + d2, d2 - d1, d1 - d3) written into out[0..3]."""
    xp = get_array_module(d0)
    xp.subtract(d0, d2, out=out[0])
    xp.add(d1, d2, out=out[1])
    xp.subtract(d2, d1, out=out[2])
    xp.subtract(d1, d3, out=out[3])


def _at(m0, m1, m2, m3, out):
    """A^T along one axis: (m0 + m1 + m2, m1 - m2 - m3) written into out[0..1]."""
    xp = get_array_module(m0)
    xp.add(m0, m1, out=out[0])
    out[0] += m2
    xp.subtract(m1, m2, out=out[1])
    out[1] -= m3


def _g(g0, g1, g2, out):
    """G along one axis: (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2) into out[0..3]."""
    xp = get_array_module(g0)
    half = out.dtype.type(0.5)
    xp.add(g0, g2, out=out[3])              # scratch: g0 + g2
    xp.add(out[3], g1, out=out[1])
    xp.subtract(out[3], g1, out=out[2])
    out[1] *= half
    out[2] *= half
    out[0] = g0
    out[3] = g2


def _gt(u0, u1, u2, u3, out):
    """G^T along one axis (adjoint of :func:`_g`): (u0 + (u1+u2)/2, (u1-u2)/2, (u1+u2)/2 + u3)."""
    xp = get_array_module(u0)
    half = out.dtype.type(0.5)
    xp.add(u1, u2, out=out[1])              # scratch: u1 + u2
    out[1] *= half
    xp.add(out[1], u3, out=out[2])
    xp.add(out[1], u0, out=out[0])
    xp.subtract(u1, u2, out=out[1])
    out[1] *= half


def _a(d0, d1, out):
    """A along one axis (adjoint of :func:`_at`): (d0, d0 + d1, d0 - d1, -d1) into out[0..3]."""
    xp = get_array_module(d0)
    out[0] = d0
    xp.add(d0, d1, out=out[1])
    xp.subtract(d0, d1, out=out[2])
    xp.negative(d1, out=out[3])


def _tiles(h, w):
    return (h + 1) // 2, (w + 1) // 2


def winograd_weight(weight, dtype=None):
    """Kernel transform: weight (O, C, 3, 3) -> U (16, O, C), U[4i+j] = (G g G^T)[i, j].
    Done in blocks of output channels, each small enough to stay in cache."""
    xp = get_array_module(weight)
    o, c = weight.shape[:2]
    dtype = weight.dtype if dtype is None else dtype
    u = xp.empty((4, 4, o, c), dtype=dtype)
    step = max(1, (1 << 16) // c)
    for o0 in range(0, o, step):
        o1 = min(o, o0 + step)
        g = scratch("kernel.g", (3, 3, o1 - o0, c), dtype, weight)
        g[...] = weight[o0:o1].transpose(2, 3, 0, 1)
        rows = scratch("kernel.rows", (4, 3, o1 - o0, c), dtype, weight)  # G g: the rows
        _g(g[0], g[1], g[2], out=rows)
        for i in range(4):                                       # then along the columns
            _g(rows[i, 0], rows[i, 1], rows[i, 2], out=u[i, :, o0:o1])
    return u.reshape(16, o, c)


# G flip(g) G^T = P (G g G^T) P with P swapping rows 0 and 3: the flipped kernel's
# transform is a permutation of the 16 matrices.
_FLIP = [4 * (3 - i if i in (0, 3) else i) + (3 - j if j in (0, 3) else j)
         for i in range(4) for j in range(4)]


def winograd_weight_flipped(u):
    """U (16, O, C) of a kernel -> U' (16, C, O) of its flipped, transposed kernel
    (the kernel of the transposed convolution)."""
    flipped = recycled(u.shape, u.dtype, u)
    xp = get_array_module(u)
    xp.take(u, xp.asarray(_FLIP), axis=0, out=flipped)
    return flipped.transpose(0, 2, 1)


def _phases(x, pad, hh, wh):
    """Split x (N, C, H, W) (any memory layout), zero-padded by ``pad`` at the top/left
    and with zeros up to (2*hh, 2*wh), into its four even/odd row/column phases,
    channels-last: (2, 2, N, hh, wh, C) with out[p, q, n, r, t, c] = xpad[n, c, 2r + p, 2t + q].

    One strided pass over x (the only transposing copy of the input); every later
    transform step reads rows of contiguous (column, channel) values. The result is
    this thread's "phases" scratch slot (:mod:`.workspace`): valid until its next call."""
    xp = get_array_module(x)
    n, c = x.shape[:2]
    out = scratch("phases", (2, 2, n, hh, wh, c), x.dtype, x)

    def phase(pq):
        p, q = pq
        # padded row 2r + p is input row 2r + p - pad: the phase starts at input row r0
        r0, c0 = (p - pad) % 2, (q - pad) % 2
        part = x[:, :, r0::2, c0::2].transpose(0, 2, 3, 1)
        rs, cs = (r0 + pad) // 2, (c0 + pad) // 2
        re, ce = rs + part.shape[1], cs + part.shape[2]
        ph = out[p, q]
        ph[:, rs:re, cs:ce] = part
        # zero only the padding around it (the frame), not the whole array first
        ph[:, :rs] = 0
        ph[:, re:] = 0
        ph[:, rs:re, :cs] = 0
        ph[:, rs:re, ce:] = 0

    _chunk_map(xp)(phase, [(p, q) for p in range(2) for q in range(2)])
    return out


def winograd_input(ph, r0, r1, out=None):
    """Input transform of tile rows r0..r1-1: phases ph (2, 2, N, th+1, tw+1, C) of x
    zero-padded by 1 (see :func:`_phases`) -> V (16, N*(r1-r0)*tw, C),
    V[4i+j] = (B^T d B)[i, j] for every 4x4 patch d (stride 2). With ``out`` (a
    (4, 4, N, r1-r0, tw, C) view, for instance a channel slice of a larger V) the
    transform is written there instead; else V is this thread's "chunk2" scratch slot,
    valid until the slot is asked for again (:mod:`.workspace`).

    Patch column q of tile column t is padded column 2t + q: phase q % 2, tile column
    t + q // 2 (likewise for rows)."""
    xp = get_array_module(ph)
    n, tw, c = ph.shape[2], ph.shape[4] - 1, ph.shape[5]
    rows = r1 - r0
    ph = ph[:, :, :, r0:r1 + 1]
    cols = scratch("chunk1", (4, 2, n, rows + 1, tw, c), ph.dtype, ph)  # B^T, columns
    _bt(*(ph[:, q % 2, :, :, q // 2:q // 2 + tw] for q in range(4)), out=cols)
    v = scratch("chunk2", (4, 4, n, rows, tw, c), ph.dtype, ph) if out is None else out
    for j in range(4):                                           # then along the rows
        _bt(*(cols[j, p % 2, :, p // 2:p // 2 + rows] for p in range(4)), out=v[:, j])
    return v.reshape(16, n * rows * tw, c)


def winograd_output(m, out, bias=None, relu=False):
    """Output transform: M (16, N*rows*tw, O) -> out (N, rows, 2, tw, 2, O) (a view of
    the channels-last (N, 2*rows, 2*tw, O) output), Y = A^T M A per tile, plus bias (O,)
    when given (added through M[5], which reaches all four outputs of a tile); max(Y, 0)
    with ``relu``, in the copy that writes the output (no pass of its own)."""
    xp = get_array_module(m)
    n, rows, _, tw, _, o = out.shape
    m = m.reshape(4, 4, n, rows, tw, o)
    if bias is not None:
        m[1, 1] += bias
    half = scratch("chunk2", (2, 4, n, rows, tw, o), m.dtype, m)  # A^T, rows
    for j in range(4):
        _at(m[0, j], m[1, j], m[2, j], m[3, j], out=half[:, j])
    # then along the columns into a contiguous (2, N, rows, tw, O), and from there into
    # output rows 2r + a, columns 2t + b by one interleaving copy: the adds on contiguous
    # arrays and one strided copy beat adds that write strided (O-long) runs of the output
    pair = scratch("chunk3", (2, n, rows, tw, o), m.dtype, m)
    for a in range(2):
        _at(*half[a], out=pair)
        if relu:
            relu_forward(pair.transpose(1, 2, 3, 0, 4), out=out[:, :, a])
        else:
            out[:, :, a] = pair.transpose(1, 2, 3, 0, 4)


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
# (:func:`_chunk_map`), each group's chunks in order. The split depends on the shapes
# only, never on the thread count, so the sums (and their rounding) are the same on
# any machine.
WINOGRAD_CHUNK = 1 << 20
WINOGRAD_MIN_TILES = 128
WINOGRAD_GROUPS = 4


def _chunk_map(xp):
    """How the groups of a conv run: spread over CPU threads (each group's transforms
    and GEMMs are independent; see :mod:`minicnn.threads`), in order on a GPU."""
    if xp is numpy:
        return parallel_map
    return lambda function, items: [function(item) for item in items]


def _row_groups(th, tiles_per_row, channels, components=16):
    """Tile rows 0..th-1 as groups of chunks: [[(r0, r1), ...], ...], in row order
    (``components`` transformed values per tile and channel: 16, or 36 for F(4x4))."""
    min_rows = max(-(-WINOGRAD_MIN_TILES // tiles_per_row), 1)
    groups = max(1, min(WINOGRAD_GROUPS, th // min_rows))
    step = max(WINOGRAD_CHUNK // (components * channels * tiles_per_row), min_rows)
    bounds = [th * g // groups for g in range(groups + 1)]
    return [[(r0, min(g1, r0 + step)) for r0 in range(g0, g1, step)]
            for g0, g1 in zip(bounds, bounds[1:])]


def winograd_conv3x3(x, u, bias=None, relu=False):
    """3x3, stride 1, pad 1 conv: x (N, C, H, W), U (16, O, C) from :func:`winograd_weight`
    (or :func:`winograd_weight_flipped`) -> (N, O, H, W), a view of a channels-last buffer
    (rectified with ``relu``)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    o = u.shape[1]
    dtype = _dtype(x, u)
    u_t = u.astype(dtype, copy=False).transpose(0, 2, 1)         # (16, C, O)
    th, tw = _tiles(h, w)
    ph = _phases(x.astype(dtype, copy=False), 1, th + 1, tw + 1)
    y = recycled((n, th, 2, tw, 2, o), dtype, x)
    run_transforms(ph, u_t, bias, y, winograd_input, winograd_output, relu)
    return y.reshape(n, 2 * th, 2 * tw, o)[:, :h, :w].transpose(0, 3, 1, 2)


def run_transforms(src, u_t, bias, y, transform_input, transform_output, relu=False):
    """The steps of a Winograd conv, scheduled over the CPU threads; shared by F(2x2) and
    F(4x4) (:mod:`.winograd4`). src: the input as its transforms read it (channels
    last); u_t (K, C, O), K = 16 or 36 components; y (N, th, m, tw, m, O), the output
    tiles, written in place. transform_input(src, r0, r1, out=None) -> V (K, T, C) of
    tile rows r0..r1-1; transform_output(M, y_rows, bias, relu) writes those rows,
    rectified with ``relu`` while still in cache (a ReLU after the conv, fused: no pass
    of its own over the output).

    Tile rows run in chunks and groups (:func:`_row_groups`). With too few tiles for
    more than one group (deep layers at a small batch) the three steps are cut another
    way each: the input transform by channel slices, the K GEMMs in groups of
    components, the output transform by output-channel slices. The sums are the same
    either way."""
    xp = get_array_module(src)
    n, th, _, tw = y.shape[:4]
    components, c, o = u_t.shape
    side = math.isqrt(components)                                 # 4 or 6 values a side
    run = _chunk_map(xp)
    groups = _row_groups(th, n * tw, max(c, o), components)
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


def winograd_conv3x3_backward_params(dy, x):
    """Parameter gradients of a 3x3 stride-1 pad-1 conv, by the adjoint of the Winograd
    forward: dU[k] = sum over tiles (A dY A^T)[k]^T (O, T) @ V[k] (T, C), dW = G^T dU G.

    dy (N, O, H, W), x (N, C, H, W) (any memory layouts) -> dW (O, C, 3, 3), db (O,)."""
    xp = get_array_module(dy, x)
    n, o, h, w = dy.shape
    c = x.shape[1]
    dtype = _dtype(dy, x)
    th, tw = _tiles(h, w)
    ph = _phases(x.astype(dtype, copy=False), 1, th + 1, tw + 1)
    dypad = scratch("params.dy", (n, th, 2, tw, 2, o), dtype, dy)  # channels-last, like ph
    flat = dypad.reshape(n, 2 * th, 2 * tw, o)
    flat[:, :h, :w] = dy.transpose(0, 2, 3, 1)
    flat[:, h:] = 0                                              # an odd size's extra row
    flat[:, :, w:] = 0                                           # and column

    def transforms(r0, r1):
        """(A dY A^T) of the output tiles and V of the input tiles of rows r0..r1-1:
        (16, O, T) and (16, T, C)."""
        rows = r1 - r0
        d = dypad[:, r0:r1]
        half = scratch("chunk1", (4, 2, n, rows, tw, o), dtype, d)  # A, columns
        for p in range(2):
            _a(d[:, :, p, :, 0], d[:, :, p, :, 1], out=half[:, p])
        dm = scratch("chunk3", (4, 4, n, rows, tw, o), dtype, d)  # then the rows
        for j in range(4):
            _a(half[j, 0], half[j, 1], out=dm[:, j])
        return dm.reshape(16, n * rows * tw, o).transpose(0, 2, 1), winograd_input(ph, r0, r1)

    def group(chunks):
        """dU summed over the chunks (its own array: a thread may run several groups)."""
        du = recycled((16, o, c), dtype, dy)
        for i, (r0, r1) in enumerate(chunks):
            if i == 0:
                xp.matmul(*transforms(r0, r1), out=du)
            else:
                du += xp.matmul(*transforms(r0, r1),
                                out=scratch("params.part", (16, o, c), dtype, dy))
        return du

    groups = _row_groups(th, n * tw, max(c, o))
    if len(groups) == 1 and len(groups[0]) == 1:
        # too few tiles for row groups: the 16 GEMMs of the one chunk in groups of
        # components over the threads (the same products as one stacked matmul)
        dm, v = transforms(0, th)
        du = scratch("params.du", (16, o, c), dtype, dy)
        _chunk_map(xp)(lambda k: xp.matmul(dm[k], v[k], out=du[k]), split(16, WINOGRAD_GROUPS))
    else:
        partial = _chunk_map(xp)(group, groups)
        du = partial[0]
        for more in partial[1:]:                                 # in group order
            du += more
    du = du.reshape(4, 4, o * c)
    g = scratch("params.g", (3, 4, o * c), dtype, dy)            # G^T along the rows
    _gt(du[0], du[1], du[2], du[3], out=g)
    dw9 = scratch("params.dw", (3, 3, o * c), dtype, dy)         # then along the columns
    for a in range(3):
        _gt(*g[a], out=dw9[a])
    dw = recycled((o * c, 9), dtype, dy)
    dw[...] = dw9.reshape(9, o * c).T
    return dw.reshape(o, c, 3, 3), dy.sum(axis=(0, 2, 3))
