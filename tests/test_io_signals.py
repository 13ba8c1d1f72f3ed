"""Ctrl-C, SIGTERM or SIGHUP while a model file is written: the run stops, the old file
stays as it was and no temporary file is left behind."""
import os
import signal
import subprocess
import sys
import time

import pytest

import minicnn
from children import default_dispositions
from minicnn import assets

SCRIPT = r"""
import sys, time, h5py
import minicnn
from minicnn.models import vgg_from_config
net = vgg_from_config([16, "M"], num_classes=10, input_size=(32, 32), fc_sizes=(4096, 4096))
real = h5py.Group.create_dataset
def slow(self, *a, **k):              # a slow disk: the signal lands inside the write
    time.sleep(0.15)
    return real(self, *a, **k)
h5py.Group.create_dataset = slow
print("writing", flush=True)
try:
    minicnn.save(net, sys.argv[1])
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("saved", flush=True)
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM),
                                       (signal.SIGHUP, -signal.SIGHUP)])
def test_signal_during_save_keeps_the_old_file(tmp_path, sig, code):
    target = tmp_path / "model.h5"
    minicnn.save(minicnn.load(assets.default_model()), target)
    before = target.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_dispositions)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        time.sleep(0.01)
    time.sleep(0.2)                                   # inside the dataset writes
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    assert "saved" not in out
    assert "Exception ignored" not in err
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_long_output_names_get_a_short_temporary_name(tmp_path):
    target = tmp_path / ("m" * 240 + ".h5")
    minicnn.save(minicnn.load(assets.default_model()), target)
    assert minicnn.load(target).num_classes == 10
