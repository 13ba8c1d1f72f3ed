"""Cluttered Fashion-MNIST: one tinted clothing item on a cluttered colour canvas.

In the spirit of cluttered MNIST (Mnih et al. 2014): each RGB canvas holds one
Fashion-MNIST item, scaled to ``item_range`` pixels, tinted with a random colour (opaque
over its silhouette, keeping its own shading) at a random position, over a smooth random
colour background with several small clutter fragments cut from other items (drawn the
same way, underneath the item). Each canvas keeps its label, the item's exact mask and
its tight bounding box ``[x0, y0, x1, y1]`` (x1, y1 exclusive).

Every canvas is a pure function of (source item, canvas seed), so any canvas can be
regenerated on its own, in any order, on any machine.

How it is fast (the canvases are the same bits as the first, Pillow-based version):

* Scaling is Pillow's ``Image.resize`` (BILINEAR for items, BICUBIC for the background)
  redone in numpy bit for bit: ``_pillow_weights`` builds Pillow's fixed-point weights
  and ``_resample`` applies them as matrix products, rounding and clipping after each
  pass as Pillow does. Round trips through Pillow cost more than the tiny resizes.
  tests/test_cluttered_exact.py checks them, and whole canvases, against Pillow.
* A canvas draws all of its random numbers first (``_plan``), in the original order
  (painting draws none, except the item's tint, which depends on the painted canvas and
  so comes last, as before). Then ``_paint`` scales and shades the backgrounds, clutter
  fragments and items of many canvases at once, and only pastes them one by one.
* Fragments scale only the crop that is drawn; shading is a 256-entry lookup table.
"""
from functools import lru_cache

import numpy as np

SILHOUETTE_THRESHOLD = 0.1   # resized intensity above this is the item (0..1 scale)
MIN_CONTRAST = 90.0          # RGB distance between item tint and the local background
_CHUNK = 16                  # canvases painted together (bounds batch()'s scratch memory)

# Shade and silhouette as functions of the resized uint8 intensity u: (256,) tables
# holding exactly the float32 values of v = u / 255 -> 0.35 + 0.65 v, v > threshold.
_V = np.arange(256).astype(np.float32) / 255.0
_SHADE = 0.35 + 0.65 * _V                    # keeps the item's own shading, never black
_SILHOUETTE = _V > SILHOUETTE_THRESHOLD

# Pillow's resampling (libImaging/Resample.c) for 8-bit images: per output pixel, float64
# filter weights normalised to sum 1 are rounded to fixed point with PRECISION_BITS
# fraction bits; sums start at 1 << (PRECISION_BITS - 1) (round half up), are shifted
# back and clipped to 0..255; first along x, then along y from that uint8 result.
_PRECISION_BITS = 32 - 8 - 2


def _bilinear_filter(x):
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic_filter(x, a=-0.5):
    # the same expressions (so the same float64 roundings) as Pillow's bicubic_filter
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


_FILTERS = {"bilinear": (_bilinear_filter, 1.0), "bicubic": (_bicubic_filter, 2.0)}


@lru_cache(maxsize=None)
def _pillow_weights(in_size, out_size, kind):
    """Pillow's weights for resampling ``in_size`` -> ``out_size`` pixels along one axis.

    Returns (weights, clip). weights: read-only (out_size, in_size + 1) float64: Pillow's
    INT32 fixed-point coefficients times 2**-PRECISION_BITS (zero outside each output
    pixel's support), then a column of 1/2, the rounding half that ``_resample`` adds by
    giving its inputs a matching column of ones. clip: False where the result provably
    stays in 0..255 without clipping.
    Mirrors precompute_coeffs + normalize_coeffs_8bpc operation for operation in float64,
    so the coefficients are the same. (For in_size == out_size Pillow skips the pass;
    the weights are then exactly the identity, so applying them changes nothing.)"""
    filt, support = _FILTERS[kind]
    scale = filterscale = float(in_size) / out_size
    filterscale = max(filterscale, 1.0)
    support = support * filterscale
    ss = 1.0 / filterscale
    one = 1 << _PRECISION_BITS
    fixed = np.zeros((out_size, in_size), np.int64)
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)          # int() truncates, as C does
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [filt((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for w in k:                                          # summed in order, as in C
            ww += w
        for x, w in enumerate(k):
            w = w / ww if ww != 0.0 else w
            fixed[xx, xmin + x] = int(-0.5 + w * one) if w < 0 else int(0.5 + w * one)
    # non-negative weights give sums >= 0, and <= 255 while 255 * (row sum) + half < 256
    clip = bool(fixed.min() < 0 or 255 * fixed.sum(axis=1).max() + one // 2 >= 256 * one)
    # Scaling by a power of two is exact, and so are the matrix products in _resample:
    # every product and partial sum is a multiple of 2**-22 below 2**10 (< 32 significant
    # bits, far inside float64's 53), whatever order BLAS adds them in.
    weights = np.concatenate([fixed * (1.0 / one), np.full((out_size, 1), 0.5)], axis=1)
    weights.flags.writeable = False
    return weights, clip


def _floor_clip8(acc, clip, out):
    """Pillow's clip8 of acc (float64 fixed-point sums / 2**22, the half already added):
    floor, then clip to 0..255 if ``clip``; written to ``out`` (any real dtype)."""
    np.floor(acc, out=out, casting="unsafe")
    if clip:
        np.clip(out, 0, 255, out=out)
    return out


def _resample(images, wy, wx, clip, dtype=np.float64):
    """Pillow's 8-bit two-pass resampling of a stack of images.

    images (N, H, W) or (N, H, W, C), any real dtype; wy (N, H', H + 1) and wx
    (N, W', W + 1), or (H', H + 1) / (W', W + 1) shared by all images: rows of
    ``_pillow_weights`` matrices (a row slice gives just that crop of the output).
    Returns (N, H', W'[, C]) ``dtype`` holding Pillow's uint8 values."""
    n, h, w = images.shape[:3]
    # along x: clip8(sum_x images[n, y, x] wx[n, x', x] + 1/2); the 1/2 comes from a
    # column of ones (colour: the channels ride along as extra columns)
    ones = np.ones((n, h, w + 1) + images.shape[3:])
    ones[:, :, :w] = images
    acc = ones @ np.swapaxes(wx, -1, -2) if images.ndim == 3 else wx @ ones
    rows = acc.reshape(n, h, -1)                             # (N, H, W'[ C])
    # along y, from the uint8-valued result of the x pass, again with a row of ones
    mid = np.ones((n, h + 1, rows.shape[2]))
    _floor_clip8(rows, clip, out=mid[:, :h])
    out = wy @ mid                                           # (N, H', W'[ C])
    out = _floor_clip8(out, clip, out=np.empty(out.shape, dtype))
    return out.reshape((n, out.shape[1]) + acc.shape[2:])


def _tint_against(rng, local_colour):
    """A random RGB tint at least MIN_CONTRAST away from ``local_colour``."""
    for _ in range(50):
        tint = rng.uniform(0, 255, 3).astype(np.float32)
        if np.linalg.norm(tint - local_colour) >= MIN_CONTRAST:
            return tint
    return np.where(local_colour > 127, 0.0, 255.0).astype(np.float32)


class ClutteredFashion:
    """Renders cluttered canvases from Fashion-MNIST images of one split.

    images: (N, 28, 28) uint8; labels: (N,) ints. Fragments are cut only from the same
    images, so a split built from Fashion-MNIST's test images never sees a training
    image.
    """

    def __init__(self, images, labels, size=64, item_range=(24, 40), clutter_range=(4, 8),
                 fragment_range=(8, 14)):
        self.images = np.asarray(images, np.uint8)
        self.labels = np.asarray(labels, np.int64)
        if self.images.ndim != 3 or self.images.shape[1:] != (28, 28):
            raise ValueError(f"images must be (N, 28, 28), got {self.images.shape}")
        if not item_range[1] <= size:
            raise ValueError(f"items of up to {item_range[1]} px do not fit a {size} px canvas")
        self.size, self.item_range = int(size), tuple(item_range)
        self.clutter_range, self.fragment_range = tuple(clutter_range), tuple(fragment_range)
        # Item-scaling weights of every item size, zero-padded so any crop of up to
        # pad rows starting inside the item is one slice: (sizes, max size + pad, 28 + 1).
        lo, hi = self.item_range
        pad = max(self.fragment_range[1], 0)
        self._item_weights = np.zeros((hi - lo + 1, hi + pad, 28 + 1))
        self._item_clip = False
        for size in range(lo, hi + 1):
            w, clip = _pillow_weights(28, size, "bilinear")
            self._item_weights[size - lo, :size] = w
            self._item_clip |= clip
        self._item_weights.flags.writeable = False

    def __len__(self):
        return len(self.images)

    def render(self, source, seed, draw_item=True):
        """Canvas of item ``source`` drawn with randomness from ``seed`` (int or tuple).

        Returns dict: image (S, S, 3) uint8, label int, mask (S, S) bool, box [x0, y0, x1, y1].
        ``draw_item=False`` draws the same canvas without the item (for tests)."""
        canvas = np.empty((1, self.size, self.size, 3), np.float32)
        boxes, masks = self._paint([self._plan(int(source), seed, canvas[0])], canvas,
                                   draw_item, want_masks=True)
        return {"image": _to_uint8(canvas)[0], "label": int(self.labels[source]),
                "mask": masks[0], "box": boxes[0]}

    def batch(self, sources, seeds):
        """Render many canvases -> images (B, S, S, 3) uint8, labels (B,), boxes (B, 4)."""
        pairs = [(int(src), seed) for src, seed in zip(sources, seeds)]
        s = self.size
        images, boxes = np.empty((len(pairs), s, s, 3), np.uint8), []
        canvases = np.empty((min(len(pairs), _CHUNK), s, s, 3), np.float32)
        for start in range(0, len(pairs), _CHUNK):
            chunk = pairs[start:start + _CHUNK]
            plans = [self._plan(src, seed, canvas) for (src, seed), canvas in zip(chunk, canvases)]
            boxes += self._paint(plans, canvases[:len(chunk)])[0]
            images[start:start + len(chunk)] = _to_uint8(canvases[:len(chunk)])
        labels = self.labels[[src for src, _ in pairs]]
        return images, labels, np.array(boxes)

    def _plan(self, source, seed, noise_out):
        """Draw every random number of canvas (source, seed) except the item's tint, in
        the order the canvas has always drawn them. The background noise (S, S, 3) float32
        goes straight to ``noise_out``; returns a dict of the rest (and the generator,
        for the tint)."""
        rng = np.random.default_rng(seed)
        s, (item_lo, item_hi), (frag_lo, frag_hi) = self.size, self.item_range, self.fragment_range
        grid = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
        # rng.normal(0.0, 4.0, shape).astype(np.float32) without the temporaries:
        # Generator.normal returns 0.0 + 4.0 * (the same standard normal draws)
        np.multiply(rng.standard_normal(noise_out.shape), 4.0, out=noise_out,
                    casting="same_kind")

        # clutter fragments, cut from other items: rows of
        # (other item, its scaled size, crop side f, crop offset fy, fx, canvas y, x)
        count = int(rng.integers(self.clutter_range[0], self.clutter_range[1] + 1))
        fragments, tints = np.empty((count, 7), np.intp), np.empty((count, 3), np.float32)
        for i in range(count):
            other = int(rng.integers(len(self.images) - 1))
            other += other >= source               # never the item itself
            size = int(rng.integers(item_lo, item_hi + 1))
            f = int(rng.integers(frag_lo, frag_hi + 1))
            # Scalar draws in pairs give the values of one rng.integers(lo, hi, size=2)
            # from the same stream (numpy fills arrays one draw at a time) at a third of
            # the call overhead; tests/test_cluttered_exact.py pins this down.
            fy, fx = int(rng.integers(0, size - f + 1)), int(rng.integers(0, size - f + 1))
            y, x = int(rng.integers(0, s - f + 1)), int(rng.integers(0, s - f + 1))
            fragments[i] = other, size, f, fy, fx, y, x
            tints[i] = rng.uniform(0, 255, 3)      # rounded to float32
        size = int(rng.integers(item_lo, item_hi + 1))
        y, x = int(rng.integers(0, s - size + 1)), int(rng.integers(0, s - size + 1))
        return {"source": source, "rng": rng, "grid": grid, "fragments": fragments,
                "tints": tints, "size": size, "y": y, "x": x}

    def _paint(self, plans, canvases, draw_item=True, want_masks=False):
        """Paint planned canvases onto ``canvases`` (B, S, S, 3) float32, which hold each
        canvas's background noise on entry and its float pixels (0..255) on return.

        Returns (boxes, masks): per canvas the item's box [x0, y0, x1, y1] and, if
        ``want_masks``, its mask (S, S) bool (else masks is None)."""
        s, (item_lo, item_hi) = self.size, self.item_range

        # backgrounds: 3 x 3 RGB grids scaled (bicubic) to S x S, plus the noise
        w, clip = _pillow_weights(3, s, "bicubic")
        smooth = _resample(np.stack([p["grid"] for p in plans]), w, w, clip, np.float32)
        np.add(canvases, smooth, out=canvases)
        np.clip(canvases, 0, 255, out=canvases)

        # clutter fragments, all at once: only each one's pad x pad crop (>= its f x f)
        frags = np.concatenate([p["fragments"] for p in plans])
        if len(frags):
            other, size, f, fy, fx, y, x = frags.T
            pad = self._item_weights.shape[1] - item_hi
            rows, which = np.arange(pad), (size - item_lo)[:, None]
            wy = self._item_weights[which, fy[:, None] + rows]       # (n, pad, 28 + 1)
            wx = self._item_weights[which, fx[:, None] + rows]
            crops = _resample(self.images[other], wy, wx, self._item_clip, np.intp)
            tints = np.concatenate([p["tints"] for p in plans])
            shades = _SHADE[crops][..., None] * tints[:, None, None]   # (n, pad, pad, 3)
            masks = _SILHOUETTE[crops][..., None]                      # (n, pad, pad, 1)
            # pasted one by one, in order: later fragments cover earlier ones
            canvas_of = np.repeat(np.arange(len(plans)), [len(p["fragments"]) for p in plans])
            for i, (b, fi, yi, xi) in enumerate(zip(canvas_of.tolist(), f.tolist(), y.tolist(),
                                                    x.tolist())):
                np.copyto(canvases[b, yi:yi + fi, xi:xi + fi], shades[i, :fi, :fi],
                          where=masks[i, :fi, :fi])

        # items, all scaled at once (padded to the largest size with zero weights: the
        # padding is intensity 0, outside the silhouette)
        table = self._item_weights[[p["size"] - item_lo for p in plans], :item_hi]
        items = _resample(self.images[[p["source"] for p in plans]], table, table,
                          self._item_clip, np.intp)
        shades, masks = _SHADE[items], _SILHOUETTE[items]           # (B, hi, hi)

        # tight boxes: first and last silhouette row / column (the whole item if empty)
        sizes, ys, xs = (np.array([p[k] for p in plans]) for k in ("size", "y", "x"))
        row_any, col_any = masks.any(axis=2), masks.any(axis=1)     # (B, hi)
        found = row_any.any(axis=1)
        boxes = np.where(found[:, None], np.stack([
            xs + col_any.argmax(axis=1), ys + row_any.argmax(axis=1),
            xs + item_hi - col_any[:, ::-1].argmax(axis=1),
            ys + item_hi - row_any[:, ::-1].argmax(axis=1)], axis=1),
            np.stack([xs, ys, xs + sizes, ys + sizes], axis=1))

        # tinted against the painted canvas, one by one
        for p, canvas, shade, mask, has_item in zip(plans, canvases, shades, masks,
                                                    found.tolist()):
            size, y, x = p["size"], p["y"], p["x"]
            shade, mask = shade[:size, :size], mask[:size, :size]
            region = canvas[y:y + size, x:x + size]
            tint = _tint_against(p["rng"], region[mask].mean(axis=0) if has_item
                                 else region.mean((0, 1)))
            if draw_item:
                np.copyto(region, shade[:, :, None] * tint, where=mask[:, :, None])

        full_masks = None
        if want_masks:
            full_masks = np.zeros((len(plans), s, s), bool)
            for full, mask, p in zip(full_masks, masks, plans):
                size, y, x = p["size"], p["y"], p["x"]
                full[y:y + size, x:x + size] = mask[:size, :size]
        return boxes.tolist(), full_masks


def _to_uint8(canvases):
    """Float canvases (..., 3) in 0..255 -> uint8, rounding half to even; in place."""
    np.rint(canvases, out=canvases)
    np.clip(canvases, 0, 255, out=canvases)
    return canvases.astype(np.uint8)


def evaluation_split(images, labels, seed=1234, **kwargs):
    """The fixed evaluation set: one canvas per test image, canvas k from seed (seed, k)."""
    gen = ClutteredFashion(images, labels, **kwargs)
    return gen.batch(range(len(gen)), [(seed, k) for k in range(len(gen))])
