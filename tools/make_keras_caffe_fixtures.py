"""Make the Keras and Caffe fixtures in tests/convert/fixtures/ from tiny_vgg_state.npz
(the weights of the genuine torch fixture; see make_torch_fixtures.py). Needs h5py only:
the .caffemodel files are written with minicnn's own protobuf writer.

Layouts follow the released files (docs/converters.md):

- tiny_vgg_keras.h5        legacy Keras 1 file like vgg16_weights_tf_dim_ordering_tf_kernels.h5:
                           root attr layer_names (input_1, block1_conv1, ..., block1_pool, ...,
                           flatten, fc1, fc2, predictions), per-layer weight_names
                           ``<layer>_W_1:0`` / ``<layer>_b_1:0``; kernels HWIO, dense (in, out),
                           fc1 rows in H,W,C flatten order.
- tiny_vgg_keras_notop.h5  the conv-only _notop variant, re-saved Keras 2 style
                           (``<layer>/kernel:0`` in nested groups, keras_version / backend attrs)
- tiny_vgg_v1.caffemodel   NetParameter with V1 ``layers = 2`` (enum types), legacy 4-D blob
                           dims (num, channels, height, width), fc weights (1, 1, N, K)
- tiny_vgg_new.caffemodel  NetParameter with ``layer = 100`` (string types), BlobShape dims

    python tools/make_keras_caffe_fixtures.py [FIXTURE_DIR]
"""
import os
import sys

import h5py
import numpy as np

from minicnn.convert.protobuf import (field_bytes, field_packed_floats,
                                      field_packed_varints, field_varint)

CONFIG = [8, 8, "M", 16, "M", 16, 16, "M"]


def layers_from_state(state):
    """[(kind, keras name, caffe name, weight, bias)] in order; kind conv / pool / fc."""
    out, block, conv, fc = [], 1, 0, 0
    convs = sorted({int(k.split(".")[1]) for k in state if k.startswith("features")})
    fcs = sorted({int(k.split(".")[1]) for k in state if k.startswith("classifier")})
    it = iter(convs)
    for item in CONFIG:
        if item == "M":
            out.append(("pool", f"block{block}_pool", f"pool{block}", None, None))
            block, conv = block + 1, 0
        else:
            conv += 1
            i = next(it)
            out.append(("conv", f"block{block}_conv{conv}", f"conv{block}_{conv}",
                        state[f"features.{i}.weight"], state[f"features.{i}.bias"]))
    keras_fc = ["fc1", "fc2", "predictions"]
    for n, i in enumerate(fcs):
        out.append(("fc", keras_fc[n], f"fc{6 + n}", state[f"classifier.{i}.weight"],
                    state[f"classifier.{i}.bias"]))
        fc += 1
    return out


def keras_kernel(kind, w, first_fc, channels):
    if kind == "conv":
        return w.transpose(2, 3, 1, 0)                       # OIHW -> HWIO
    if first_fc:                                             # C,H,W -> H,W,C flatten rows
        out = w.shape[0]
        side = int(round((w.shape[1] // channels) ** 0.5))
        return w.reshape(out, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, out)
    return w.T


def keras_weights(layers):
    """Yield (kind, keras name, kernel, bias) in Keras layouts for the conv and fc layers."""
    channels, first_fc = None, True
    for kind, kname, _, w, b in layers:
        if kind == "pool":
            continue
        kernel = keras_kernel(kind, w, kind == "fc" and first_fc, channels)
        if kind == "conv":
            channels = w.shape[0]
        else:
            first_fc = False
        yield kind, kname, kernel, b


def write_keras(path, layers, keras2=False, top=True):
    with h5py.File(path, "w") as f:
        names = ["input_1"]
        weights = {kname: (kernel, b) for _, kname, kernel, b in keras_weights(layers)}
        for kind, kname, _, w, b in layers:
            if kind == "fc" and not top:
                continue
            if kind == "fc" and "flatten" not in names:
                names.append("flatten")
            names.append(kname)
            g = f.create_group(kname)
            if kind == "pool":
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, b = weights[kname]
            if keras2:
                wn = [f"{kname}/kernel:0", f"{kname}/bias:0"]
            else:
                wn = [f"{kname}_W_1:0", f"{kname}_b_1:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in wn])
            g.create_dataset(wn[0], data=kernel.astype(np.float32))
            g.create_dataset(wn[1], data=b.astype(np.float32))
        for extra in ("input_1", "flatten"):
            if extra in names:
                f.create_group(extra).attrs["weight_names"] = np.array([], dtype="S1")
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        if keras2:
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"


def blob_v1(arr, dims4):
    return (b"".join(field_varint(i + 1, d) for i, d in enumerate(dims4))
            + field_packed_floats(5, arr.ravel()))


def blob_new(arr):
    return field_bytes(7, field_packed_varints(1, arr.shape)) + field_packed_floats(5, arr.ravel())


def write_caffe(path, layers, new, side=16):
    # V1 enum: CONVOLUTION 4, RELU 18, POOLING 17, INNER_PRODUCT 14, DROPOUT 6, SOFTMAX 20
    msg = [field_bytes(1, "TINY_VGG")]
    if not new:
        msg += [field_bytes(3, "data")] + [field_varint(4, d) for d in (10, 3, side, side)]
    bottom = "data"
    n_fc = sum(1 for l in layers if l[0] == "fc")

    def layer(name, kind, enum, blobs=(), conv=None, pool=None, ip=None):
        nonlocal bottom
        if new:
            body = [field_bytes(1, name), field_bytes(2, kind), field_bytes(3, bottom),
                    field_bytes(4, name)]
            body += [field_bytes(7, b) for b in blobs]
            if conv:
                body.append(field_bytes(106, conv))
            if pool:
                body.append(field_bytes(121, pool))
            if ip:
                body.append(field_bytes(117, ip))
            msg.append(field_bytes(100, b"".join(body)))
        else:
            body = [field_bytes(2, bottom), field_bytes(3, name), field_bytes(4, name),
                    field_varint(5, enum)]
            body += [field_bytes(6, b) for b in blobs]
            if conv:
                body.append(field_bytes(10, conv))
            if pool:
                body.append(field_bytes(19, pool))
            if ip:
                body.append(field_bytes(17, ip))
            msg.append(field_bytes(2, b"".join(body)))
        bottom = name

    fc_seen = 0
    for kind, _, cname, w, b in layers:
        if kind == "conv":
            blobs = ([blob_new(w), blob_new(b)] if new else
                     [blob_v1(w, w.shape), blob_v1(b, (1, 1, 1, b.size))])
            conv = field_varint(1, w.shape[0]) + field_varint(3, 1) + field_varint(4, 3)
            layer(cname, "Convolution", 4, blobs, conv=conv)
            layer(cname.replace("conv", "relu"), "ReLU", 18)
        elif kind == "pool":
            layer(cname, "Pooling", 17, pool=field_varint(1, 0) + field_varint(2, 2)
                  + field_varint(3, 2))
        else:
            fc_seen += 1
            blobs = ([blob_new(w), blob_new(b)] if new else
                     [blob_v1(w, (1, 1) + w.shape), blob_v1(b, (1, 1, 1, b.size))])
            layer(cname, "InnerProduct", 14, blobs, ip=field_varint(1, w.shape[0]))
            if fc_seen < n_fc:
                num = cname[2:]
                layer(f"relu{num}", "ReLU", 18)
                layer(f"drop{num}", "Dropout", 6)
    layer("prob", "Softmax", 20)
    with open(path, "wb") as f:
        f.write(b"".join(msg))


def main(folder):
    state = dict(np.load(os.path.join(folder, "tiny_vgg_state.npz")))
    layers = layers_from_state(state)
    write_keras(os.path.join(folder, "tiny_vgg_keras.h5"), layers)
    write_keras(os.path.join(folder, "tiny_vgg_keras_notop.h5"), layers, keras2=True, top=False)
    write_caffe(os.path.join(folder, "tiny_vgg_v1.caffemodel"), layers, new=False)
    write_caffe(os.path.join(folder, "tiny_vgg_new.caffemodel"), layers, new=True)
    print(f"wrote Keras and Caffe fixtures to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "convert",
                      "fixtures"))
