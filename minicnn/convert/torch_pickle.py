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
import math
import mmap
import os
import pickle
import struct
import tarfile
import zipfile
from collections import OrderedDict

import numpy as np

from .common import ConvertError

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 256 * 2**20     # a state_dict pickle is kilobytes; more is not a state_dict

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
    bytes are located (a read-only 1-D view of the memory map)."""
    __slots__ = ("key", "stype", "numel", "array", "root", "root_offset")

    def __init__(self, key, stype, numel, root=None, root_offset=0):
        self.key, self.stype, self.numel = key, stype, numel
        self.array, self.root, self.root_offset = None, root, root_offset

    def data(self):
        if self.root is not None:
            base = self.root.data()
            return base[self.root_offset:self.root_offset + self.numel]
        if self.array is None:
            raise ConvertError(f"storage {self.key!r}: no data for it in the file")
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
            if not isinstance(seq, (tuple, list)) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in seq):
                raise ConvertError(f"tensor {what} must be a tuple of integers, found {seq!r}")
        if not isinstance(offset, int) or len(size) != len(stride):
            raise ConvertError(f"bad tensor metadata: offset {offset!r}, size {size!r}, "
                               f"stride {stride!r}")
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
        where = f"tensor {self.name!r}" if self.name else "tensor"
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ConvertError(f"{where}: negative size, stride or offset ({self.size}, "
                               f"{self.stride}, {self.offset})")
        if numel == 0:
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
            raise ConvertError(f"tensor {self.name!r}: expected floating-point weights, found "
                               f"torch.{stype.name}")
        if math.prod(self.size) == 0:
            return np.zeros(self.size, np.float32)
        data = self.storage.data()
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride),
            writeable=False)
        if stype.name == "BFloat16Storage":
            return (view.astype(np.uint32) << 16).view(np.float32)
        return np.array(view, dtype=np.float32, order="C")

    def __setstate__(self, state):
        raise UnsafePickleError("the pickle tries to set the state of a tensor")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride)


ALLOWED = {("collections", "OrderedDict"): OrderedDict,
           ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
           ("torch._utils", "_rebuild_tensor"): _rebuild_tensor}
ALLOWED.update({("torch", name): StorageType(name) for name in STORAGE_DTYPES})
TAR_TENSOR_TYPES = {("torch", name.replace("Storage", "Tensor")):
                    TensorType(name.replace("Storage", "Tensor")) for name in STORAGE_DTYPES}


class RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` resolves only ``ALLOWED`` globals; ``persistent_load`` is given."""

    def __init__(self, file, persistent_load=None, extra=None):
        super().__init__(file, encoding="utf-8")
        self._persistent = persistent_load
        self._extra = extra or {}

    def find_class(self, module, name):
        key = (module, name)
        if key in ALLOWED:
            return ALLOWED[key]
        if key in self._extra:
            return self._extra[key]
        raise UnsafePickleError(f"refused to load global {module}.{name}: a weights file may "
                                f"only name OrderedDict, torch._utils._rebuild_tensor(_v2) and "
                                f"torch.*Storage (nothing from the file was run)")

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafePickleError(f"unexpected persistent id {pid!r} in a header pickle")
        return self._persistent(pid)


def unpickle(file, persistent_load=None, extra=None, what="pickle"):
    try:
        return RestrictedUnpickler(file, persistent_load, extra).load()
    except ConvertError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError,
            AttributeError, IndexError, KeyError, UnicodeDecodeError, RecursionError,
            MemoryError, OverflowError) as exc:
        reason = "ended early (truncated file)" if isinstance(exc, EOFError) else \
            f"is corrupt ({type(exc).__name__}: {exc})"
        raise ConvertError(f"{what} {reason}") from None


def _typed(value, types, what):
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        raise ConvertError(f"bad persistent id: {what} has type {type(value).__name__}")
    return value


def _check_storage_id(stype, key, location, numel):
    """Validate the common fields of a persistent storage id (zip and legacy files)."""
    if not isinstance(stype, StorageType):
        raise UnsafePickleError(f"persistent id: expected a torch storage type, found "
                                f"{stype!r:.100}")
    _typed(key, str, "storage key")
    _typed(location, str, "location")
    _typed(numel, int, "numel")
    if numel < 0:
        raise ConvertError(f"storage {key!r}: negative element count {numel}")


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


def read_zip(path, mm):
    """torch >= 1.6 zip container -> state (whatever data.pkl holds)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConvertError(f"truncated or corrupt zip container (torch.save zip format): "
                           f"{exc}") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        if not infos:
            raise ConvertError("zip container is empty: expected <name>/data.pkl")
        prefix = next(iter(infos)).split("/")[0]
        pkl = infos.get(f"{prefix}/data.pkl")
        if pkl is None:
            raise ConvertError(f"zip file without {prefix}/data.pkl: not a torch.save file "
                               f"(found {', '.join(list(infos)[:5])})")
        if pkl.file_size > MAX_PICKLE_BYTES:
            raise ConvertError(f"data.pkl is {pkl.file_size} bytes: too large for a state_dict")
        byteorder = "<"
        if f"{prefix}/byteorder" in infos:
            order = zf.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise ConvertError(f"byteorder record: expected 'little' or 'big', found {order!r}")
            byteorder = "<" if order == "little" else ">"
        try:
            pickle_bytes = zf.read(pkl)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ConvertError(f"cannot read data.pkl ({exc}): truncated or corrupt zip") from None

        storages = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
                raise UnsafePickleError(f"persistent id: expected ('storage', type, key, location,"
                                        f" numel), found {pid!r:.200}")
            _, stype, key, location, numel = pid
            _check_storage_id(stype, key, location, numel)
            if key in storages:
                ref = storages[key]
                if ref.stype.name != stype.name or ref.numel != numel:
                    raise ConvertError(f"storage {key!r} is referenced with two different "
                                       f"types or sizes")
                return ref
            info = infos.get(f"{prefix}/data/{key}")
            if info is None:
                raise ConvertError(f"storage {key!r}: expected record {prefix}/data/{key}, not "
                                   f"in the zip (truncated file?)")
            if info.file_size != numel * stype.itemsize:
                raise ConvertError(f"storage {key!r}: pickle says {numel} x {stype.itemsize} "
                                   f"bytes, the record holds {info.file_size} bytes")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ConvertError(f"storage {key!r} is compressed: torch writes uncompressed "
                                   f"records")
            ref = StorageRef(key, stype, numel)
            ref.array = _frombuffer(mm, stype, numel, _zip_data_offset(mm, info), byteorder)
            storages[key] = ref
            return ref

        return unpickle(io.BytesIO(pickle_bytes), persistent_load, what="data.pkl")


def _zip_data_offset(mm, info):
    """Where a stored record's bytes start: after its local header (whose extra field,
    used by torch for 64-byte alignment, may differ from the central directory's)."""
    start = info.header_offset
    if start + 30 > len(mm) or mm[start:start + 4] != b"PK\x03\x04":
        raise ConvertError(f"zip record {info.filename}: bad local header (corrupt file)")
    name_len, extra_len = struct.unpack("<HH", mm[start + 26:start + 30])
    return start + 30 + name_len + extra_len


def read_legacy(path, mm):
    """torch 0.4 - 1.5 stream: magic, protocol, sys_info, state pickle, storage keys, data."""
    with open(path, "rb") as f:
        magic = unpickle(f, what="legacy header")
        if magic != LEGACY_MAGIC:
            raise ConvertError(f"pickle stream without the torch magic number (found "
                               f"{magic!r:.60}): not a torch.save file")
        protocol = unpickle(f, what="legacy header")
        if protocol != LEGACY_PROTOCOL:
            raise ConvertError(f"legacy torch file: expected protocol version {LEGACY_PROTOCOL}, "
                               f"found {protocol!r:.60}")
        sys_info = unpickle(f, what="legacy header")
        if not isinstance(sys_info, dict):
            raise ConvertError("legacy torch file: expected a sys_info dict")
        byteorder = "<" if sys_info.get("little_endian", True) else ">"

        storages = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
                raise UnsafePickleError(f"persistent id: expected ('storage', type, key, location,"
                                        f" numel, view), found {pid!r:.200}")
            _, stype, key, location, numel, view = pid
            _check_storage_id(stype, key, location, numel)
            root = storages.get(key)
            if root is None:
                root = storages[key] = StorageRef(key, stype, numel)
            elif root.stype.name != stype.name or root.numel != numel:
                raise ConvertError(f"storage {key!r} is referenced with two different types "
                                   f"or sizes")
            if view is None:
                return root
            if not (isinstance(view, tuple) and len(view) == 3):
                raise ConvertError(f"storage view metadata: expected (key, offset, size), found "
                                   f"{view!r:.100}")
            view_key, offset, size = view
            _typed(offset, int, "view offset")
            _typed(size, int, "view size")
            if offset < 0 or size < 0 or offset + size > numel:
                raise ConvertError(f"storage view {view_key!r}: elements {offset}..{offset + size}"
                                   f" outside its storage of {numel}")
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
            raise ConvertError(f"legacy torch file: data for storage {key!r} that the pickle "
                               f"never named")
        if offset + 8 > len(mm):
            raise ConvertError(f"storage {key!r}: the file ends before its data (truncated "
                               f"file)")
        (count,) = struct.unpack(byteorder + "q", mm[offset:offset + 8])
        if count != ref.numel:
            raise ConvertError(f"storage {key!r}: pickle says {ref.numel} elements, the data "
                               f"record says {count}")
        ref.array = _frombuffer(mm, ref.stype, count, offset + 8, byteorder)
        offset += 8 + count * ref.stype.itemsize
    return state


def read_tar(path, mm):
    """torch 0.1 - 0.3 tar: storages, tensors and pickle members; nothing is extracted to
    disk (members are read in place)."""
    try:
        tar = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise ConvertError(f"truncated or corrupt tar container (old torch.save format): "
                           f"{exc}") from None
    with tar:
        members = {}
        for m in tar.getmembers():
            if m.isfile():
                members[m.name] = m
        for need in ("storages", "tensors", "pickle"):
            if need not in members:
                raise ConvertError(f"tar file without a '{need}' member: not a torch.save file "
                                   f"(found {', '.join(sorted(members)[:5])})")
            if members[need].offset_data + members[need].size > len(mm):
                raise ConvertError(f"tar member '{need}' runs past the end of the file "
                                   f"(truncated file)")
        objects = {}

        # storages: count, then per storage (key, location, type), int64 count, bytes
        m = members["storages"]
        f = tar.extractfile(m)
        num = unpickle(f, what="tar storages header")
        _typed(num, int, "storage count")
        for _ in range(num):
            args = unpickle(f, extra=TAR_TENSOR_TYPES, what="tar storage record")
            if not (isinstance(args, tuple) and len(args) == 3
                    and isinstance(args[2], StorageType)):
                raise ConvertError(f"tar storage record: expected (key, location, storage "
                                   f"type), found {args!r:.100}")
            key, _, stype = args
            raw = f.read(8)
            if len(raw) != 8:
                raise ConvertError("tar storages member ends early (truncated file)")
            (count,) = struct.unpack("<q", raw)
            start = m.offset_data + f.tell()
            if count < 0 or f.tell() + count * stype.itemsize > m.size:
                raise ConvertError(f"tar storage {key!r}: {count} elements do not fit in the "
                                   f"member's {m.size} bytes")
            ref = StorageRef(key, stype, count)
            ref.array = _frombuffer(mm, stype, count, start)
            objects[key] = ref
            f.seek(count * stype.itemsize, io.SEEK_CUR)
        views = unpickle(f, what="tar storage views")
        for view in views if isinstance(views, list) else ():
            target, root_key, offset, numel = view
            root = objects.get(root_key)
            if not isinstance(root, StorageRef) or offset < 0 or numel < 0 \
                    or offset + numel > root.numel:
                raise ConvertError(f"tar storage view {target!r}: bad root or bounds")
            objects[target] = StorageRef(target, root.stype, numel, root=root, root_offset=offset)

        # tensors: count, then per tensor (key, storage key, type), ndim, sizes, strides, offset
        f = tar.extractfile(members["tensors"])
        num = unpickle(f, what="tar tensors header")
        _typed(num, int, "tensor count")
        for _ in range(num):
            args = unpickle(f, extra=TAR_TENSOR_TYPES, what="tar tensor record")
            if not (isinstance(args, tuple) and len(args) == 3):
                raise ConvertError(f"tar tensor record: expected (key, storage key, type), found "
                                   f"{args!r:.100}")
            key, storage_key, _ = args
            head = f.read(8)
            if len(head) != 8:
                raise ConvertError("tar tensors member ends early (truncated file)")
            (ndim,) = struct.unpack("<i", head[:4])
            if not 0 <= ndim <= 16:
                raise ConvertError(f"tar tensor {key!r}: {ndim} dimensions")
            body = f.read(16 * ndim + 8)
            if len(body) != 16 * ndim + 8:
                raise ConvertError("tar tensors member ends early (truncated file)")
            size = struct.unpack(f"<{ndim}q", body[:8 * ndim])
            stride = struct.unpack(f"<{ndim}q", body[8 * ndim:16 * ndim])
            (offset,) = struct.unpack("<q", body[16 * ndim:])
            storage = objects.get(storage_key)
            if not isinstance(storage, StorageRef):
                raise ConvertError(f"tar tensor {key!r}: unknown storage {storage_key!r}")
            objects[key] = TensorRef(storage, offset, size, stride)

        def persistent_load(saved_id):
            if isinstance(saved_id, tuple):
                raise ConvertError("tar file pickles a module's source code: only state_dicts "
                                   "can be converted")
            try:
                return objects[int(saved_id)]
            except (KeyError, ValueError, TypeError):
                raise ConvertError(f"tar pickle names unknown object {saved_id!r:.60}") from None

        objects = {int(k) if isinstance(k, (int, str)) and str(k).isdigit() else k: v
                   for k, v in objects.items()}
        return unpickle(tar.extractfile(members["pickle"]), persistent_load, what="tar pickle")


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
            raise ConvertError(f"state_dict key {key!r:.60} is not a string")
        if key.startswith("module."):     # saved from nn.DataParallel
            key = key[len("module."):]
        if isinstance(value, TensorRef):
            value.name = key
            value.validate()
            tensors[key] = value
        else:
            raise ConvertError(f"state_dict entry {key!r} is a {type(value).__name__}, expected "
                               f"a tensor")
    if not tensors:
        raise ConvertError("the state_dict holds no tensors")
    return tensors
