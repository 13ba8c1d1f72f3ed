"""Mutated model files: minicnn.load returns a Net or raises ModelFileError, never anything
else, within a time and memory bound, and never takes the process down with it (the
HDF5 C library can crash or loop on crafted files; minicnn rehearses the read in a child
process). Everything runs in child processes, so a crash fails the test instead of
killing pytest."""
import os
import subprocess
import sys

import pytest

from minicnn import assets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

LOAD = """
import sys, minicnn
try:
    minicnn.load(sys.argv[1])
    print("loaded")
except minicnn.ModelFileError as exc:
    print("refused:", exc)
"""


def load_in_child(path, timeout=120):
    return subprocess.run([sys.executable, "-c", LOAD, str(path)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def test_mutated_model_files_load_or_are_refused(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_model_reader.py"),
                        str(tmp_path), "150"], capture_output=True, text=True, timeout=600,
                       env=ENV)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


@pytest.fixture
def seed_bytes(tmp_path):
    sys.path.insert(0, HERE)
    try:
        from fuzz_model_reader import seed_file
    finally:
        sys.path.remove(HERE)
    return bytearray(seed_file(str(tmp_path)))


def test_a_corrupt_string_datatype_is_refused_not_a_crash(tmp_path, seed_bytes):
    # the datatype message of the 'preprocessing' attribute: variable-length (class 9,
    # version 1: byte 0x19), string; a bad kind in its bit field made HDF5 2.0 segfault
    data = seed_bytes
    name = data.find(b"preprocessing\x00")
    assert name > 0
    kind = data.index(b"\x19\x01", name)
    data[kind + 1] = 0xD2
    path = tmp_path / "bad_type.h5"
    path.write_bytes(bytes(data))
    r = load_in_child(path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("refused:") and str(path) in r.stdout, r.stdout


def test_a_shifted_global_heap_is_refused_in_bounded_time(tmp_path, seed_bytes):
    # nine bytes inserted into the global heap collection (where the variable-length
    # strings live) sent HDF5 2.0 into an endless loop
    data = seed_bytes
    heap = data.find(b"GCOL")
    assert heap > 0
    data[heap + 998:heap + 998] = b"h" * 9
    path = tmp_path / "shifted_heap.h5"
    path.write_bytes(bytes(data))
    r = load_in_child(path, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("refused:"), r.stdout


def test_the_rehearsal_reports_a_crash_a_hang_and_memory(tmp_path):
    from minicnn.h5local import LibraryFailure, rehearse
    path = tmp_path / "any.bin"
    path.write_bytes(b"x")

    def crash(_):
        os.kill(os.getpid(), 11)

    def hang(_):
        while True:
            pass

    def hog(_):
        return bytearray(2**40)

    with pytest.raises(LibraryFailure, match="crashed.*SIGSEGV"):
        rehearse(path, crash)
    with pytest.raises(LibraryFailure, match="more memory"):
        rehearse(path, hog)
    import minicnn.h5local as h5local
    old = h5local.REHEARSAL_SECONDS
    h5local.REHEARSAL_SECONDS = 0.5
    try:
        with pytest.raises(LibraryFailure, match="did not finish"):
            rehearse(path, hang)
    finally:
        h5local.REHEARSAL_SECONDS = old
    rehearse(path, lambda p: None)                     # a read that comes back: no error
    rehearse(path, lambda p: 1 / 0)                    # its own errors are the caller's


def test_a_good_model_still_loads_through_the_rehearsal(tmp_path):
    r = load_in_child(assets.default_model())
    assert r.stdout.strip() == "loaded", r.stderr


def test_a_keras_file_that_crashes_the_library_is_refused(monkeypatch):
    # the converter rehearses a Keras (HDF5) conversion in a child as load does: here the
    # reader itself crashes there, as libhdf5 did on crafted model files
    import signal
    import minicnn.convert.keras as keras
    from minicnn.convert import ConvertError, convert
    monkeypatch.setattr(keras, "read_keras", lambda path: os.kill(os.getpid(), signal.SIGSEGV))
    fixture = os.path.join(HERE, "convert", "fixtures", "tiny_vgg_keras.h5")
    with pytest.raises(ConvertError, match="crashed.*SIGSEGV"):
        convert(fixture, quiet=True)
