"""The model-parameter randomisation test: known answers and the command."""
import json
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.evaluate import sanity
from minicnn.evaluate.data import BoxFolder

from conftest import TOOL, make_box_folder, read_records


def evaluate(*args):
    return subprocess.run([sys.executable, TOOL, "sanity", "--no-progress", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def net():
    return minicnn.load(assets.default_model())


def test_steps_cascade_from_the_top_then_each_layer_alone(net):
    layers = sanity.parameter_layers(net)
    assert layers[0] == "conv1_1" and layers[-1] == net.names[-1]
    steps = sanity.randomisation_steps(net)
    cascade = [s for s in steps if s[0] == "cascade"]
    assert cascade[0] == ("cascade", "original", ())
    assert [s[1] for s in cascade[1:]] == layers[::-1]
    assert cascade[-1][2] == tuple(layers[::-1])                  # all random at the end
    assert [s[2] for s in steps if s[0] == "independent"] == [(n,) for n in layers[::-1]]


def test_swap_replaces_exactly_the_named_layers_and_restores_them(net):
    random = sanity.random_parameters(net, seed=3)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    chosen = ("fc7", "conv3_1")
    with sanity.swapped_parameters(net, random, chosen):
        inside = net.state_dict()
        for key, value in inside.items():
            layer, p = key.split(".")
            if layer in chosen:
                np.testing.assert_array_equal(value, random[layer][p])
                assert not np.array_equal(value, before[key])
            else:
                assert value.tobytes() == before[key].tobytes()      # the same bits
    for key, value in net.state_dict().items():
        assert value.tobytes() == before[key].tobytes()


def test_random_parameters_are_he_normal_zero_bias_and_seeded(net):
    a = sanity.random_parameters(net, seed=1)
    b = sanity.random_parameters(net, seed=1)
    c = sanity.random_parameters(net, seed=2)
    w = a["conv3_1"]["weight"]
    fan_in = np.prod(w.shape[1:])
    assert w.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)
    assert not a["conv3_1"]["bias"].any()
    np.testing.assert_array_equal(w, b["conv3_1"]["weight"])
    assert not np.array_equal(w, c["conv3_1"]["weight"])


def test_compare_known_answers():
    rng = np.random.default_rng(0)

    def pair(signal):           # (signal, map) as signals_of gives for the rule methods
        return signal, np.abs(signal).max(axis=0)
    sig = rng.standard_normal((3, 16, 16))
    same = sanity.compare(pair(sig), pair(sig.copy()))
    assert same == {"spearman_abs": 1.0, "spearman_signed": 1.0, "ssim": 1.0}
    neg = sanity.compare(pair(sig), pair(-sig))
    assert neg["spearman_signed"] == -1.0
    assert neg["spearman_abs"] == 1.0 and neg["ssim"] == 1.0        # the same |map|
    other = sanity.compare(pair(sig), pair(rng.standard_normal((3, 16, 16))))
    assert abs(other["spearman_abs"]) < 0.3 and abs(other["spearman_signed"]) < 0.2


def test_unchanged_randomisation_gives_similarity_one_everywhere(net, tmp_path, monkeypatch):
    """A 'randomisation' that puts back the trained weights changes nothing."""
    own = {name: dict(net[name].params) for name in sanity.parameter_layers(net)}
    monkeypatch.setattr(sanity, "random_parameters", lambda net, seed=0: own)
    sanity._RANDOM_CACHE.clear()
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    item = BoxFolder(root, synsets).item(0)
    settings = sanity.SanitySettings(methods=["gradient", "guided"])
    record = sanity.evaluate_item(net, item, 0, settings)
    sanity._RANDOM_CACHE.clear()
    for mode in sanity.MODES:
        for method in ("gradient", "guided"):
            for step in record[mode][method]:
                assert (step["spearman_abs"], step["spearman_signed"], step["ssim"]) == \
                    (1.0, 1.0, 1.0), (mode, method, step)


def test_sanity_command(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=2)
    out = tmp_path / "out"
    r = evaluate("--data", str(root), "--synsets", str(synsets), "--methods",
                 "gradient,guided", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "sanity.json").read_text())
    assert summary["n"] == 2
    for mode, first in (("cascade", "original"), ("independent", "fc7")):
        for method in ("gradient", "guided"):
            rows = summary[mode][method]
            assert rows[0]["layer"] == first
            assert set(rows[0]) >= {"layer", "spearman_abs", "spearman_signed", "ssim"}
    assert summary["cascade"]["gradient"][0]["spearman_abs"] == 1.0
    # all layers random: the gradient no longer looks like the trained one
    assert summary["cascade"]["gradient"][-1]["spearman_abs"] < 0.5
    records = read_records(out)
    # the trained net, then each layer with weights from the top down (the data's own
    # model: the shipped one)
    learned = [name for name, layer in minicnn.load(assets.default_model()) if layer.params]
    assert len(records) == 2
    assert [s["layer"] for s in records[0]["cascade"]["guided"]] == ["original"] + learned[::-1]
    for name in ("sanity.md", "sanity_plot.png", "sanity_cascade.png"):
        assert (out / name).stat().st_size > 500
