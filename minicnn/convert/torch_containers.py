"""The three ``torch.save`` containers: zip (torch >= 1.6), the legacy pickle stream (torch
0.4 - 1.5, the 2017 torchvision VGG files) and the old tar (torch 0.1 - 0.3).

Each reader returns whatever the file's state pickle holds, its storages located in the
memory map (never copied, never extracted to disk).
"""
import io
import lzma
import struct
import tarfile
import zipfile
import zlib

import numpy as np

from ..terminal import short
from .common import ConvertError
from .torch_tensors import StorageRef, StorageType, TensorRef, UnsafePickleError, is_int64
from .torch_unpickle import TAR_TENSOR_TYPES, MapReader, unpickle

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 32 * 2**20      # a state_dict pickle is kilobytes; more is not a state_dict
# zip records read into memory, and how large they may be (storages are never read: they
# are memory-mapped, by their declared size)
SMALL_RECORDS = {"byteorder": 16, "version": 64}
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
               zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
ZIP_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError,
                   EOFError, OSError, RuntimeError, NotImplementedError, ValueError,
                   struct.error, OverflowError)


def _typed(value, types, what):
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        raise ConvertError(f"bad persistent id: {what} has type {type(value).__name__}")
    if isinstance(value, int) and not is_int64(value):
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


# ---------------------------------------------------------------------- zip (torch >= 1.6)
def read_zip(path, mm):
    """torch >= 1.6 zip container -> state (whatever data.pkl holds)."""
    zf = _open_zip(path)
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        prefix, pkl = _find_data_pkl(infos)
        byteorder = _zip_byteorder(zf, infos, prefix)
        pickle_bytes = _read_record(zf, pkl, MAX_PICKLE_BYTES, "a state_dict pickle")
        persistent_load = _zip_storage_loader(mm, infos, prefix, byteorder)
        return unpickle(MapReader(pickle_bytes), persistent_load, what="data.pkl")


def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except ZIP_READ_ERRORS as exc:
        raise ConvertError(f"truncated or corrupt zip container (torch.save zip format): "
                           f"{short(str(exc), 100)[1:-1]}") from None


def _find_data_pkl(infos):
    """The archive's top folder (named by torch after the file) and its data.pkl record."""
    if not infos:
        raise ConvertError("zip container is empty: expected <name>/data.pkl")
    prefix = next(iter(infos)).split("/")[0]
    pkl = infos.get(f"{prefix}/data.pkl")
    if pkl is None:
        raise ConvertError(f"zip file without {short(prefix + '/data.pkl')}: not a "
                           f"torch.save file (found {short(list(infos)[:5], 200)})")
    return prefix, pkl


def _zip_byteorder(zf, infos, prefix):
    """numpy's byte-order character for the storages; files without the record are little."""
    info = infos.get(f"{prefix}/byteorder")
    if info is None:
        return "<"
    order = _read_record(zf, info, SMALL_RECORDS["byteorder"], "a byteorder record")
    order = order.decode("ascii", "replace").strip()
    if order not in ("little", "big"):
        raise ConvertError(f"zip record {short(info.filename)}: expected 'little' or "
                           f"'big', found {short(order)}")
    return "<" if order == "little" else ">"


def _zip_storage_loader(mm, infos, prefix, byteorder):
    """persistent_load for data.pkl: each storage id -> its record, memory-mapped once."""
    storages = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise UnsafePickleError(f"persistent id: expected ('storage', type, key, location,"
                                    f" numel), found {short(pid, 200)}")
        _, stype, key, location, numel = pid
        _check_storage_id(stype, key, location, numel)
        if key in storages:
            return _same_storage(storages[key], stype, numel)
        info = _storage_record(infos, prefix, key, stype, numel)
        ref = StorageRef(key, stype, numel)
        ref.array = _frombuffer(mm, stype, numel, _zip_data_offset(mm, info), byteorder)
        if info.CRC:    # 0: written without CRC-32s (torch can be told so)
            ref.crc = (info.filename, info.CRC)
        storages[key] = ref
        return ref

    return persistent_load


def _same_storage(ref, stype, numel):
    """A storage named again must be named the same way."""
    if ref.stype.name != stype.name or ref.numel != numel:
        raise ConvertError(f"storage {short(ref.key)} is referenced with two different "
                           f"types or sizes")
    return ref


def _storage_record(infos, prefix, key, stype, numel):
    """The zip record holding storage ``key``, refused unless it is stored uncompressed
    with exactly the declared size (it is memory-mapped, never read)."""
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
    return info


def _zip_data_offset(mm, info):
    """Where a stored record's bytes start: after its local header (whose extra field,
    used by torch for 64-byte alignment, may differ from the central directory's)."""
    start = info.header_offset
    if start < 0 or start + 30 > len(mm) or mm[start:start + 4] != b"PK\x03\x04":
        raise ConvertError(f"zip record {short(info.filename)}: bad local header (corrupt file)")
    name_len, extra_len = struct.unpack("<HH", mm[start + 26:start + 30])
    return start + 30 + name_len + extra_len


# ---------------------------------------------------------------------- legacy (torch 0.4 - 1.5)
def read_legacy(path, mm):
    """torch 0.4 - 1.5 stream: magic, protocol, sys_info, state pickle, storage keys, data."""
    f = MapReader(mm)
    byteorder = _read_legacy_header(f)
    storages = {}
    state = unpickle(f, _legacy_storage_loader(storages), what="state_dict pickle")
    keys = _read_legacy_storage_keys(f)
    _locate_legacy_storages(mm, f.tell(), keys, storages, byteorder)
    return state


def _read_legacy_header(f):
    """Check the magic number and protocol; numpy's byte-order character from sys_info."""
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
    return "<" if sys_info.get("little_endian", True) else ">"


def _legacy_storage_loader(storages):
    """persistent_load for the state pickle: storage ids (and views of them) -> references
    collected in ``storages``, whose bytes follow the pickle."""

    def persistent_load(pid):
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise UnsafePickleError(f"persistent id: expected ('storage', type, key, location,"
                                    f" numel, view), found {short(pid, 200)}")
        _, stype, key, location, numel, view = pid
        _check_storage_id(stype, key, location, numel)
        root = storages.get(key)
        if root is None:
            root = storages[key] = StorageRef(key, stype, numel)
        else:
            _same_storage(root, stype, numel)
        return root if view is None else _legacy_view(root, view)

    return persistent_load


def _legacy_view(root, view):
    """A (key, offset, size) view of a storage, inside its bounds."""
    if not (isinstance(view, tuple) and len(view) == 3):
        raise ConvertError(f"storage view metadata: expected (key, offset, size), found "
                           f"{short(view)}")
    view_key, offset, size = view
    _typed(view_key, str, "view key")
    _typed(offset, int, "view offset")
    _typed(size, int, "view size")
    if offset < 0 or size < 0 or offset + size > root.numel:
        raise ConvertError(f"storage view {short(view_key)}: elements {offset}.."
                           f"{offset + size} outside its storage of {root.numel}")
    return StorageRef(view_key, root.stype, size, root=root, root_offset=offset)


def _read_legacy_storage_keys(f):
    keys = unpickle(f, what="storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConvertError("legacy torch file: expected a list of storage keys after the "
                           "state_dict")
    return keys


def _locate_legacy_storages(mm, offset, keys, storages, byteorder):
    """Map each storage's bytes: per key in order, an element count then the elements."""
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


# ---------------------------------------------------------------------- tar (torch 0.1 - 0.3)
TAR_MEMBERS = ("storages", "tensors", "pickle")
MAX_TAR_NDIM = 16


def read_tar(path, mm):
    """torch 0.1 - 0.3 tar: storages, tensors and pickle members; nothing is extracted to
    disk (members are read in place)."""
    members = _tar_members(path, mm)

    def member(name):
        m = members[name]
        return MapReader(mm, m.offset_data, m.offset_data + m.size)

    objects = {}
    storages = member("storages")
    _read_tar_storages(storages, mm, objects, members["storages"].size)
    _read_tar_views(storages, objects)
    _read_tar_tensors(member("tensors"), objects)
    return _read_tar_pickle(member("pickle"), objects)


def _tar_members(path, mm):
    """The archive's regular files by name, refused unless the three torch members are
    there and lie inside the memory map."""
    try:
        tar = tarfile.open(path, mode="r:")
        with tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError) as exc:
        raise ConvertError(f"truncated or corrupt tar container (old torch.save format): "
                           f"{short(str(exc), 100)[1:-1]}") from None
    for need in TAR_MEMBERS:
        if need not in members:
            raise ConvertError(f"tar file without a '{need}' member: not a torch.save file "
                               f"(found {short(sorted(members)[:5], 200)})")
        m = members[need]
        if m.offset_data + m.size > len(mm) or m.sparse:
            raise ConvertError(f"tar member '{need}' runs past the end of the file "
                               f"(truncated file)")
    return members


def _tar_key(value, what):
    """Keys in tar records name objects of the file: plain strings or integers."""
    if not (isinstance(value, str) or is_int64(value)):
        raise ConvertError(f"{what}: expected a string or an integer key, found "
                           f"{type(value).__name__}")
    return value


def _read_tar_storages(f, mm, objects, member_size):
    """A count, then per storage (key, location, type), an int64 count and the bytes."""
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
                               f"the member's {member_size} bytes")
        ref = StorageRef(key, stype, count)
        ref.array = _frombuffer(mm, stype, count, f.tell())
        objects[key] = ref
        f.seek(count * stype.itemsize, io.SEEK_CUR)


def _read_tar_views(f, objects):
    """After the storages: a list of (key, root key, offset, size) views of them."""
    views = unpickle(f, what="tar storage views")
    for view in views if isinstance(views, list) else ():
        if not (isinstance(view, (tuple, list)) and len(view) == 4):
            raise ConvertError(f"tar storage view: expected (key, root key, offset, size), "
                               f"found {short(view)}")
        target, root_key, offset, numel = view
        root = objects.get(_tar_key(root_key, "tar storage view"))
        _tar_key(target, "tar storage view")
        if not (isinstance(root, StorageRef) and is_int64(offset) and is_int64(numel)) \
                or offset < 0 or numel < 0 or offset + numel > root.numel:
            raise ConvertError(f"tar storage view {short(target)}: bad root or bounds")
        objects[target] = StorageRef(target, root.stype, numel, root=root, root_offset=offset)


def _read_tar_tensors(f, objects):
    """A count, then per tensor (key, storage key, type) and its binary geometry."""
    num = unpickle(f, what="tar tensors header")
    _typed(num, int, "tensor count")
    for _ in range(num):
        args = unpickle(f, extra=TAR_TENSOR_TYPES, what="tar tensor record")
        if not (isinstance(args, tuple) and len(args) == 3):
            raise ConvertError(f"tar tensor record: expected (key, storage key, type), found "
                               f"{short(args)}")
        key, storage_key, _ = args
        _tar_key(key, "tar tensor record")
        size, stride, offset = _read_tar_geometry(f, key)
        storage = objects.get(_tar_key(storage_key, "tar tensor record"))
        if not isinstance(storage, StorageRef):
            raise ConvertError(f"tar tensor {short(key)}: unknown storage {short(storage_key)}")
        objects[key] = TensorRef(storage, offset, size, stride)


def _read_tar_geometry(f, key):
    """int32 ndim (and 4 unused bytes), ndim int64 sizes, ndim int64 strides, int64 offset."""
    head = f.read(8)
    if len(head) != 8:
        raise ConvertError("tar tensors member ends early (truncated file)")
    (ndim,) = struct.unpack("<i", head[:4])
    if not 0 <= ndim <= MAX_TAR_NDIM:
        raise ConvertError(f"tar tensor {short(key)}: {ndim} dimensions")
    body = f.read(16 * ndim + 8)
    if len(body) != 16 * ndim + 8:
        raise ConvertError("tar tensors member ends early (truncated file)")
    size = struct.unpack(f"<{ndim}q", body[:8 * ndim])
    stride = struct.unpack(f"<{ndim}q", body[8 * ndim:16 * ndim])
    (offset,) = struct.unpack("<q", body[16 * ndim:])
    return size, stride, offset


def _read_tar_pickle(f, objects):
    """The state pickle, whose persistent ids name the storages and tensors read before."""
    # the pickle names objects by integer; their records may have spelled them as digits
    objects = {int(k) if isinstance(k, str) and k.isdigit() and len(k) < 20 else k: v
               for k, v in objects.items()}

    def persistent_load(saved_id):
        if isinstance(saved_id, tuple):
            raise ConvertError("tar file pickles a module's source code: only state_dicts "
                               "can be converted")
        try:
            return objects[int(saved_id)]
        except (KeyError, ValueError, TypeError, OverflowError):
            raise ConvertError(f"tar pickle names unknown object {short(saved_id, 60)}") \
                from None

    return unpickle(f, persistent_load, what="tar pickle")
