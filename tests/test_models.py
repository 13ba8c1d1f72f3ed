"""minicnn.models: VGG16/VGG19 structure and parameter counts (Simonyan & Zisserman 2014,
Sect. 2.1), vgg_from_config naming, initialisation and validation."""
import gc

import numpy as np
import pytest

import minicnn
from minicnn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU


def expected_names(convs_per_block, fcs=(6, 7)):
    names = []
    for b, n in enumerate(convs_per_block, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    names.append("flatten")
    for f in fcs:
        names += [f"fc{f}", f"relu{f}", f"drop{f}"]
    names.append(f"fc{fcs[-1] + 1}")
    return names


@pytest.fixture(scope="module")
def vgg16():
    net = minicnn.vgg16()
    yield net
    del net
    gc.collect()


def test_vgg16_parameter_count_and_layer_names(vgg16):
    assert vgg16.num_parameters() == 138_357_544
    assert vgg16.names == expected_names([2, 2, 3, 3, 3])
    assert vgg16.names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert vgg16.names[-9:] == ["pool5", "flatten", "fc6", "relu6", "drop6", "fc7", "relu7",
                                "drop7", "fc8"]


def test_vgg16_layers_and_shapes(vgg16):
    widths = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
    for name, layer in vgg16:
        if name.startswith("conv"):
            assert isinstance(layer, Conv2d)
            assert (layer.kernel_size, layer.stride, layer.pad) == (3, 1, 1)
            assert layer.out_channels == widths[int(name[4])]
        elif name.startswith("pool"):
            assert isinstance(layer, MaxPool2d)
            assert (layer.kernel_size, layer.stride, layer.pad) == (2, 2, 0)
        elif name.startswith("relu"):
            assert isinstance(layer, ReLU)
        elif name.startswith("drop"):
            assert isinstance(layer, Dropout) and layer.p == 0.5
    shapes = vgg16.shapes((3, 224, 224))
    assert shapes["pool5"] == (512, 7, 7)
    assert shapes["flatten"] == (25088,)
    assert shapes["fc6"] == (4096,) and shapes["fc7"] == (4096,) and shapes["fc8"] == (1000,)
    sd_shapes = {k: v.shape for k, v in ((k, layer.params[p]) for k, layer, p in vgg16.parameters())}
    assert sd_shapes["conv1_1.weight"] == (64, 3, 3, 3)
    assert sd_shapes["fc6.weight"] == (4096, 25088)
    assert sd_shapes["fc8.bias"] == (1000,)
    assert vgg16.meta["preprocessing"]["input_size"] == [224, 224]


def test_vgg16_initialisation_is_he_normal(vgg16):
    for name in ("conv1_1", "conv3_2", "fc7"):
        w = vgg16[name].params["weight"]
        fan_in = int(np.prod(w.shape[1:]))
        assert w.dtype == np.float32
        assert abs(float(w[:64].std()) / np.sqrt(2.0 / fan_in) - 1) < 0.1, name
        assert not vgg16[name].params["bias"].any()


def test_vgg19_parameter_count_and_layer_names():
    net = minicnn.vgg19()
    try:
        assert net.num_parameters() == 143_667_240
        assert net.names == expected_names([2, 2, 4, 4, 4])
    finally:
        del net
        gc.collect()


def test_vgg_from_config_small_net_runs_and_is_seeded():
    cfg = [4, "M", 8, 8, "M", 8]     # convs after the last pool form block 3
    a = minicnn.vgg_from_config(cfg, num_classes=3, input_size=(8, 12), fc_sizes=(6,), seed=5)
    b = minicnn.vgg_from_config(cfg, num_classes=3, input_size=(8, 12), fc_sizes=(6,), seed=5)
    c = minicnn.vgg_from_config(cfg, num_classes=3, input_size=(8, 12), fc_sizes=(6,), seed=6)
    assert a.names == ["conv1_1", "relu1_1", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2",
                       "pool2", "conv3_1", "relu3_1", "flatten", "fc6", "relu6", "drop6", "fc7"]
    assert a["fc6"].in_features == 8 * 2 * 3
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 12)).astype(np.float32)
    assert a.eval().forward(x).shape == (2, 3)
    np.testing.assert_array_equal(a.forward(x), b.eval().forward(x))
    assert not np.array_equal(a.forward(x), c.eval().forward(x))


def test_vgg_from_config_without_dropout_and_fc():
    net = minicnn.vgg_from_config([2, "M"], num_classes=2, input_size=(4, 4), fc_sizes=(),
                                  dropout=0)
    assert net.names == ["conv1_1", "relu1_1", "pool1", "flatten", "fc6"]
    net = minicnn.vgg_from_config([2, "M"], num_classes=2, input_size=(4, 4), fc_sizes=(3,),
                                  dropout=0)
    assert "drop6" not in net.names


@pytest.mark.parametrize("cfg", [[], [0], [4, "X"], [4, 2.5], [-1, "M"]])
def test_vgg_from_config_rejects_bad_configs(cfg):
    with pytest.raises(ValueError, match="config"):
        minicnn.vgg_from_config(cfg)


def test_global_pool_token():
    net = minicnn.vgg_from_config([4, "M", 8, "G"], num_classes=3, input_size=(12, 12),
                                  fc_sizes=(5,))
    pool = net["pool2"]
    assert (pool.kernel_size, pool.stride) == (6, 6)
    assert net.shapes((3, 12, 12))["pool2"] == (8, 1, 1)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    # the global pool output is the max over the whole relu2_1 map
    feature = net.forward(x, until="relu2_1")
    np.testing.assert_array_equal(net.forward(x, until="pool2")[:, :, 0, 0], feature.max(axis=(2, 3)))
    with pytest.raises(ValueError, match="square"):
        minicnn.vgg_from_config([4, "G"], num_classes=3, input_size=(12, 10))
