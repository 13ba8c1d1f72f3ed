"""What a torch pickle may build: storage and tensor types, and references to the bytes.

Every object here is inert: calling a type or setting the state of any of them from a
pickle raises :class:`UnsafePickleError`. A :class:`TensorRef`'s shape is checked against
its storage before any array is allocated; ``TensorRef.load()`` copies the (strided) view
out of the memory-mapped file.
"""
import math
import zlib

import numpy as np

from ..terminal import short
from .common import ConvertError

MAX_NDIM = 64
INT64 = 2**63

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



def is_int64(v):
    return isinstance(v, int) and not isinstance(v, bool) and -INT64 <= v < INT64



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
                    is_int64(v) for v in seq):
                raise ConvertError(f"tensor {what} must be a tuple of at most {MAX_NDIM} 64-bit "
                                   f"integers, found {short(seq)}")
        if not is_int64(offset) or len(size) != len(stride):
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
