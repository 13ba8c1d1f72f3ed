"""Write torch.save-like files without torch, opcode by opcode, so tests can make any
variant (hostile globals, absurd sizes, strided views, truncations) on the fly.

Only the containers and pickle opcodes torch uses are written: PROTO 2, GLOBAL, MARK,
TUPLE, EMPTY_TUPLE, REDUCE, BINUNICODE, BININT / LONG1, NEWFALSE, NONE, BINPERSID,
SETITEMS, STOP.
"""
import io
import os
import pickle
import struct
import zipfile

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def g(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def s(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(n):
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def tensor(key, numel, offset, size, stride, legacy=False, stype="FloatStorage"):
    """Pickle bytes of _rebuild_tensor_v2(<storage key>, offset, size, stride, ...)."""
    pid_items = [s("storage"), g("torch", stype), s(key), s("cpu"), i(numel)]
    if legacy:
        pid_items.append(b"N")
    pid = tup(*pid_items) + b"Q"
    return (g("torch._utils", "_rebuild_tensor_v2")
            + tup(pid, i(offset), tup(*map(i, size)), tup(*map(i, stride)), b"\x89",
                  g("collections", "OrderedDict") + b")R")
            + b"R")


def state_pickle(entries):
    """entries: [(name, tensor pickle bytes)] -> an OrderedDict pickle."""
    return (b"\x80\x02" + g("collections", "OrderedDict") + b")R"
            + b"(" + b"".join(s(n) + t for n, t in entries) + b"u.")


def pickle_state(arrays, legacy=False):
    """{name: float32 array} -> (pickle bytes, {storage key: raw bytes}); one contiguous
    storage per array."""
    entries, storages = [], {}
    for n, (name, arr) in enumerate(arrays.items()):
        arr = np.ascontiguousarray(arr, dtype="<f4")
        key = str(n)
        strides = tuple(st // 4 for st in arr.strides)
        entries.append((name, tensor(key, arr.size, 0, arr.shape, strides, legacy)))
        storages[key] = arr.tobytes()
    return state_pickle(entries), storages


def write_zip(path, pkl, storages, prefix="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")


def write_legacy(path, pkl, storages, counts=None):
    """counts: optional {key: element count to write} (to lie about sizes)."""
    out = io.BytesIO()
    out.write(pickle.dumps(LEGACY_MAGIC, protocol=2))
    out.write(pickle.dumps(1001, protocol=2))
    out.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2))
    out.write(pkl)
    keys = list(storages)
    out.write(pickle.dumps(keys, protocol=2))
    for key in keys:
        count = (counts or {}).get(key, len(storages[key]) // 4)
        out.write(struct.pack("<q", count) + storages[key])
    with open(path, "wb") as f:
        f.write(out.getvalue())


def write_torch(path, arrays, container="zip"):
    pkl, storages = pickle_state(arrays, legacy=container == "legacy")
    (write_zip if container == "zip" else write_legacy)(path, pkl, storages)
    return path


def tiny_state(seed=0, config=(4, "M", 4, "M"), side=8, fc=(6, 5)):
    """A small torchvision-layout VGG state_dict as numpy arrays."""
    rng = np.random.default_rng(seed)
    state, index, channels = {}, 0, 3
    for item in config:
        if item == "M":
            index += 1
            side //= 2
            continue
        state[f"features.{index}.weight"] = rng.standard_normal((item, channels, 3, 3)).astype(np.float32)
        state[f"features.{index}.bias"] = rng.standard_normal(item).astype(np.float32)
        channels, index = item, index + 2
    features = channels * side * side
    for n, out in enumerate(fc):
        state[f"classifier.{3 * n}.weight"] = rng.standard_normal((out, features)).astype(np.float32)
        state[f"classifier.{3 * n}.bias"] = rng.standard_normal(out).astype(np.float32)
        features = out
    return state


# ---------------------------------------------------------------------- hostile structures
def put(n):
    """BINPUT n (memoize the top of the stack)."""
    return b"q" + bytes([n])


def get(n):
    """BINGET n (push the memoized object again: a shared reference, not a copy)."""
    return b"h" + bytes([n])


def shared_tuple(depth, leaf=None, memo=0):
    """A tuple of the same tuple, ``depth`` levels deep: 2**depth leaves as a tree, a few
    bytes as a pickle (each level is (prev, prev) from the memo)."""
    out = (leaf if leaf is not None else s("x")) + put(memo) + b"0"     # POP: memo only
    for _ in range(depth):
        out += get(memo) + get(memo) + b"\x86" + put(memo) + b"0"
    return out + get(memo)


def limited_run(args, timeout=20, memory=1 << 30, cwd=None):
    """Run ``args`` (a Python command line) with an address-space limit and a timeout: a
    regression that hangs or allocates fails the test instead of swapping."""
    import resource
    import subprocess

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, cwd=cwd)
