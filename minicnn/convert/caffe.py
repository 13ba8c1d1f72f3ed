"""Caffe ``.caffemodel`` files (``caffe.NetParameter``), read with our own wire-format
reader: no protobuf package, no copy of the file in memory (memory map + views).

Both layouts: V1 ``layers = 2`` (V1LayerParameter: name 4, enum type 5, blobs 6,
convolution_param 10, pooling_param 19), as in the original VGG release, and the new
``layer = 100`` (LayerParameter: name 1, string type 2, blobs 7, convolution_param 106,
pooling_param 121). BlobProto: num/channels/height/width 1-4, packed float data 5,
shape 7 (BlobShape: packed int64 dim 1).

Caffe convolution is cross-correlation like PyTorch's (no flip); weights are already
OIHW and fc6 already flattens C,H,W, so blobs are used as they are. Caffe rounds pooled
sizes up where PyTorch rounds down: the two agree for VGG's even map sizes.
"""
import math

import numpy as np

from ..terminal import short
from .common import ConvOp, ConvertError, FCOp, PoolOp, Source
from .protobuf import WireError, as_string, iter_fields, packed_floats, packed_varints

NET_NAME, NET_LAYERS_V1, NET_INPUT, NET_INPUT_DIM, NET_INPUT_SHAPE, NET_LAYER = 1, 2, 3, 4, 8, 100
NET_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 100}

V1_TYPES = {0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data",
            6: "Dropout", 7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output",
            11: "Im2col", 12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
            16: "MultinomialLogisticLoss", 17: "Pooling", 18: "ReLU", 19: "Sigmoid",
            20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData",
            25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
            29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice",
            34: "MVN", 35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp",
            39: "Deconvolution"}
# (name, type, blobs, convolution_param, pooling_param) field numbers per layout
V1_FIELDS = (4, 5, 6, 10, 19)
NEW_FIELDS = (1, 2, 7, 106, 121)
# weightless layers that change nothing a VGG forward pass needs (ReLU and dropout are
# implied by the VGG structure; data/loss/accuracy layers belong to training)
SKIPPED = {"ReLU", "Dropout", "Softmax", "SoftmaxWithLoss", "Data", "ImageData", "MemoryData",
           "HDF5Data", "WindowData", "DummyData", "Accuracy", "Split", "Silence", "Input",
           "Flatten"}


def looks_like_caffe(buf, limit=1_000_000):
    """True when ``buf`` parses as a NetParameter with at least one layer (top level only:
    length-delimited layers are skipped, not parsed). Raises ConvertError for a file that
    starts as one (a name and whole layers) but breaks off: a truncated .caffemodel."""
    layers = 0
    try:
        for count, (field, wire, _, _) in enumerate(iter_fields(buf)):
            if field not in NET_FIELDS or count > limit:
                return False
            if field in (NET_LAYERS_V1, NET_LAYER):
                if wire != 2:
                    return False
                layers += 1
        return layers > 0
    except WireError as exc:
        if layers:
            raise ConvertError(f"truncated or corrupt .caffemodel after {layers} layers: "
                               f"{exc}") from None
        return False


def _ints(buf, wire, value, end, what):
    """A repeated integer field: unpacked (one varint) or packed."""
    if wire not in (0, 2):
        raise ConvertError(f"{what}: expected a varint or packed varints, found protobuf "
                           f"wire type {wire}")
    return packed_varints(buf, value, end) if wire == 2 else [value]


def _parse_params(buf, start, end, names):
    """Parse a Convolution/PoolingParameter into {field name: [ints]}."""
    out = {}
    for field, wire, value, stop in iter_fields(buf, start, end):
        if field in names and wire in (0, 2):
            out.setdefault(names[field], []).extend(_ints(buf, wire, value, stop, names[field]))
    return out


CONV_PARAM = {1: "num_output", 2: "bias_term", 3: "pad", 4: "kernel_size", 5: "group",
              6: "stride", 9: "pad_h", 10: "pad_w", 11: "kernel_h", 12: "kernel_w",
              13: "stride_h", 14: "stride_w"}
POOL_PARAM = {1: "pool", 2: "kernel_size", 3: "stride", 4: "pad", 5: "kernel_h",
              6: "kernel_w", 7: "stride_h", 8: "stride_w", 12: "global_pooling"}


def _blob(buf, start, end, where):
    """BlobProto -> Source over a zero-copy view of its packed data."""
    legacy, dims, chunks = {}, None, []
    for field, wire, value, stop in iter_fields(buf, start, end):
        if field in (1, 2, 3, 4) and wire == 0:
            legacy[field] = value
        elif field == 7 and wire == 2:
            dims = []
            for f2, w2, v2, s2 in iter_fields(buf, value, stop):
                if f2 == 1:
                    dims.extend(_ints(buf, w2, v2, s2, f"{where}: blob dimension"))
        elif field == 5 and wire == 2:
            chunks.append(packed_floats(buf, value, stop))
        elif field == 5 and wire == 5:
            chunks.append(np.frombuffer(value, "<f4"))
        elif field == 8:
            raise ConvertError(f"{where}: double-precision blobs are not supported")
    if dims is None:
        dims = [legacy.get(i, 0) for i in (1, 2, 3, 4)]
    if len(dims) > 8:
        raise ConvertError(f"{where}: expected at most 8 blob dimensions, found {len(dims)}")
    count = math.prod(dims) if dims else 0     # Python integers: no int64 wrap-around
    data = chunks[0] if len(chunks) == 1 else (
        np.concatenate(chunks) if chunks else np.zeros(0, "<f4"))
    if data.size != count:
        raise ConvertError(f"{where}: blob shape {tuple(dims)} needs {count} values, found "
                           f"{data.size}")
    return tuple(int(d) for d in dims), data


def _squeeze_leading(shape, ndim, where):
    """Old blobs pad to 4-D with leading 1s: (1, 1, N, K) -> (N, K)."""
    shape = tuple(shape)
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != ndim:
        raise ConvertError(f"{where}: expected a {ndim}-D blob, found shape {shape}")
    return shape


def _source(data, shape, name):
    # copy out of the memory map: parameters must be writable and outlive the file
    return Source(shape, lambda: np.array(data.reshape(shape), dtype=np.float32), name=name)


def read_caffe(buf):
    """NetParameter bytes (a memory map) -> (ops, info)."""
    try:
        return _read(memoryview(buf))
    except WireError as exc:
        raise ConvertError(f"corrupt or truncated .caffemodel: {exc}") from None


def _read(buf):
    ops, info, input_dim = [], {}, []
    layouts = set()
    for field, wire, value, end in iter_fields(buf):
        if field == NET_NAME and wire == 2:
            info["net_name"] = as_string(buf, value, end)
        elif field == NET_INPUT_DIM:
            input_dim.extend(_ints(buf, wire, value, end, "input_dim"))
        elif field in (NET_LAYERS_V1, NET_LAYER) and wire == 2:
            layouts.add("V1" if field == NET_LAYERS_V1 else "new")
            op = _layer(buf, value, end, V1_FIELDS if field == NET_LAYERS_V1 else NEW_FIELDS,
                        field == NET_LAYERS_V1)
            if op is not None:
                ops.append(op)
    if not layouts:
        raise ConvertError("no layers in the NetParameter: expected a .caffemodel")
    info["layout"] = "/".join(sorted(layouts))
    if len(input_dim) == 4:
        info["input_size"] = [int(input_dim[2]), int(input_dim[3])]
    return ops, info


def _layer(buf, start, end, fields, v1):
    f_name, f_type, f_blobs, f_conv, f_pool = fields
    name, kind, blobs, conv, pool = "?", None, [], {}, {}
    for field, wire, value, stop in iter_fields(buf, start, end):
        if field == f_name and wire == 2:
            name = as_string(buf, value, min(stop, value + 200))   # a name, not a book
        elif field == f_type:
            kind = V1_TYPES.get(value, f"V1 type {value}") if v1 and wire == 0 else (
                as_string(buf, value, stop) if wire == 2 else None)
        elif field == f_blobs and wire == 2:
            blobs.append((value, stop))
        elif field == f_conv and wire == 2:
            conv = _parse_params(buf, value, stop, CONV_PARAM)
        elif field == f_pool and wire == 2:
            pool = _parse_params(buf, value, stop, POOL_PARAM)
        elif v1 and field == 1 and wire == 2:
            raise ConvertError(f"layer {short(name)}: V0 layer definitions (Caffe before 2014) are "
                               f"not supported; upgrade the model with Caffe's upgrade_net_proto_binary")
    if kind in SKIPPED and not blobs:
        return None
    if kind == "Convolution":
        return _conv(buf, name, blobs, conv)
    if kind == "InnerProduct":
        return _fc(buf, name, blobs)
    if kind == "Pooling":
        return _pool(name, pool)
    raise ConvertError(f"layer {short(name)} of type {short(kind)[1:-1]}: not supported "
                       f"(expected a VGG-style net "
                       f"of Convolution, ReLU, Pooling, InnerProduct, Dropout layers)")


def _one(params, key, default, name):
    values = params.get(key, [])
    if len(set(values)) > 1:
        raise ConvertError(f"layer {short(name)}: different {key} per axis {short(values)} "
                           f"not supported")
    return values[0] if values else default


def _conv(buf, name, blobs, param):
    if not 1 <= len(blobs) <= 2:
        raise ConvertError(f"layer {short(name)} (Convolution): expected weight and bias blobs, "
                           f"found {len(blobs)}")
    wshape, wdata = _blob(buf, *blobs[0], f"{name} weights")
    if len(wshape) != 4:
        raise ConvertError(f"layer {short(name)}: expected a 4-D weight blob, found {wshape}")
    if _one(param, "group", 1, name) != 1:
        raise ConvertError(f"layer {short(name)}: grouped convolution is not supported")
    for a, b in (("pad_h", "pad_w"), ("stride_h", "stride_w"), ("kernel_h", "kernel_w")):
        if _one(param, a, None, name) != _one(param, b, None, name):
            raise ConvertError(f"layer {short(name)}: non-square {a[:-2]} not supported")
    pad = _one(param, "pad_h", None, name)
    pad = _one(param, "pad", 0, name) if pad is None else pad
    stride = _one(param, "stride_h", None, name)
    stride = _one(param, "stride", 1, name) if stride is None else stride
    if len(blobs) == 2:
        bshape, bdata = _blob(buf, *blobs[1], f"{name} bias")
        bshape = _squeeze_leading(bshape, 1, f"{name} bias")
        bias = _source(bdata, bshape, f"{name} bias")
    else:   # bias_term: false
        bias = Source.of(np.zeros(wshape[0], np.float32), f"{name} bias")
    return ConvOp(_source(wdata, wshape, f"{name} weights"), bias, stride, pad, name=name)


def _fc(buf, name, blobs):
    if len(blobs) != 2:
        raise ConvertError(f"layer {short(name)} (InnerProduct): expected weight and bias blobs, "
                           f"found {len(blobs)}")
    wshape, wdata = _blob(buf, *blobs[0], f"{name} weights")
    bshape, bdata = _blob(buf, *blobs[1], f"{name} bias")
    wshape = _squeeze_leading(wshape, 2, f"{name} weights")
    bshape = _squeeze_leading(bshape, 1, f"{name} bias")
    return FCOp(_source(wdata, wshape, f"{name} weights"), _source(bdata, bshape, f"{name} bias"),
                name=name)


def _pool(name, param):
    if _one(param, "pool", 0, name) != 0:
        raise ConvertError(f"layer {short(name)}: only MAX pooling is supported (VGG)")
    if _one(param, "global_pooling", 0, name):
        raise ConvertError(f"layer {short(name)}: global pooling is not supported")
    if _one(param, "pad", 0, name):
        raise ConvertError(f"layer {short(name)}: padded pooling is not supported")
    kernel = _one(param, "kernel_h", None, name) or _one(param, "kernel_size", None, name)
    if not kernel:
        raise ConvertError(f"layer {short(name)}: pooling without a kernel size")
    stride = _one(param, "stride_h", None, name) or _one(param, "stride", 1, name)
    return PoolOp(kernel, stride, name=name)
