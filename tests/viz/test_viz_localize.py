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
