"""minicnn.save / minicnn.load: round trip, one clear ModelFileError per kind of bad file,
atomic save."""
import json
import os

import h5py
import numpy as np
import pytest

import minicnn
from minicnn import ModelFileError

CLASSES = ["cat", "dog", "bird", "fish", "ant"]
PRE = {"input_size": [10, 12], "channel_order": "BGR", "input_scale": 255.0,
       "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0], "resize": None}


def make_net(seed=0):
    return minicnn.vgg_from_config([3, "M", 4, "M"], num_classes=5, input_size=(10, 12),
                                   fc_sizes=(6,), seed=seed,
                                   meta={"preprocessing": PRE, "class_names": CLASSES})


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.h5"
    net = make_net()
    minicnn.save(net, path, meta={"source": "unit test"})
    return net, path


def rewrite(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


def load_error(path):
    with pytest.raises(ModelFileError) as e:
        minicnn.load(path)
    assert str(path) in str(e.value), "the message must name the file"
    return str(e.value)


# ----------------------------------------------------------------------------- round trip

def test_round_trip_weights_architecture_metadata_and_logits(saved):
    net, path = saved
    back = minicnn.load(path)
    assert back.names == net.names
    assert back.architecture() == net.architecture()
    sd, sd2 = net.state_dict(), back.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        np.testing.assert_array_equal(sd[k], sd2[k], err_msg=k)
    assert back.class_names == CLASSES
    pre = back.preprocessing
    assert pre.channel_order == "BGR" and pre.input_size == (10, 12) and pre.input_scale == 255.0
    assert pre.mean == tuple(PRE["mean"])
    assert back.meta["source"] == "unit test"
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 12)).astype(np.float32)
    np.testing.assert_array_equal(net.eval().forward(x), back.eval().forward(x))


def test_save_without_class_names(tmp_path):
    net = minicnn.vgg_from_config([2, "M"], num_classes=3, input_size=(4, 4), fc_sizes=())
    minicnn.save(net, tmp_path / "m.h5")
    back = minicnn.load(tmp_path / "m.h5")
    assert back.class_names == []
    assert back.preprocessing.input_size == (4, 4)


# ----------------------------------------------------------------------------- bad files

def test_missing_file(tmp_path):
    assert "no such file" in load_error(tmp_path / "nope.h5")


def test_directory(tmp_path):
    assert "not a file" in load_error(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"\x89HDF\r\n\x1a\n"])
def test_not_hdf5(tmp_path, content):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    msg = load_error(path)
    assert "HDF5" in msg


def test_hdf5_without_format_attribute(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.zeros(3))
    assert "not a minicnn model" in load_error(path)


@pytest.mark.parametrize("version", [
    2, 0, -1, 1.5, "one",
])
def test_wrong_format_version(saved, version):
    _, path = saved
    rewrite(path, lambda f: f.attrs.__setitem__("format_version", version))
    msg = load_error(path)
    assert "version" in msg and str(version) in msg


def test_missing_format_version(saved):
    _, path = saved
    rewrite(path, lambda f: f.attrs.__delitem__("format_version"))
    assert "version" in load_error(path)


def test_missing_weight(saved):
    _, path = saved
    rewrite(path, lambda f: f["weights"].__delitem__("fc6.bias"))
    assert "fc6.bias" in load_error(path)


def test_unexpected_weight(saved):
    _, path = saved
    rewrite(path, lambda f: f["weights"].create_dataset("fc9.weight", data=np.zeros(2, np.float32)))
    assert "fc9.weight" in load_error(path)


def test_mis_shaped_weight(saved):
    _, path = saved

    def edit(f):
        del f["weights/conv2_1.weight"]
        f["weights"].create_dataset("conv2_1.weight", data=np.zeros((4, 3, 5, 5), np.float32))
    rewrite(path, edit)
    msg = load_error(path)
    assert "conv2_1.weight" in msg and "(4, 3, 5, 5)" in msg and "(4, 3, 3, 3)" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weight(saved, bad):
    _, path = saved

    def edit(f):
        f["weights/fc7.weight"][0, 1] = bad
    rewrite(path, edit)
    msg = load_error(path)
    assert "fc7.weight" in msg and ("NaN" in msg or "infinite" in msg)


def test_non_float_weight(saved):
    _, path = saved

    def edit(f):
        shape = f["weights/fc7.bias"].shape
        del f["weights/fc7.bias"]
        f["weights"].create_dataset("fc7.bias", data=np.zeros(shape, np.int32))
    rewrite(path, edit)
    assert "fc7.bias" in load_error(path)


def _edit_arch(path, change):
    def edit(f):
        arch = json.loads(f.attrs["architecture"])
        f.attrs["architecture"] = change(arch) if not isinstance(change, str) else change
    rewrite(path, edit)


def test_unknown_layer_type(saved):
    _, path = saved

    def change(arch):
        arch[1]["type"] = "leaky_relu"
        return json.dumps(arch)
    _edit_arch(path, change)
    msg = load_error(path)
    assert "leaky_relu" in msg and "relu1_1" in msg and "conv2d" in msg


@pytest.mark.parametrize("raw", ["[{", "{}", "[]", "[1, 2]", '[{"name": "a"}]'])
def test_bad_architecture_json(saved, raw):
    _, path = saved
    _edit_arch(path, raw)
    assert "architecture" in load_error(path)


def test_bad_layer_config(saved):
    _, path = saved

    def change(arch):
        arch[0]["config"]["kernel_size"] = 0
        return json.dumps(arch)
    _edit_arch(path, change)
    assert "conv1_1" in load_error(path)


def test_architecture_not_fitting_the_input_size(saved):
    _, path = saved

    def edit(f):
        pre = json.loads(f.attrs["preprocessing"])
        pre["input_size"] = [14, 12]
        f.attrs["preprocessing"] = json.dumps(pre)
    rewrite(path, edit)
    assert "input size" in load_error(path)


def test_class_names_count_mismatch(saved):
    _, path = saved

    def edit(f):
        del f["class_names"]
        f.create_dataset("class_names", data=np.array(["a", "b"], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
    rewrite(path, edit)
    msg = load_error(path)
    assert "2 class names" in msg and "5" in msg


def test_bad_preprocessing_metadata(saved):
    _, path = saved
    rewrite(path, lambda f: f.attrs.__setitem__("preprocessing", json.dumps({"channel_order": "RGBX"})))
    assert "channel_order" in load_error(path)


def test_preprocessing_that_is_not_an_object(saved):
    _, path = saved
    rewrite(path, lambda f: f.attrs.__setitem__("preprocessing", "[1, 2]"))
    assert "preprocessing" in load_error(path)


def test_corrupt_hdf5_internals(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 3]))      # truncated HDF5
    load_error(path)


def test_load_never_returns_a_half_built_net(saved, monkeypatch):
    """A failure at the last check (class names) raises; nothing is returned."""
    _, path = saved
    rewrite(path, lambda f: f.__delitem__("weights/fc7.weight"))
    result = None
    with pytest.raises(ModelFileError):
        result = minicnn.load(path)
    assert result is None


def test_unknown_device(saved):
    _, path = saved
    with pytest.raises(ValueError, match="cuda"):
        minicnn.load(path, device="gpu")


# ----------------------------------------------------------------------------- atomic save

def test_interrupted_save_keeps_the_old_file_and_leaves_no_temp(saved, monkeypatch):
    net, path = saved
    before = path.read_bytes()
    other = make_net(seed=7)
    calls = {"n": 0}
    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:                    # in the middle of writing the weights
            raise KeyboardInterrupt("simulated interruption")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        minicnn.save(other, path)
    monkeypatch.undo()
    assert calls["n"] == 3
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["model.h5"], "temporary file left behind"
    back = minicnn.load(path)
    np.testing.assert_array_equal(back.state_dict()["fc7.weight"], net.state_dict()["fc7.weight"])


def test_save_overwrites_atomically(saved):
    _, path = saved
    other = make_net(seed=7)
    minicnn.save(other, path)
    assert sorted(os.listdir(path.parent)) == ["model.h5"]
    np.testing.assert_array_equal(minicnn.load(path).state_dict()["fc7.weight"],
                                  other.state_dict()["fc7.weight"])


def test_saved_files_get_ordinary_permissions(tmp_path):
    """atomic_write's temporary file is private (0600); the result must not be."""
    import os
    import stat
    from minicnn.io import atomic_write
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("x"))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("bad", ["group", "numbers", "matrix"])
def test_class_names_that_are_not_a_list_of_strings(saved, bad):
    _, path = saved

    def damage(f):
        del f["class_names"]
        if bad == "group":
            f.create_group("class_names")
        elif bad == "numbers":
            f.create_dataset("class_names", data=np.arange(3))
        else:
            f.create_dataset("class_names", data=np.array([["a", "b"]], dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
    rewrite(path, damage)
    assert "class_names must be a 1-D dataset of strings" in load_error(path)


def test_loading_holds_the_weights_about_once(tmp_path):
    """The weights are read straight into the net's own arrays: loading a model with 64 MB
    of weights raises the peak resident memory by well under twice that (it was three
    times: zeros, the file's arrays and their float32 copies)."""
    import subprocess
    import sys
    path = tmp_path / "wide.h5"
    net = minicnn.vgg_from_config([2, "M"], num_classes=10, input_size=(8, 8),
                                  fc_sizes=(4000, 4000), seed=0)
    weights = sum(layer.params[p].nbytes for _, layer, p in net.parameters())
    assert weights > 64e6
    minicnn.save(net, path)
    del net
    # VmHWM, not ru_maxrss: the latter keeps the forking test runner's peak across exec
    code = ("import minicnn, h5py; "
            "peak = lambda: 1024 * int(next(l for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')).split()[1]); "
            f"before = peak(); minicnn.load({str(path)!r}); print(before, peak())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert after - before < 1.5 * weights, (after - before, weights)
