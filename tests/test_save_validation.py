"""minicnn.save never writes a file minicnn.load refuses (and never replaces a good file
with one), and Net.load_state_dict refuses values float32 cannot hold."""
import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.io import ModelFileError


@pytest.fixture
def net():
    return minicnn.load(assets.default_model())


def good_file(tmp_path, net):
    path = tmp_path / "model.h5"
    minicnn.save(net, path)
    return path, path.read_bytes()


@pytest.mark.parametrize("spoil, why", [
    (lambda net: net.layers["fc7"].params.__setitem__(
        "bias", np.full(10, np.nan, np.float32)), "NaN"),
    (lambda net: net.meta.__setitem__("class_names", ["a", "b", "c"]), "3 class names"),
    (lambda net: net.meta.__setitem__("preprocessing", {**net.meta["preprocessing"],
                                                         "input_size": [4, 4]}),
     "does not fit"),
])
def test_save_refuses_what_load_would_refuse_and_keeps_the_old_file(tmp_path, net, spoil, why):
    path, before = good_file(tmp_path, net)
    spoil(net)
    with pytest.raises(ModelFileError, match=why) as err:
        minicnn.save(net, path)
    assert "not written" in str(err.value) and str(path) in str(err.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.h5"]        # no temporary left


@pytest.mark.parametrize("value, why", [
    (np.full(10, np.nan), "NaN"),
    (np.full(10, np.inf), "NaN, infinite"),
    (np.full(10, 1e300), "beyond float32"),
    (np.ones(10) + 1j, "expected real numbers"),
    (np.array(["x"] * 10, dtype=object), "expected real numbers"),
])
def test_load_state_dict_refuses_values_float32_cannot_hold(net, value, why):
    state = net.state_dict()
    before = state["fc7.bias"].copy()
    state["fc7.bias"] = value
    with pytest.raises(ValueError, match=why):
        net.load_state_dict(state)
    np.testing.assert_array_equal(net.state_dict()["fc7.bias"], before)   # unchanged
