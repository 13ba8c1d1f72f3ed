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


def write_tar(path, storages, tensors, entries, storage_records=None, tensor_records=None,
              views=b"]"):
    """The torch 0.1-0.3 tar container, torch-free. storages: {key: float32 bytes};
    tensors: {key: (storage key, size, stride, offset)}; entries: [(name, tensor key)].
    storage_records / tensor_records: optional {key: pickle bytes} replacing a record's
    (key, location, type) tuple; views: the storage-views pickle body (default [])."""
    import tarfile

    def p(body):
        return b"\x80\x02" + body + b"."

    st = [p(i(len(storages)))]
    for key, raw in storages.items():
        rec = (storage_records or {}).get(key) or tup(i(key), s("cpu"), g("torch", "FloatStorage"))
        st.append(p(rec) + struct.pack("<q", len(raw) // 4) + raw)
    st.append(p(views))
    te = [p(i(len(tensors)))]
    for key, (skey, size, stride, offset) in tensors.items():
        rec = (tensor_records or {}).get(key) or tup(i(key), i(skey), g("torch", "FloatTensor"))
        te.append(p(rec) + struct.pack("<i", len(size)) + b"\0" * 4
                  + struct.pack(f"<{len(size)}q", *size) + struct.pack(f"<{len(stride)}q", *stride)
                  + struct.pack("<q", offset))
    pkl = (b"\x80\x02" + g("collections", "OrderedDict") + b")R("
           + b"".join(s(name) + s(str(key)) + b"Q" for name, key in entries) + b"u.")
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in (("sys_info", p(b"}")), ("pickle", pkl), ("tensors", b"".join(te)),
                              ("storages", b"".join(st))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def zip_patch(raw, member, **fields):
    """Set header fields of zip record ``member`` in both its local header and its central
    directory entry: flags, method, crc (little-endian integers)."""
    raw = bytearray(raw)
    name = member.encode()
    local = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<I")}
    central = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I")}
    for magic, offsets, name_at in ((b"PK\x03\x04", local, 30), (b"PK\x01\x02", central, 46)):
        pos = raw.find(magic)
        while pos >= 0:
            n = struct.unpack("<H", raw[pos + name_at - (4 if magic == b"PK\x03\x04" else 18):
                                        pos + name_at - (2 if magic == b"PK\x03\x04" else 16)])[0]
            if bytes(raw[pos + name_at:pos + name_at + n]) == name:
                for field, value in fields.items():
                    off, fmt = offsets[field]
                    struct.pack_into(fmt, raw, pos + off, value)
            pos = raw.find(magic, pos + 4)
    return bytes(raw)


def _address_space():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run_bounded(fn, timeout=10, memory=512 * 2**20):
    """Run ``fn()`` in a forked child with ``memory`` bytes of address space more than the
    test process has now and a ``timeout`` (SIGALRM: it ends the child even inside C code).

    Returns ("ok", None), ("error", (exception type name, message, is ConvertError)),
    ("timeout", None) or ("crash", signal or exit status)."""
    import pickle as _pickle
    import resource
    import signal
    from minicnn.convert import ConvertError

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # the child: never returns
        status = 0
        try:
            os.close(read_end)
            limit = _address_space() + memory
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(timeout)
            try:
                fn()
                result = ("ok", None)
            except BaseException as exc:               # noqa: B902 (reported, not hidden)
                result = ("error", (type(exc).__name__, str(exc)[:2000],
                                    isinstance(exc, ConvertError)))
            os.write(write_end, _pickle.dumps(result))
        except BaseException:                           # noqa: B902
            status = 3
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return ("timeout", None) if sig == signal.SIGALRM else ("crash", sig)
    if not chunks:
        return ("crash", os.WEXITSTATUS(status))
    return _pickle.loads(b"".join(chunks))
