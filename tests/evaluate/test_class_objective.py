"""tools/evaluate.py class-objective: the numbers it reports are those of the images it
draws."""
import json
import subprocess
import sys

import numpy as np

import minicnn
from minicnn import assets
from minicnn.evaluate.objective import compare_objectives, means
from minicnn.viz.class_model import softmax

from conftest import TOOL


def test_rows_describe_the_final_logits():
    net = minicnn.load(assets.default_model())
    results, rows = compare_objectives(net, [7, 2], ("score", "log-softmax"), steps=4,
                                       step=0.1, lam=0.0, init_noise=0.01, seed=0)
    for objective in ("score", "log-softmax"):
        res = results[objective]
        logits = net.forward(res.x).astype(np.float64)        # the images reported on
        for k, c in enumerate([7, 2]):
            nums = rows[k]["objectives"][objective]
            others = np.delete(logits[k], c)
            assert np.isclose(nums["S_c"], logits[k, c], rtol=1e-5)
            assert np.isclose(nums["P_c"], softmax(logits)[k, c], rtol=1e-5)
            assert np.isclose(nums["others_mean"], others.mean(), rtol=1e-5, atol=1e-6)
            assert np.isclose(nums["others_max"], others.max(), rtol=1e-5)
    m = means(rows, ("score",))
    assert np.isclose(m["score"]["S_c"], np.mean([r["objectives"]["score"]["S_c"] for r in rows]))


def test_class_objective_command(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, TOOL, "class-objective", "--no-progress", "--class",
                        "Sneaker", "0", "--steps", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "class_objective.json").read_text())
    assert [c["class"] for c in summary["classes"]] == [7, 0]
    assert summary["classes"][0]["name"] == "Sneaker"
    assert set(summary["classes"][0]["objectives"]) == {"score", "softmax", "log-softmax"}
    assert "| Sneaker |" in (out / "class_objective.md").read_text()
    assert (out / "class_objective.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, TOOL, "class-objective", "--objectives", "score,prob"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected a comma-separated list" in bad.stderr
