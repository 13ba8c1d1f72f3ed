"""Winograd F(4x4, 3x3): the fast path for the wide 3x3 convs (many channels) on the CPU.

F(2x2, 3x3) (:mod:`minicnn.functional.winograd`) needs 16 multiplies per 2x2 output
tile and channel pair, 4 per output pixel; F(4x4, 3x3) needs 36 per 4x4 tile, 2.25 per
pixel: 44% fewer GEMM FLOPs, paid for by larger transforms (6x6 instead of 4x4, with
constant factors). It pays off where the GEMMs dominate, the layers with many channels
and enough tiles for efficient GEMMs; :mod:`.conv_choice` decides where it runs.
Its float32 rounding error is larger than F(2x2)'s (the transforms multiply by up to 8
and divide by 24); docs/winograd.md gives the measured error.

The same sums as the im2col path up to rounding. Used for the forward conv and the
transposed conv of the backward pass (the conv of the output signal with the flipped,
transposed kernel); the weight gradient stays with F(2x2). Shapes follow the F(2x2)
module: channels-last transforms, V (36, tiles, C), M (36, tiles, O), the output an
(N, O, H, W) view of a channels-last buffer.

    Y = A^T [ (G g G^T) * (B^T d B) ] A       per 6x6 input patch d (stride 4)

    B^T = [[4, 0,-5, 0, 1, 0],   G = [[ 1/4,    0,    0 ],   A^T = [[1, 1, 1, 1, 1, 0],
           [0,-4,-4, 1, 1, 0],        [-1/6, -1/6, -1/6 ],          [0, 1,-1, 2,-2, 0],
           [0, 4,-4,-1, 1, 0],        [-1/6,  1/6, -1/6 ],          [0, 1, 1, 4, 4, 0],
           [0,-2,-1, 2, 1, 0],        [1/24, 1/12,  1/6 ],          [0, 1,-1, 8,-8, 1]]
           [0, 2,-1,-2, 1, 0],        [1/24,-1/12,  1/6 ],
           [0, 4, 0,-5, 0, 1]]        [   0,    0,    1 ]]

(Lavin & Gray 2015, interpolation points 0, 1, -1, 2, -2 and infinity.)
"""
import numpy

from ..backend import get_array_module
from .into import relu_into
from .winograd_schedule import result_dtype, run_transforms   # shared with F(2x2)
from .workspace import recycled, scratch

G4 = numpy.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


def _bt6(d, out, sums):
    """B^T along one axis: six inputs d[0..5] -> out[0..5]; sums: two arrays shaped
    like out[0]. 18 whole-array operations (products by 2, 4 and 5 shared)."""
    xp = get_array_module(out)
    d0, d1, d2, d3, d4, d5 = d
    a, b = sums
    four, two = a.dtype.type(4), a.dtype.type(2)
    xp.multiply(d2, four, out=a)
    xp.subtract(d4, a, out=a)                  # a = d4 - 4 d2
    xp.multiply(d1, four, out=b)
    xp.subtract(d3, b, out=b)                  # b = d3 - 4 d1
    xp.add(a, b, out=out[1])
    xp.subtract(a, b, out=out[2])
    xp.subtract(d4, d2, out=a)                 # a = d4 - d2
    xp.subtract(d3, d1, out=b)
    b *= two                                   # b = 2 (d3 - d1)
    xp.add(a, b, out=out[3])
    xp.subtract(a, b, out=out[4])
    xp.subtract(d0, d2, out=out[0])
    out[0] *= four
    out[0] += a                                # 4 (d0 - d2) + (d4 - d2)
    xp.subtract(d1, d3, out=out[5])
    out[5] *= four
    out[5] += d5
    out[5] -= d3                               # 4 (d1 - d3) + (d5 - d3)


def _at6(m, out, sums):
    """A^T along one axis: six inputs m[0..5] -> out[0..3]; sums: two arrays shaped
    like out[0]."""
    xp = get_array_module(out)
    m0, m1, m2, m3, m4, m5 = m
    s, t = sums
    two, four, eight = (s.dtype.type(k) for k in (2, 4, 8))
    xp.add(m1, m2, out=s)                      # s = m1 + m2
    xp.add(m3, m4, out=t)                      # t = m3 + m4
    xp.add(s, t, out=out[0])
    out[0] += m0
    xp.multiply(t, four, out=out[2])
    out[2] += s
    xp.subtract(m1, m2, out=s)                 # s = m1 - m2
    xp.subtract(m3, m4, out=t)                 # t = m3 - m4
    xp.multiply(t, two, out=out[1])
    out[1] += s
    xp.multiply(t, eight, out=out[3])
    out[3] += s
    out[3] += m5


def tiles4(h, w):
    """Output tiles of 4x4 along H and W."""
    return (h + 3) // 4, (w + 3) // 4


def winograd4_weight(weight, dtype=None):
    """Kernel transform: weight (O, C, 3, 3) -> U (36, O, C), U[6i+j] = (G g G^T)[i, j],
    computed in float64 and rounded once to ``dtype`` (the weight's by default)."""
    xp = get_array_module(weight)
    dtype = weight.dtype if dtype is None else dtype
    o, c = weight.shape[:2]
    g = xp.asarray(G4)
    u = xp.empty((6, 6, o, c), dtype=dtype)
    step = max(1, (1 << 16) // c)
    for o0 in range(0, o, step):                   # blocks of output channels
        w64 = weight[o0:o0 + step].astype(numpy.float64)
        rows = xp.tensordot(g, w64, axes=(1, 2))   # (6, o, C, 3): G along the rows
        u[:, :, o0:o0 + step] = xp.tensordot(rows, g, axes=(3, 1)).transpose(0, 3, 1, 2)
    return u.reshape(36, o, c)


def flipped_kernel(weight):
    """(O, C, 3, 3) -> (C, O, 3, 3): the kernel of the transposed conv (flipped in both
    spatial axes, input and output channels swapped)."""
    return weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


def input_phases4(x, th, tw):
    """x (N, C, H, W) (any memory layout), zero-padded by 1 at the top/left and with zeros
    up to 4*th + 2 rows, cut into its four column phases, channels-last:
    (4, N, 4*th + 2, tw + 1, C) with out[q, n, r, t, c] = xpad[n, c, r, 4t + q].

    One strided pass over x; every later transform step reads rows of contiguous
    (column, channel) values. The result is this thread's "phases4" scratch slot
    (:mod:`.workspace`): valid until its next call."""
    n, c, h, w = x.shape
    rows = 4 * th + 2
    out = scratch("phases4", (4, n, rows, tw + 1, c), x.dtype, x)
    for q in range(4):
        c0 = (q - 1) % 4                    # padded column 4t + q is input column 4t + q - 1
        part = x[:, :, :, c0::4].transpose(0, 2, 3, 1)
        cs = (c0 + 1) // 4
        ce = cs + part.shape[2]
        phase = out[q]
        phase[:, 1:1 + h, cs:ce] = part
        phase[:, 0] = 0                     # the frame of zeros around it
        phase[:, 1 + h:] = 0
        phase[:, 1:1 + h, :cs] = 0
        phase[:, 1:1 + h, ce:] = 0
    return out


def winograd4_input(cph, r0, r1, out=None):
    """Input transform of tile rows r0..r1-1: column phases (4, N, 4*th + 2, tw + 1, C)
    (see :func:`input_phases4`) -> V (36, N*(r1-r0)*tw, C), V[6k+l] = (B^T d B)[k, l] for
    every 6x6 patch d (stride 4). With ``out`` (a (6, 6, N, r1-r0, tw, C) view) the
    transform is written there instead; else V is this thread's "chunk2" scratch slot,
    valid until the slot is asked for again (:mod:`.workspace`).

    Patch column j of tile column t is padded column 4t + j: phase j % 4, tile column
    t + j // 4; patch row i of tile row t is padded row 4t + i."""
    n, tw, c = cph.shape[1], cph.shape[3] - 1, cph.shape[4]
    rows = r1 - r0
    src = cph[:, :, 4 * r0:4 * r1 + 2]
    cols = scratch("chunk1", (6, n, 4 * rows + 2, tw, c), cph.dtype, cph)  # B^T, columns
    sums = scratch("chunk3", (2,) + cols.shape[1:], cph.dtype, cph)
    _bt6([src[j % 4, :, :, j // 4:j // 4 + tw] for j in range(6)], cols, sums)
    if out is None:
        out = scratch("chunk2", (6, 6, n, rows, tw, c), cph.dtype, cph)
    # then along the rows, the six columns l at once (fewer, longer NumPy calls)
    sums = scratch("chunk3", (2, 6, n, rows, tw, c), cph.dtype, cph)
    _bt6([cols[:, :, i:i + 4 * rows - 3:4] for i in range(6)], out, sums)
    return out.reshape(36, n * rows * tw, c)


def winograd4_output(m, out, bias=None, relu=False):
    """Output transform: M (36, N*rows*tw, O) -> out (N, rows, 4, tw, 4, O) (a view of the
    channels-last (N, 4*rows, 4*tw, O) output), Y = A^T M A per tile, plus bias (O,)
    when given (added through M[6+1]: column 1 of A^T is all ones, so it reaches all 16
    outputs of a tile); rectified (max(Y, 0)) with ``relu``, while still in cache."""
    n, rows, _, tw, _, o = out.shape
    m = m.reshape(6, 6, n, rows, tw, o)
    if bias is not None:
        m[1, 1] += bias
    half = scratch("chunk2", (4, 6, n, rows, tw, o), m.dtype, m)  # A^T, rows: all l at once
    sums = scratch("chunk3", (2, 6, n, rows, tw, o), m.dtype, m)
    _at6(m, half, sums)
    # then along the columns, all rows a at once, into out[:, :, a, :, b]
    sums = scratch("chunk3", (2, n, rows, 4, tw, o), m.dtype, m)
    _at6([half[:, l].transpose(1, 2, 0, 3, 4) for l in range(6)],
         [out[:, :, :, :, b] for b in range(4)], sums)
    if relu:
        relu_into(out, out)


def winograd4_conv3x3(x, u, bias=None, relu=False):
    """3x3, stride 1, pad 1 conv: x (N, C, H, W), U (36, O, C) from
    :func:`winograd4_weight` -> (N, O, H, W), a view of a channels-last buffer (rectified
    with ``relu``), scheduled over the CPU threads by
    :func:`minicnn.functional.winograd_schedule.run_transforms`."""
    n, c, h, w = x.shape
    o = u.shape[1]
    dtype = result_dtype(x, u)
    u_t = u.astype(dtype, copy=False).transpose(0, 2, 1)           # (36, C, O)
    th, tw = tiles4(h, w)
    cph = input_phases4(x.astype(dtype, copy=False), th, tw)
    y = recycled((n, th, 4, tw, 4, o), dtype, x)
    run_transforms(cph, u_t, bias, y, winograd4_input, winograd4_output, relu)
    return y.reshape(n, 4 * th, 4 * tw, o)[:, :h, :w].transpose(0, 3, 1, 2)
