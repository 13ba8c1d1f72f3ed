"""Tiny inputs must not cause huge memory: a model file's architecture is costed before
any layer is allocated, and an image's resized frame before it is resized. The memory
cases run in a child process under an address-space limit, so a regression fails with a
MemoryError (or is killed) instead of swapping the machine."""
import json
import os
import sys

import h5py
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

import minicnn
from children import limited_run
from minicnn import ModelFileError, assets
from minicnn.io import MAX_ACTIVATIONS, MAX_PARAMETERS
from minicnn.preprocess import (MAX_FRAME_PIXELS, MAX_IMAGE_PIXELS, ImageError,
                                Preprocessing)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 2 * 2**30          # bytes of address space for the child processes


def limited(args, timeout=120):
    """Run ``args`` with at most LIMIT bytes of address space; (returncode, stderr)."""
    proc = limited_run(args, timeout=timeout, memory=LIMIT, cwd=ROOT)
    return proc.returncode, proc.stderr


def model_file(path, arch, input_size, weights=None):
    """A minicnn model file written by hand (no Net is built, so any architecture fits)."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "minicnn-model"
        f.attrs["format_version"] = 1
        f.attrs["architecture"] = json.dumps(arch)
        f.attrs["preprocessing"] = json.dumps({"input_size": list(input_size)})
        group = f.create_group("weights")
        for key, value in (weights or {}).items():
            group.create_dataset(key, data=value)
    return path


def load_in_child(path):
    code = ("import sys, minicnn\n"
            "try:\n"
            f"    minicnn.load({str(path)!r})\n"
            "except minicnn.ModelFileError as exc:\n"
            "    sys.exit(f'refused: {exc}')\n")
    return limited([sys.executable, "-c", code])


# ----------------------------------------------------------------------------- model files

@pytest.mark.parametrize("layer", [
    {"name": "fc", "type": "linear", "config": {"in_features": 10**12, "out_features": 1}},
    {"name": "conv", "type": "conv2d",
     "config": {"in_channels": 3, "out_channels": 2**20, "kernel_size": 64}},
])
def test_a_model_declaring_too_many_parameters_is_refused_before_allocation(tmp_path, layer):
    path = model_file(tmp_path / "huge.h5", [layer], (4, 4))
    assert os.path.getsize(path) < 10_000
    rc, err = load_in_child(path)
    assert rc == 1, err
    assert f"more than {MAX_PARAMETERS} parameters" in err and layer["name"] in err, err
    assert "Traceback" not in err


def test_a_model_whose_activations_are_too_large_is_refused(tmp_path):
    conv = {"name": "conv", "type": "conv2d",
            "config": {"in_channels": 3, "out_channels": 256, "kernel_size": 1}}
    path = model_file(tmp_path / "wide.h5", [conv], (4096, 4096))
    rc, err = load_in_child(path)
    assert rc == 1, err
    assert f"more than {MAX_ACTIVATIONS}" in err and "activations" in err, err


def test_an_input_size_beyond_the_frame_limit_is_refused(tmp_path):
    relu = {"name": "relu", "type": "relu"}
    path = model_file(tmp_path / "big_input.h5", [relu], (100_000, 100_000))
    with pytest.raises(ModelFileError, match="input_size"):
        minicnn.load(path)


def test_the_limits_leave_real_models_alone(tmp_path):
    # the shipped model under the same memory limit: the limit itself is not what refuses
    rc, err = load_in_child(assets.default_model())
    assert rc == 0, err


def test_a_declared_but_never_written_weight_is_refused(tmp_path):
    net = minicnn.vgg_from_config([2, "M"], num_classes=3, input_size=(4, 4), fc_sizes=(),
                                  seed=0)
    path = tmp_path / "model.h5"
    minicnn.save(net, path)
    with h5py.File(path, "r+") as f:
        key = next(k for k in f["weights"] if k.endswith("weight"))
        shape = f["weights"][key].shape
        del f["weights"][key]
        # chunked and never written: HDF5 would return its fill value, zeros
        f["weights"].create_dataset(key, shape=shape, dtype="f4", chunks=True)
    with pytest.raises(ModelFileError, match=f"{key}.*no data stored"):
        minicnn.load(path)


@pytest.mark.parametrize("field, value", [
    ("input_scale", float("inf")), ("input_scale", float("nan")),
    ("std", [1.0, float("inf"), 1.0]), ("std", [1.0, 1.0, float("nan")]),
    ("mean", [0.0, float("nan"), 0.0]),
])
def test_non_finite_preprocessing_is_refused(tmp_path, field, value):
    net = minicnn.vgg_from_config([2, "M"], num_classes=3, input_size=(4, 4), fc_sizes=(),
                                  seed=0)
    path = tmp_path / "model.h5"
    minicnn.save(net, path)
    with h5py.File(path, "r+") as f:
        pre = json.loads(f.attrs["preprocessing"])
        pre[field] = value
        f.attrs["preprocessing"] = json.dumps(pre)
    with pytest.raises(ModelFileError, match=field.split("_")[-1]):
        minicnn.load(path)


def test_a_memory_error_while_loading_is_a_model_file_error(tmp_path, monkeypatch):
    path = tmp_path / "model.h5"
    minicnn.save(minicnn.vgg_from_config([2, "M"], num_classes=3, input_size=(4, 4),
                                         fc_sizes=(), seed=0), path)

    def no_memory(*args, **kwargs):
        raise MemoryError()
    monkeypatch.setattr(minicnn.io, "_check_finite", no_memory)   # runs on every weight read
    # the rehearsal in a child (tests/test_model_fuzz.py) would report it first
    monkeypatch.setattr(minicnn.io, "rehearse", lambda path, read: None)
    with pytest.raises(ModelFileError, match="not enough memory"):
        minicnn.load(path)


def test_long_names_from_the_file_are_cut_in_messages(tmp_path):
    layer = {"name": "x" * 100_000, "type": "leaky" * 10_000}
    path = model_file(tmp_path / "long.h5", [layer], (4, 4))
    with pytest.raises(ModelFileError) as e:
        minicnn.load(path)
    assert "unknown layer type" in str(e.value) and len(str(e.value)) < 600


def test_a_version_message_shows_a_plain_number(tmp_path):
    path = model_file(tmp_path / "v2.h5", [{"name": "relu", "type": "relu"}], (4, 4))
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(2)
    with pytest.raises(ModelFileError, match=r"unsupported format version 2 \("):
        minicnn.load(path)


# ----------------------------------------------------------------------------- images

@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, MAX_IMAGE_PIXELS), h=st.integers(1, MAX_IMAGE_PIXELS),
       resize=st.one_of(st.none(), st.integers(1, 4096)),
       size=st.tuples(st.integers(1, 512), st.integers(1, 512)))
def test_the_resized_frame_is_bounded_or_refused(w, h, resize, size):
    if w * h > MAX_IMAGE_PIXELS:
        return
    p = Preprocessing(input_size=size, resize=resize)
    try:
        (sx, sy), _ = p.fit_geometry((w, h))
    except ImageError as exc:
        assert "aspect ratio" in str(exc)
        return
    assert round(w / sx) * round(h / sy) <= MAX_FRAME_PIXELS


@pytest.fixture(scope="module")
def thin_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thin")
    paths = {}
    for w in (20_000, 100_000):
        paths[w] = folder / f"thin_{w}x1.png"
        Image.new("RGB", (w, 1), (200, 30, 30)).save(paths[w])
        assert os.path.getsize(paths[w]) < 1000
    return paths


@pytest.mark.parametrize("tool, extra", [
    ("saliency.py", ["--tencrop", "on"]),
    ("localize.py", ["--tencrop", "on"]),
    ("saliency.py", ["--method", "guided", "--tencrop", "on"]),
])
@pytest.mark.parametrize("width", [20_000, 100_000])
def test_a_thin_image_is_refused_by_the_tools_within_bounded_memory(tmp_path, thin_images,
                                                                     tool, extra, width):
    out = tmp_path / "out.png"
    rc, err = limited([sys.executable, os.path.join("tools", tool), "--image",
                       str(thin_images[width]), *extra, "--out", str(out)])
    assert rc == 1, err
    assert "aspect ratio" in err and str(thin_images[width]) in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_normal_image_runs_under_the_same_limit(tmp_path):
    out = tmp_path / "out.png"
    rc, err = limited([sys.executable, os.path.join("tools", "saliency.py"), "--tencrop",
                       "on", "--out", str(out)])
    assert rc == 0, err
    assert out.exists()
