"""Read ``torch.save`` files without PyTorch and without running code from the file.

Three containers (docs/converters.md): zip (torch >= 1.6), the legacy pickle stream (torch 0.4 -
1.5, the 2017 torchvision VGG files) and the old tar (torch 0.1 - 0.3). All three end up
as an ordered dict name -> :class:`TensorRef`, whose shape is known and checked against
its storage before any array is allocated; ``TensorRef.load()`` copies the (strided) view
out of the memory-mapped file.

Safety: :class:`RestrictedUnpickler` resolves only the globals in ``ALLOWED`` (an
allow-list like PyTorch's own weights-only unpickler) to inert stand-ins; everything else
is refused by name before it is imported, so no callable from the file ever runs.
"""
import io
import lzma
import math
import mmap
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from ..terminal import short
from .common import ConvertError

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 32 * 2**20      # a state_dict pickle is kilobytes; more is not a state_dict
# What one pickle may make the unpickler do (a VGG16 state_dict: ~2,000 opcodes, ~600
# objects). Without bounds a few hundred bytes can describe 2**60 objects through shared
# references (memo), which hashing, comparing or printing would then walk for ever.
MAX_PICKLE_OPS = 1_000_000         # opcodes executed
MAX_PICKLE_NODES = 100_000         # objects reached from a result, shared ones once per path
MAX_PICKLE_DEPTH = 32              # nesting of containers
MAX_NDIM = 64
INT64 = 2**63
# zip records read into memory, and how large they may be (storages are never read: they
# are memory-mapped, by their declared size)
SMALL_RECORDS = {"byteorder": 16, "version": 64}
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
               zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
ZIP_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError,
                   EOFError, OSError, RuntimeError, NotImplementedError, ValueError,
                   struct.error, OverflowError)

# storage class -> (numpy dtype code, element size); bfloat16 is read as uint16 then widened
STORAGE_DTYPES = {
    "FloatStorage": ("f4", 4), "DoubleStorage": ("f8", 8), "HalfStorage": ("f2", 2),
    "BFloat16Storage": ("u2", 2), "LongStorage": ("i8", 8), "IntStorage": ("i4", 4),
    "ShortStorage": ("i2", 2), "CharStorage": ("i1", 1), "ByteStorage": ("u1", 1),
    "BoolStorage": ("?", 1),
}
FLOAT_STORAGES = ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage")


class UnsafePickleError(ConvertError):
    """The pickle asked for something outside the allow-list."""


# ---------------------------------------------------------------------- stand-ins
class StorageType:
    """Stands for ``torch.FloatStorage`` etc.: a dtype, never callable."""
    __slots__ = ("name", "code", "itemsize")

    def __init__(self, name):
        self.name = name
        self.code, self.itemsize = STORAGE_DTYPES[name]

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(f"the pickle tries to call torch.{self.name}; only "
                                f"references to storage types are allowed")

    def __setstate__(self, state):
        raise UnsafePickleError("the pickle tries to set the state of a storage type")

    def __repr__(self):
        return f"torch.{self.name}"


class TensorType:
    """Stands for ``torch.FloatTensor`` etc. (named in the old tar format's tensor table)."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(f"the pickle tries to call torch.{self.name}")

    def __setstate__(self, state):
        raise UnsafePickleError("the pickle tries to set the state of a tensor type")


class StorageRef:
    """A storage in the file: ``numel`` elements of ``stype``; ``array`` is set once the
    bytes are located (a read-only 1-D view of the memory map). ``crc``: the zip record's
    CRC-32, checked the first time the data is used."""
    __slots__ = ("key", "stype", "numel", "array", "root", "root_offset", "crc")

    def __init__(self, key, stype, numel, root=None, root_offset=0):
        self.key, self.stype, self.numel = key, stype, numel
        self.array, self.root, self.root_offset = None, root, root_offset
        self.crc = None

    def data(self):
        if self.root is not None:
            base = self.root.data()
            return base[self.root_offset:self.root_offset + self.numel]
        if self.array is None:
            raise ConvertError(f"storage {short(self.key)}: no data for it in the file")
        if self.crc is not None:
            record, crc = self.crc
            if zlib.crc32(self.array) != crc:
                raise ConvertError(f"zip record {short(record)}: CRC-32 mismatch (corrupt file)")
            self.crc = None
        return self.array

    def __setstate__(self, state):
        raise UnsafePickleError("the pickle tries to set the state of a storage")


class TensorRef:
    """A strided view ``storage[offset + sum(i_k * stride_k)]`` of ``size``."""
    __slots__ = ("storage", "offset", "size", "stride", "name")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, StorageRef):
            raise UnsafePickleError(f"tensor rebuild expects a storage reference, found "
                                    f"{type(storage).__name__}")
        for what, seq in (("size", size), ("stride", stride)):
            if not isinstance(seq, (tuple, list)) or len(seq) > MAX_NDIM or not all(
                    _is_int64(v) for v in seq):
                raise ConvertError(f"tensor {what} must be a tuple of at most {MAX_NDIM} 64-bit "
                                   f"integers, found {short(seq)}")
        if not _is_int64(offset) or len(size) != len(stride):
            raise ConvertError(f"bad tensor metadata: offset {short(offset)}, size "
                               f"{short(size)}, stride {short(stride)}")
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)
        self.name = ""

    @property
    def shape(self):
        return self.size

    @property
    def dtype_name(self):
        return self.storage.stype.name

    def validate(self):
        """Bounds check against the storage, with Python integers (no allocation)."""
        numel = math.prod(self.size)
        where = f"tensor {short(self.name)}" if self.name else "tensor"
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ConvertError(f"{where}: negative size, stride or offset ({self.size}, "
                               f"{self.stride}, {self.offset})")
        if numel == 0:
            if math.prod(max(n, 1) for n in self.size) >= 2**62:   # numpy's limit
                raise ConvertError(f"{where}: absurd shape {self.size}")
            return
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= self.storage.numel:
            raise ConvertError(f"{where}: shape {self.size} with strides {self.stride} at offset "
                               f"{self.offset} reaches element {last}, but its storage holds "
                               f"{self.storage.numel} elements")
        if numel > self.storage.numel:
            raise ConvertError(f"{where}: shape {self.size} has {numel} elements, more than its "
                               f"storage's {self.storage.numel} (overlapping views are not "
                               f"supported)")

    def load(self):
        """Copy the view out as float32 (float16 / float64 / bfloat16 are widened/narrowed)."""
        self.validate()
        stype = self.storage.stype
        if stype.name not in FLOAT_STORAGES:
            raise ConvertError(f"tensor {short(self.name)}: expected floating-point weights, found "
                               f"torch.{stype.name}")
        if math.prod(self.size) == 0:
            return np.zeros(self.size, np.float32)
        data = self.storage.data()
        item = data.dtype.itemsize
        # the stride of a length-1 axis is never used; a huge one would overflow numpy's
        strides = tuple(s * item if n > 1 else 0 for n, s in zip(self.size, self.stride))
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=strides, writeable=False)
        if stype.name == "BFloat16Storage":
            return (view.astype(np.uint32) << 16).view(np.float32)
        return np.array(view, dtype=np.float32, order="C")

    def __setstate__(self, state):
        raise UnsafePickleError("the pickle tries to set the state of a tensor")


def _is_int64(v):
    return isinstance(v, int) and not isinstance(v, bool) and -INT64 <= v < INT64


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride)


def _ordered_dict(*args, **kwargs):
    """Stands for ``collections.OrderedDict``: torch pickles it called without arguments
    (items follow with SETITEMS); pairs are accepted when every key is a plain value."""
    if kwargs or len(args) > 1:
        raise UnsafePickleError("the pickle calls OrderedDict with unexpected arguments")
    out = OrderedDict()
    if args:
        _check_bounded(args[0], "OrderedDict argument")
        pairs = args[0].items() if isinstance(args[0], dict) else args[0]
        if not isinstance(pairs, (tuple, list, type({}.items()))):
            raise UnsafePickleError(f"OrderedDict argument: expected (key, value) pairs, "
                                    f"found {type(args[0]).__name__}")
        for pair in pairs:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise UnsafePickleError(f"OrderedDict argument: expected (key, value) pairs, "
                                        f"found {short(pair)}")
            out[_flat_key(pair[0])] = pair[1]
    return out


ALLOWED = {("collections", "OrderedDict"): _ordered_dict,
           ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
           ("torch._utils", "_rebuild_tensor"): _rebuild_tensor}
ALLOWED.update({("torch", name): StorageType(name) for name in STORAGE_DTYPES})
TAR_TENSOR_TYPES = {("torch", name.replace("Storage", "Tensor")):
                    TensorType(name.replace("Storage", "Tensor")) for name in STORAGE_DTYPES}

FLAT = (str, bytes, int, float, bool, type(None))


class PickleLimitError(ConvertError):
    """The pickle builds more (or deeper) than a state_dict can need."""


def _flat_key(key):
    """Dict keys and set items must be plain values: hashing anything else (a tuple of
    the same tuple 60 levels deep) can take for ever."""
    if not isinstance(key, FLAT):
        raise PickleLimitError(f"dict key or set item of type {type(key).__name__}: expected "
                               f"a string or a number")
    return key


def _check_bounded(obj, what="pickle"):
    """Walk ``obj`` as the tree its shared references expand to, refusing it past
    MAX_PICKLE_NODES nodes or MAX_PICKLE_DEPTH levels (and so any cycle): whatever walks
    it afterwards (a repr, a comparison, our readers) does bounded work."""
    stack, nodes = [(obj, 0)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_PICKLE_NODES:
            raise PickleLimitError(f"{what} builds more than {MAX_PICKLE_NODES:,} objects "
                                   f"(shared references counted each time): not a state_dict")
        if isinstance(value, (tuple, list, set, frozenset, dict)):
            if depth >= MAX_PICKLE_DEPTH:
                raise PickleLimitError(f"{what} nests containers more than "
                                       f"{MAX_PICKLE_DEPTH} deep: not a state_dict")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
            if isinstance(value, OrderedDict) and vars(value):    # BUILD state (_metadata)
                stack.append((vars(value), depth + 1))


def _counted(load):
    def step(self):
        self._ops += 1
        if self._ops > MAX_PICKLE_OPS:
            raise PickleLimitError(f"{self._what} runs more than {MAX_PICKLE_OPS:,} opcodes: "
                                   f"not a state_dict")
        load(self)
    return step


class RestrictedUnpickler(pickle._Unpickler):
    """``find_class`` resolves only ``ALLOWED`` globals; ``persistent_load`` is given.

    Python's own (pure-Python) unpickler with every opcode counted and the opcodes that
    hash, call or set state checked: dict keys and set items must be plain values, BUILD
    may only set string-named attributes of an OrderedDict (torch's ``_metadata``), and
    out-of-band buffers are refused. The C unpickler would allow none of these checks."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, persistent_load=None, extra=None, what="pickle"):
        super().__init__(file, encoding="utf-8")
        self._persistent = persistent_load
        self._extra = extra or {}
        self._what = what
        self._ops = 0

    def find_class(self, module, name):
        key = (module, name)
        if key in ALLOWED:
            return ALLOWED[key]
        if key in self._extra:
            return self._extra[key]
        raise UnsafePickleError(f"refused to load global {short(module, 60)[1:-1]}."
                                f"{short(name, 60)[1:-1]}: a weights file may "
                                f"only name OrderedDict, torch._utils._rebuild_tensor(_v2) and "
                                f"torch.*Storage (nothing from the file was run)")

    def persistent_load(self, pid):
        _check_bounded(pid, "persistent id")
        if self._persistent is None:
            raise UnsafePickleError(f"unexpected persistent id {short(pid)} in a header pickle")
        return self._persistent(pid)

    def _setitems(self, pairs):
        target = self.stack[-1]
        if not isinstance(target, dict):
            raise UnsafePickleError(f"the pickle sets items of a {type(target).__name__}")
        for key, value in pairs:
            target[_flat_key(key)] = value

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems([(key, value)])

    def load_setitems(self):
        items = self.pop_mark()
        self._setitems(zip(items[::2], items[1::2]))

    def load_dict(self):
        items = self.pop_mark()
        self.append({_flat_key(k): v for k, v in zip(items[::2], items[1::2])})

    def load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, set):
            raise UnsafePickleError(f"the pickle adds set items to a {type(target).__name__}")
        target.update(_flat_key(item) for item in items)

    def load_frozenset(self):
        self.append(frozenset(_flat_key(item) for item in self.pop_mark()))

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if not (isinstance(inst, OrderedDict) and isinstance(state, dict)
                and all(isinstance(k, str) for k in state)):
            raise UnsafePickleError(f"the pickle sets the state of a {type(inst).__name__}: "
                                    f"only string-named attributes of an OrderedDict are "
                                    f"allowed")
        vars(inst).update(state)

    def load_refused(self):
        raise UnsafePickleError("the pickle uses out-of-band buffers or extension codes "
                                "(not written by torch.save)")

    for _code, _name in ((pickle.SETITEM, "load_setitem"), (pickle.SETITEMS, "load_setitems"),
                         (pickle.DICT, "load_dict"), (pickle.ADDITEMS, "load_additems"),
                         (pickle.FROZENSET, "load_frozenset"), (pickle.BUILD, "load_build"),
                         (pickle.BYTEARRAY8, "load_refused"),
                         (pickle.NEXT_BUFFER, "load_refused"),
                         (pickle.READONLY_BUFFER, "load_refused"), (pickle.EXT1, "load_refused"),
                         (pickle.EXT2, "load_refused"), (pickle.EXT4, "load_refused")):
        dispatch[_code[0]] = locals()[_name]
    dispatch = {code: _counted(load) for code, load in dispatch.items()}
    del _code, _name


class MapReader:
    """A read-only file over ``buf[start:end]`` (a memory map): reads past the end return
    what is there, so a length field in the file never makes us allocate more."""

    def __init__(self, buf, start=0, end=None):
        self.buf, self.pos, self.end = buf, start, len(buf) if end is None else end

    def read(self, n=-1):
        stop = self.end if n is None or n < 0 else min(self.end, self.pos + n)
        out = bytes(self.buf[self.pos:stop]) if stop > self.pos else b""
        self.pos += len(out)
        return out

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self):
        # the opcodes that read lines need the newline: without it the pickle is cut short
        stop = self.buf.find(b"\n", self.pos, self.end)
        if stop < 0:
            raise EOFError
        return self.read(stop + 1 - self.pos)

    def tell(self):
        return self.pos

    def seek(self, pos, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.end}[whence] + pos
        return self.pos


def unpickle(file, persistent_load=None, extra=None, what="pickle"):
    try:
        obj = RestrictedUnpickler(file, persistent_load, extra, what).load()
    except ConvertError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError,
            AttributeError, IndexError, KeyError, UnicodeDecodeError, RecursionError,
            MemoryError, OverflowError) as exc:
        reason = "ended early (truncated file)" if isinstance(exc, EOFError) else \
            f"is corrupt ({type(exc).__name__}: {short(str(exc), 120)[1:-1]})"
        raise ConvertError(f"{what} {reason}") from None
    _check_bounded(obj, what)
    return obj


def _typed(value, types, what):
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        raise ConvertError(f"bad persistent id: {what} has type {type(value).__name__}")
    if isinstance(value, int) and not _is_int64(value):
        raise ConvertError(f"bad persistent id: {what} {short(value)} is not a 64-bit integer")
    return value


def _check_storage_id(stype, key, location, numel):
    """Validate the common fields of a persistent storage id (zip and legacy files)."""
    if not isinstance(stype, StorageType):
        raise UnsafePickleError(f"persistent id: expected a torch storage type, found "
                                f"{short(stype)}")
    _typed(key, str, "storage key")
    _typed(location, str, "location")
    _typed(numel, int, "numel")
    if numel < 0:
        raise ConvertError(f"storage {short(key)}: negative element count {numel}")


# ---------------------------------------------------------------------- containers
def open_map(path):
    """Read-only memory map of the whole file (no copy of the weights in memory)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ConvertError(f"{path}: empty file")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _frombuffer(mm, stype, count, offset, byteorder="<"):
    end = offset + count * stype.itemsize
    if offset < 0 or end > len(mm):
        raise ConvertError(f"storage data at bytes {offset}..{end} lies beyond the end of the "
                           f"file ({len(mm)} bytes): truncated file")
    dtype = np.dtype(stype.code).newbyteorder(byteorder) if stype.itemsize > 1 else \
        np.dtype(stype.code)
    return np.frombuffer(mm, dtype=dtype, count=count, offset=offset)


def _zip_problem(info):
    """Why a zip record cannot be read as torch writes it (None when it can)."""
    if info.flag_bits & 0x1:
        return "is encrypted (torch.save never encrypts)"
    if info.compress_type not in ZIP_METHODS:
        return (f"uses compression method {info.compress_type} (expected "
                f"{', '.join(ZIP_METHODS.values())})")
    return None


def _read_record(zf, info, limit, what):
    """The bytes of a small zip record, refused before reading when it is larger than
    ``limit`` (declared size) or cannot be read; never more than ``limit`` bytes."""
    name = short(info.filename)
    problem = _zip_problem(info)
    if problem:
        raise ConvertError(f"zip record {name} {problem}")
    if info.file_size > limit:
        raise ConvertError(f"zip record {name}: {info.file_size:,} bytes, expected at most "
                           f"{limit:,} for {what}")
    try:
        with zf.open(info) as f:
            return f.read(limit + 1)[:limit]
    except ZIP_READ_ERRORS as exc:
        raise ConvertError(f"zip record {name}: cannot read ({type(exc).__name__}: "
                           f"{short(str(exc), 100)[1:-1]}): truncated or corrupt zip") from None


def read_zip(path, mm):
    """torch >= 1.6 zip container -> state (whatever data.pkl holds)."""
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_READ_ERRORS as exc:
        raise ConvertError(f"truncated or corrupt zip container (torch.save zip format): "
                           f"{short(str(exc), 100)[1:-1]}") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        if not infos:
            raise ConvertError("zip container is empty: expected <name>/data.pkl")
        prefix = next(iter(infos)).split("/")[0]
        pkl = infos.get(f"{prefix}/data.pkl")
        if pkl is None:
            raise ConvertError(f"zip file without {short(prefix + '/data.pkl')}: not a "
                               f"torch.save file (found {short(list(infos)[:5], 200)})")
        byteorder = "<"
        if f"{prefix}/byteorder" in infos:
            info = infos[f"{prefix}/byteorder"]
            order = _read_record(zf, info, SMALL_RECORDS["byteorder"], "a byteorder record")
            order = order.decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise ConvertError(f"zip record {short(info.filename)}: expected 'little' or "
                                   f"'big', found {short(order)}")
            byteorder = "<" if order == "little" else ">"
        pickle_bytes = _read_record(zf, pkl, MAX_PICKLE_BYTES, "a state_dict pickle")

        storages = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
                raise UnsafePickleError(f"persistent id: expected ('storage', type, key, location,"
                                        f" numel), found {short(pid, 200)}")
            _, stype, key, location, numel = pid
            _check_storage_id(stype, key, location, numel)
            if key in storages:
                ref = storages[key]
                if ref.stype.name != stype.name or ref.numel != numel:
                    raise ConvertError(f"storage {short(key)} is referenced with two different "
                                       f"types or sizes")
                return ref
            info = infos.get(f"{prefix}/data/{key}")
            record = short(f"{prefix}/data/{key}")
            if info is None:
                raise ConvertError(f"storage {short(key)}: expected record {record}, not in the "
                                   f"zip (truncated file?)")
            if info.file_size != numel * stype.itemsize:
                raise ConvertError(f"storage {short(key)}: pickle says {numel} x {stype.itemsize} "
                                   f"bytes, the record holds {info.file_size} bytes")
            problem = _zip_problem(info)
            if problem:
                raise ConvertError(f"zip record {record} {problem}")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise ConvertError(f"zip record {record} is compressed: torch writes "
                                   f"uncompressed records")
            ref = StorageRef(key, stype, numel)
            ref.array = _frombuffer(mm, stype, numel, _zip_data_offset(mm, info), byteorder)
            if info.CRC:    # 0: written without CRC-32s (torch can be told so)
                ref.crc = (info.filename, info.CRC)
            storages[key] = ref
            return ref

        return unpickle(MapReader(pickle_bytes), persistent_load, what="data.pkl")


def _zip_data_offset(mm, info):
    """Where a stored record's bytes start: after its local header (whose extra field,
    used by torch for 64-byte alignment, may differ from the central directory's)."""
    start = info.header_offset
    if start < 0 or start + 30 > len(mm) or mm[start:start + 4] != b"PK\x03\x04":
        raise ConvertError(f"zip record {short(info.filename)}: bad local header (corrupt file)")
    name_len, extra_len = struct.unpack("<HH", mm[start + 26:start + 30])
    return start + 30 + name_len + extra_len


def read_legacy(path, mm):
    """torch 0.4 - 1.5 stream: magic, protocol, sys_info, state pickle, storage keys, data."""
    f = MapReader(mm)
    magic = unpickle(f, what="legacy header")
    if magic != LEGACY_MAGIC:
        raise ConvertError(f"pickle stream without the torch magic number (found "
                           f"{short(magic, 60)}): not a torch.save file")
    protocol = unpickle(f, what="legacy header")
    if protocol != LEGACY_PROTOCOL:
        raise ConvertError(f"legacy torch file: expected protocol version {LEGACY_PROTOCOL}, "
                           f"found {short(protocol, 60)}")
    sys_info = unpickle(f, what="legacy header")
    if not isinstance(sys_info, dict):
        raise ConvertError("legacy torch file: expected a sys_info dict")
    byteorder = "<" if sys_info.get("little_endian", True) else ">"

    storages = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise UnsafePickleError(f"persistent id: expected ('storage', type, key, location,"
                                    f" numel, view), found {short(pid, 200)}")
        _, stype, key, location, numel, view = pid
        _check_storage_id(stype, key, location, numel)
        root = storages.get(key)
        if root is None:
            root = storages[key] = StorageRef(key, stype, numel)
        elif root.stype.name != stype.name or root.numel != numel:
            raise ConvertError(f"storage {short(key)} is referenced with two different types "
                               f"or sizes")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise ConvertError(f"storage view metadata: expected (key, offset, size), found "
                               f"{short(view)}")
        view_key, offset, size = view
        _typed(view_key, str, "view key")
        _typed(offset, int, "view offset")
        _typed(size, int, "view size")
        if offset < 0 or size < 0 or offset + size > numel:
            raise ConvertError(f"storage view {short(view_key)}: elements {offset}.."
                               f"{offset + size} outside its storage of {numel}")
        return StorageRef(view_key, stype, size, root=root, root_offset=offset)

    state = unpickle(f, persistent_load, what="state_dict pickle")
    keys = unpickle(f, what="storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConvertError("legacy torch file: expected a list of storage keys after the "
                           "state_dict")
    offset = f.tell()
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise ConvertError(f"legacy torch file: data for storage {short(key)} that the "
                               f"pickle never named")
        if offset + 8 > len(mm):
            raise ConvertError(f"storage {short(key)}: the file ends before its data "
                               f"(truncated file)")
        (count,) = struct.unpack(byteorder + "q", mm[offset:offset + 8])
        if count != ref.numel:
            raise ConvertError(f"storage {short(key)}: pickle says {ref.numel} elements, the "
                               f"data record says {count}")
        ref.array = _frombuffer(mm, ref.stype, count, offset + 8, byteorder)
        offset += 8 + count * ref.stype.itemsize
    return state


def _tar_key(value, what):
    """Keys in tar records name objects of the file: plain strings or integers."""
    if not (isinstance(value, str) or _is_int64(value)):
        raise ConvertError(f"{what}: expected a string or an integer key, found "
                           f"{type(value).__name__}")
    return value


def read_tar(path, mm):
    """torch 0.1 - 0.3 tar: storages, tensors and pickle members; nothing is extracted to
    disk (members are read in place)."""
    try:
        tar = tarfile.open(path, mode="r:")
        with tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError) as exc:
        raise ConvertError(f"truncated or corrupt tar container (old torch.save format): "
                           f"{short(str(exc), 100)[1:-1]}") from None
    for need in ("storages", "tensors", "pickle"):
        if need not in members:
            raise ConvertError(f"tar file without a '{need}' member: not a torch.save file "
                               f"(found {short(sorted(members)[:5], 200)})")
        m = members[need]
        if m.offset_data + m.size > len(mm) or m.sparse:
            raise ConvertError(f"tar member '{need}' runs past the end of the file "
                               f"(truncated file)")
    objects = {}

    def reader(name):
        m = members[name]
        return MapReader(mm, m.offset_data, m.offset_data + m.size)

    # storages: count, then per storage (key, location, type), int64 count, bytes
    f = reader("storages")
    num = unpickle(f, what="tar storages header")
    _typed(num, int, "storage count")
    for _ in range(num):
        args = unpickle(f, extra=TAR_TENSOR_TYPES, what="tar storage record")
        if not (isinstance(args, tuple) and len(args) == 3
                and isinstance(args[2], StorageType)):
            raise ConvertError(f"tar storage record: expected (key, location, storage "
                               f"type), found {short(args)}")
        key, _, stype = args
        _tar_key(key, "tar storage record")
        raw = f.read(8)
        if len(raw) != 8:
            raise ConvertError("tar storages member ends early (truncated file)")
        (count,) = struct.unpack("<q", raw)
        if count < 0 or f.tell() + count * stype.itemsize > f.end:
            raise ConvertError(f"tar storage {short(key)}: {count} elements do not fit in "
                               f"the member's {members['storages'].size} bytes")
        ref = StorageRef(key, stype, count)
        ref.array = _frombuffer(mm, stype, count, f.tell())
        objects[key] = ref
        f.seek(count * stype.itemsize, io.SEEK_CUR)
    views = unpickle(f, what="tar storage views")
    for view in views if isinstance(views, list) else ():
        if not (isinstance(view, (tuple, list)) and len(view) == 4):
            raise ConvertError(f"tar storage view: expected (key, root key, offset, size), "
                               f"found {short(view)}")
        target, root_key, offset, numel = view
        root = objects.get(_tar_key(root_key, "tar storage view"))
        _tar_key(target, "tar storage view")
        if not (isinstance(root, StorageRef) and _is_int64(offset) and _is_int64(numel)) \
                or offset < 0 or numel < 0 or offset + numel > root.numel:
            raise ConvertError(f"tar storage view {short(target)}: bad root or bounds")
        objects[target] = StorageRef(target, root.stype, numel, root=root, root_offset=offset)

    # tensors: count, then per tensor (key, storage key, type), ndim, sizes, strides, offset
    f = reader("tensors")
    num = unpickle(f, what="tar tensors header")
    _typed(num, int, "tensor count")
    for _ in range(num):
        args = unpickle(f, extra=TAR_TENSOR_TYPES, what="tar tensor record")
        if not (isinstance(args, tuple) and len(args) == 3):
            raise ConvertError(f"tar tensor record: expected (key, storage key, type), found "
                               f"{short(args)}")
        key, storage_key, _ = args
        _tar_key(key, "tar tensor record")
        head = f.read(8)
        if len(head) != 8:
            raise ConvertError("tar tensors member ends early (truncated file)")
        (ndim,) = struct.unpack("<i", head[:4])
        if not 0 <= ndim <= 16:
            raise ConvertError(f"tar tensor {short(key)}: {ndim} dimensions")
        body = f.read(16 * ndim + 8)
        if len(body) != 16 * ndim + 8:
            raise ConvertError("tar tensors member ends early (truncated file)")
        size = struct.unpack(f"<{ndim}q", body[:8 * ndim])
        stride = struct.unpack(f"<{ndim}q", body[8 * ndim:16 * ndim])
        (offset,) = struct.unpack("<q", body[16 * ndim:])
        storage = objects.get(_tar_key(storage_key, "tar tensor record"))
        if not isinstance(storage, StorageRef):
            raise ConvertError(f"tar tensor {short(key)}: unknown storage {short(storage_key)}")
        objects[key] = TensorRef(storage, offset, size, stride)

    def persistent_load(saved_id):
        if isinstance(saved_id, tuple):
            raise ConvertError("tar file pickles a module's source code: only state_dicts "
                               "can be converted")
        try:
            return objects[int(saved_id)]
        except (KeyError, ValueError, TypeError, OverflowError):
            raise ConvertError(f"tar pickle names unknown object {short(saved_id, 60)}") \
                from None

    objects = {int(k) if isinstance(k, str) and k.isdigit() and len(k) < 20 else k: v
               for k, v in objects.items()}
    return unpickle(reader("pickle"), persistent_load, what="tar pickle")


def read_state(path, container, mm):
    """container in {'zip', 'legacy', 'tar'} -> OrderedDict name -> TensorRef."""
    reader = {"zip": read_zip, "legacy": read_legacy, "tar": read_tar}[container]
    state = reader(path, mm)
    if isinstance(state, dict):
        # checkpoints often wrap the weights: {"state_dict": {...}} or {"model": {...}}
        for wrapper in ("state_dict", "model"):
            if wrapper in state and isinstance(state[wrapper], dict) and not any(
                    isinstance(v, TensorRef) for v in state.values()):
                state = state[wrapper]
                break
    if not isinstance(state, dict):
        raise ConvertError(f"expected a state_dict (a dict of tensors), found a pickled "
                           f"{type(state).__name__}")
    tensors = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str):
            raise ConvertError(f"state_dict key {short(key, 60)} is not a string")
        if key.startswith("module."):     # saved from nn.DataParallel
            key = key[len("module."):]
        if isinstance(value, TensorRef):
            value.name = key
            value.validate()
            if math.prod(value.size):
                value.storage.data()    # located (and intact) before any layer is allocated
            tensors[key] = value
        else:
            raise ConvertError(f"state_dict entry {short(key)} is a {type(value).__name__}, "
                               f"expected a tensor")
    if not tensors:
        raise ConvertError("the state_dict holds no tensors")
    return tensors
