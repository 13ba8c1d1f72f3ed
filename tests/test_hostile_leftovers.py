"""What the file-reader hardening left: a model file whose preprocessing overflows
float32, a float image with inf pixels, a line break in a converter's message, and
load_state_dict given keys that are not strings. Each gets one clear line (ValueError
for the API), never warnings and exit 0, nor a TypeError."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import assets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, timeout=120)


def one_line(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize("change", [{"input_scale": 1e300}, {"std": [1e-300, 1.0, 1.0]},
                                    {"mean": [1e300, 0.0, 0.0]}])
def test_preprocessing_that_overflows_float32_is_refused(tmp_path, change):
    path = tmp_path / "model.h5"
    shutil.copy(assets.default_model(), path)
    with h5py.File(path, "r+") as f:
        prep = json.loads(f.attrs["preprocessing"])
        prep.update(change)
        f.attrs["preprocessing"] = json.dumps(prep)
    with pytest.raises(minicnn.ModelFileError, match="network inputs up to|finite"):
        minicnn.load(path)
    line = one_line(tool("saliency.py", "--weights", str(path), "--out",
                         str(tmp_path / "s.png")))
    assert "model.h5" in line
    assert not (tmp_path / "s.png").exists()


@pytest.fixture
def inf_tiff(tmp_path):
    pixels = np.ones((20, 24), np.float32)
    pixels[3, 4] = np.inf
    path = tmp_path / "hot pixel.tif"
    Image.fromarray(pixels, "F").save(path)
    return path


def test_a_float_image_with_inf_pixels_is_refused(inf_tiff):
    with pytest.raises(minicnn.ImageError, match="hot pixel.tif: .*non-finite pixels"):
        minicnn.load_image(inf_tiff)


@pytest.mark.parametrize("name, extra", [("saliency.py", []), ("localize.py", []),
                                         ("deconv.py", [])])
def test_the_tools_refuse_a_float_image_with_inf_pixels(inf_tiff, tmp_path, name, extra):
    out = tmp_path / "out.png"
    line = one_line(tool(name, "--image", str(inf_tiff), "--out", str(out), *extra))
    assert "non-finite pixels" in line
    assert not out.exists()


def test_a_line_break_in_a_converter_message_stays_on_one_line(tmp_path):
    src = tmp_path / "weights\nsecond line.h5"
    src.write_bytes(b"not a weights file")
    r = tool("convert_weights.py", str(src), str(tmp_path / "out.h5"))
    line = one_line(r)
    assert "weights\\nsecond line.h5" in line


@pytest.mark.parametrize("state, words", [({1: np.zeros(3)}, "keys must be 'layer.param' strings"),
                                          ([("fc7.bias", np.zeros(10))], "expected a mapping"),
                                          ({None: 1, "fc7.bias": np.zeros(10)}, "got None")])
def test_load_state_dict_refuses_keys_that_are_not_strings(state, words):
    net = minicnn.load(assets.default_model())
    before = net.state_dict()["fc7.bias"].copy()
    with pytest.raises(ValueError, match=words):
        net.load_state_dict(state, strict=False)
    assert np.array_equal(net.state_dict()["fc7.bias"], before)
