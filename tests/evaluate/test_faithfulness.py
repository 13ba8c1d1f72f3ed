"""tools/evaluate.py faithfulness: the deletion and insertion curves (Petsiuk et al. 2018)
against their definition, and the sub-command's outputs and resume."""
import json
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn import assets
from minicnn.evaluate import faithfulness as fai
from minicnn.viz.saliency import softmax

from conftest import TOOL, make_box_folder


def test_curve_inputs_take_the_first_pixels_of_the_order_from_the_end_image():
    start = np.zeros((2, 2, 3), np.float32)
    end = np.arange(12, dtype=np.float32).reshape(2, 2, 3) + 100
    order = np.array([5, 0, 3, 1, 2, 4])
    out = fai.curve_inputs(start, end, order, steps=3)        # 0, 2, 4, 6 pixels
    assert out.shape == (4, 2, 2, 3)
    np.testing.assert_array_equal(out[0], start)
    np.testing.assert_array_equal(out[3], end)
    flat = out[1].reshape(2, 6)
    assert set(np.flatnonzero(flat[0])) == {5, 0}            # both channels of pixels 5, 0
    np.testing.assert_array_equal(flat[:, [5, 0]], end.reshape(2, 6)[:, [5, 0]])


def test_auc_is_the_trapezoid_area():
    assert fai.auc([0.3] * 11) == pytest.approx(0.3)
    assert fai.auc(np.linspace(1, 0, 21)) == pytest.approx(0.5)
    assert fai.auc([1, 0]) == pytest.approx(0.5)


def test_curves_start_and_end_at_the_images_they_name():
    net = minicnn.load(assets.default_model())
    x = net.preprocess(minicnn.load_image(assets.samples()[0]["file"]))
    order = np.random.default_rng(0).permutation(64 * 64)
    curves = fai.curves_for(net, x, order, 3, steps=10, baseline=0.0)

    def p(image):
        return float(softmax(np.asarray(net.forward(image[None]), np.float64))[0, 3])
    assert curves["deletion"][0] == pytest.approx(p(x), abs=1e-6)
    assert curves["deletion"][-1] == pytest.approx(p(np.zeros_like(x)), abs=1e-6)
    assert curves["insertion"][0] == pytest.approx(p(fai.blurred(x)), abs=1e-6)
    assert curves["insertion"][-1] == pytest.approx(p(x), abs=1e-6)


def evaluate(*args, timeout=300):
    return subprocess.run([sys.executable, TOOL, "faithfulness", "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_faithfulness_writes_its_outputs_and_resumes_to_the_same_records(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=4)
    args = ["--data", str(root), "--synsets", str(synsets), "--methods", "gradient,gradcam",
            "--curve-steps", "8"]
    full = evaluate(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    summary = json.loads((tmp_path / "full" / "faithfulness.json").read_text())
    assert summary["n"] == 4 and summary["steps"] == 8
    assert set(summary["methods"]) == {"gradient", "gradcam"}
    for row in list(summary["methods"].values()) + [summary["random"]]:
        for kind in ("deletion", "insertion"):
            lo, hi = row[f"{kind}_auc_ci95"]
            assert lo <= row[f"{kind}_auc"] <= hi and len(row[f"{kind}_curve"]) == 9
    assert (tmp_path / "full" / "faithfulness_curves.png").stat().st_size > 0
    assert "random order (baseline)" in (tmp_path / "full" / "faithfulness.md").read_text()
    part = evaluate(*args, "--limit", "2", "--out", str(tmp_path / "part"))
    assert part.returncode == 0, part.stderr
    rest = evaluate(*args, "--out", str(tmp_path / "part"), "--resume")
    assert rest.returncode == 0, rest.stderr
    assert (tmp_path / "part" / "records.jsonl").read_bytes() == \
        (tmp_path / "full" / "records.jsonl").read_bytes()
    other = evaluate(*args[:-1], "4", "--out", str(tmp_path / "part"), "--resume")
    assert other.returncode == 1 and "steps: 8 -> 4" in other.stderr
