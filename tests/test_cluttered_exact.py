"""The fast cluttered-canvas renderer is bit-identical to the plain Pillow-based one.

``oracle_render`` below is the renderer as first written (Pillow resizes, one canvas at
a time, every random draw where it happens). The fast path redoes Pillow's resampling
in numpy, draws a canvas's random numbers ahead of painting and paints many canvases at
once; any change in a draw, a rounding or a paste order shows up here as a pixel.
"""
import numpy as np
import pytest
from PIL import Image

from minicnn.datasets import cluttered
from minicnn.datasets.cluttered import ClutteredFashion, _pillow_weights, _resample
from minicnn.datasets.fashion_mnist import DatasetMissing, load_fashion_mnist


# ============================================================== the oracle (Pillow)

def _oracle_shaded_item(image28, size):
    v = np.asarray(Image.fromarray(image28).resize((size, size), Image.BILINEAR),
                   np.float32) / 255.0
    return 0.35 + 0.65 * v, v > cluttered.SILHOUETTE_THRESHOLD


def _oracle_background(rng, size):
    grid = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(grid, "RGB").resize((size, size), Image.BICUBIC),
                        np.float32)
    return np.clip(smooth + rng.normal(0.0, 4.0, smooth.shape).astype(np.float32), 0, 255)


def _oracle_tint(rng, local_colour):
    for _ in range(50):
        tint = rng.uniform(0, 255, 3).astype(np.float32)
        if np.linalg.norm(tint - local_colour) >= cluttered.MIN_CONTRAST:
            return tint
    return np.where(local_colour > 127, 0.0, 255.0).astype(np.float32)


def oracle_render(gen, source, seed, draw_item=True):
    rng = np.random.default_rng(seed)
    s = gen.size
    canvas = _oracle_background(rng, s)
    for _ in range(int(rng.integers(gen.clutter_range[0], gen.clutter_range[1] + 1))):
        other = int(rng.integers(len(gen.images) - 1))
        other += other >= source
        size = int(rng.integers(gen.item_range[0], gen.item_range[1] + 1))
        shade, mask = _oracle_shaded_item(gen.images[other], size)
        f = int(rng.integers(gen.fragment_range[0], gen.fragment_range[1] + 1))
        fy, fx = rng.integers(0, size - f + 1, size=2)
        shade, mask = shade[fy:fy + f, fx:fx + f], mask[fy:fy + f, fx:fx + f]
        y, x = rng.integers(0, s - f + 1, size=2)
        tint = rng.uniform(0, 255, 3).astype(np.float32)
        region = canvas[y:y + f, x:x + f]
        region[mask] = shade[mask, None] * tint
    size = int(rng.integers(gen.item_range[0], gen.item_range[1] + 1))
    shade, mask = _oracle_shaded_item(gen.images[source], size)
    y, x = (int(v) for v in rng.integers(0, s - size + 1, size=2))
    region = canvas[y:y + size, x:x + size]
    tint = _oracle_tint(rng, region[mask].mean(axis=0) if mask.any() else region.mean((0, 1)))
    if draw_item:
        region[mask] = shade[mask, None] * tint
    full_mask = np.zeros((s, s), bool)
    full_mask[y:y + size, x:x + size] = mask
    rows, cols = np.nonzero(full_mask)
    box = ([int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
           if rows.size else [x, y, x + size, y + size])
    return {"image": np.clip(np.rint(canvas), 0, 255).astype(np.uint8),
            "label": int(gen.labels[source]), "mask": full_mask, "box": box}


# ============================================================== items and settings

def blob_items(n=16, seed=0):
    """(n, 28, 28) uint8 textured blobs of random extent, plus an empty and a full item."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(0, 12, 2)
        y1, x1 = rng.integers(14, 29, 2)
        images[i, y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0))
    images[1] = 0      # no silhouette: the empty-mask branches
    images[2] = 255    # silhouette fills the item
    return images, np.arange(n) % 10


SETTINGS = [
    {},
    {"size": 96, "item_range": (20, 60), "clutter_range": (0, 12), "fragment_range": (4, 20)},
    {"size": 28, "item_range": (28, 28), "clutter_range": (0, 0)},        # no resampling
    {"size": 40, "item_range": (10, 40), "clutter_range": (1, 3), "fragment_range": (1, 10)},
    {"size": 50, "item_range": (27, 29), "fragment_range": (27, 27)},
]


def assert_same_canvas(got, want):
    assert got["image"].dtype == np.uint8 and np.array_equal(got["image"], want["image"])
    assert got["mask"].dtype == bool and np.array_equal(got["mask"], want["mask"])
    assert got["box"] == want["box"] and all(type(v) is int for v in got["box"])
    assert got["label"] == want["label"] and type(got["label"]) is int


@pytest.mark.parametrize("setting", range(len(SETTINGS)))
def test_render_and_batch_match_the_pillow_oracle(setting):
    gen = ClutteredFashion(*blob_items(), **SETTINGS[setting])
    count = cluttered._CHUNK + 7            # batch() paints in chunks: cross a boundary
    sources = [k % len(gen) for k in range(count)]
    seeds = [(setting, k) if k % 3 else 1000 * setting + k for k in range(count)]
    want = [oracle_render(gen, src, seed) for src, seed in zip(sources, seeds)]
    for src, seed, w in zip(sources[:12], seeds[:12], want):
        assert_same_canvas(gen.render(np.int64(src), seed), w)
        assert_same_canvas(gen.render(src, seed, draw_item=False),
                           oracle_render(gen, src, seed, draw_item=False))
    images, labels, boxes = gen.batch(np.array(sources), seeds)
    assert np.array_equal(images, np.stack([w["image"] for w in want]))
    assert labels.dtype == np.int64 and np.array_equal(labels, [w["label"] for w in want])
    assert np.array_equal(boxes, [w["box"] for w in want])


def test_fashion_mnist_canvases_match_the_pillow_oracle():
    try:
        images, labels = load_fashion_mnist("test")
    except DatasetMissing:
        pytest.skip("Fashion-MNIST is not installed")
    gen = ClutteredFashion(images, labels)
    sources = np.random.default_rng(7).integers(0, len(gen), 40)
    seeds = [(1234, int(k)) for k in sources]
    got, _, boxes = gen.batch(sources, seeds)
    for image, box, src, seed in zip(got, boxes, sources, seeds):
        want = oracle_render(gen, int(src), seed)
        assert np.array_equal(image, want["image"]) and box.tolist() == want["box"]


# ============================================================== the resampler alone

@pytest.mark.parametrize("size", [1, 2, 5, 13, 24, 27, 28, 29, 33, 40, 57, 64, 81])
def test_bilinear_resample_matches_pillow(size):
    rng = np.random.default_rng(size)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    images[0] = 255
    images[1] = rng.choice(np.array([0, 255], np.uint8), (28, 28))   # hardest edges
    w, clip = _pillow_weights(28, size, "bilinear")
    got = _resample(images, w, w, clip)
    want = [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images]
    assert np.array_equal(got, np.stack(want))
    # a crop computed alone is the same crop of the whole
    f = max(size // 2, 1)
    crop = _resample(images, w[size - f:], w[:f], clip)
    assert np.array_equal(crop, np.stack(want)[:, size - f:, :f])


@pytest.mark.parametrize("size", [2, 3, 4, 7, 28, 64, 96])
def test_bicubic_rgb_resample_matches_pillow(size):
    rng = np.random.default_rng(size)
    grids = rng.integers(0, 256, (40, 3, 3, 3), dtype=np.uint8)
    grids[:20] = rng.choice(np.array([0, 255], np.uint8), (20, 3, 3, 3))  # over/undershoot
    w, clip = _pillow_weights(3, size, "bicubic")
    got = _resample(grids, w, w, clip)
    want = [np.asarray(Image.fromarray(g, "RGB").resize((size, size), Image.BICUBIC))
            for g in grids]
    assert np.array_equal(got, np.stack(want))
