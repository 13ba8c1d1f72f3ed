"""Figures in README.md that a seeded run of a few seconds reproduces: each is read from the
README's text and recomputed here, so a stale number fails the suite."""
import re
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.functional import conv_choice

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SHIPPED = assets.DEFAULT_MODEL.is_file() and assets.SAMPLES_INDEX.is_file()
pytestmark = pytest.mark.skipif(not SHIPPED, reason="the shipped model is not in weights/")


def claimed(pattern):
    """The groups of the one README passage matching ``pattern`` (whitespace-tolerant)."""
    found = re.findall(pattern.replace(" ", r"\s+"), README)
    assert len(found) == 1, f"README: expected one match of {pattern!r}, found {len(found)}"
    return found[0]


def test_the_shipped_samples_boxes():
    """'over all 20 the mean IoU is 0.61 and 11/20 boxes have IoU >= 0.5'."""
    from minicnn.commands.localize import iou
    from minicnn.viz import localize_map, saliency
    from minicnn.viz.inputs import load_view
    count, mean, hits = claimed(r"over all (\d+) the mean IoU is ([0-9.]+) and (\d+)/\d+ boxes")
    net = minicnn.load(assets.default_model())
    samples = assets.samples()
    assert len(samples) == int(count)
    ious = []
    for s in samples:
        view = load_view(net, s["file"])
        sal = saliency(net, view.x[None])
        box = localize_map(view.rgb, sal.map[0]).box
        ious.append(iou(view.box_to_file(box) if box else None, s["box"]))
    assert f"{np.mean(ious):.2f}" == mean
    assert sum(v >= 0.5 for v in ious) == int(hits)


def test_the_zero_image_of_the_shipped_model():
    """'24 of the shipped model's 32 conv1_1 biases are negative and the class-score
    gradient is below 0.019 per pixel'."""
    negative, total = map(int, claimed(r"(\d+) of the shipped model's (\d+) conv1_1 biases are negative"))
    bound = float(claimed(r"class-score gradient is below ([0-9.]+) per pixel"))
    net = minicnn.load(assets.default_model())
    bias = net["conv1_1"].params["bias"]
    assert (len(bias), int((bias < 0).sum())) == (total, negative)
    assert float(claimed(r"below ([0-9.]+) per pixel at the zero image")) == bound
    logits = claimed(r"the logits of the all-zero image \(([-0-9., ]+), \.\.\.;")
    x = np.zeros((1,) + net.input_shape, np.float32)
    # at a constant image the max-pool windows tie and the conv's rounding picks the
    # winner, so the bound must hold under each algorithm
    for algorithm in conv_choice.ALGORITHMS:
        with conv_choice.policy(algorithm):
            scores = net.forward(x)
            largest = 0.0
            for c in range(net.num_classes):
                seed = np.zeros_like(scores)
                seed[0, c] = 1.0
                largest = max(largest, float(np.abs(net.backward(seed)).max()))
        assert 0 < largest < bound, algorithm
        printed = [float(v) for v in logits.split(",")]
        np.testing.assert_allclose(scores[0, :len(printed)], printed, atol=0.005)


def test_the_shipped_models_accuracy():
    """'(90.00% test accuracy, ...' is what the model file records of its training."""
    accuracy = float(claimed(r"cluttered Fashion-MNIST \(([0-9.]+)% test accuracy"))
    net = minicnn.load(assets.default_model())
    assert round(100 * net.meta["training"]["test_accuracy"], 2) == accuracy


def test_the_class_objective_table(tmp_path):
    """The README's class-objective table (mean S_c, P_c, other scores, strongest other
    score per objective) is what its printed command gives (about 35 s)."""
    import json
    import subprocess
    import sys
    command = claimed(r"\n    (python3 tools/evaluate.py class-objective --out eval-objective)\n")
    rows = dict((name, numbers) for name, *numbers in re.findall(
        r"\n\| (score S_c \(the paper\)|softmax P_c|log P_c) \| ([-0-9.]+) \| ([-0-9.]+) \| "
        r"([-0-9.]+) \| ([-0-9.]+) \|", README))
    assert len(rows) == 3, rows
    out = tmp_path / "eval-objective"
    r = subprocess.run([sys.executable, *command.split()[1:-1], str(out), "--no-progress"],
                       cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    mean = json.loads((out / "class_objective.json").read_text())["mean"]
    for name, objective in (("score S_c (the paper)", "score"), ("softmax P_c", "softmax"),
                            ("log P_c", "log-softmax")):
        m = mean[objective]
        made = [f"{m['S_c']:.2f}", f"{m['P_c']:.3f}", f"{m['others_mean']:.2f}",
                f"{m['others_max']:.2f}"]
        assert made == list(rows[name]), (name, made, rows[name])
