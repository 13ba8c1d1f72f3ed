"""Cluttered Fashion-MNIST: one tinted clothing item on a cluttered colour canvas.

In the spirit of cluttered MNIST (Mnih et al. 2014): each RGB canvas holds one
Fashion-MNIST item, scaled to ``item_range`` pixels, tinted with a random colour (opaque
over its silhouette, keeping its own shading) at a random position, over a smooth random
colour background with several small clutter fragments cut from other items (drawn the
same way, underneath the item). Each canvas keeps its label, the item's exact mask and
its tight bounding box ``[x0, y0, x1, y1]`` (x1, y1 exclusive).

Every canvas is a pure function of (source item, canvas seed), so any canvas can be
regenerated on its own, in any order, on any machine.
"""
import numpy as np
from PIL import Image

SILHOUETTE_THRESHOLD = 0.1   # resized intensity above this is the item (0..1 scale)
MIN_CONTRAST = 90.0          # RGB distance between item tint and the local background


def _shaded_item(image28, size):
    """(28, 28) uint8 -> (shade (size, size) float32 in [0.35, 1], mask (size, size) bool)."""
    v = np.asarray(Image.fromarray(image28).resize((size, size), Image.BILINEAR),
                   np.float32) / 255.0
    mask = v > SILHOUETTE_THRESHOLD
    shade = 0.35 + 0.65 * v   # keeps the item's own shading, never black
    return shade, mask


def _background(rng, size):
    """Smooth random colour field (size, size, 3) float32 in 0..255."""
    grid = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(grid, "RGB").resize((size, size), Image.BICUBIC),
                        np.float32)
    return np.clip(smooth + rng.normal(0.0, 4.0, smooth.shape).astype(np.float32), 0, 255)


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

    def __len__(self):
        return len(self.images)

    def render(self, source, seed, draw_item=True):
        """Canvas of item ``source`` drawn with randomness from ``seed`` (int or tuple).

        Returns dict: image (S, S, 3) uint8, label int, mask (S, S) bool, box [x0, y0, x1, y1].
        ``draw_item=False`` draws the same canvas without the item (for tests)."""
        rng = np.random.default_rng(seed)
        s = self.size
        canvas = _background(rng, s)

        # clutter fragments, cut from other items and drawn like them
        for _ in range(int(rng.integers(self.clutter_range[0], self.clutter_range[1] + 1))):
            other = int(rng.integers(len(self.images) - 1))
            other += other >= source               # never the item itself
            size = int(rng.integers(self.item_range[0], self.item_range[1] + 1))
            shade, mask = _shaded_item(self.images[other], size)
            f = int(rng.integers(self.fragment_range[0], self.fragment_range[1] + 1))
            fy, fx = rng.integers(0, size - f + 1, size=2)
            shade, mask = shade[fy:fy + f, fx:fx + f], mask[fy:fy + f, fx:fx + f]
            y, x = rng.integers(0, s - f + 1, size=2)
            tint = rng.uniform(0, 255, 3).astype(np.float32)
            region = canvas[y:y + f, x:x + f]
            region[mask] = shade[mask, None] * tint

        size = int(rng.integers(self.item_range[0], self.item_range[1] + 1))
        shade, mask = _shaded_item(self.images[source], size)
        y, x = (int(v) for v in rng.integers(0, s - size + 1, size=2))
        region = canvas[y:y + size, x:x + size]
        tint = _tint_against(rng, region[mask].mean(axis=0) if mask.any() else region.mean((0, 1)))
        if draw_item:
            region[mask] = shade[mask, None] * tint
        full_mask = np.zeros((s, s), bool)
        full_mask[y:y + size, x:x + size] = mask
        rows, cols = np.nonzero(full_mask)
        box = ([int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
               if rows.size else [x, y, x + size, y + size])
        return {"image": np.clip(np.rint(canvas), 0, 255).astype(np.uint8),
                "label": int(self.labels[source]), "mask": full_mask, "box": box}

    def batch(self, sources, seeds):
        """Render many canvases -> images (B, S, S, 3) uint8, labels (B,), boxes (B, 4)."""
        out = [self.render(int(src), seed) for src, seed in zip(sources, seeds)]
        return (np.stack([o["image"] for o in out]), np.array([o["label"] for o in out]),
                np.array([o["box"] for o in out]))


def evaluation_split(images, labels, seed=1234, **kwargs):
    """The fixed evaluation set: one canvas per test image, canvas k from seed (seed, k)."""
    gen = ClutteredFashion(images, labels, **kwargs)
    return gen.batch(range(len(gen)), [(seed, k) for k in range(len(gen))])
