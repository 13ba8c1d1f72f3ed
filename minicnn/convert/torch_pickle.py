"""Read ``torch.save`` files without PyTorch and without running code from the file.

The entry point: :func:`open_map` then :func:`read_state`, which reads any of the three
containers (``torch_containers``: zip, legacy, tar) into an ordered dict name ->
:class:`TensorRef` (``torch_tensors``), shapes checked before any array is allocated.
The pickles inside are read by ``torch_unpickle``'s restricted unpickler, which resolves
only allow-listed globals to inert stand-ins, so no callable from the file ever runs.
"""
import math
import mmap
import os
from collections import OrderedDict

from ..terminal import short
from .common import ConvertError
from .torch_containers import read_legacy, read_tar, read_zip
from .torch_tensors import TensorRef, UnsafePickleError

__all__ = ["UnsafePickleError", "TensorRef", "open_map", "read_state"]


def open_map(path):
    """Read-only memory map of the whole file (no copy of the weights in memory)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ConvertError(f"{path}: empty file")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


READERS = {"zip": read_zip, "legacy": read_legacy, "tar": read_tar}
CHECKPOINT_WRAPPERS = ("state_dict", "model")


def read_state(path, container, mm):
    """container in {'zip', 'legacy', 'tar'} -> OrderedDict name -> TensorRef."""
    state = _unwrap_checkpoint(READERS[container](path, mm))
    if not isinstance(state, dict):
        raise ConvertError(f"expected a state_dict (a dict of tensors), found a pickled "
                           f"{type(state).__name__}")
    tensors = OrderedDict()
    for key, value in state.items():
        key = _tensor_name(key)
        tensors[key] = _checked_tensor(key, value)
    if not tensors:
        raise ConvertError("the state_dict holds no tensors")
    return tensors


def _unwrap_checkpoint(state):
    """Checkpoints often wrap the weights: {"state_dict": {...}} or {"model": {...}}."""
    if not isinstance(state, dict) or any(isinstance(v, TensorRef) for v in state.values()):
        return state
    for wrapper in CHECKPOINT_WRAPPERS:
        if wrapper in state and isinstance(state[wrapper], dict):
            return state[wrapper]
    return state


def _tensor_name(key):
    if not isinstance(key, str):
        raise ConvertError(f"state_dict key {short(key, 60)} is not a string")
    if key.startswith("module."):     # saved from nn.DataParallel
        key = key[len("module."):]
    return key


def _checked_tensor(name, value):
    """``value`` named and bounds-checked, its storage located (and intact) before any
    layer is allocated."""
    if not isinstance(value, TensorRef):
        raise ConvertError(f"state_dict entry {short(name)} is a {type(value).__name__}, "
                           f"expected a tensor")
    value.name = name
    value.validate()
    if math.prod(value.size):
        value.storage.data()
    return value
