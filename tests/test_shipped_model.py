"""The model shipped in weights/ loads, says what it is, and classifies its samples."""
import json

import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.datasets.fashion_mnist import CLASS_NAMES


@pytest.fixture(scope="module")
def net():
    return minicnn.load(assets.default_model())


def test_shipped_model_metadata(net):
    assert net.class_names == CLASS_NAMES
    prep = net.preprocessing
    assert prep.input_size == (64, 64) and prep.channel_order == "RGB"
    training = net.meta["training"]
    assert training["test_canvases"] == 10000
    # the README and weights/README.md quote this number: it must be the measured one
    readme = (assets.WEIGHTS_DIR / "README.md").read_text()
    assert f"{100 * training['test_accuracy']:.2f}%" in readme


def test_shipped_samples_match_their_index():
    entries = assets.samples()
    assert len(entries) == 20
    assert sorted({e["label"] for e in entries}) == list(range(10))
    for e in entries:
        image = minicnn.load_image(e["file"])
        assert image.size == (64, 64)
        x0, y0, x1, y1 = e["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert e["name"] == CLASS_NAMES[e["label"]]


def test_shipped_model_classifies_the_samples(net):
    """The samples are fresh test canvases; at the model's measured accuracy (90.00%) a
    score of 15/20 or better is expected (binomial tail below 15: about 1.1%)."""
    entries = assets.samples()
    x = np.stack([net.preprocess(minicnn.load_image(e["file"])) for e in entries])
    predicted = net.forward(x).argmax(axis=1)
    labels = np.array([e["label"] for e in entries])
    assert (predicted == labels).sum() >= 15, list(zip(predicted.tolist(), labels.tolist()))
