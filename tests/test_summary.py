"""minicnn.summary: hand-computed numbers for a small net, and VGG16's published totals."""
import pytest
from hypothesis import given, strategies as st

import minicnn
from minicnn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, Net, ReLU
from minicnn.models import VGG16_CONFIG, VGG19_CONFIG
from minicnn.summary import format_table, human, summarize, totals


def zero_vgg(config, num_classes=1000):
    """VGG layers with zero weights (np.zeros: no random init, pages untouched)."""
    layers, c, block, i = [], 3, 1, 0
    for item in config:
        if item == "M":
            layers.append((f"pool{block}", MaxPool2d(2, 2)))
            block, i = block + 1, 0
        else:
            i += 1
            layers += [(f"conv{block}_{i}", Conv2d(c, item, 3, 1, 1)), (f"relu{block}_{i}", ReLU())]
            c = item
    layers += [("flatten", Flatten()), ("fc6", Linear(c * 49, 4096)), ("relu6", ReLU()),
               ("drop6", Dropout()), ("fc7", Linear(4096, 4096)), ("relu7", ReLU()),
               ("drop7", Dropout()), ("fc8", Linear(4096, num_classes))]
    return Net(layers)


def test_small_net_by_hand():
    net = Net([("conv1", Conv2d(3, 4, 3, 1, 1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2, 2)),
               ("conv2", Conv2d(4, 6, 3, 1, 0)), ("pool2", MaxPool2d(2, 2)),
               ("flatten", Flatten()), ("fc", Linear(24, 2))])
    rows = {r["name"]: r for r in summarize(net, (3, 12, 12))}
    assert rows["conv1"]["output_shape"] == (4, 12, 12)
    assert rows["conv1"]["params"] == 4 * 3 * 9 + 4
    assert rows["conv1"]["macs"] == 4 * 12 * 12 * 3 * 9
    assert (rows["conv1"]["rf_size"], rows["conv1"]["rf_jump"]) == (3, 1)
    assert (rows["pool1"]["rf_size"], rows["pool1"]["rf_jump"]) == (4, 2)   # 3 + 1*1
    assert rows["conv2"]["output_shape"] == (6, 4, 4)                      # 6 - 3 + 1
    assert rows["conv2"]["macs"] == 6 * 4 * 4 * 4 * 9
    assert (rows["conv2"]["rf_size"], rows["conv2"]["rf_jump"]) == (8, 2)   # 4 + 2*2
    assert rows["pool2"]["output_shape"] == (6, 2, 2)
    assert (rows["pool2"]["rf_size"], rows["pool2"]["rf_jump"]) == (10, 4)  # 8 + 1*2
    assert rows["relu1"]["params"] == rows["relu1"]["macs"] == 0
    assert rows["flatten"]["output_shape"] == (24,)
    assert rows["fc"]["macs"] == 48 and rows["fc"]["params"] == 50
    assert rows["fc"]["rf_size"] is None
    assert totals(rows.values()) == {"params": 112 + 222 + 50,
                                     "macs": 4 * 144 * 27 + 6 * 16 * 36 + 48}


def test_vgg16_totals():
    rows = summarize(zero_vgg(VGG16_CONFIG), (3, 224, 224))
    t = totals(rows)
    assert t["params"] == 138_357_544
    assert 15.4e9 < t["macs"] < 15.6e9
    pool5 = next(r for r in rows if r["name"] == "pool5")
    assert pool5["output_shape"] == (512, 7, 7)
    assert (pool5["rf_size"], pool5["rf_jump"]) == (212, 32)
    conv5_3 = next(r for r in rows if r["name"] == "conv5_3")
    assert conv5_3["rf_size"] == 196
    table = format_table(rows)
    assert "138,357,544" in table and "15.47 G" in table


def test_vgg19_totals():
    t = totals(summarize(zero_vgg(VGG19_CONFIG), (3, 224, 224)))
    assert t["params"] == 143_667_240
    assert 19.5e9 < t["macs"] < 19.7e9


def test_bad_input_names_the_layer():
    net = Net([("conv1", Conv2d(3, 4, 3)), ("flatten", Flatten()), ("fc", Linear(10, 2))])
    with pytest.raises(ValueError, match="fc"):
        summarize(net, (3, 8, 8))


@given(k=st.integers(1, 4), s=st.integers(1, 3), n=st.integers(1, 4))
def test_stacked_convs_receptive_field(k, s, n):
    """n stacked k x k convs of stride s: size 1 + (k-1)(1 + s + ... + s^(n-1))."""
    layers = [(f"c{i}", Conv2d(1, 1, k, s, 0)) for i in range(n)]
    side = 200   # big enough for 4 stride-3 convs
    rows = summarize(Net(layers), (1, side, side))
    assert rows[-1]["rf_size"] == 1 + (k - 1) * sum(s ** i for i in range(n))
    assert rows[-1]["rf_jump"] == s ** n


def test_human():
    assert human(15_470_264_320) == "15.47 G" and human(999) == "999"


def test_info_names_what_a_model_without_class_names_outputs(tmp_path, capsys):
    """A classifier saved without class names has outputs, not "no classes"; a model that
    ends in a conv has none."""
    from minicnn.commands import info
    with_fc = minicnn.vgg_from_config([4, "M"], num_classes=7, input_size=(8, 8),
                                      fc_sizes=(5,), dropout=0.0, seed=0)
    minicnn.save(with_fc, tmp_path / "fc.h5", {})
    assert info.main([str(tmp_path / "fc.h5")]) == 0
    assert "classes: 7 outputs, no class names in the file" in capsys.readouterr().out
