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
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], r.stderr
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "run").exists()


def test_deconv_refuses_an_empty_layer_name(tmp_path):
    r = tool("deconv.py", "--layer", "", "--out", str(tmp_path / "d.png"))
    assert r.returncode == 1 and "unknown layer ''" in r.stderr
    assert not (tmp_path / "d.png").exists()
