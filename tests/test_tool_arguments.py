"""Careless options get one line naming the option and a usage exit (2), before any work
and without writing anything."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(name, *args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("args, option", [
    (["--batch", "0"], "--batch"),
    (["--config", "32,X"], "--config"),
    (["--config", "32,0,M"], "--config"),
    (["--fc", "abc"], "--fc"),
    (["--dropout", "1.5"], "--dropout"),
    (["--epochs", "-1"], "--epochs"),
    (["--train-size", "0"], "--train-size"),
    (["--train-size", "10", "--batch", "64"], "--train-size"),
    (["--seed", "-1"], "--seed"),
    (["--lr", "nan"], "--lr"),
    (["--out", "no/such/folder/m.h5"], "--out"),
    (["--out", "model.txt"], "--out"),
])
def test_train_refuses_bad_options_before_training(tmp_path, args, option):
    r = tool("train.py", "--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "run"),
             *(["--out", str(tmp_path / "m.h5")] if "--out" not in args else []), *args,
             cwd=tmp_path)
    # argparse's refusals are usage (2); the output path is checked as every tool checks
    # it, after parsing and before any work (1)
    assert r.returncode == (1 if option == "--out" else 2), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], r.stderr
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "run").exists()


def test_deconv_refuses_an_empty_layer_name(tmp_path):
    r = tool("deconv.py", "--layer", "", "--out", str(tmp_path / "d.png"))
    assert r.returncode == 1 and "unknown layer ''" in r.stderr
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("name, args, option", [
    ("saliency.py", ["--seed", "-1"], "--seed"),
    ("localize.py", ["--seed", "-1"], "--seed"),
    ("class_model.py", ["--seed", "-1"], "--seed"),
    ("class_model.py", ["--step", "1e300"], "--step"),
    ("class_model.py", ["--lam", "1e39"], "--lam"),
    ("class_model.py", ["--init-noise", "1e300"], "--init-noise"),
    ("class_model.py", ["--step", "inf"], "--step"),
])
def test_viz_tools_name_the_bad_option(tmp_path, name, args, option):
    r = tool(name, *args, "--out", str(tmp_path / "o.png"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], r.stderr
    assert not (tmp_path / "o.png").exists()


def test_a_class_model_that_overflows_float32_stops_with_one_line(tmp_path):
    # each value fits float32, the ascent does not: stopped, not written as NaN pixels
    r = tool("class_model.py", "--class", "0", "--steps", "5", "--lam", "1e38",
             "--init-noise", "1e30", "--out", str(tmp_path / "o.png"))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "float32 range" in lines[0], r.stderr
    assert not (tmp_path / "o.png").exists() and "Warning" not in r.stderr


@pytest.mark.parametrize("content, expected", [
    ("npz", "an .npz archive"), ("huge", "float32 range"), ("complex", "real numbers"),
])
def test_bad_tensor_inputs_give_one_line(tmp_path, content, expected):
    import numpy as np
    path = tmp_path / "x.npy"
    if content == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, x=np.zeros((3, 64, 64), np.float32))
    elif content == "huge":
        np.save(path, np.full((3, 64, 64), 1e300))
    else:
        np.save(path, np.zeros((3, 64, 64), np.complex64))
    r = tool("saliency.py", "--image", str(path), "--out", str(tmp_path / "o.png"))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], r.stderr
    assert "Warning" not in r.stderr and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("tool_args", [
    ("saliency.py", "--smoothgrad", "1001"), ("localize.py", "--smoothgrad", "100000"),
    ("evaluate.py", "localize", "--smoothgrad", "1000000000", "--out", "never"),
    ("evaluate.py", "localize", "--smoothgrad", "0", "--out", "never")])
def test_smoothgrad_sample_counts_are_range_checked(tool_args):
    """One usage line for an absurd SmoothGrad count (it ran out of memory drawing all the
    noise at once), before any work."""
    r = tool(*tool_args)
    assert r.returncode == 2 and "--smoothgrad" in r.stderr and "1000" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
