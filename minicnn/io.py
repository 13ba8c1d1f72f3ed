"""minicnn model files: one self-describing HDF5 file.

Layout (format version 1)::

    /  attrs: format = "minicnn-model", format_version = 1,
              architecture = JSON [{"name", "type", "config"}, ...] (layer order),
              preprocessing = JSON (see minicnn.preprocess), extra = JSON (free metadata)
    /class_names          (num_classes,) UTF-8 strings (absent when there are none)
    /weights/<layer>.<param>   float32 arrays in PyTorch layouts (conv OIHW, linear (out, in))

``load`` validates everything before it returns; ``save`` writes a temporary file in the
same folder and renames it over the target, so an interrupted save leaves no truncated
model behind.
"""
from contextlib import contextmanager
import json
import math
import os
import signal
import tempfile
import threading

import numpy as np

from .backend import check_device
from .h5local import LibraryFailure, NotLocal, member, rehearse
from .layers import LAYER_TYPES
from .net import Net
from .preprocess import Preprocessing
from .terminal import short

FORMAT_NAME = "minicnn-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and the problem."""


# What one model may cost, checked from the architecture before anything is allocated
# (a 300-byte file can declare a Linear with 10^12 inputs): float32 parameters (2^31 of
# them is 8 GiB; VGG16 has 1.4e8) and the activations of one example at the input size.
MAX_PARAMETERS = 2**31
MAX_ACTIVATIONS = 2**31

TEMP_PREFIX_CHARS = 100     # of the target's name, so the temporary name stays < 255 bytes
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextmanager
def _signals_deferred():
    """Inside: SIGINT, SIGTERM and SIGHUP are noted, not acted on (h5py would swallow an
    exception raised inside its C code and finish the write as if nothing happened).
    Yields the list the signal numbers are appended to. Main thread only (elsewhere
    Python delivers no signals anyway); signals set to be ignored stay ignored."""
    received = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            number = getattr(signal, name, None)
            if number is None or signal.getsignal(number) in (signal.SIG_IGN, None):
                continue
            previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def atomic_write(path, write, suffix=".tmp"):
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``.

    The temporary file ``.NAME.XXXXXXXX.tmp`` lives in the same folder (same file system,
    so the rename is atomic) and is removed when ``write`` fails. Ctrl-C, SIGTERM or
    SIGHUP during the write: the write is abandoned (``path`` stays as it was, the
    temporary file is removed), then the signal takes its usual effect (KeyboardInterrupt,
    or the process ends). Only SIGKILL can leave a temporary file behind."""
    atomic_write_all([(path, write)], suffix)
    return path


def atomic_write_all(items, suffix=".tmp"):
    """Several outputs, all or none: ``items`` is [(path, write)]. Every temporary file
    is created first (an unwritable folder fails before anything is written), then every
    ``write(tmp)`` runs, and only when all succeeded are they renamed into place; on any
    failure or stop signal all temporaries are removed and no destination changes."""
    items = [(os.fspath(path), write) for path, write in items]
    if len({os.path.abspath(p) for p, _ in items}) != len(items):
        raise ValueError("two outputs name the same file: " + ", ".join(p for p, _ in items))
    temps = []
    try:
        for path, _ in items:
            folder = os.path.dirname(os.path.abspath(path))
            prefix = "." + os.path.basename(path)[:TEMP_PREFIX_CHARS] + "."
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
            os.close(fd)
            temps.append(tmp)
        with _signals_deferred() as received:
            # mkstemp creates 0600; give the files the permissions a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            for (path, write), tmp in zip(items, temps):
                write(tmp)
                os.chmod(tmp, 0o666 & ~umask)
                if received:
                    break
            if not received:
                for (path, _), tmp in zip(items, temps):
                    os.replace(tmp, path)
                temps = []
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)
    if received:
        signal.raise_signal(received[0])      # its own handler again: KeyboardInterrupt, exit
        raise KeyboardInterrupt(f"write abandoned ({signal.Signals(received[0]).name})")


def save(net, path, meta=None):
    """Write ``net`` to ``path`` (HDF5). ``meta`` (optional) updates ``net.meta``:
    ``preprocessing`` dict, ``class_names`` list, anything else goes to ``extra``.

    A net that would make a file :func:`load` refuses (non-finite or non-float weights,
    class names that do not match the outputs, an input size the architecture does not
    fit) raises ModelFileError before anything is written; ``path`` stays as it was."""
    import h5py
    meta = {**net.meta, **(meta or {})}
    preprocessing = Preprocessing.from_dict(meta.get("preprocessing") or {}).to_dict()
    class_names = [str(c) for c in (meta.get("class_names") or [])]
    extra = {k: v for k, v in meta.items() if k not in ("preprocessing", "class_names")}
    state = net.state_dict()
    _check_savable(net, state, preprocessing, class_names,
                   lambda msg: ModelFileError(f"{path}: not written: {msg}"))

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["architecture"] = json.dumps(net.architecture())
            f.attrs["preprocessing"] = json.dumps(preprocessing)
            f.attrs["extra"] = json.dumps(extra)
            if class_names:
                f.create_dataset("class_names", data=np.array(class_names, dtype=object),
                                 dtype=h5py.string_dtype("utf-8"))
            group = f.create_group("weights")
            for key, value in state.items():
                group.create_dataset(key, data=np.asarray(value, np.float32))

    atomic_write(path, write)
    return path


def _check_savable(net, state, preprocessing, class_names, fail):
    """The checks :func:`load` makes of weights, input size and class names, made before
    writing (so that save never writes a file load refuses)."""
    for key, value in state.items():
        arr = np.asarray(value)
        _check_float(key, arr.dtype, fail)
        _check_finite(key, arr, fail)
    shapes = _fitting_shapes(net, preprocessing, fail)
    if class_names:                        # none: no class_names dataset is written
        _check_class_names(shapes, class_names, fail)


# the rules save and load share
def _check_float(key, dtype, fail):
    if dtype.kind != "f":
        raise fail(f"weight {key!r} has dtype {dtype}, expected float")


def _check_finite(key, arr, fail):
    if not np.isfinite(arr).all():
        raise fail(f"weight {key!r} contains NaN or infinite values")


def _fitting_shapes(net, preprocessing, fail):
    """net.shapes at the model's input size, or ``fail`` when the architecture does not
    fit it."""
    try:
        return net.shapes((net.input_channels,) + tuple(preprocessing["input_size"]))
    except ValueError as exc:
        raise fail(f"architecture does not fit input size {preprocessing['input_size']}: "
                   f"{exc}") from None


def _check_class_names(shapes, class_names, fail):
    out = list(shapes.values())[-1]
    if len(out) != 1 or out[0] != len(class_names):
        raise fail(f"{len(class_names)} class names but the network outputs shape {out}")


def load(path, device="cpu"):
    """Read a model file written by :func:`save` -> Net (on ``device``).

    Raises ModelFileError with one message naming the problem: not a file, not HDF5,
    not a minicnn model, wrong format version, bad architecture, unknown layer type,
    missing / unexpected / mis-shaped / non-finite weights, bad metadata."""
    check_device(device)
    path = os.fspath(path)

    def fail(msg):
        return ModelFileError(f"{path}: {msg}")

    if not os.path.exists(path):
        raise fail("no such file")
    if not os.path.isfile(path):
        raise fail("not a file")
    import h5py
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise fail(f"cannot read file ({exc})") from None
    if not is_hdf5:
        raise fail("not an HDF5 file (expected a minicnn model .h5 written by minicnn.save "
                   "or tools/convert_weights.py)")
    def read(path):
        with h5py.File(path, "r") as f:
            return _read(f, fail)
    try:
        rehearse(path, read)
        net = read(path)
    except ModelFileError:
        raise
    except (NotLocal, LibraryFailure) as exc:
        raise fail(str(exc)) from None
    except MemoryError:
        raise fail("not enough memory to load this model") from None
    except (OSError, KeyError, RuntimeError) as exc:   # corrupt HDF5 internals
        raise fail(f"corrupt or unreadable HDF5 file ({type(exc).__name__}: {exc})") from None
    return net.to(device) if device != "cpu" else net


def _names(names, limit=5):
    shown = ", ".join(short(n, 40) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _json_attr(f, name, fail, default=None):
    if name not in f.attrs:
        if default is not None:
            return default
        raise fail(f"missing attribute {name!r}")
    raw = f.attrs[name]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return json.loads(str(raw))
    except ValueError as exc:
        raise fail(f"attribute {name!r} is not valid JSON ({exc})") from None


def _read(f, fail):
    """The Net of an open model file, every part checked (``fail(msg)`` makes the error)."""
    _check_format(f, fail)
    net = _architecture(f, fail)
    try:
        preprocessing = Preprocessing.from_dict(_json_attr(f, "preprocessing", fail)).to_dict()
    except ValueError as exc:
        raise fail(str(exc)) from None
    extra = _json_attr(f, "extra", fail, default={})
    if not isinstance(extra, dict):
        raise fail("attribute 'extra' must be a JSON object")
    shapes = _fitting_shapes(net, preprocessing, fail)
    activations = sum(int(np.prod(shape, dtype=object)) for shape in shapes.values())
    if activations > MAX_ACTIVATIONS:
        raise fail(f"one example of input size {preprocessing['input_size']} needs "
                   f"{activations} activations, more than {MAX_ACTIVATIONS}; not loaded")
    _read_weights(f, net, fail)
    class_names = _read_class_names(f, shapes, fail)
    net.meta = {"preprocessing": preprocessing, "class_names": class_names, **extra}
    return net


def _check_format(f, fail):
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if fmt != FORMAT_NAME:
        raise fail(f"not a minicnn model file (format attribute {short(fmt)}, expected "
                   f"{FORMAT_NAME!r}); convert framework weights with tools/convert_weights.py")
    version = f.attrs.get("format_version")
    if not (isinstance(version, (int, np.integer)) and int(version) == FORMAT_VERSION):
        if isinstance(version, (int, np.integer)):
            version = int(version)      # 2, not np.int64(2)
        raise fail(f"unsupported format version {short(version)} (this minicnn reads version "
                   f"{FORMAT_VERSION})")


def _architecture(f, fail):
    """The Net the 'architecture' attribute describes, its cost checked layer by layer
    before anything is allocated."""
    arch = _json_attr(f, "architecture", fail)
    if not isinstance(arch, list) or not arch:
        raise fail("architecture must be a non-empty list of layers")
    layers = []
    parameters = 0
    for i, entry in enumerate(arch):
        if not isinstance(entry, dict) or not {"name", "type"} <= set(entry):
            raise fail(f"architecture entry {i} needs 'name' and 'type', got "
                       f"{short(entry)}")
        kind, config = entry["type"], entry.get("config") or {}
        if kind not in LAYER_TYPES:
            raise fail(f"unknown layer type {short(kind)} for layer {short(entry['name'])} "
                       f"(known: {', '.join(sorted(LAYER_TYPES))})")
        if not isinstance(config, dict):
            raise fail(f"layer {short(entry['name'])}: config must be an object")
        try:
            shapes = LAYER_TYPES[kind].parameter_shapes(config)
        except (TypeError, ValueError) as exc:
            raise fail(f"layer {short(entry['name'])} ({kind}): bad config {short(config)} "
                       f"({exc})") from None
        parameters += sum(math.prod(shape) for shape in shapes.values())
        if parameters > MAX_PARAMETERS:
            raise fail(f"the architecture declares more than {MAX_PARAMETERS} parameters "
                       f"(at layer {short(entry['name'])}); not loaded")
        try:
            layers.append((entry["name"], LAYER_TYPES[kind](**config)))
        except (TypeError, ValueError) as exc:
            raise fail(f"layer {short(entry['name'])} ({kind}): bad config {short(config)} "
                       f"({exc})") from None
    try:
        return Net(layers)
    except (TypeError, ValueError) as exc:
        raise fail(f"bad architecture ({exc})") from None


def _read_weights(f, net, fail):
    """Every parameter from the 'weights' group into the net, checked (names, shapes,
    float dtypes, bytes present in the file, finite values)."""
    import h5py
    group = member(f, "weights")
    if group is None:
        raise fail("missing group 'weights'")
    if not isinstance(group, h5py.Group):
        raise fail("'weights' must be a group of datasets")
    expected = {key: layer.params[p].shape for key, layer, p in net.parameters()}
    missing = [k for k in expected if k not in group]
    unexpected = [k for k in group if k not in expected]
    if missing:
        raise fail(f"missing weights: {_names(missing)}")
    if unexpected:
        raise fail(f"unexpected weights: {_names(unexpected)}")
    for key, layer, p in net.parameters():
        ds = member(group, key)
        if not isinstance(ds, h5py.Dataset):
            raise fail(f"weight {key!r} is not a dataset")
        if tuple(ds.shape) != tuple(expected[key]):
            raise fail(f"weight {key!r} has shape {tuple(ds.shape)}, expected "
                       f"{tuple(expected[key])}")
        _check_float(key, ds.dtype, fail)
        if ds.size and ds.id.get_storage_size() == 0:
            # HDF5 would hand out its fill value: a declared but never written dataset
            raise fail(f"weight {key!r} has no data stored in the file")
        # straight into the new net's own (float32, untouched) array: a VGG16's 528 MB of
        # weights are then held once while loading, not three times
        target = layer.params[p]
        if ds.size:
            ds.read_direct(target) if ds.dtype == np.float32 else target.__setitem__(
                Ellipsis, np.asarray(ds[()], dtype=np.float32))
        _check_finite(key, target, fail)


def _read_class_names(f, shapes, fail):
    """The 'class_names' dataset as a list of str ([] when absent), one per output."""
    import h5py
    if "class_names" not in f:
        return []
    ds = member(f, "class_names")
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "SOU":
        raise fail("class_names must be a 1-D dataset of strings")
    class_names = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)
                   for c in ds[()]]
    _check_class_names(shapes, class_names, fail)
    return class_names
