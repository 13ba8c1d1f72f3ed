"""tools/convert_weights.py and tools/info.py end to end (subprocess), and the memory bound."""
import os
import pickle
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from convert_helpers import FIXTURES, tiny_state, write_torch, write_zip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(tool, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_convert_then_info(tmp_path):
    dst = tmp_path / "tiny.h5"
    r = run("convert_weights.py", os.path.join(FIXTURES, "tiny_vgg_v1.caffemodel"), dst,
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert "caffe" in r.stdout and "24,928 parameters" in r.stdout
    r = run("info.py", dst)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # hand-computed: conv1_1 8*16*16 outputs x 3*3*3 = 55,296 mult-adds; pool3 sees 32 px
    assert "conv1_1" in out and "55.30 k" in out
    assert "pool3    maxpool2d  16x2x2" in out
    assert "parameters: 24,928   multiply-adds: 367,488" in out
    assert "BGR, input_scale 255" in out and "classes: 1000 (tench" in out


class Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil(tmp_path):
    marker = tmp_path / "pwned"
    write_zip(tmp_path / "evil.pt", pickle.dumps(Evil(f"touch {marker}"), protocol=2), {})
    return tmp_path / "evil.pt", marker


@pytest.mark.parametrize("make, match", [
    ("evil", "refused to load global"),
    ("empty", "empty file"),
    ("text", "unrecognized format"),
    ("truncated", "truncated"),
    ("missing", "no such file"),
])
def test_cli_errors_are_one_line_and_leave_no_output(tmp_path, make, match):
    marker = None
    if make == "evil":
        src, marker = _evil(tmp_path)
    elif make == "empty":
        src = tmp_path / "e.pt"
        src.write_bytes(b"")
    elif make == "text":
        src = tmp_path / "t.txt"
        src.write_text("just some text\n")
    elif make == "truncated":
        src = tmp_path / "tr.pt"
        raw = open(os.path.join(FIXTURES, "tiny_vgg_legacy.pt"), "rb").read()
        src.write_bytes(raw[:len(raw) // 2])
    else:
        src = tmp_path / "nothing.pt"
    before = set(os.listdir(tmp_path))
    r = run("convert_weights.py", src, tmp_path / "out.h5")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert_weights.py: error:"), r.stderr
    assert match in lines[0]
    assert set(os.listdir(tmp_path)) == before          # no output, no temp file
    if marker is not None:
        assert not marker.exists()


def test_info_refuses_a_weights_file():
    r = run("info.py", os.path.join(FIXTURES, "tiny_vgg_zip.pt"))
    assert r.returncode != 0 and "not an HDF5 file" in r.stderr


def test_peak_memory_about_twice_the_weights(tmp_path):
    """Storages are memory-mapped; each tensor is copied once into the net; saving copies
    the net once more (minicnn.save's state_dict): peak ~ 2x the weights."""
    from minicnn.convert import convert_file
    state = tiny_state(config=(32, "M"), side=8, fc=(1024, 1024, 1000))
    src = write_torch(tmp_path / "big.pt", state, "legacy")
    weights = sum(a.nbytes for a in state.values())
    assert weights > 8e6
    del state
    # warm up: imports (h5py, tqdm) allocate once and must not count
    convert_file(os.path.join(FIXTURES, "tiny_vgg_zip.pt"), tmp_path / "warm.h5", quiet=True)
    tracemalloc.start()
    try:
        convert_file(src, tmp_path / "big.h5", quiet=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2.3 * weights, (peak, weights)


@pytest.mark.parametrize("content, match", [
    (b"\x00\xff\xfe\x01binary\x89PNG", "not UTF-8 text"),
    (b"a\x00b\n" * 1000, "NUL bytes"),
])
def test_a_binary_classes_file_names_the_option(tmp_path, content, match):
    classes = tmp_path / "classes.bin"
    classes.write_bytes(content)
    dst = tmp_path / "out.h5"
    r = run("convert_weights.py", os.path.join(FIXTURES, "tiny_vgg_zip.pt"), str(dst),
            "--quiet", "--classes", str(classes))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--classes" in lines[0] and match in lines[0], r.stderr
    assert not dst.exists()
