"""The layer math as pure functions on (N, C, H, W) arrays.

Everything here works on NumPy and CuPy arrays alike (``xp = get_array_module(x)``).
Loops run over kernel offsets, transform rows or chunks of tile rows, never over
pixels; the multiply-adds go through BLAS matrix products.

Two fast paths cover every layer of a VGG, chosen by shape alone:
- 3x3, stride 1, pad 1 convs with >= WINOGRAD_MIN_CHANNELS channels in and out:
  Winograd F(2x2, 3x3) (forward, transposed conv, weight gradient);
- 2x2, stride 2 max-pools: four strided views, switches by three comparisons.
Everything else takes the general path (im2col + GEMM, k*k-offset pooling), which the
tests (tests/test_fast_paths.py) use, with naive loops, as the oracle for the fast one.

Output size of a convolution or pooling window along one axis::

    out = (size + 2 * pad - kernel) // stride + 1
"""
import numpy

from .backend import get_array_module
from .threads import get_threads, parallel_map

RULES = ("gradient", "deconvnet", "guided")


def out_size(size, kernel, stride, pad):
    """Output length along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def check_rule(rule):
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    return rule


def _pad(x, pad, value=0.0):
    """Zero- (or value-) pad the two spatial axes of (N, C, H, W) by ``pad``."""
    if pad == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * pad, w + 2 * pad), value, dtype=x.dtype)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def _window(xpad, a, b, stride, ho, wo):
    """View of the padded input seen by kernel offset (a, b): (N, C, Ho, Wo)."""
    return xpad[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]


def is_channels_last(a):
    """True for a 4-D (N, C, H, W) array stored with channels innermost."""
    return a.ndim == 4 and a.strides[1] < a.strides[3]


def laid_out_like(a, like):
    """``a`` (N, C, H, W), copied channels-last when ``like`` is stored so and ``a`` is not
    (same values and dtype)."""
    if is_channels_last(like) and not is_channels_last(a):
        out = _zeros_laid_out_like(a.shape, like, a.dtype)
        out[...] = a
        return out
    return a


def _zeros_laid_out_like(shape, like, dtype=None):
    """Zeros of (N, C, H, W) ``shape`` (dtype: like's by default), stored channels-last
    when ``like`` is (the CPU conv outputs are): elementwise passes that mix the two then
    run over matching, contiguous rows instead of one strided operand."""
    xp = get_array_module(like)
    dtype = like.dtype if dtype is None else dtype
    if is_channels_last(like):
        n, c, h, w = shape
        return xp.zeros((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)
    return xp.zeros(shape, dtype=dtype)


# ----------------------------------------------------------------------------- conv

def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> columns (N, C*kh*kw, Ho*Wo), rows ordered (c, a, b) like OIHW."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    xpad = _pad(x, pad)
    cols = xp.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, a, b] = _window(xpad, a, b, stride, ho, wo)
    return cols.reshape(n, c * kh * kw, ho * wo)


def col2im(cols, x_shape, kh, kw, stride, pad):
    """Adjoint of :func:`im2col`: (N, C*kh*kw, Ho*Wo) -> (N, C, H, W), overlaps summed."""
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    xpad = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            _window(xpad, a, b, stride, ho, wo)[...] += cols[:, :, a, b]
    return xpad[:, :, pad:pad + h, pad:pad + w]


# Winograd trades GEMM work (~C*O per pixel) for transforms of the input and output
# (~C + O per pixel): it pays off once both channel counts are at least this. The first
# conv of an RGB network (C = 3) and its transpose stay on im2col.
WINOGRAD_MIN_CHANNELS = 16


def is_winograd_conv(weight_shape, stride, pad):
    """True for the convs of every VGG (3x3 kernel, stride 1, pad 1: output size = input
    size) with at least WINOGRAD_MIN_CHANNELS input and output channels."""
    o, c, kh, kw = weight_shape
    return ((kh, kw) == (3, 3) and stride == 1 and pad == 1
            and min(o, c) >= WINOGRAD_MIN_CHANNELS)


def use_winograd(x, weight_shape, stride, pad):
    """Winograd on the CPU only. On a GPU, im2col + one large cuBLAS GEMM per conv beats
    Winograd's many small GEMMs and elementwise transforms (each a kernel launch)."""
    return get_array_module(x) is numpy and is_winograd_conv(weight_shape, stride, pad)


def conv2d(x, weight, bias, stride=1, pad=0):
    """Cross-correlation (as PyTorch/Caffe): x (N, C, H, W), weight (O, C, kh, kw),
    bias (O,) or None -> (N, O, Ho, Wo). 3x3 stride-1 pad-1 convs take the Winograd path,
    all others im2col + GEMM; both compute the same sums (up to rounding). On the CPU the
    result is an (N, O, Ho, Wo) view of a channels-last buffer (same values; ``reshape``
    of it copies)."""
    if use_winograd(x, weight.shape, stride, pad):
        return conv2d_winograd(x, weight, bias)
    return conv2d_im2col(x, weight, bias, stride, pad)


def conv2d_backward_input(dy, weight, x_shape, stride=1, pad=0):
    """Transposed convolution: dy (N, O, Ho, Wo) -> (N, C, H, W) = conv(dy, flip(K)).

    The same for backprop, DeconvNet and guided backprop (PAPER.md Sect. 4)."""
    if use_winograd(dy, weight.shape, stride, pad):
        return conv2d_backward_input_winograd(dy, weight)
    return conv2d_backward_input_col2im(dy, weight, x_shape, stride, pad)


def conv2d_backward_params(dy, x, weight_shape, stride=1, pad=0):
    """Parameter gradients: dy (N, O, Ho, Wo), x (N, C, H, W) -> dW (O, C, kh, kw), db (O,)."""
    if use_winograd(x, weight_shape, stride, pad):
        return conv2d_backward_params_winograd(dy, x)
    return conv2d_backward_params_im2col(dy, x, weight_shape, stride, pad)


def conv2d_winograd(x, weight, bias):
    """:func:`conv2d` of a 3x3 stride-1 pad-1 conv by Winograd F(2x2, 3x3)."""
    return winograd_conv3x3(x, winograd_weight(weight, _dtype(x, weight)), bias)


def conv2d_backward_input_winograd(dy, weight):
    """:func:`conv2d_backward_input` of a 3x3 stride-1 pad-1 conv: the 3x3 pad-1 conv of
    dy with the flipped, transposed kernel, by Winograd."""
    u = winograd_weight_flipped(winograd_weight(weight, _dtype(dy, weight)))
    return winograd_conv3x3(dy, u, None)


def conv2d_backward_params_winograd(dy, x):
    """:func:`conv2d_backward_params` of a 3x3 stride-1 pad-1 conv, by Winograd."""
    return winograd_conv3x3_backward_params(dy, x)


def _dtype(*arrays):
    return get_array_module(*arrays).result_type(*(a.dtype for a in arrays))


# ------------------------------------------------------------------ conv: general path

def conv2d_im2col(x, weight, bias, stride=1, pad=0):
    """:func:`conv2d` for any kernel, stride and pad: one GEMM over im2col columns."""
    n = x.shape[0]
    o, c, kh, kw = weight.shape
    ho, wo = out_size(x.shape[2], kh, stride, pad), out_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)                                 # (N, CKK, L)
    w2 = weight.reshape(o, c * kh * kw)
    if get_array_module(x) is numpy:
        # channels-last output on the CPU, like the Winograd path's: the ReLU and pool
        # after the first conv then meet their backward signals in the same layout
        y = cols.transpose(0, 2, 1) @ w2.T                                # (N, L, O)
        if bias is not None:
            y += bias
        return y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
    y = w2 @ cols                                                         # (N, O, L)
    if bias is not None:
        y += bias.reshape(1, o, 1)
    return y.reshape(n, o, ho, wo)


def conv2d_backward_input_col2im(dy, weight, x_shape, stride=1, pad=0):
    """:func:`conv2d_backward_input` for any kernel, stride and pad (GEMM + col2im)."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight.shape
    cols = weight.reshape(o, c * kh * kw).T @ dy.reshape(n, o, -1)       # (N, C*kh*kw, L)
    return col2im(cols, x_shape, kh, kw, stride, pad)


def conv2d_backward_params_im2col(dy, x, weight_shape, stride=1, pad=0):
    """:func:`conv2d_backward_params` for any kernel, stride and pad."""
    n, o = dy.shape[:2]
    _, c, kh, kw = weight_shape
    cols = im2col(x, kh, kw, stride, pad)                                 # (N, CKK, L)
    dy3 = dy.reshape(n, o, -1)
    dw = (dy3 @ cols.transpose(0, 2, 1)).sum(axis=0)                      # (O, CKK)
    return dw.reshape(weight_shape), dy3.sum(axis=(0, 2))


# ------------------------------------------------------------------ conv: Winograd path
#
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
        g = xp.ascontiguousarray(weight[o0:o1].transpose(2, 3, 0, 1), dtype=dtype)
        rows = xp.empty((4, 3, o1 - o0, c), dtype=dtype)         # G g: along the rows
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
    return u[_FLIP].transpose(0, 2, 1)


def _phases(x, pad, hh, wh):
    """Split x (N, C, H, W) (any memory layout), zero-padded by ``pad`` at the top/left
    and with zeros up to (2*hh, 2*wh), into its four even/odd row/column phases,
    channels-last: (2, 2, N, hh, wh, C) with out[p, q, n, r, t, c] = xpad[n, c, 2r + p, 2t + q].

    One strided pass over x (the only transposing copy of the input); every later
    transform step reads rows of contiguous (column, channel) values."""
    xp = get_array_module(x)
    n, c = x.shape[:2]
    out = xp.empty((2, 2, n, hh, wh, c), dtype=x.dtype)
    for p in range(2):
        for q in range(2):
            # padded row 2r + p is input row 2r + p - pad: the phase starts at input row r0
            r0, c0 = (p - pad) % 2, (q - pad) % 2
            part = x[:, :, r0::2, c0::2].transpose(0, 2, 3, 1)
            rs, cs = (r0 + pad) // 2, (c0 + pad) // 2
            re, ce = rs + part.shape[1], cs + part.shape[2]
            phase = out[p, q]
            phase[:, rs:re, cs:ce] = part
            # zero only the padding around it (the frame), not the whole array first
            phase[:, :rs] = 0
            phase[:, re:] = 0
            phase[:, rs:re, :cs] = 0
            phase[:, rs:re, ce:] = 0
    return out


def winograd_input(ph, r0, r1):
    """Input transform of tile rows r0..r1-1: phases ph (2, 2, N, th+1, tw+1, C) of x
    zero-padded by 1 (see :func:`_phases`) -> V (16, N*(r1-r0)*tw, C),
    V[4i+j] = (B^T d B)[i, j] for every 4x4 patch d (stride 2).

    Patch column q of tile column t is padded column 2t + q: phase q % 2, tile column
    t + q // 2 (likewise for rows)."""
    xp = get_array_module(ph)
    n, tw, c = ph.shape[2], ph.shape[4] - 1, ph.shape[5]
    rows = r1 - r0
    ph = ph[:, :, :, r0:r1 + 1]
    cols = xp.empty((4, 2, n, rows + 1, tw, c), dtype=ph.dtype)  # B^T along the columns
    _bt(*(ph[:, q % 2, :, :, q // 2:q // 2 + tw] for q in range(4)), out=cols)
    v = xp.empty((4, 4, n, rows, tw, c), dtype=ph.dtype)         # then along the rows
    for j in range(4):
        _bt(*(cols[j, p % 2, :, p // 2:p // 2 + rows] for p in range(4)), out=v[:, j])
    return v.reshape(16, n * rows * tw, c)


def winograd_output(m, out, bias=None):
    """Output transform: M (16, N*rows*tw, O) -> out (N, rows, 2, tw, 2, O) (a view of
    the channels-last (N, 2*rows, 2*tw, O) output), Y = A^T M A per tile, plus bias (O,)
    when given (added through M[5], which reaches all four outputs of a tile)."""
    xp = get_array_module(m)
    n, rows, _, tw, _, o = out.shape
    m = m.reshape(4, 4, n, rows, tw, o)
    if bias is not None:
        m[1, 1] += bias
    half = xp.empty((2, 4, n, rows, tw, o), dtype=m.dtype)       # A^T along the rows
    for j in range(4):
        _at(m[0, j], m[1, j], m[2, j], m[3, j], out=half[:, j])
    for a in range(2):                                           # then along the columns,
        _at(*half[a], out=[out[:, :, a, :, b] for b in range(2)])  # into output (2r+a, 2t+b)


# Tile rows are processed in chunks of about WINOGRAD_CHUNK elements of V (or M), so
# that the transforms of one chunk work in cache and V and M (4x the size of the input
# and output) never exist whole, with at least WINOGRAD_MIN_TILES tiles (GEMM rows) each
# so that the GEMMs stay efficient. The chunks come in up to WINOGRAD_GROUPS groups of
# contiguous rows, which run on the CPU threads (:func:`_chunk_map`), each group's chunks
# in order. The split depends on the shapes only, never on the thread count, so the
# sums (and their rounding) are the same on any machine.
WINOGRAD_CHUNK = 1 << 20
WINOGRAD_MIN_TILES = 128
WINOGRAD_GROUPS = 4


def _chunk_map(xp):
    """How the groups of a conv run: spread over CPU threads (each group's transforms
    and GEMMs are independent; see :mod:`minicnn.threads`), in order on a GPU."""
    if xp is numpy:
        return parallel_map
    return lambda function, items: [function(item) for item in items]


def _row_groups(th, tiles_per_row, channels):
    """Tile rows 0..th-1 as groups of chunks: [[(r0, r1), ...], ...], in row order."""
    min_rows = max(-(-WINOGRAD_MIN_TILES // tiles_per_row), 1)
    groups = max(1, min(WINOGRAD_GROUPS, th // min_rows))
    step = max(WINOGRAD_CHUNK // (16 * channels * tiles_per_row), min_rows)
    bounds = [th * g // groups for g in range(groups + 1)]
    return [[(r0, min(g1, r0 + step)) for r0 in range(g0, g1, step)]
            for g0, g1 in zip(bounds, bounds[1:])]


def winograd_conv3x3(x, u, bias=None):
    """3x3, stride 1, pad 1 conv: x (N, C, H, W), U (16, O, C) from :func:`winograd_weight`
    (or :func:`winograd_weight_flipped`) -> (N, O, H, W), a view of a channels-last buffer."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    o = u.shape[1]
    dtype = _dtype(x, u)
    u_t = u.astype(dtype, copy=False).transpose(0, 2, 1)         # (16, C, O)
    th, tw = _tiles(h, w)
    ph = _phases(x.astype(dtype, copy=False), 1, th + 1, tw + 1)
    y = xp.empty((n, th, 2, tw, 2, o), dtype=dtype)

    def group(chunks):
        for r0, r1 in chunks:
            v = winograd_input(ph, r0, r1)
            winograd_output(xp.matmul(v, u_t), y[:, r0:r1], bias)   # (T, C) @ (C, O)

    _chunk_map(xp)(group, _row_groups(th, n * tw, max(c, o)))
    return y.reshape(n, 2 * th, 2 * tw, o)[:, :h, :w].transpose(0, 3, 1, 2)


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
    dypad = xp.zeros((n, th, 2, tw, 2, o), dtype=dtype)          # channels-last, like ph
    dypad.reshape(n, 2 * th, 2 * tw, o)[:, :h, :w] = dy.transpose(0, 2, 3, 1)

    def group(chunks):
        du = None
        for r0, r1 in chunks:
            rows = r1 - r0
            d = dypad[:, r0:r1]
            half = xp.empty((4, 2, n, rows, tw, o), dtype=dtype)     # A along the columns
            for p in range(2):
                _a(d[:, :, p, :, 0], d[:, :, p, :, 1], out=half[:, p])
            dm = xp.empty((4, 4, n, rows, tw, o), dtype=dtype)        # then along the rows
            for j in range(4):
                _a(half[j, 0], half[j, 1], out=dm[:, j])
            v = winograd_input(ph, r0, r1)
            part = xp.matmul(dm.reshape(16, n * rows * tw, o).transpose(0, 2, 1), v)
            if du is None:
                du = part
            else:
                du += part
        return du

    partial = _chunk_map(xp)(group, _row_groups(th, n * tw, max(c, o)))
    du = partial[0]
    for more in partial[1:]:                                     # in group order
        du += more
    du = du.reshape(4, 4, o * c)
    g = xp.empty((3, 4, o * c), dtype=dtype)                     # G^T along the rows
    _gt(du[0], du[1], du[2], du[3], out=g)
    dw = xp.empty((3, 3, o * c), dtype=dtype)                    # then along the columns
    for a in range(3):
        _gt(*g[a], out=dw[a])
    dw = xp.ascontiguousarray(dw.reshape(9, o * c).T).reshape(o, c, 3, 3)
    return dw, dy.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------- pooling

def is_2x2_pool(kernel, stride, pad):
    """True for the pools of every VGG: 2x2 windows, stride 2, no padding."""
    return kernel == 2 and stride == 2 and pad == 0


def maxpool2d(x, kernel, stride, pad=0):
    """Max-pool with switches.

    x (N, C, H, W) -> (y (N, C, Ho, Wo), switches (N, C, Ho, Wo) uint8 or int32).
    A switch is the raster index ``a*kernel + b`` of the winning offset inside its
    window; ties go to the first in raster order. 2x2 stride-2 pools take a fast path
    with the same results; see :func:`maxpool2d_general`.
    """
    if is_2x2_pool(kernel, stride, pad):
        return maxpool2x2(x)
    return maxpool2d_general(x, kernel, stride, pad)


def unpool2d(dy, switches, x_shape, kernel, stride, pad=0):
    """Route dy (N, C, Ho, Wo) to the switch positions -> (N, C, H, W).
    Backprop and DeconvNet unpooling are this same function; see :func:`unpool2d_general`."""
    if is_2x2_pool(kernel, stride, pad):
        return unpool2x2(dy, switches, x_shape)
    return unpool2d_general(dy, switches, x_shape, kernel, stride, pad)


def maxpool2x2(x):
    """2x2 stride-2 max-pool: the four offsets of every window are four strided views
    (raster order 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1)); a window's switch is chosen by
    three comparisons, each keeping the earlier offset on ties (like argmax). An odd last
    row/column belongs to no window. x (N, C, H, W) -> (y, switches uint8), (N, C, H//2, W//2).
    """
    xp = get_array_module(x)
    ho, wo = x.shape[2] // 2, x.shape[3] // 2
    x00, x01 = x[:, :, 0:2 * ho:2, 0:2 * wo:2], x[:, :, 0:2 * ho:2, 1:2 * wo:2]
    x10, x11 = x[:, :, 1:2 * ho:2, 0:2 * wo:2], x[:, :, 1:2 * ho:2, 1:2 * wo:2]
    right_top = x01 > x00                   # strict: a tie keeps the earlier offset
    right_bottom = x11 > x10
    # max values by maximum and the switch by bit logic, not np.where: selecting on a
    # data-dependent mask mispredicts per element on the CPU (several times slower)
    top, bottom = xp.maximum(x00, x01), xp.maximum(x10, x11)
    down = bottom > top
    y = xp.maximum(top, bottom)
    switches = down.astype(xp.uint8) * xp.uint8(2)
    switches += (right_bottom & down) | (right_top & ~down)   # the winner's column
    return y, switches


def unpool2x2(dy, switches, x_shape):
    """Adjoint of :func:`maxpool2x2`: dy (N, C, Ho, Wo) goes to the offset its switch
    names; offset k is written through its own strided view (windows do not overlap),
    as the product dy * 1[switch == k] (like the gradient's own formula, a non-finite dy
    also spreads NaN over its window)."""
    xp = get_array_module(dy)
    ho, wo = dy.shape[2:]
    dx = _zeros_laid_out_like(x_shape, dy)
    for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        # dy * 1[switch == k]: a branch-free multiply (a masked copy is ~4x slower)
        xp.multiply(dy, switches == k, out=dx[:, :, a:2 * ho:2, b:2 * wo:2])
    return dx


def maxpool2d_general(x, kernel, stride, pad=0):
    """Max-pool with switches, any kernel, stride and pad (the general path).

    x (N, C, H, W) -> (y (N, C, Ho, Wo), switches (N, C, Ho, Wo) uint8 or int32).
    A switch is the raster index ``a*kernel + b`` of the winning offset inside its
    window; ties go to the first in raster order (argmax returns the first maximum).
    Padding is -inf, so it never wins (pad <= kernel // 2 keeps a real pixel in every
    window).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    xpad = _pad(x, pad, value=-xp.inf)
    windows = xp.empty((kernel * kernel, n, c, ho, wo), dtype=x.dtype)
    for a in range(kernel):
        for b in range(kernel):
            windows[a * kernel + b] = _window(xpad, a, b, stride, ho, wo)
    switch_dtype = xp.uint8 if kernel * kernel <= 255 else xp.int32
    switches = windows.argmax(axis=0).astype(switch_dtype)
    y = xp.take_along_axis(windows, switches[None].astype(xp.intp), axis=0)[0]
    return y, switches


def unpool2d_general(dy, switches, x_shape, kernel, stride, pad=0):
    """Route dy (N, C, Ho, Wo) to the switch positions -> (N, C, H, W) (general path).

    Backprop and DeconvNet unpooling are this same function. Each kernel offset is
    written in its own pass, so overlapping windows (stride < kernel) add up and no
    two writes of one pass hit the same position (no undefined duplicate scatter).
    """
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    ho, wo = dy.shape[2:]
    dxpad = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dy.dtype)
    for a in range(kernel):
        for b in range(kernel):
            routed = xp.where(switches == a * kernel + b, dy, 0)
            _window(dxpad, a, b, stride, ho, wo)[...] += routed
    return dxpad[:, :, pad:pad + h, pad:pad + w]


# ----------------------------------------------------------------------------- ReLU

def relu_backward(grad, relu_output, rule):
    """The only place the three passes differ (PAPER.md Sect. 4).

    grad: signal R_{n+1} at the ReLU output; relu_output: the forward output
    max(X_n, 0) (same shape; its positive entries are exactly those with X_n > 0; a
    boolean mask 1[X_n > 0] works too).

    - gradient:  R_{n+1} * 1[X_n > 0]
    - deconvnet: R_{n+1} * 1[R_{n+1} > 0]
    - guided:    R_{n+1} * 1[X_n > 0] * 1[R_{n+1} > 0]
    """
    xp = get_array_module(grad)
    check_rule(rule)
    zero = xp.zeros((), dtype=grad.dtype)
    # R * 1[R > 0] is max(R, 0): one pass over the signal, and DeconvNet never builds
    # the forward mask
    if rule == "deconvnet":
        return xp.maximum(grad, zero)
    # the table's products as products: a multiply by the mask is branch-free, while
    # np.where on a random mask mispredicts per element and runs ~7x slower on the CPU
    positive_input = relu_output > 0
    if rule == "gradient":
        return grad * positive_input
    return grad * (positive_input & (grad > zero))     # both masks as one boolean
