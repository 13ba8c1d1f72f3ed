"""Winograd F(2x2, 3x3): the fast path for the 3x3, stride-1, pad-1 convs of every VGG.

Same sums as the im2col path of :mod:`minicnn.functional.reference` (up to rounding),
with 4 multiplies per output pixel and channel pair instead of 9. The forward, the
transposed conv of the backward pass and the weight gradient all use the transforms
below; docs/winograd.md derives them and shows how the backward passes reuse them.
Works in any float dtype (float32 and float64 alike) on NumPy and CuPy; the dispatcher
(:mod:`minicnn.functional`) runs it on the CPU only.
"""
from ..backend import get_array_module
from ..threads import split
from .into import relu_into
from .winograd_schedule import WINOGRAD_GROUPS, chunk_map, result_dtype, row_groups, run_transforms
from .workspace import recycled, scratch

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


def tiles2(h, w):
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


def input_phases2(x, pad, hh, wh):
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

    chunk_map(xp)(phase, [(p, q) for p in range(2) for q in range(2)])
    return out


def winograd_input(ph, r0, r1, out=None):
    """Input transform of tile rows r0..r1-1: phases ph (2, 2, N, th+1, tw+1, C) of x
    zero-padded by 1 (see :func:`input_phases2`) -> V (16, N*(r1-r0)*tw, C),
    V[4i+j] = (B^T d B)[i, j] for every 4x4 patch d (stride 2). With ``out`` (a
    (4, 4, N, r1-r0, tw, C) view, for instance a channel slice of a larger V) the
    transform is written there instead; else V is this thread's "chunk2" scratch slot,
    valid until the slot is asked for again (:mod:`.workspace`).

    Patch column q of tile column t is padded column 2t + q: phase q % 2, tile column
    t + q // 2 (likewise for rows)."""
    n, tw, c = ph.shape[2], ph.shape[4] - 1, ph.shape[5]
    rows = r1 - r0
    ph = ph[:, :, :, r0:r1 + 1]
    cols = scratch("chunk1", (4, 2, n, rows + 1, tw, c), ph.dtype, ph)  # B^T, columns
    _bt(*(ph[:, q % 2, :, :, q // 2:q // 2 + tw] for q in range(4)), out=cols)
    v = scratch("chunk2", (4, 4, n, rows, tw, c), ph.dtype, ph) if out is None else out
    # then along the rows, the four columns j at once: each addition runs over four times
    # the values, and a quarter as many NumPy calls contend for the interpreter's lock
    _bt(*(cols[:, p % 2, :, p // 2:p // 2 + rows] for p in range(4)), out=v)
    return v.reshape(16, n * rows * tw, c)


def winograd_output(m, out, bias=None, relu=False):
    """Output transform: M (16, N*rows*tw, O) -> out (N, rows, 2, tw, 2, O) (a view of
    the channels-last (N, 2*rows, 2*tw, O) output), Y = A^T M A per tile, plus bias (O,)
    when given (added through M[5], which reaches all four outputs of a tile); max(Y, 0)
    with ``relu``, in the copy that writes the output (no pass of its own)."""
    n, rows, _, tw, _, o = out.shape
    m = m.reshape(4, 4, n, rows, tw, o)
    if bias is not None:
        m[1, 1] += bias
    half = scratch("chunk2", (2, 4, n, rows, tw, o), m.dtype, m)  # A^T, rows (all j at once)
    _at(m[0], m[1], m[2], m[3], out=half)
    # then along the columns (both a at once) into a contiguous (2, 2, N, rows, tw, O),
    # [b, a], and from there into output rows 2r + a, columns 2t + b by one interleaving
    # copy: the adds on contiguous arrays and one strided copy beat adds that write
    # strided (O-long) runs of the output
    pair = scratch("chunk3", (2, 2, n, rows, tw, o), m.dtype, m)
    _at(half[:, 0], half[:, 1], half[:, 2], half[:, 3], out=pair)
    interleaved = pair.transpose(2, 3, 1, 4, 0, 5)                # (N, rows, a, tw, b, O)
    if relu:
        relu_into(interleaved, out)
    else:
        out[...] = interleaved


def winograd_conv3x3(x, u, bias=None, relu=False):
    """3x3, stride 1, pad 1 conv: x (N, C, H, W), U (16, O, C) from :func:`winograd_weight`
    (or :func:`winograd_weight_flipped`) -> (N, O, H, W), a view of a channels-last buffer
    (rectified with ``relu``)."""
    n, c, h, w = x.shape
    o = u.shape[1]
    dtype = result_dtype(x, u)
    u_t = u.astype(dtype, copy=False).transpose(0, 2, 1)         # (16, C, O)
    th, tw = tiles2(h, w)
    ph = input_phases2(x.astype(dtype, copy=False), 1, th + 1, tw + 1)
    y = recycled((n, th, 2, tw, 2, o), dtype, x)
    run_transforms(ph, u_t, bias, y, winograd_input, winograd_output, relu)
    return y.reshape(n, 2 * th, 2 * tw, o)[:, :h, :w].transpose(0, 3, 1, 2)


def winograd_conv3x3_backward_params(dy, x):
    """Parameter gradients of a 3x3 stride-1 pad-1 conv, by the adjoint of the Winograd
    forward: dU[k] = sum over tiles (A dY A^T)[k]^T (O, T) @ V[k] (T, C), dW = G^T dU G.

    dy (N, O, H, W), x (N, C, H, W) (any memory layouts) -> dW (O, C, 3, 3), db (O,)."""
    xp = get_array_module(dy, x)
    n, o, h, w = dy.shape
    c = x.shape[1]
    dtype = result_dtype(dy, x)
    th, tw = tiles2(h, w)
    ph = input_phases2(x.astype(dtype, copy=False), 1, th + 1, tw + 1)
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
        # both rows p at once: (2, N, rows, tw, O) views of dY's two columns
        _a(d[:, :, :, :, 0].transpose(2, 0, 1, 3, 4), d[:, :, :, :, 1].transpose(2, 0, 1, 3, 4),
           out=half)
        dm = scratch("chunk3", (4, 4, n, rows, tw, o), dtype, d)  # then the rows, all j
        _a(half[:, 0], half[:, 1], out=dm)
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

    groups = row_groups(th, n * tw, max(c, o))
    if len(groups) == 1 and len(groups[0]) == 1:
        # too few tiles for row groups: the 16 GEMMs of the one chunk in groups of
        # components over the threads (the same products as one stacked matmul)
        dm, v = transforms(0, th)
        du = scratch("params.du", (16, o, c), dtype, dy)
        chunk_map(xp)(lambda k: xp.matmul(dm[k], v[k], out=du[k]), split(16, WINOGRAD_GROUPS))
    else:
        partial = chunk_map(xp)(group, groups)
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
