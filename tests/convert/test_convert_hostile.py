"""Hostile and broken inputs: each is refused with one clear message, nothing from the file
runs, and nothing is allocated for absurd sizes."""
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.convert import ConvertError, UnsafePickleError, convert, convert_file
from minicnn.convert.protobuf import field_bytes, field_varint

from convert_helpers import (FIXTURES, g, i, pickle_state, s, state_pickle, tensor, tiny_state,
                             tup, write_legacy, write_torch, write_zip)


class Evil:
    """A real pickle payload: unpickling calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def fails(path, match, **kw):
    with pytest.raises(ConvertError, match=match) as info:
        convert(path, quiet=True, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------- code execution
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_os_system_is_refused_and_never_runs(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"features.0.weight": Evil(f"touch {marker}")}, protocol=2)
    path = tmp_path / "evil.pt"
    if container == "zip":
        write_zip(path, payload, {})
    else:
        write_legacy(path, payload, {})
    msg = fails(path, r"refused to load global (posix|os)\.system")
    assert "nothing from the file was run" in msg
    assert not marker.exists()


def test_os_system_in_legacy_header_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    good = open(os.path.join(FIXTURES, "tiny_vgg_legacy.pt"), "rb").read()
    magic = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
    evil = pickle.dumps(Evil(f"touch {marker}"), protocol=2)
    path.write_bytes(magic + evil + good[len(magic):])
    fails(path, r"refused to load global (posix|os)\.system")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("torch.storage", "_load_from_bytes"), ("subprocess", "Popen"),
    ("numpy.core.multiarray", "_reconstruct"), ("torch", "FloatTensor"), ("__builtin__", "exec"),
])
def test_unknown_globals_are_refused_by_name(tmp_path, module, name):
    pkl = b"\x80\x02" + g(module, name) + tup(s("1+1")) + b"R."
    write_zip(tmp_path / "x.pt", pkl, {})
    with pytest.raises(UnsafePickleError, match=f"global {module}.{name}"):
        convert(tmp_path / "x.pt", quiet=True)


def test_calling_an_allowed_storage_type_is_refused(tmp_path):
    pkl = b"\x80\x02" + g("torch", "FloatStorage") + tup(i(10)) + b"R."
    write_zip(tmp_path / "x.pt", pkl, {})
    fails(tmp_path / "x.pt", "tries to call torch.FloatStorage")


def test_bad_persistent_ids_are_refused(tmp_path):
    pkl = state_pickle([("features.0.weight", g("torch._utils", "_rebuild_tensor_v2")
                         + tup(tup(s("file"), s("/etc/passwd")) + b"Q", i(0), tup(i(1)),
                               tup(i(1)), b"\x89", b"N") + b"R")])
    write_zip(tmp_path / "x.pt", pkl, {})
    fails(tmp_path / "x.pt", r"persistent id: expected \('storage'")


# ---------------------------------------------------------------------- sizes
def test_absurd_tensor_size_is_refused_before_allocation(tmp_path):
    huge = 10**12
    pkl = state_pickle([("features.0.weight", tensor("0", 4, 0, (huge, huge, 3, 3), (9, 9, 3, 1))),
                        ("features.0.bias", tensor("1", 4, 0, (4,), (1,)))])
    write_zip(tmp_path / "x.pt", pkl, {"0": b"\0" * 16, "1": b"\0" * 16})
    fails(tmp_path / "x.pt", "reaches element .* but its storage holds 4 elements")


def test_absurd_storage_numel_is_refused(tmp_path):
    pkl = state_pickle([("features.0.weight", tensor("0", 2**60, 0, (4,), (1,)))])
    write_zip(tmp_path / "x.pt", pkl, {"0": b"\0" * 16})
    fails(tmp_path / "x.pt", "pickle says 1152921504606846976 x 4 bytes, the record holds 16")
    pkl = state_pickle([("features.0.weight", tensor("0", 2**60, 0, (4,), (1,), legacy=True))])
    write_legacy(tmp_path / "y.pt", pkl, {"0": b"\0" * 16}, counts={"0": 2**60})
    fails(tmp_path / "y.pt", "beyond the end of the file")


def test_overlapping_views_bigger_than_storage_are_refused(tmp_path):
    pkl = state_pickle([("features.0.weight", tensor("0", 4, 0, (1000, 4), (0, 1)))])
    write_zip(tmp_path / "x.pt", pkl, {"0": b"\0" * 16})
    fails(tmp_path / "x.pt", "more than its storage")


def test_negative_strides_are_refused(tmp_path):
    pkl = state_pickle([("features.0.weight", tensor("0", 4, 3, (4,), (-1,)))])
    write_zip(tmp_path / "x.pt", pkl, {"0": b"\0" * 16})
    fails(tmp_path / "x.pt", "negative size, stride or offset")


@given(st.data())
def test_strided_views_rebuild_exactly_or_are_refused(data):
    """Any (offset, size, stride) inside the storage reads back exactly what NumPy's own
    strided view gives; anything reaching past it is refused."""
    import tempfile
    numel = data.draw(st.integers(1, 60))
    ndim = data.draw(st.integers(1, 3))
    size = tuple(data.draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    stride = tuple(data.draw(st.lists(st.integers(0, 12), min_size=ndim, max_size=ndim)))
    offset = data.draw(st.integers(0, numel + 3))
    storage = np.arange(numel, dtype=np.float32) * 1.5 - 7
    from minicnn.convert.torch_pickle import read_state
    from minicnn.convert.torch_pickle import open_map
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.pt")
        write_zip(path, state_pickle([("w", tensor("0", numel, offset, size, stride))]),
                  {"0": storage.tobytes()})
        last = offset + sum((n - 1) * k for n, k in zip(size, stride))
        fits = last < numel and np.prod(size) <= numel
        if not fits:
            with pytest.raises(ConvertError):
                read_state(path, "zip", open_map(path))["w"].load()
            return
        got = read_state(path, "zip", open_map(path))["w"].load()
    want = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(4 * k for k in stride))
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous and got.flags.writeable


# ---------------------------------------------------------------------- truncation
def test_truncated_zip(tmp_path):
    raw = open(os.path.join(FIXTURES, "tiny_vgg_zip.pt"), "rb").read()
    (tmp_path / "t.pt").write_bytes(raw[:len(raw) // 2])
    fails(tmp_path / "t.pt", "truncated or corrupt zip container")


@pytest.mark.parametrize("cut", [0.002, 0.5, 0.999])
def test_truncated_legacy_stream(tmp_path, cut):
    raw = open(os.path.join(FIXTURES, "tiny_vgg_legacy.pt"), "rb").read()
    (tmp_path / "t.pt").write_bytes(raw[:max(30, int(len(raw) * cut))])
    fails(tmp_path / "t.pt", "truncated")


def test_truncated_caffemodel(tmp_path):
    raw = open(os.path.join(FIXTURES, "tiny_vgg_v1.caffemodel"), "rb").read()
    (tmp_path / "t.caffemodel").write_bytes(raw[:len(raw) - 100])
    fails(tmp_path / "t.caffemodel", "truncated or corrupt .caffemodel after 1[0-9] layers")


def test_truncated_keras(tmp_path):
    raw = open(os.path.join(FIXTURES, "tiny_vgg_keras.h5"), "rb").read()
    (tmp_path / "t.h5").write_bytes(raw[:len(raw) // 2])
    fails(tmp_path / "t.h5", "truncated or corrupt|cannot read")


# ---------------------------------------------------------------------- wrong content
def test_wrong_tensor_shapes(tmp_path):
    state = tiny_state()
    state["features.3.weight"] = state["features.3.weight"][:, :2]     # 2 in-channels, not 4
    fails(write_torch(tmp_path / "x.pt", state), r"features.3: expected 4 input channels")
    state = tiny_state()
    state["classifier.0.bias"] = state["classifier.0.bias"][:3]
    fails(write_torch(tmp_path / "y.pt", state), r"classifier.0: expected bias shape \(6,\)")


def test_missing_layers(tmp_path):
    state = tiny_state()
    del state["features.3.bias"]
    fails(write_torch(tmp_path / "x.pt", state), "features.3: has weight but no bias")
    state = tiny_state()
    del state["classifier.0.weight"], state["classifier.0.bias"]
    fails(write_torch(tmp_path / "y.pt", state), r"classifier.3: expected C\*S\*S inputs .* found 6")


def test_non_vgg_state_dict(tmp_path):
    rng = np.random.default_rng(0)
    state = {"conv1.weight": rng.standard_normal((4, 3, 7, 7)).astype(np.float32),
             "layer1.0.conv1.weight": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
             "fc.weight": rng.standard_normal((10, 4)).astype(np.float32)}
    fails(write_torch(tmp_path / "r.pt", state), "not a torchvision VGG state_dict")
    bn = tiny_state()
    bn["features.1.running_mean"] = np.zeros(4, np.float32)
    fails(write_torch(tmp_path / "bn.pt", bn), "batch-norm VGG")


def test_nan_weights_are_refused(tmp_path):
    state = tiny_state()
    state["features.0.weight"][0, 0, 0, 0] = np.nan
    fails(write_torch(tmp_path / "x.pt", state), "expected finite weights")


def test_keras_th_kernels_file_is_refused(tmp_path):
    path = tmp_path / "vgg_th.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        names = []
        for n, (o, c) in enumerate([(4, 3), (4, 4)]):
            name = f"block1_conv{n + 1}"
            names.append(name)
            grp = f.create_group(name)
            grp.attrs["weight_names"] = np.array([f"{name}_W:0".encode(), f"{name}_b:0".encode()])
            grp.create_dataset(f"{name}_W:0", data=rng.standard_normal((o, c, 3, 3)).astype("f4"))
            grp.create_dataset(f"{name}_b:0", data=np.zeros(o, "f4"))
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
    fails(path, "Theano th_kernels file")


def test_hdf5_that_is_not_keras(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    fails(tmp_path / "x.h5", "without a 'layer_names' attribute")


def test_caffe_unsupported_layer(tmp_path):
    layer = field_bytes(4, "norm1") + field_varint(5, 15) + field_bytes(6, b"")
    (tmp_path / "lrn.caffemodel").write_bytes(field_bytes(1, "net") + field_bytes(2, layer))
    fails(tmp_path / "lrn.caffemodel", "layer 'norm1' of type LRN: not supported")


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello, this is a text file\n", "unrecognized format.*text starting 'hello"),
    (pickle.dumps({"a": 1}, protocol=2), "unrecognized format.*pickle without the torch magic"),
    (b"\x1f\x8b\x08\x00" + b"\0" * 20, "unrecognized format.*gzip"),
])
def test_not_a_weights_file(tmp_path, content, match):
    (tmp_path / "f.bin").write_bytes(content)
    fails(tmp_path / "f.bin", match)


def test_format_must_match_content(tmp_path):
    fails(os.path.join(FIXTURES, "tiny_vgg_keras.h5"), "--format caffe, but .* is a keras file",
          fmt="caffe")


def test_no_output_left_behind(tmp_path):
    src = tmp_path / "bad.pt"
    raw = open(os.path.join(FIXTURES, "tiny_vgg_zip.pt"), "rb").read()
    src.write_bytes(raw[:len(raw) // 3])
    with pytest.raises(ConvertError):
        convert_file(src, tmp_path / "out.h5", quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["bad.pt"]
    shutil.copy(os.path.join(FIXTURES, "tiny_vgg_zip.pt"), tmp_path / "ok.pt")
    with pytest.raises(ConvertError):
        convert_file(tmp_path / "ok.pt", tmp_path / "out.h5", classes=str(tmp_path / "none.txt"),
                     quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["bad.pt", "ok.pt"]


def test_pickle_state_helper_is_sound(tmp_path):
    """The hand-written pickles of the helpers read back like the genuine ones."""
    state = tiny_state()
    pkl, storages = pickle_state(state)
    write_zip(tmp_path / "x.pt", pkl, storages)
    sd = convert(tmp_path / "x.pt", quiet=True)[0].state_dict()
    np.testing.assert_array_equal(sd["conv1_1.weight"], state["features.0.weight"])


@given(st.integers(0, 2**64 - 1))
def test_protobuf_varint_round_trip(value):
    from minicnn.convert.protobuf import read_varint, varint
    raw = varint(value)
    assert read_varint(raw, 0, len(raw)) == (value, len(raw))
    with pytest.raises(Exception, match="past the end"):
        read_varint(raw[:-1], 0, len(raw) - 1)
