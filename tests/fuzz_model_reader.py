"""Run by tests/test_model_fuzz.py in a child process under a memory limit: hypothesis
mutates the bytes of a small valid model file; minicnn.load must return a Net or raise
ModelFileError, nothing else (no other exception, no hang, no memory blow-up).

usage: python fuzz_model_reader.py WORKDIR EXAMPLES"""
import os
import sys

from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn
from minicnn import ModelFileError, Net


def seed_file(folder):
    net = minicnn.vgg_from_config([2, "M", 3, "M"], num_classes=3, input_size=(8, 8),
                                  fc_sizes=(4,), seed=0,
                                  meta={"class_names": ["a", "b", "c"]})
    path = os.path.join(folder, "seed.h5")
    minicnn.save(net, path)
    with open(path, "rb") as fh:
        return fh.read()


def mutate(data, edits):
    data = bytearray(data)
    for kind, position, value in edits:
        if not data:
            break
        at = position % len(data)
        if kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif kind == "byte":
            data[at] = value % 256
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes([value % 256]) * (1 + value % 16)
        elif kind == "repeat":
            data[at:at] = data[at:at + 1 + value % 64]
    return bytes(data)


def main(folder, examples):
    original = seed_file(folder)
    target = os.path.join(folder, "mutant.h5")
    edit = st.tuples(st.sampled_from(["flip", "byte", "cut", "insert", "repeat"]),
                     st.integers(0, 2**31), st.integers(0, 2**16))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(edit, min_size=1, max_size=4))
    def load_mutant(edits):
        with open(target, "wb") as fh:
            fh.write(mutate(original, edits))
        try:
            net = minicnn.load(target)
        except ModelFileError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 2000, str(exc)[:300]
            return
        assert isinstance(net, Net)

    load_mutant()
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
