"""The restricted unpickler: resolves only allow-listed globals, to inert stand-ins.

:class:`RestrictedUnpickler` resolves only the globals in ``ALLOWED`` (an allow-list like
PyTorch's own weights-only unpickler); everything else is refused by name before it is
imported, so no callable from the file ever runs. Every opcode is counted and the result
is walked within bounds, so a small pickle cannot make us work for ever.
"""
import io
import pickle
import struct
from collections import OrderedDict

from ..terminal import short
from .common import ConvertError
from .torch_tensors import (STORAGE_DTYPES, StorageType, TensorRef, TensorType,
                            UnsafePickleError)

# What one pickle may make the unpickler do (a VGG16 state_dict: ~2,000 opcodes, ~600
# objects). Without bounds a few hundred bytes can describe 2**60 objects through shared
# references (memo), which hashing, comparing or printing would then walk for ever.
MAX_PICKLE_OPS = 1_000_000         # opcodes executed
MAX_PICKLE_NODES = 100_000         # objects reached from a result, shared ones once per path
MAX_PICKLE_DEPTH = 32              # nesting of containers


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


