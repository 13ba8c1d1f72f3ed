"""Keras HDF5 weight files (``vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5``).

Layout (docs/converters.md): root attribute ``layer_names``; one group per layer whose attribute
``weight_names`` lists its datasets (legacy ``block1_conv1_W_1:0``, Keras 2
``block1_conv1/kernel:0``, both resolved relative to the layer group). Full-model saves
keep the same layout under ``model_weights``.

Conversions: conv kernels HWIO -> OIHW (``transpose(3, 2, 0, 1)``, no flip); dense
kernels (in, out) -> (out, in); the first dense layer after the convs takes an H,W,C
flatten in Keras, permuted here to minicnn's C,H,W order.

Pools: Keras weight files keep weightless layers in ``layer_names``; a layer whose name
contains "pool" is a 2x2 stride-2 max-pool (Keras VGG), as Keras names them
``block{b}_pool``. Average / global pooling is refused.

``th_kernels`` files (Theano: kernels (out, in, kh, kw), rotated 180 degrees) are
detected from the kernels' orientation and the ``backend`` attribute, and refused.
"""
import math

import numpy as np

from ..h5local import NotLocal, member
from ..terminal import short
from .common import ConvOp, ConvertError, FCOp, PoolOp, Source


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _names(attrs, key):
    if key not in attrs:
        return None
    return [_text(v) for v in np.atleast_1d(attrs[key])]


def _lengths_size(buf):
    """HDF5 "size of lengths" from the superblock (at 0, 512, 1024, ...); 8 by default."""
    base = 0
    while base + 16 <= len(buf) and buf[base:base + 8] != b"\x89HDF\r\n\x1a\n":
        base = 512 if base == 0 else base * 2
    if base + 16 > len(buf):
        return 8
    size = buf[base + 14] if buf[base + 8] in (0, 1) else buf[base + 10]
    return size if size in (2, 4, 8, 16, 32) else 8


def check_global_heaps(buf):
    """Refuse a global heap collection (where HDF5 keeps variable-length strings, such as
    Keras's layer_names) that libhdf5 would parse for ever: an object whose size does not
    move the parser forward (a free-space object of size 0) loops inside the library,
    where no signal or timeout of ours can stop it."""
    length = _lengths_size(buf)
    header, objhdr = 8 + length, 8 + length
    at = buf.find(b"GCOL")
    while at >= 0:
        size = int.from_bytes(buf[at + 8:at + 8 + length], "little")
        end = at + size
        if buf[at + 4] == 1 and header <= size and end <= len(buf):
            p = at + header
            while p + objhdr <= end:
                index = int.from_bytes(buf[p:p + 2], "little")
                obj = int.from_bytes(buf[p + 8:p + 8 + length], "little")
                step = objhdr + (obj + 7) // 8 * 8 if index else obj
                if step == 0 or step >= 2**63:
                    raise ConvertError(f"corrupt HDF5 global heap at byte {p} (object {index} "
                                       f"of size {obj}): truncated or corrupt file")
                p += step
        at = buf.find(b"GCOL", at + 4)


def read_keras(path):
    """-> (ops, info dict). Datasets are read one at a time when the weights are filled."""
    import h5py
    from .torch_pickle import open_map
    mm = open_map(path)
    try:
        check_global_heaps(mm)
    finally:
        mm.close()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ConvertError(f"cannot open as HDF5 ({exc}): truncated or corrupt file") from None
    try:
        return _read(f)
    except NotLocal as exc:
        f.close()
        raise ConvertError(str(exc)) from None
    except (OSError, KeyError, RuntimeError) as exc:   # corrupt HDF5 internals
        f.close()
        raise ConvertError(f"cannot read the HDF5 file ({type(exc).__name__}: {exc}): "
                           f"truncated or corrupt file") from None
    except BaseException:
        f.close()
        raise


def _read(f):
    import h5py
    root = f
    if "layer_names" not in root.attrs and "model_weights" in root:
        root = member(root, "model_weights")
        if not isinstance(root, h5py.Group):
            raise ConvertError("'model_weights': expected a group of layers, found a dataset")
    names = _names(root.attrs, "layer_names")
    if names is None:
        keys = ", ".join(list(root.keys())[:5]) or "nothing"
        raise ConvertError(f"HDF5 file without a 'layer_names' attribute: expected a Keras "
                           f"weights file (found groups {keys})")
    backend = _text(f.attrs.get("backend", root.attrs.get("backend", "")))
    if backend == "theano":
        raise ConvertError("Keras file saved with the Theano backend (th_kernels: rotated "
                           "kernels): expected a tf_kernels file, e.g. "
                           "vgg16_weights_tf_dim_ordering_tf_kernels.h5")

    layers = []   # (layer name, kind, [datasets])
    for name in names:
        group = member(root, name) if isinstance(name, str) else None
        if group is None:
            raise ConvertError(f"layer {short(name)} is listed in layer_names but has no group")
        if not isinstance(group, h5py.Group):
            raise ConvertError(f"layer {short(name)}: expected a group of weights, found a dataset")
        weight_names = _names(group.attrs, "weight_names") or []
        datasets = []
        for wn in weight_names:
            ds = member(group, wn)
            if ds is None:
                ds = member(root, wn)   # some writers store the full path from the root
            if not isinstance(ds, h5py.Dataset):
                raise ConvertError(f"layer {short(name)}: weight {short(wn)} not found in the file")
            datasets.append(_check_stored(ds))
        if datasets:
            kernels = [d for d in datasets if d.ndim > 1]
            biases = [d for d in datasets if d.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1 or len(datasets) != 2:
                raise ConvertError(f"layer {short(name)}: expected a kernel and a bias, found "
                                   f"datasets of shapes {short([d.shape for d in datasets], 200)}")
            kernel, bias = kernels[0], biases[0]
            if kernel.ndim == 4:
                layers.append((name, "conv", kernel, bias))
            elif kernel.ndim == 2:
                layers.append((name, "dense", kernel, bias))
            else:
                raise ConvertError(f"layer {short(name)}: expected a 4-D conv or 2-D dense kernel, "
                                   f"found shape {short(kernel.shape)}")
        elif "pool" in name.lower():
            if "avg" in name.lower() or "average" in name.lower() or "global" in name.lower():
                raise ConvertError(f"layer {short(name)}: only max-pooling is supported (VGG)")
            layers.append((name, "pool", None, None))
    _check_orientation([l for l in layers if l[1] == "conv"])
    ops = _to_ops(layers)
    keras_version = _text(f.attrs.get("keras_version", root.attrs.get("keras_version", "")))
    info = {"keras_version": keras_version} if keras_version else {}
    return ops, info, f


def _check_stored(ds):
    """The dataset's bytes must be in the file before its shape is trusted: a few bytes of
    HDF5 can declare a 32 GiB dataset that was never written (read as its fill value)."""
    nbytes, stored = math.prod(ds.shape or ()) * ds.dtype.itemsize, ds.id.get_storage_size()
    name = short(ds.name)
    if nbytes and not stored:
        raise ConvertError(f"dataset {name}: no data in the file for its shape "
                           f"{short(ds.shape)}")
    if ds.compression is None and stored < nbytes:
        raise ConvertError(f"dataset {name}: {stored:,} bytes stored for its shape "
                           f"{short(ds.shape)} of {nbytes:,} bytes (truncated or corrupt file)")
    if nbytes > max(2**24, 1100 * stored):      # beyond what gzip can do (~1030:1)
        raise ConvertError(f"dataset {name}: {stored:,} bytes stored for {nbytes:,} "
                           f"(compressed more than 1100:1): refused")
    return ds


def _check_orientation(convs):
    """Refuse Theano-ordered kernels (out, in, kh, kw): tf kernels chain on axes 2 -> 3."""
    if not convs:
        raise ConvertError("no convolution layers found: expected a Keras VGG weights file")
    shapes = [c[2].shape for c in convs]
    tf_ok = all(s[0] == s[1] for s in shapes) and all(
        a[3] == b[2] for a, b in zip(shapes, shapes[1:]))
    th_ok = all(s[2] == s[3] for s in shapes) and all(
        a[0] == b[1] for a, b in zip(shapes, shapes[1:]))
    if th_ok and not tf_ok:
        raise ConvertError(f"conv kernels are ordered (out, in, kh, kw) (first {shapes[0]}): "
                           f"this is a Theano th_kernels file with rotated kernels; expected a "
                           f"tf_kernels file with (kh, kw, in, out) kernels")
    if not tf_ok:
        raise ConvertError(f"conv kernels do not chain as (kh, kw, in, out): shapes {shapes}")


def _to_ops(layers):
    ops, last_channels, seen_dense = [], None, False
    for name, kind, kernel, bias in layers:
        name = name if len(name) <= 100 else name[:100] + "..."    # for messages only
        if kind == "pool":
            ops.append(PoolOp(2, 2, name=name))
        elif kind == "conv":
            kh, kw, cin, cout = kernel.shape
            last_channels = cout
            ops.append(ConvOp(
                Source((cout, cin, kh, kw), _reader(kernel, lambda k: k.transpose(3, 2, 0, 1)),
                       name=f"{name} kernel"),
                Source(bias.shape, _reader(bias), name=f"{name} bias"), name=name))
        else:
            n_in, n_out = kernel.shape
            if not seen_dense and last_channels and n_in % last_channels == 0:
                side = int(round((n_in // last_channels) ** 0.5))
                if side * side * last_channels != n_in:
                    raise ConvertError(f"{name}: expected C*S*S inputs for a square map of "
                                       f"{last_channels} channels, found {n_in}")
                permute = _flatten_permutation(side, last_channels, n_out)
            elif not seen_dense and last_channels:
                raise ConvertError(f"{name}: {n_in} inputs is not a multiple of the last conv's "
                                   f"{last_channels} channels")
            else:
                permute = lambda k: k.T
            seen_dense = True
            ops.append(FCOp(Source((n_out, n_in), _reader(kernel, permute), name=f"{name} kernel"),
                            Source(bias.shape, _reader(bias), name=f"{name} bias"), name=name))
    return ops


def _flatten_permutation(side, channels, n_out):
    """Keras fc1 (H*W*C, out) -> (out, C*H*W) in one copy."""
    def permute(k):
        out = np.empty((n_out, channels, side, side), np.float32)
        out[...] = k.reshape(side, side, channels, n_out).transpose(3, 2, 0, 1)
        return out.reshape(n_out, channels * side * side)
    return permute


def _reader(ds, transform=None):
    def load():
        try:
            arr = ds[()]
        except (OSError, RuntimeError, KeyError) as exc:
            raise ConvertError(f"cannot read dataset {short(ds.name)} ({exc}): truncated or corrupt "
                               f"file") from None
        if arr.dtype.kind != "f":
            raise ConvertError(f"dataset {ds.name}: expected floating-point weights, found "
                               f"{arr.dtype}")
        return transform(arr) if transform else arr
    return load
