"""Genuine fixtures: the same tiny VGG saved by real torch.save (zip, legacy), in the old
tar container, as Keras HDF5 (full and notop) and as Caffe (V1 and new layouts) must give
the logits PyTorch computed, up to float32 rounding."""
import os

import numpy as np
import pytest

import minicnn
from minicnn.convert import ConvertError, convert, convert_file, detect_format

from convert_helpers import FIXTURES, tiny_state, write_torch

X = np.load(os.path.join(FIXTURES, "inputs.npy"))
LOGITS = np.load(os.path.join(FIXTURES, "logits.npy"))
FEATURES = np.load(os.path.join(FIXTURES, "features.npy"))

FILES = [("tiny_vgg_zip.pt", "torch-zip", "RGB"), ("tiny_vgg_legacy.pt", "torch-legacy", "RGB"),
         ("tiny_vgg_tar.pt", "torch-tar", "RGB"), ("tiny_vgg_keras.h5", "keras", "BGR"),
         # written by real Keras (tf_keras 2.21 save_weights, legacy HDF5), whose own
         # forward pass reproduced PyTorch's logits to 6e-8 before saving
         ("tiny_vgg_keras_genuine.h5", "keras", "BGR"),
         # encoded by Google's protobuf library (caffe.proto field numbers), not our writer
         ("tiny_vgg_v1_protobuf.caffemodel", "caffe", "BGR"),
         ("tiny_vgg_new_protobuf.caffemodel", "caffe", "BGR"),
         ("tiny_vgg_v1.caffemodel", "caffe", "BGR"), ("tiny_vgg_new.caffemodel", "caffe", "BGR")]


def close(a, b):
    # float32 rounding: the sums run in a different order than PyTorch's
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))


@pytest.mark.parametrize("name, container, order", FILES)
def test_fixture_logits_match_pytorch(name, container, order):
    path = os.path.join(FIXTURES, name)
    assert detect_format(path) == container
    net, meta = convert(path, quiet=True)
    close(net.forward(X), LOGITS)
    assert net.names[-1] == "fc8" and "pool3" in net.names and "conv3_2" in net.names
    assert meta["class_names"][0] == "tench" and meta["class_names"][-1] == "toilet tissue"
    pre = meta["preprocessing"]
    assert pre["channel_order"] == order and pre["input_size"] == [16, 16]
    if order == "RGB":
        assert pre["input_scale"] == 1.0 and pre["mean"] == [0.485, 0.456, 0.406]
        assert pre["std"] == [0.229, 0.224, 0.225]
    else:
        assert pre["input_scale"] == 255.0 and pre["mean"] == [103.939, 116.779, 123.68]
        assert pre["std"] == [1.0, 1.0, 1.0]
    assert meta["source"]["arch"] == "8,8,M,16,M,16,16,M"


def test_all_formats_hold_identical_weights():
    ref = convert(os.path.join(FIXTURES, "tiny_vgg_zip.pt"), quiet=True)[0].state_dict()
    for name, _, _ in FILES[1:]:
        net = convert(os.path.join(FIXTURES, name), quiet=True)[0]
        for _, layer in net:   # owned, writable copies, not views of the file's memory map
            for p in layer.params.values():
                while isinstance(p.base, np.ndarray):
                    p = p.base
                assert p.flags.writeable and p.base is None and p.dtype == np.float32
        sd = net.state_dict()
        assert list(sd) == list(ref)
        for key in ref:
            np.testing.assert_array_equal(sd[key], ref[key], err_msg=f"{name} {key}")


def test_keras_notop_is_conv_only_and_round_trips(tmp_path):
    src = os.path.join(FIXTURES, "tiny_vgg_keras_notop.h5")
    dst = tmp_path / "notop.h5"
    net, meta = convert_file(src, dst, quiet=True)
    assert net.names[-1] == "pool3" and meta["class_names"] == []
    close(net.forward(X), FEATURES)
    back = minicnn.load(dst)
    assert back.names == net.names and back.class_names == []
    assert back.preprocessing.channel_order == "BGR"
    close(back.forward(X), FEATURES)


def test_saved_file_round_trips_through_minicnn_load(tmp_path):
    dst = tmp_path / "m.h5"
    convert_file(os.path.join(FIXTURES, "tiny_vgg_legacy.pt"), dst, quiet=True)
    net = minicnn.load(dst)
    close(net.forward(X), LOGITS)
    assert len(net.class_names) == 1000
    assert net.meta["source"]["container"] == "torch-legacy"
    assert os.listdir(tmp_path) == ["m.h5"]


def test_arch_option_and_gap_inference_agree():
    path = os.path.join(FIXTURES, "tiny_vgg_zip.pt")
    a = convert(path, arch="auto", quiet=True)[0]
    b = convert(path, arch="8,8,M,16,M,16,16,M", quiet=True)[0]
    assert a.names == b.names


def test_vgg16_layout_maps_to_vgg16_names(tmp_path):
    # VGG16's torchvision indices with thin layers: pools inferred from the index gaps
    from minicnn.models import VGG16_CONFIG
    config = [c if c == "M" else 2 for c in VGG16_CONFIG]
    state = tiny_state(config=config, side=32, fc=(4, 4, 1000))
    path = write_torch(tmp_path / "thin16.pt", state, "legacy")
    net, meta = convert(path, quiet=True)
    ref = minicnn.vgg_from_config(config, num_classes=1000, input_size=(32, 32), fc_sizes=(4, 4))
    assert net.names == ref.names
    assert [n for n in net.names if n.startswith("pool")] == [f"pool{b}" for b in range(1, 6)]
    assert meta["preprocessing"]["input_size"] == [32, 32]
    assert meta["preprocessing"]["resize"] == 37
    same, _ = convert(path, arch=",".join(map(str, config)), quiet=True)
    assert same.names == net.names
    with pytest.raises(ConvertError, match="--arch vgg16 expects layers 64,64,M"):
        convert(path, arch="vgg16", quiet=True)   # the real VGG16 has other widths
    with pytest.raises(ConvertError, match="--arch vgg19 expects conv layers at features"):
        convert(path, arch="vgg19", quiet=True)


def test_other_class_counts_and_classes_file(tmp_path):
    state = tiny_state(fc=(6, 3))
    path = write_torch(tmp_path / "three.pt", state)
    assert convert(path, quiet=True)[1]["class_names"] == ["class_0", "class_1", "class_2"]
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\n")
    assert convert(path, classes=str(names), quiet=True)[1]["class_names"] == \
        ["cat", "dog", "bird"]
