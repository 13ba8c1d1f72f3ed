"""Encode the fixture net as .caffemodel files with Google's protobuf library (not
minicnn's own writer), so the Caffe reader is checked against an independent encoder.

The message layout is declared here with the field numbers of Caffe's caffe.proto (the
subset a VGG file uses; packed where caffe.proto says [packed = true]). Not a test
dependency: run it once where the protobuf package is installed:

    pip install protobuf
    python tools/make_caffe_protobuf_fixture.py

Writes tests/convert/fixtures/tiny_vgg_{v1,new}_protobuf.caffemodel.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
from make_keras_caffe_fixtures import layers_from_state

FIXTURES = os.path.join(HERE, "..", "tests", "convert", "fixtures")

# (message, [(field name, number, type, label, message type or None, packed)])
OPT, REP = 1, 3
INT32, INT64, UINT32, FLOAT, STRING, MESSAGE = 5, 3, 13, 2, 9, 11
MESSAGES = [
    ("BlobShape", [("dim", 1, INT64, REP, None, True)]),
    ("BlobProto", [("num", 1, INT32, OPT, None, False), ("channels", 2, INT32, OPT, None, False),
                   ("height", 3, INT32, OPT, None, False), ("width", 4, INT32, OPT, None, False),
                   ("data", 5, FLOAT, REP, None, True),
                   ("shape", 7, MESSAGE, OPT, "BlobShape", False)]),
    ("ConvolutionParameter", [("num_output", 1, UINT32, OPT, None, False),
                              ("pad", 3, UINT32, REP, None, False),
                              ("kernel_size", 4, UINT32, REP, None, False),
                              ("stride", 6, UINT32, REP, None, False)]),
    ("PoolingParameter", [("pool", 1, INT32, OPT, None, False),
                          ("kernel_size", 2, UINT32, OPT, None, False),
                          ("stride", 3, UINT32, OPT, None, False),
                          ("pad", 4, UINT32, OPT, None, False)]),
    ("InnerProductParameter", [("num_output", 1, UINT32, OPT, None, False)]),
    ("V1LayerParameter", [("bottom", 2, STRING, REP, None, False), ("top", 3, STRING, REP, None, False),
                          ("name", 4, STRING, OPT, None, False), ("type", 5, INT32, OPT, None, False),
                          ("blobs", 6, MESSAGE, REP, "BlobProto", False),
                          ("convolution_param", 10, MESSAGE, OPT, "ConvolutionParameter", False),
                          ("inner_product_param", 17, MESSAGE, OPT, "InnerProductParameter", False),
                          ("pooling_param", 19, MESSAGE, OPT, "PoolingParameter", False)]),
    ("LayerParameter", [("name", 1, STRING, OPT, None, False), ("type", 2, STRING, OPT, None, False),
                        ("bottom", 3, STRING, REP, None, False), ("top", 4, STRING, REP, None, False),
                        ("blobs", 7, MESSAGE, REP, "BlobProto", False),
                        ("convolution_param", 106, MESSAGE, OPT, "ConvolutionParameter", False),
                        ("inner_product_param", 117, MESSAGE, OPT, "InnerProductParameter", False),
                        ("pooling_param", 121, MESSAGE, OPT, "PoolingParameter", False)]),
    ("NetParameter", [("name", 1, STRING, OPT, None, False),
                      ("layers", 2, MESSAGE, REP, "V1LayerParameter", False),
                      ("input", 3, STRING, REP, None, False),
                      ("input_dim", 4, INT32, REP, None, False),
                      ("layer", 100, MESSAGE, REP, "LayerParameter", False)]),
]


def net_parameter_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe",
                                             syntax="proto2")
    for name, fields in MESSAGES:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, mtype, packed in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if mtype:
                f.type_name = ".caffe." + mtype
            if packed:
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def fill_blob(blob, arr, v1, dims4=None):
    blob.data.extend(arr.astype(np.float32).ravel().tolist())
    if v1:
        blob.num, blob.channels, blob.height, blob.width = dims4
    else:
        blob.shape.dim.extend(arr.shape)


def build(net_class, layers, v1, side=16):
    net = net_class(name="TINY_VGG")
    if v1:
        net.input.append("data")
        net.input_dim.extend([10, 3, side, side])
    bottom = ["data"]
    n_fc = sum(1 for layer in layers if layer[0] == "fc")

    def add(name, kind, enum):
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = name
        if v1:
            layer.type = enum
        else:
            layer.type = kind
        layer.bottom.append(bottom[0])
        layer.top.append(name)
        bottom[0] = name
        return layer

    fc_seen = 0
    for kind, _, cname, w, b in layers:
        if kind == "conv":
            layer = add(cname, "Convolution", 4)
            fill_blob(layer.blobs.add(), w, v1, w.shape)
            fill_blob(layer.blobs.add(), b, v1, (1, 1, 1, b.size))
            layer.convolution_param.num_output = w.shape[0]
            layer.convolution_param.pad.append(1)
            layer.convolution_param.kernel_size.append(3)
            add(cname.replace("conv", "relu"), "ReLU", 18)
        elif kind == "pool":
            layer = add(cname, "Pooling", 17)
            layer.pooling_param.pool = 0
            layer.pooling_param.kernel_size = 2
            layer.pooling_param.stride = 2
        else:
            fc_seen += 1
            layer = add(cname, "InnerProduct", 14)
            fill_blob(layer.blobs.add(), w, v1, (1, 1) + w.shape)
            fill_blob(layer.blobs.add(), b, v1, (1, 1, 1, b.size))
            layer.inner_product_param.num_output = w.shape[0]
            if fc_seen < n_fc:
                add(f"relu{cname[2:]}", "ReLU", 18)
                add(f"drop{cname[2:]}", "Dropout", 6)
    add("prob", "Softmax", 20)
    return net


def main():
    net_class = net_parameter_class()
    layers = layers_from_state(dict(np.load(os.path.join(FIXTURES, "tiny_vgg_state.npz"))))
    for v1, tag in ((True, "v1"), (False, "new")):
        path = os.path.join(FIXTURES, f"tiny_vgg_{tag}_protobuf.caffemodel")
        data = build(net_class, layers, v1).SerializeToString()
        with open(path, "wb") as fh:
            fh.write(data)
        print(f"wrote {path} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
