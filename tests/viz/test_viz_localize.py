"""Localisation: GraphCut must find a coloured square given a saliency map on it."""
import numpy as np
import pytest

from minicnn.viz.inputs import View
from minicnn.viz.localize import bounding_box, largest_component, localize_map, seeds
from minicnn.preprocess import Preprocessing

from conftest import canvas


def square_saliency(shape, box, seed=0, inside=1.0):
    """Strong noisy saliency on part of the box, weak noise elsewhere."""
    rng = np.random.default_rng(seed)
    m = 0.1 * rng.random(shape)
    x0, y0, x1, y1 = box
    m[y0 + 2:y1 - 2, x0 + 2:x1 - 2] += inside + rng.random((y1 - y0 - 4, x1 - x0 - 4))
    return m


@pytest.mark.parametrize("box", [(20, 14, 44, 40), (5, 30, 25, 60)])
def test_graphcut_finds_the_square(box):
    img = canvas(64, box)
    # clutter: a non-salient fragment of another colour
    img[2:8, 50:60] = (200, 60, 150)
    loc = localize_map(img, square_saliency((64, 64), box))
    assert not loc.fallback
    assert np.abs(np.array(loc.box) - np.array(box)).max() <= 2, (loc.box, box)


def test_saliency_spilling_outside_the_object_is_cut_back_by_colour():
    box = (16, 16, 40, 44)
    img = canvas(64, box, seed=1)
    m = square_saliency((64, 64), box, seed=1)
    m[10:50, 10:14] += 0.5            # a salient band on the background beside it
    loc = localize_map(img, m)
    assert np.abs(np.array(loc.box) - np.array(box)).max() <= 2, loc.box


def test_seed_quantiles():
    m = np.arange(100, dtype=float).reshape(10, 10)
    fg, bg = seeds(m, 0.95, 0.30)
    assert fg.sum() == 5 and bg.sum() == 30 and not (fg & bg).any()
    with pytest.raises(ValueError):
        seeds(m, 0.3, 0.5)


def test_largest_component_and_box():
    mask = np.zeros((8, 10), bool)
    mask[1:3, 1:3] = True
    mask[4:8, 5:9] = True
    big = largest_component(mask)
    assert big.sum() == 16 and bounding_box(big) == [5, 4, 9, 8]
    assert bounding_box(np.zeros((3, 3), bool)) is None


def test_boxes_map_back_to_the_file_pixels():
    p = Preprocessing(input_size=(64, 64))
    scale, offset = p.fit_geometry((128, 192))          # plain resize
    v = View(x=None, rgb=None, scale=scale, offset=offset, size=(128, 192), path="")
    assert v.box_to_file([10, 10, 20, 30]) == [20, 30, 40, 90]
    # torchvision-style resize + centre crop: check against fit_image with a marker
    from PIL import Image
    p = Preprocessing(input_size=(32, 32), resize=40)
    arr = np.zeros((60, 80, 3), np.uint8)
    arr[20:40, 40:60] = 255
    fitted = np.asarray(p.fit_image(Image.fromarray(arr)))[..., 0] > 128
    box = bounding_box(fitted)
    scale, offset = p.fit_geometry((80, 60))
    v = View(x=None, rgb=None, scale=scale, offset=offset, size=(80, 60), path="")
    assert np.abs(np.array(v.box_to_file(box)) - [40, 20, 60, 40]).max() <= 2


def test_a_large_picture_is_segmented_at_the_network_size_and_boxed_in_its_own_pixels():
    """A 480x640 picture (over MAX_PIXELS) is segmented at about 160x160 pixels' worth:
    its box, masks and seeds come back in the picture's pixels, within a pixel or two of
    the work resolution (640 / 184 = 3.5 picture pixels) of the box at full resolution."""
    from minicnn.viz.localize import MAX_PIXELS, work_size
    box = (200, 120, 420, 360)
    img = canvas(640, box, seed=2)[:480]
    m = square_saliency((480, 640), box, seed=2)
    h, w = work_size(m.shape)
    assert h * w <= MAX_PIXELS and abs(w / h - 640 / 480) < 0.02
    loc = localize_map(img, m)
    assert loc.mask.shape == loc.fg_seeds.shape == loc.segmentation.shape == (480, 640)
    full = localize_map(img, m, max_pixels=None)
    assert np.abs(np.array(loc.box) - np.array(box)).max() <= 6, (loc.box, box)
    assert np.abs(np.array(loc.box) - np.array(full.box)).max() <= 6, (loc.box, full.box)


def test_colour_costs_score_each_distinct_colour_exactly():
    from minicnn.viz.localize import colour_costs, colour_model
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 4, (500, 3)).astype(np.float64) * 60     # 64 distinct colours
    model = colour_model(pixels[:200], 3, seed=0)
    np.testing.assert_array_equal(colour_costs(pixels, model), -model.score_samples(pixels))


def test_seed_sample_is_bounded_and_seeded():
    from minicnn.viz.localize import SEED_SAMPLE, colour_model
    pixels = np.random.default_rng(4).integers(0, 256, (SEED_SAMPLE * 5, 3)).astype(float)
    a, b = colour_model(pixels, seed=1), colour_model(pixels, seed=1)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert not np.array_equal(a.means_, colour_model(pixels, seed=2).means_)
