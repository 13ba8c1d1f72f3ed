"""Tiny hostile files must not make the converter hang, allocate, read more than the format
can need or print more than a line: each is refused with one short line (exit 1), and the
ones that used to hang or allocate run under a time and memory limit, so a regression fails
instead of swapping."""
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
import zlib

import h5py
import numpy as np
import pytest

from minicnn.convert import convert
from minicnn.convert.protobuf import field_bytes, field_packed_floats, field_varint

from children import default_dispositions, limited_run
from convert_helpers import (FIXTURES, g, get, i, put, run_bounded, s,
                             shared_tuple, state_pickle, tensor, tup, write_legacy,
                             write_tar, write_zip, zip_patch)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "convert_weights.py")
MEMORY = 800 * 2**20        # the converter needs ~300 MB of address space


def refused(tmp_path, src, match, timeout=30, memory=MEMORY, max_len=400):
    """Convert ``src`` with the CLI under limits: one short error line naming ``match``."""
    dst = tmp_path / "out.h5"
    start = time.monotonic()
    r = limited_run([sys.executable, TOOL, str(src), str(dst), "--quiet"], timeout, memory)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr[-2000:])
    assert lines[0].startswith("convert_weights.py: error:") and len(lines[0]) < max_len, lines[0]
    assert match in lines[0], lines[0]
    assert not dst.exists()
    return lines[0], time.monotonic() - start


def fails(path, match, timeout=20):
    """convert(path) in a forked child under a time and memory limit: a ConvertError of
    one short line matching ``match``."""
    outcome, detail = run_bounded(lambda: convert(path, quiet=True), timeout)
    assert outcome == "error", (outcome, detail)
    kind, message, is_convert_error = detail
    assert is_convert_error, (kind, message)
    assert re.search(match, message), message
    assert "\n" not in message and len(message) < 400, message
    return message


def zip_with(tmp_path, pkl, name="x.pt", storages=None):
    path = tmp_path / name
    write_zip(path, pkl, storages or {})
    return path


# ---------------------------------------------------------------------- class 2: bounded work
def test_refused_persistent_id_of_shared_structure_does_not_hang(tmp_path):
    """~800 bytes: a persistent id that is 2**60 leaves as a tree (repr used to hang)."""
    src = zip_with(tmp_path, b"\x80\x02" + shared_tuple(60) + b"Q.")
    assert os.path.getsize(src) < 1000
    line, took = refused(tmp_path, src, "persistent id nests containers more than")
    assert took < 20


def test_dict_key_of_shared_tuple_does_not_hang(tmp_path):
    """A dict key 2**60 leaves deep (hashing it used to hang)."""
    src = zip_with(tmp_path, b"\x80\x02}" + shared_tuple(60) + b"Ns.")
    refused(tmp_path, src, "dict key or set item of type tuple")


P = pytest.param


@pytest.mark.parametrize("body, match", [
    # the same shapes through every opcode that hashes or calls
    P(b"(" + shared_tuple(60) + b"Nd", "dict key or set item of type tuple", id="DICT"),
    P(b"}(" + shared_tuple(60) + b"Nu", "dict key or set item of type tuple", id="SETITEMS"),
    P(b"\x8f(" + shared_tuple(60) + b"\x90", "dict key or set item of type tuple",
      id="ADDITEMS"),
    P(b"(" + shared_tuple(60) + b"\x91", "dict key or set item of type tuple", id="FROZENSET"),
    P(g("collections", "OrderedDict") + b"(" + shared_tuple(60) + b"t" + b"R",
      "OrderedDict argument nests containers", id="OrderedDict-args"),
    P(g("collections", "OrderedDict") + b")R" + b"}" + s("k") + shared_tuple(60) + b"sb",
      "data.pkl nests containers", id="BUILD-shared"),
    P(g("collections", "OrderedDict") + b")R" + b"}N" + s("v") + b"sb",
      "only string-named attributes of an OrderedDict", id="BUILD-key"),
    P(g("collections", "OrderedDict") + b")R" + s("v") + b"b",
      "sets the state of a OrderedDict", id="BUILD-state"),
    P(g("torch._utils", "_rebuild_tensor_v2") + b"}b", "sets the state of a function",
      id="BUILD-function"),
    P(shared_tuple(60), "data.pkl nests containers more than", id="result-deep"),
    P(shared_tuple(16), "data.pkl builds more than 100,000 objects", id="result-wide"),
    P(b"]" + put(0) + get(0) + b"a", "data.pkl nests containers", id="cycle"),
    P(b"(" * 5000 + b"]" + b"t" * 5000, "data.pkl nests containers", id="deep"),
    P(b"N0" * 1_000_001 + b"N", "data.pkl runs more than 1,000,000 opcodes", id="opcodes"),
    P(b"\x96" + (2**40).to_bytes(8, "little"), "out-of-band buffers", id="BYTEARRAY8"),
    P(b"\x82\x01", "out-of-band buffers or extension codes", id="EXT1"),
])
def test_pickle_work_is_bounded(tmp_path, body, match):
    fails(zip_with(tmp_path, b"\x80\x02" + body + b"."), match, timeout=15)


def test_huge_integers_in_tensor_metadata(tmp_path):
    big = b"\x8b" + (100_000).to_bytes(4, "little") + b"\xff" * 99_999 + b"\x7f"   # LONG4
    pkl = state_pickle([("features.0.weight", g("torch._utils", "_rebuild_tensor_v2") + tup(
        tup(s("storage"), g("torch", "FloatStorage"), s("0"), s("cpu"), i(4)) + b"Q", i(0),
        tup(big), tup(i(1)), b"\x89", b"N") + b"R")])
    msg = fails(zip_with(tmp_path, pkl, storages={"0": b"\0" * 16}),
                "tensor size must be a tuple of at most 64 64-bit integers")
    assert "<int of 799999 bits>" in msg
    pkl = state_pickle([("features.0.weight", tensor("0", 2**64, 0, (4,), (1,)))])
    fails(zip_with(tmp_path, pkl, "y.pt", {"0": b"\0" * 16}), "numel .* not a 64-bit integer")


def test_long_names_are_cut_short_in_messages(tmp_path):
    name = "x" * 1_000_000
    pkl = b"\x80\x02" + g("os", name) + b"."
    assert len(fails(zip_with(tmp_path, pkl), "refused to load global os.xxx")) < 300
    pkl = state_pickle([(name, b"N")])
    assert len(fails(zip_with(tmp_path, pkl, "y.pt"), "state_dict entry 'xxx")) < 300


def test_legacy_header_shared_structure(tmp_path):
    raw = open(os.path.join(FIXTURES, "tiny_vgg_legacy.pt"), "rb").read()
    import pickle
    magic = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
    proto = pickle.dumps(1001, protocol=2)
    src = tmp_path / "x.pt"
    src.write_bytes(magic + b"\x80\x02" + shared_tuple(60) + b"." + raw[len(magic):])
    refused(tmp_path, src, "legacy header nests containers more than")
    # a refused persistent id in the state_dict pickle of a legacy file
    src.write_bytes(magic + proto + pickle.dumps({}, protocol=2) + b"\x80\x02" + b"}" + s("a")
                    + shared_tuple(40) + b"Qs." + pickle.dumps([], protocol=2))
    refused(tmp_path, src, "persistent id nests containers more than")


# ---------------------------------------------------------------------- class 3: memory
def test_big_byteorder_record_gives_a_short_line(tmp_path):
    """14 kB zip with a 10 MB byteorder record: used to print a 42 MB error line."""
    pkl = b"\x80\x02}."
    src = tmp_path / "x.pt"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"\x1b[2J" * 2_500_000, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(src) < 30_000
    refused(tmp_path, src, "'archive/byteorder': 10,000,000 bytes, expected at most 16",
            max_len=200)
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:    # small, but not an order
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"\x1b]0;pwned\x07")
    line, _ = refused(tmp_path, src, "expected 'little' or 'big', found '\\x1b]0;pwned\\x07'")


@pytest.mark.parametrize("member", ["byteorder", "data.pkl"])
def test_gigabyte_member_of_a_small_zip_is_not_read(tmp_path, member):
    """A 1 GB record deflated into a ~1 MB zip: refused from its declared size, under a
    memory limit below 1 GB (it used to be read whole)."""
    src = tmp_path / "bomb.pt"
    compressed, crc = _deflated_zeros(64)
    src.write_bytes(_zip_with_raw_member(f"archive/{member}", compressed, 2**30, crc,
                                         member != "data.pkl"))
    assert os.path.getsize(src) < 2_000_000
    with zipfile.ZipFile(src) as z:
        assert z.getinfo(f"archive/{member}").file_size == 2**30
    refused(tmp_path, src, "1,073,741,824 bytes, expected at most", memory=MEMORY)


def _deflated_zeros(count):
    """A raw deflate stream of ``count`` x 16 MiB of zeros, and its CRC-32, made fast:
    one fully flushed (independent) segment repeated."""
    chunk = b"\0" * 2**24
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    c.compress(chunk)
    c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)    # after the first: all alike
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return segment * count + c.flush(), crc


def _zip_with_raw_member(name, compressed, size, crc, with_pickle):
    """A zip (zip64 sizes) whose member ``name`` is the given deflate stream."""
    import struct
    out, central = bytearray(), bytearray()
    members = ([("archive/data.pkl", b"\x80\x02}.", 0, 4, zlib.crc32(b"\x80\x02}."))]
               if with_pickle else [])
    members.append((name, compressed, 8, size, crc))
    for mname, data, method, usize, mcrc in members:
        nm = mname.encode()
        extra = struct.pack("<HHQQ", 1, 16, usize, len(data))
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, method, 0, 0, mcrc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(nm), len(extra)) + nm + extra + data
        cextra = struct.pack("<HHQQQ", 1, 24, usize, len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, method, 0, 0,
                               mcrc, 0xFFFFFFFF, 0xFFFFFFFF, len(nm), len(cextra), 0, 0, 0, 0,
                               0xFFFFFFFF) + nm + cextra
    cd_offset = len(out)
    out += central
    eocd64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(members), len(members),
                       len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064b50, 0, eocd64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


def test_legacy_storage_without_data_is_no_data_not_out_of_memory(tmp_path):
    """Shapes that claim 158 TiB whose storages have no data in the file: 'no data' before
    any layer is allocated (it used to try the allocation and report out of memory)."""
    n = 2**21
    pkl = state_pickle([
        ("features.0.weight", tensor("0", n * n * 9, 0, (n, n, 3, 3), (n * 9, 9, 3, 1), True)),
        ("features.0.bias", tensor("1", n, 0, (n,), (1,), True))])
    write_legacy(tmp_path / "x.pt", pkl, {})
    assert os.path.getsize(tmp_path / "x.pt") < 1000
    refused(tmp_path, tmp_path / "x.pt", "storage '0': no data for it in the file")


# ---------------------------------------------------------------------- class 5: zip records
def _fixture(name="tiny_vgg_zip.pt"):
    return open(os.path.join(FIXTURES, name), "rb").read()


@pytest.mark.parametrize("member", ["tiny_vgg_zip/data.pkl", "tiny_vgg_zip/byteorder",
                                    "tiny_vgg_zip/data/3"])
def test_encrypted_zip_records(tmp_path, member):
    (tmp_path / "x.pt").write_bytes(zip_patch(_fixture(), member, flags=0x809))
    refused(tmp_path, tmp_path / "x.pt", f"zip record '{member}' is encrypted")


@pytest.mark.parametrize("member", ["tiny_vgg_zip/data.pkl", "tiny_vgg_zip/byteorder",
                                    "tiny_vgg_zip/data/3"])
def test_unknown_compression_method(tmp_path, member):
    (tmp_path / "x.pt").write_bytes(zip_patch(_fixture(), member, method=99))
    refused(tmp_path, tmp_path / "x.pt", f"zip record '{member}' uses compression method 99")


@pytest.mark.parametrize("member", ["tiny_vgg_zip/data.pkl", "tiny_vgg_zip/byteorder",
                                    "tiny_vgg_zip/data/3"])
def test_bad_crc(tmp_path, member):
    with zipfile.ZipFile(os.path.join(FIXTURES, "tiny_vgg_zip.pt")) as z:
        crc = z.getinfo(member).CRC
    (tmp_path / "x.pt").write_bytes(zip_patch(_fixture(), member, crc=crc ^ 1))
    refused(tmp_path, tmp_path / "x.pt", "CRC")


@pytest.mark.parametrize("member", ["data.pkl", "byteorder"])
def test_corrupt_deflate_stream(tmp_path, member):
    pkl = b"\x80\x02}."
    src = tmp_path / "x.pt"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl * (50 if member == "data.pkl" else 1),
                   zipfile.ZIP_DEFLATED if member == "data.pkl" else zipfile.ZIP_STORED)
        z.writestr("archive/byteorder", b"little" * (1 if member == "data.pkl" else 2),
                   zipfile.ZIP_DEFLATED if member == "byteorder" else zipfile.ZIP_STORED)
        offset = z.getinfo(f"archive/{member}").header_offset
    raw = bytearray(src.read_bytes())
    start = offset + 30 + len(f"archive/{member}")
    raw[start:start + 4] = b"\xff\xff\xff\xff"                 # an invalid block type
    src.write_bytes(bytes(raw))
    refused(tmp_path, src, f"zip record 'archive/{member}'")


# ---------------------------------------------------------------------- class 5: tar records
W = np.arange(4 * 3 * 9, dtype="<f4")


def _tar(tmp_path, tensors=None, **kw):
    return write_tar(tmp_path / "t.pt", {1000: W.tobytes(), 1001: np.zeros(4, "<f4").tobytes()},
                     tensors or {2000: (1000, (4, 3, 3, 3), (27, 9, 3, 1), 0),
                                 2001: (1001, (4,), (1,), 0)},
                     [("features.0.weight", 2000), ("features.0.bias", 2001)], **kw)


def test_tar_helper_is_sound(tmp_path):
    from minicnn.convert.torch_pickle import open_map, read_state
    path = _tar(tmp_path)
    got = read_state(path, "tar", open_map(path))["features.0.weight"].load()
    np.testing.assert_array_equal(got, W.reshape(4, 3, 3, 3))


@pytest.mark.parametrize("size, stride, offset, match", [
    ((1, 4), (2**62, 1), 0, None),                   # a length-1 axis: stride never used
    ((4, 3, 3, 3), (2**62, 9, 3, 1), 0, "reaches element"),
    ((4, 3, 3, 3), (-2**63, 9, 3, 1), 0, "negative size, stride or offset"),
    ((4, 3, 3, 3), (27, 9, 3, 1), 2**63 - 1, "reaches element"),
    ((0, 2**62, 2**62, 3), (1, 1, 1, 1), 0, "absurd shape"),
])
def test_tar_overflowing_strides(tmp_path, size, stride, offset, match):
    from minicnn.convert.torch_pickle import open_map, read_state
    path = _tar(tmp_path, {2000: (1000, size, stride, offset), 2001: (1001, (4,), (1,), 0)})
    if match is None:
        got = read_state(path, "tar", open_map(path))["features.0.weight"].load()
        np.testing.assert_array_equal(got, W[:4].reshape(1, 4))
    else:
        fails(path, match)


@pytest.mark.parametrize("kw, match", [
    ({"storage_records": {1000: tup(b"]", s("cpu"), g("torch", "FloatStorage"))}},
     "tar storage record: expected a string or an integer key, found list"),
    ({"storage_records": {1000: tup(i(1), s("cpu"), s("FloatStorage"))}},
     "tar storage record: expected \\(key, location, storage type\\)"),
    ({"tensor_records": {2000: tup(i(2000), b"}", g("torch", "FloatTensor"))}},
     "tar tensor record: expected a string or an integer key, found dict"),
    ({"tensor_records": {2000: tup(i(2000), i(1000))}}, "tar tensor record: expected \\(key"),
    ({"tensor_records": {2000: tup(i(2000), i(99), g("torch", "FloatTensor"))}},
     "unknown storage 99"),
    ({"views": b"(" + tup(i(5), i(1000)) + b"l"}, "tar storage view: expected"),
    ({"views": b"(" + tup(i(5), i(1000), s("0"), i(1)) + b"l"}, "bad root or bounds"),
    ({"views": b"(" + tup(i(5), b"]", i(0), i(1)) + b"l"}, "expected a string or an integer"),
    ({"views": b"(" + tup(i(5), i(1000), i(0), i(2**70)) + b"l"}, "bad root or bounds"),
])
def test_tar_records_of_odd_types(tmp_path, kw, match):
    fails(_tar(tmp_path, **kw), match)


# ---------------------------------------------------------------------- class 5: Keras, Caffe
def test_keras_layer_that_is_a_dataset(tmp_path):
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("block1_conv1", data=np.zeros(3, "f4"))
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
    fails(path, "layer 'block1_conv1': expected a group of weights, found a dataset")
    with h5py.File(path, "w") as f:
        f.create_dataset("model_weights", data=np.zeros(3, "f4"))
    fails(path, "'model_weights': expected a group of layers, found a dataset")


def test_keras_weight_names_of_odd_types(tmp_path):
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        g1 = f.create_group("block1_conv1")
        g1.attrs["weight_names"] = np.arange(3)
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
    fails(path, "weight '0' not found|no convolution layers")


@pytest.mark.parametrize("shape_field", [
    field_bytes(7, b"\x0d" + b"\x04\x00\x00\x00"),        # dim as fixed32 (wire type 5)
    field_bytes(7, b"\x09" + b"\x04" + b"\x00" * 7),      # dim as fixed64 (wire type 1)
])
def test_caffe_blob_dims_of_another_wire_type(tmp_path, shape_field):
    blob = shape_field + field_packed_floats(5, np.zeros(4, "f4"))
    layer = field_bytes(4, "conv1") + field_varint(5, 4) + field_bytes(6, blob)
    (tmp_path / "c.caffemodel").write_bytes(field_bytes(1, "net") + field_bytes(2, layer))
    fails(tmp_path / "c.caffemodel", "conv1 weights: blob dimension: expected a varint")


def test_caffe_input_dim_of_another_wire_type(tmp_path):
    raw = _fixture("tiny_vgg_v1.caffemodel")
    (tmp_path / "c.caffemodel").write_bytes(field_bytes(1, "net") + b"\x25\x01\x00\x00\x00"
                                            + raw)
    fails(tmp_path / "c.caffemodel", "input_dim: expected a varint")


def test_caffe_absurd_blob_dims(tmp_path):
    """Dims whose product wraps around in int64 (2**32 x 2**32 = 0 elements)."""
    from minicnn.convert.protobuf import field_packed_varints
    blob = field_bytes(7, field_packed_varints(1, [2**32, 2**32, 3, 3]))
    layer = field_bytes(4, "conv1") + field_varint(5, 4) + field_bytes(6, blob) * 2
    (tmp_path / "c.caffemodel").write_bytes(field_bytes(1, "net") + field_bytes(2, layer))
    refused(tmp_path, tmp_path / "c.caffemodel", "needs 166020696663385964544 values, found 0")


# ---------------------------------------------------------------------- class 5: Ctrl-C
def test_ctrl_c_while_reading(tmp_path):
    """SIGINT while the converter reads (a pickle that takes a while to refuse): one line,
    exit 130, no output file and no temporary."""
    src = zip_with(tmp_path, b"\x80\x02" + b"N0" * 450_000 + b"}.")
    dst = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, TOOL, str(src), str(dst), "--quiet"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_dispositions)
    deadline = time.monotonic() + 60
    while str(src) not in open(f"/proc/{proc.pid}/maps").read():   # mapped: reading begun
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["convert_weights.py: interrupted"], err
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


def _keras_with_fc(path, make_fc):
    with h5py.File(path, "w") as f:
        conv = f.create_group("block1_conv1")
        conv.attrs["weight_names"] = [b"block1_conv1/kernel:0", b"block1_conv1/bias:0"]
        conv.create_dataset("block1_conv1/kernel:0", data=np.zeros((3, 3, 3, 8), "f4"))
        conv.create_dataset("block1_conv1/bias:0", data=np.zeros(8, "f4"))
        fc = f.create_group("fc1")
        fc.attrs["weight_names"] = [b"fc1/kernel:0", b"fc1/bias:0"]
        make_fc(fc)
        f.attrs["layer_names"] = [b"block1_conv1", b"fc1"]
    return path


def test_keras_dataset_declared_but_never_written(tmp_path):
    """13 kB of HDF5 declaring a 32 GiB fc kernel: 'no data' before anything is allocated
    (it used to allocate the layer, then read the fill value: out of memory)."""
    def make_fc(fc):
        fc.create_dataset("fc1/kernel:0", shape=(8 * 2**14, 2**16), dtype="f4")
        fc.create_dataset("fc1/bias:0", data=np.zeros(2**16, "f4"))
    path = _keras_with_fc(tmp_path / "k.h5", make_fc)
    refused(tmp_path, path, "dataset '/fc1/fc1/kernel:0': no data in the file for its shape")


def test_keras_dataset_mostly_unwritten_chunks(tmp_path):
    def make_fc(fc):
        ds = fc.create_dataset("fc1/kernel:0", shape=(8 * 2**14, 2**16), dtype="f4",
                               chunks=(256, 256), compression="gzip")
        ds[0, 0] = 1.0
        fc.create_dataset("fc1/bias:0", data=np.zeros(2**16, "f4"))
    path = _keras_with_fc(tmp_path / "k.h5", make_fc)
    refused(tmp_path, path, "compressed more than 1100:1")


def test_keras_global_heap_that_loops_libhdf5(tmp_path):
    """Found by the fuzz test: a free-space object of size 0 in the global heap holding
    layer_names makes libhdf5 parse the heap for ever (inside C: no alarm can stop it)."""
    raw = bytearray(_fixture("tiny_vgg_keras_genuine.h5"))
    at = raw.find(b"GCOL")
    first = at + 16                                # after the collection header
    raw[first:first + 2] = b"\0\0"                 # object index 0: free space ...
    raw[first + 8:first + 16] = b"\0" * 8          # ... of size 0
    (tmp_path / "k.h5").write_bytes(bytes(raw))
    fails(tmp_path / "k.h5", "corrupt HDF5 global heap at byte 2064 \\(object 0 of size 0\\)")
