"""Array backends: NumPy always, CuPy when asked for and present.

One code path: every function resolves ``xp = get_array_module(x)`` and uses it for all
array work, so the same layer code runs on the CPU and on a GPU. CuPy is imported lazily:
a CPU-only install never touches it.
"""
import numpy as np

DEVICES = ("cpu", "cuda")
_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why it could not be used, for the error message


def _import_cupy():
    """Return the cupy module if it is installed and sees a GPU, else None."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise RuntimeError("no CUDA device found")
        _cupy = cupy
    except Exception as exc:  # ImportError, CUDARuntimeError, ...
        _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


def cuda_available():
    """True when CuPy is installed and at least one GPU is visible."""
    return _import_cupy() is not None


def require_cupy():
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(
            "device 'cuda' needs CuPy and a CUDA GPU "
            f"(pip install 'minicnn[gpu]'); CuPy could not be used: {_cupy_error}")
    return cp


def check_device(device):
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    return device


def get_array_module(*arrays):
    """numpy, or cupy when any argument is a CuPy array (cf. chainer.backend)."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def device_of(array):
    return "cuda" if get_array_module(array) is not np else "cpu"


def to_device(array, device):
    """Copy (if needed) ``array`` to ``device`` ('cpu' or 'cuda')."""
    check_device(device)
    if device == "cpu":
        return to_numpy(array)
    return require_cupy().asarray(array)


def to_numpy(array):
    """A NumPy array from a NumPy or CuPy array (or anything array-like)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)
