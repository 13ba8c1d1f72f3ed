"""Make tests/convert/fixtures/tiny_vgg_keras_genuine.h5 with real Keras (tf_keras, the
Keras 2 API), from the weights of the genuine torch fixture, and check that Keras
computes PyTorch's logits before saving. Not a test dependency: run it once in a venv with

    pip install tensorflow-cpu tf-keras h5py
    python tools/make_keras_genuine_fixture.py

The file is written by ``model.save_weights(..., save_format="h5")``, the legacy HDF5
weights layout of the released vgg16_weights_tf_dim_ordering_tf_kernels.h5.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
from make_keras_caffe_fixtures import CONFIG, keras_weights, layers_from_state

FIXTURES = os.path.join(HERE, "..", "tests", "convert", "fixtures")


def main():
    import tf_keras as keras
    state = dict(np.load(os.path.join(FIXTURES, "tiny_vgg_state.npz")))
    layers = layers_from_state(state)
    x = np.load(os.path.join(FIXTURES, "inputs.npy"))              # (N, 3, 16, 16)
    torch_logits = np.load(os.path.join(FIXTURES, "logits.npy"))
    model = keras.Sequential([keras.Input(shape=x.shape[2:] + (x.shape[1],), name="input_1")])
    fcs = [l for l in layers if l[0] == "fc"]
    for kind, name, _, w, _ in layers:
        if kind == "conv":
            model.add(keras.layers.Conv2D(w.shape[0], 3, padding="same", activation="relu",
                                          name=name))
        elif kind == "pool":
            model.add(keras.layers.MaxPooling2D(2, 2, name=name))
        else:
            if name == fcs[0][1]:
                model.add(keras.layers.Flatten(name="flatten"))
            last = name == fcs[-1][1]
            model.add(keras.layers.Dense(w.shape[0], activation=None if last else "relu",
                                         name=name))
    for _, name, kernel, b in keras_weights(layers):
        model.get_layer(name).set_weights([kernel, b])
    keras_logits = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    err = float(np.abs(keras_logits - torch_logits).max())
    print(f"max |Keras - PyTorch| logits: {err:.2e} (config {CONFIG})")
    if err > 1e-4:
        raise SystemExit("Keras does not reproduce PyTorch's logits: fixture not written")
    out = os.path.join(FIXTURES, "tiny_vgg_keras_genuine.h5")
    model.save_weights(out, save_format="h5")
    print(f"wrote {out} (tf_keras {keras.__version__})")


if __name__ == "__main__":
    main()
