"""An HDF5 file must never make minicnn read another file: external links, external
storage and virtual datasets are refused by every HDF5 reader (model files, Keras
weights), with one line naming the dataset."""
import os
import shutil

import h5py
import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.convert import ConvertError, convert_file as convert
from minicnn.io import ModelFileError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert", "fixtures")
MODEL_TARGET = "weights/fc7.bias"                                 # (10,) float32
KERAS_TARGET = "fc2/fc2_b_1:0"                                    # (16,) float32


def secret(tmp_path, count):
    """A file whose bytes are a recognisable float32 pattern."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(1000, 1000 + count, dtype=np.float32).tobytes())
    return path


def replace(path, name, how, secret_path, tmp_path):
    """Replace dataset ``name`` of the HDF5 file ``path`` by one whose bytes live in
    ``secret_path`` (external storage), an external link to a dataset of another file, or
    a virtual dataset over another file."""
    with h5py.File(path, "r+") as f:
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        if how == "external-storage":
            f.create_dataset(name, shape=shape, dtype=dtype,
                             external=[(str(secret_path), 0, h5py.h5f.UNLIMITED)])
        elif how == "external-link":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as g:
                g["x"] = np.frombuffer(secret_path.read_bytes(), np.float32)[:shape[0]]
            f[name] = h5py.ExternalLink(str(other), "/x")
        elif how == "soft-link":
            f[name] = h5py.SoftLink("/" + os.path.dirname(name) or "/")
        else:   # virtual
            other = tmp_path / "other_v.h5"
            with h5py.File(other, "w") as g:
                g["x"] = np.frombuffer(secret_path.read_bytes(), np.float32)[:shape[0]]
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[:] = h5py.VirtualSource(str(other), "x", shape=shape)
            f.create_virtual_dataset(name, layout)


HOW = ["external-storage", "external-link", "virtual", "soft-link"]
WHY = {"external-storage": "external files", "external-link": "external link",
       "virtual": "virtual dataset", "soft-link": "SoftLink"}


@pytest.mark.parametrize("how", HOW)
def test_model_file_refuses_data_from_other_files(tmp_path, how):
    path = tmp_path / "model.h5"
    shutil.copy(assets.default_model(), path)
    replace(path, MODEL_TARGET, how, secret(tmp_path, 10), tmp_path)
    with pytest.raises(ModelFileError, match=WHY[how]) as err:
        minicnn.load(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("how", HOW)
def test_keras_converter_refuses_data_from_other_files(tmp_path, how):
    path = tmp_path / "keras.h5"
    shutil.copy(os.path.join(FIXTURES, "tiny_vgg_keras.h5"), path)
    replace(path, KERAS_TARGET, how, secret(tmp_path, 16), tmp_path)
    out = tmp_path / "out.h5"
    with pytest.raises(ConvertError, match=WHY[how]) as err:
        convert(path, out, quiet=True)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_the_unmodified_files_still_load(tmp_path):
    assert minicnn.load(assets.default_model()).num_classes == 10
    out = tmp_path / "ok.h5"
    convert(os.path.join(FIXTURES, "tiny_vgg_keras.h5"), out, quiet=True)
    assert out.exists()
