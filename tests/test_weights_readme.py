"""weights/README.md's record of the shipped model against the files beside it: the
per-epoch table is the training logs', the accuracy and size are the model's, and the
training-curve script draws from those logs."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minicnn
from minicnn import assets

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"
TEXT = (WEIGHTS / "README.md").read_text(encoding="utf-8")
LOGS = [WEIGHTS / "training" / f"stage{k}.jsonl" for k in (1, 2, 3)]
pytestmark = pytest.mark.skipif(not assets.DEFAULT_MODEL.is_file(),
                                reason="the shipped model is not in weights/")


def test_the_per_epoch_table_is_the_logs():
    rows = re.findall(r"\n\| (\d) \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", TEXT)
    logged = []
    for stage, path in enumerate(LOGS, 1):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if "test_acc_subset" in r:
                logged.append((str(stage), str(round(r["epoch"])), f"{r['train_loss']:.3f}",
                               f"{r['train_acc']:.3f}", f"{r['test_acc_subset']:.3f}"))
    assert rows == logged
    assert len(rows) == 16 + 8 + 6


def test_accuracy_and_size_are_the_models():
    net = minicnn.load(assets.default_model())
    accuracy = re.search(r"\*\*Test accuracy: ([0-9.]+)%\*\*", TEXT).group(1)
    assert f"{100 * net.meta['training']['test_accuracy']:.2f}" == accuracy
    parameters = sum(int(v.size) for _, layer in net for v in layer.params.values())
    assert f"{parameters:,} parameters" in TEXT
    assert f"{assets.DEFAULT_MODEL.stat().st_size / 1e6:.1f} MB file" in TEXT


def test_the_curve_script_draws_the_logs(tmp_path):
    out = tmp_path / "curve.png"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_training_curve.py"),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from PIL import Image
    assert Image.open(out).size == (1100, 400)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe not json\n")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_training_curve.py"),
                        str(bad), "--out", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.png").exists()
