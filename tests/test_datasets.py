"""Cluttered Fashion-MNIST generator and the IDX loader (no dataset package needed)."""
import gzip

import numpy as np
import pytest

from minicnn.datasets.cluttered import ClutteredFashion, evaluation_split
from minicnn.datasets.fashion_mnist import DatasetMissing, load_fashion_mnist


def synthetic_items(n=12, seed=0):
    """(n, 28, 28) uint8 'items': bright rectangles with some texture, labels 0..9."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(0, 8, 2)
        y1, x1 = rng.integers(18, 28, 2)
        images[i, y0:y1, x0:x1] = rng.integers(60, 256, (y1 - y0, x1 - x0))
    return images, np.arange(n) % 10


@pytest.fixture(scope="module")
def gen():
    return ClutteredFashion(*synthetic_items())


def test_canvas_shapes_and_types(gen):
    c = gen.render(3, (7, 3))
    assert c["image"].shape == (64, 64, 3) and c["image"].dtype == np.uint8
    assert c["mask"].shape == (64, 64) and c["mask"].dtype == bool
    assert c["label"] == 3


@pytest.mark.parametrize("source", range(6))
def test_item_drawn_exactly_on_its_mask(gen, source):
    """Drawing the item changes pixels only inside its mask (and the canvas is otherwise
    identical), and the mask's tight box is the box reported."""
    seed = (11, source)
    with_item, without = gen.render(source, seed), gen.render(source, seed, draw_item=False)
    changed = np.any(with_item["image"] != without["image"], axis=2)
    mask = with_item["mask"]
    assert not np.any(changed & ~mask)
    # the tint differs from the local background by >= 90 in RGB distance, so almost
    # every mask pixel really changes (rounding can leave a few equal by chance)
    assert changed[mask].mean() > 0.95
    rows, cols = np.nonzero(mask)
    assert with_item["box"] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_items_are_scaled_and_inside(gen):
    for k in range(20):
        x0, y0, x1, y1 = gen.render(k % len(gen), (5, k))["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert max(x1 - x0, y1 - y0) <= 40


def test_deterministic_and_seed_dependent(gen):
    a, b = gen.render(2, (1, 2)), gen.render(2, (1, 2))
    assert np.array_equal(a["image"], b["image"]) and a["box"] == b["box"]
    c = gen.render(2, (1, 3))
    assert not np.array_equal(a["image"], c["image"])


def test_fragments_come_from_other_items_of_the_same_split():
    """With only two items, all clutter must come from the other one."""
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, 4:24, 4:24] = 200            # item 0: a square
    images[1] = 0                          # item 1: empty: its fragments draw nothing
    gen = ClutteredFashion(images, [0, 1])
    with_item, without = gen.render(0, 3), gen.render(0, 3, draw_item=False)
    # canvas without the item holds only background (+ noise): no sharp fragment edges
    bg = without["image"].astype(float)
    assert np.abs(np.diff(bg, axis=0)).max() < 60
    assert with_item["mask"].sum() > 0


def test_evaluation_split_uses_one_canvas_per_item(gen):
    images, labels, boxes = evaluation_split(gen.images, gen.labels, seed=4)
    assert images.shape == (len(gen), 64, 64, 3)
    assert np.array_equal(labels, gen.labels)
    assert boxes.shape == (len(gen), 4)


def write_idx(path, magic, array):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_idx_loader_reads_gz_files(tmp_path):
    images, labels = synthetic_items(5)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x803, images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x801, labels)
    got_images, got_labels = load_fashion_mnist("test", str(tmp_path))
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_idx_loader_errors(tmp_path):
    with pytest.raises(DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", str(tmp_path))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"garbage!"))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"garbage!"))
    with pytest.raises(ValueError, match="not an IDX file"):
        load_fashion_mnist("test", str(tmp_path))
    with pytest.raises(ValueError, match="unknown split"):
        load_fashion_mnist("validation", str(tmp_path))
