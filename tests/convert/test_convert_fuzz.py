"""Fuzzing the converters' byte inputs: mutations (bit flips, byte values, truncations,
insertions, duplicated and deleted chunks) of the valid fixtures in every container. Each
outcome must be a valid model (saved, then loaded back by minicnn.load) or a ConvertError,
within a time and memory bound (a forked child with an address-space limit and an alarm).

Derandomized, so CI runs the same inputs every time; positions favour the parts of a file
that are structure (headers, pickles, directories at both ends) over the weights, whose
mutation only changes a number."""
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from convert_helpers import FIXTURES, run_bounded

FILES = ["tiny_vgg_zip.pt", "tiny_vgg_legacy.pt", "tiny_vgg_tar.pt", "tiny_vgg_keras.h5",
         "tiny_vgg_keras_genuine.h5", "tiny_vgg_v1.caffemodel", "tiny_vgg_new.caffemodel"]
RAW = {name: open(os.path.join(FIXTURES, name), "rb").read() for name in FILES}
TIMEOUT = 10                  # seconds per conversion (each takes ~0.1 s)
MEMORY = 512 * 2**20          # bytes of address space beyond the test process's

position = st.one_of(st.tuples(st.just("head"), st.integers(0, 4095)),
                     st.tuples(st.just("tail"), st.integers(1, 4096)),
                     st.tuples(st.just("any"), st.floats(0, 1)))
mutation = st.tuples(st.sampled_from(["flip", "byte", "truncate", "insert", "duplicate",
                                      "delete"]),
                     position, st.integers(0, 255), st.sampled_from([1, 2, 4, 8, 64, 700]))


def mutate(raw, mutations):
    raw = bytearray(raw)
    for kind, (where, at), value, length in mutations:
        n = len(raw)
        if n == 0:
            break
        pos = {"head": lambda: at, "tail": lambda: n - at,
               "any": lambda: int(at * (n - 1))}[where]()
        pos = min(max(pos, 0), n - 1)
        if kind == "flip":
            raw[pos] ^= 1 << (value % 8)
        elif kind == "byte":
            raw[pos] = value
        elif kind == "truncate":
            del raw[pos:]
        elif kind == "insert":
            raw[pos:pos] = bytes([value]) * length
        elif kind == "duplicate":
            raw[pos:pos] = raw[pos:pos + length]
        else:
            del raw[pos:pos + length]
    return bytes(raw)


def convert_and_load(src, dst):
    """A converted model must be one that minicnn.load accepts."""
    import minicnn
    from minicnn.convert import convert_file
    convert_file(src, dst, quiet=True)
    minicnn.load(dst)


def check(name, mutations):
    data = mutate(RAW[name], mutations)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "out.h5")
        with open(src, "wb") as f:
            f.write(data)
        outcome, detail = run_bounded(lambda: convert_and_load(src, dst), TIMEOUT, MEMORY)
        leftovers = sorted(set(os.listdir(tmp)) - {"src", "out.h5"})
    assert not leftovers, leftovers
    if outcome == "ok":
        return
    assert outcome == "error", (outcome, detail, mutations)   # no hang, no crash
    kind, message, is_convert_error = detail
    assert is_convert_error, (kind, message, mutations)        # no other exception type
    assert "\n" not in message and len(message) < 1000, message


FUZZ = dict(derandomize=True, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", [n for n in FILES if not n.endswith(".h5")])
@settings(max_examples=25, **FUZZ)
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_torch_and_caffe_files(name, mutations):
    check(name, mutations)


@pytest.mark.parametrize("name", [n for n in FILES if n.endswith(".h5")])
@settings(max_examples=16, **FUZZ)          # HDF5 files take longer to open
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_keras_files(name, mutations):
    check(name, mutations)
