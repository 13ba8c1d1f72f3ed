"""minicnn.preprocess: image <-> network input round trips (RGB and BGR models), resize /
centre-crop geometry, odd PIL modes, metadata validation, load_image errors."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import ImageError, Preprocessing, load_image
import minicnn.preprocess as P

TORCHVISION = {"input_size": [12, 16], "channel_order": "RGB", "input_scale": 1.0,
               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
CAFFE = {"input_size": [12, 16], "channel_order": "BGR", "input_scale": 255.0,
         "mean": [103.939, 116.779, 123.68]}


def random_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- round trip

@pytest.mark.parametrize("cfg", [TORCHVISION, CAFFE], ids=["rgb", "bgr"])
def test_image_input_image_round_trip(cfg):
    pre = Preprocessing.from_dict(cfg)
    rgb = random_rgb(12, 16)
    x = pre.image_to_input(Image.fromarray(rgb))
    assert x.shape == (3, 12, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(pre.input_to_image(x), rgb)
    np.testing.assert_allclose(pre.input_to_array(x), rgb, atol=1e-3)


def test_rgb_input_values_computed_independently():
    pre = Preprocessing.from_dict(TORCHVISION)
    rgb = random_rgb(12, 16, 1)
    x = pre.image_to_input(Image.fromarray(rgb))
    for c in range(3):
        expected = (rgb[:, :, c] / 255.0 - TORCHVISION["mean"][c]) / TORCHVISION["std"][c]
        np.testing.assert_allclose(x[c], expected, rtol=1e-5, atol=1e-5)


def test_bgr_models_get_blue_first_on_a_0_255_scale():
    pre = Preprocessing.from_dict(CAFFE)
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 0] = 200            # red
    rgb[..., 2] = 10             # blue
    x = pre.image_to_input(Image.fromarray(rgb))
    np.testing.assert_allclose(x[0], 10 - 103.939, rtol=1e-6)    # B
    np.testing.assert_allclose(x[1], 0 - 116.779, rtol=1e-6)     # G
    np.testing.assert_allclose(x[2], 200 - 123.68, rtol=1e-6)    # R
    # and back: red is red again
    np.testing.assert_array_equal(pre.input_to_image(x)[0, 0], [200, 0, 10])


def test_input_to_image_clips():
    pre = Preprocessing.from_dict({"input_size": [2, 2]})
    x = np.full((3, 2, 2), 5.0, np.float32)       # 5 * 255 > 255
    x[1] = -1.0
    img = pre.input_to_image(x)
    assert img.dtype == np.uint8
    assert (img[..., 0] == 255).all() and (img[..., 1] == 0).all()


# ----------------------------------------------------------------------------- geometry

def test_no_resize_goes_straight_to_input_size():
    pre = Preprocessing.from_dict({"input_size": [10, 14]})
    img = pre.fit_image(Image.fromarray(random_rgb(37, 23)))
    assert img.size == (14, 10) and img.mode == "RGB"
    assert pre.image_to_input(Image.fromarray(random_rgb(37, 23))).shape == (3, 10, 14)


@pytest.mark.parametrize("w,h", [(40, 20), (20, 40)])
def test_resize_shorter_side_then_centre_crop(w, h):
    """A 2:1 image with the left/top quarter black, middle white, right/bottom quarter
    black: resized so the shorter side is 16, the centre 16x16 crop is all white
    (away from the blurred edges)."""
    arr = np.zeros((h, w, 3), np.uint8)
    if w > h:
        arr[:, w // 4: 3 * w // 4] = 255
    else:
        arr[h // 4: 3 * h // 4, :] = 255
    pre = Preprocessing.from_dict({"input_size": [16, 16], "resize": 16})
    out = np.asarray(pre.fit_image(Image.fromarray(arr)))
    assert out.shape == (16, 16, 3)
    assert (out[1:-1, 1:-1] >= 250).all()
    # off-centre crop would show black: check the resized image really has black borders
    big = np.asarray(Image.fromarray(arr).resize((max(w, h) * 16 // min(w, h), 16) if w > h
                                                 else (16, max(w, h) * 16 // min(w, h))))
    assert big.min() == 0


def test_resize_larger_than_input_crops_the_centre():
    arr = np.zeros((30, 30, 3), np.uint8)
    arr[10:20, 10:20] = 255                       # white centre square, 1/3 of the side
    pre = Preprocessing.from_dict({"input_size": [10, 10], "resize": 30})
    out = np.asarray(pre.fit_image(Image.fromarray(arr)))
    assert (out == 255).all()


# ----------------------------------------------------------------------------- modes

def _input(img, cfg=None):
    return Preprocessing.from_dict(cfg or {"input_size": [4, 6], "input_scale": 255.0}).image_to_input(img)


def test_grey_l_gives_three_equal_channels():
    g = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    x = _input(Image.fromarray(g, "L"))
    for c in range(3):
        np.testing.assert_array_equal(x[c], g)


def test_rgba_is_composited_on_white():
    a = np.zeros((4, 6, 4), np.uint8)
    a[..., 0] = 100
    a[:, :3, 3] = 255          # left: opaque red-ish
    a[:, 3:, 3] = 0            # right: transparent -> white
    x = _input(Image.fromarray(a, "RGBA"))
    np.testing.assert_array_equal(x[:, :, :3], np.array([100, 0, 0])[:, None, None] * np.ones((1, 4, 3)))
    np.testing.assert_array_equal(x[:, :, 3:], 255)


def test_la_mode():
    a = np.zeros((4, 6, 2), np.uint8)
    a[..., 0] = 50
    a[..., 1] = 255
    x = _input(Image.fromarray(a, "LA"))
    np.testing.assert_array_equal(x, 50)


def test_palette_modes():
    img = Image.new("P", (6, 4))
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    img.paste(1, (0, 0, 3, 4))
    x = _input(img)
    np.testing.assert_array_equal(x[:, 0, 0], [10, 20, 30])
    np.testing.assert_array_equal(x[:, 0, 5], [0, 0, 0])
    img.info["transparency"] = 0                 # index 0 transparent -> white
    x = _input(img)
    np.testing.assert_array_equal(x[:, 0, 5], [255, 255, 255])
    np.testing.assert_array_equal(x[:, 0, 0], [10, 20, 30])


@pytest.mark.parametrize("mode,dtype", [("I;16", np.uint16), ("I", np.int32), ("F", np.float32)])
def test_high_bit_depth_modes_are_rescaled_to_0_255(mode, dtype):
    arr = (np.arange(24).reshape(4, 6) * 1000 + 500).astype(dtype)
    img = Image.fromarray(arr)
    assert img.mode == mode
    x = _input(img)
    assert x[0, 0, 0] == 0 and x[0, -1, -1] == 255
    expected = (arr - arr.min()) / (arr.max() - arr.min()) * 255
    np.testing.assert_allclose(x[1], expected, atol=1.0)     # truncated to uint8


def test_constant_16_bit_image_is_black_not_nan():
    img = Image.fromarray(np.full((4, 6), 7, np.uint16))
    assert img.mode == "I;16"
    x = _input(img)
    assert np.isfinite(x).all() and (x == 0).all()


@pytest.mark.parametrize("mode", ["1", "CMYK", "YCbCr"])
def test_other_modes_become_rgb(mode):
    img = Image.new(mode, (6, 4))
    assert _input(img).shape == (3, 4, 6)


# ----------------------------------------------------------------------------- metadata

def test_to_dict_from_dict_round_trip_keeps_extra_keys():
    d = dict(CAFFE, resize=256, note="from caffe")
    pre = Preprocessing.from_dict(d)
    assert pre.extra == {"note": "from caffe"}
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert Preprocessing.from_dict({"channel_order": "bgr"}).channel_order == "BGR"


@pytest.mark.parametrize("bad,word", [
    ({"channel_order": "RGBA"}, "channel_order"), ({"input_size": [0, 3]}, "input_size"),
    ({"mean": [1, 2]}, "mean"), ({"std": [1, 0, 1]}, "std"), ({"mean": [np.nan, 0, 0]}, "mean"),
    ({"input_scale": 0}, "input_scale"), ({"resize": 2.5}, "resize"), ({"resize": 0}, "resize"),
    ({"input_size": "x"}, "preprocessing"), ({"mean": None}, "preprocessing"),
])
def test_bad_metadata_is_rejected(bad, word):
    with pytest.raises(ValueError, match=word):
        Preprocessing.from_dict(bad)


def test_net_preprocess_uses_the_model_metadata():
    net = minicnn.vgg_from_config([2, "M"], num_classes=2, input_size=(6, 8), fc_sizes=(),
                                  meta={"preprocessing": {"input_size": [6, 8],
                                                          "channel_order": "BGR"}})
    rgb = random_rgb(6, 8)
    x = net.preprocess(Image.fromarray(rgb))
    np.testing.assert_allclose(x[0], rgb[..., 2] / 255.0, rtol=1e-6)


# ----------------------------------------------------------------------------- load_image

def _png_bytes(w, h, rgb=None):
    rgb = random_rgb(max(h, 1), max(w, 1)) if rgb is None else rgb

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(rgb.shape[0]))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_load_image_reads_fully_into_rgb(tmp_path):
    rgb = random_rgb(5, 7)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    img = load_image(path)
    path.unlink()                      # fully decoded: no lazy access to the file
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), rgb)
    Image.fromarray(random_rgb(5, 7)[..., 0], "L").save(tmp_path / "g.png")
    assert load_image(str(tmp_path / "g.png")).mode == "RGB"


def _image_error(path, *words):
    with pytest.raises(ImageError) as e:
        load_image(path)
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_load_image_missing_and_directory(tmp_path):
    _image_error(tmp_path / "nope.png", "no such")
    _image_error(tmp_path, "no such")


def test_load_image_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("just text\n")
    _image_error(p, "not an image")
    e = tmp_path / "empty.jpg"
    e.write_bytes(b"")
    _image_error(e)


def test_load_image_truncated_png(tmp_path):
    data = _png_bytes(64, 64)
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    _image_error(p, "truncated")


def test_load_image_zero_size(tmp_path):
    p = tmp_path / "zero.png"
    p.write_bytes(_png_bytes(0, 5))
    _image_error(p)


def test_load_image_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)   # restored after
    monkeypatch.setattr(P, "MAX_IMAGE_PIXELS", 100)
    p = tmp_path / "big.png"
    Image.fromarray(random_rgb(12, 12)).save(p)          # 144 > 100
    _image_error(p, "too large")
    Image.fromarray(random_rgb(20, 20)).save(p)          # > 2x limit: Pillow's own bomb error
    _image_error(p, "too large")
    Image.fromarray(random_rgb(10, 10)).save(p)          # at the limit: fine
    assert load_image(p).size == (10, 10)


def test_an_unreadable_image_names_its_file_once(tmp_path):
    from minicnn.preprocess import ImageError, load_image
    path = tmp_path / "notes.png"
    path.write_text("garbage")
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert str(e.value).count(str(path)) == 1 and "not an image" in str(e.value)
