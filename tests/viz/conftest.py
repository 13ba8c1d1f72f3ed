"""Fixtures of the visualisation tests: hand-built nets with closed-form answers, a
tiny VGG-style model file, synthetic canvases."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn import Flatten, Linear, Net, ReLU

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")
CLASS_NAMES = ["square", "stripe", "dot"]


def linear_net(c=3, h=4, w=5, k=3, seed=0):
    """Flatten + one Linear: S_c(I) = <W_c, I> + b_c, so dS_c/dI = W_c exactly."""
    rng = np.random.default_rng(seed)
    fc = Linear(c * h * w, k)
    fc.params["weight"] = rng.standard_normal((k, c * h * w)).astype(np.float32)
    fc.params["bias"] = rng.standard_normal(k).astype(np.float32)
    return Net([("flatten", Flatten()), ("fc", fc)],
               meta={"preprocessing": {"input_size": [h, w]},
                     "class_names": [f"c{i}" for i in range(k)]})


def relu_net():
    """flatten -> fc1 (4 -> 3) -> relu1 -> fc2 (3 -> 2), numbers chosen by hand.

    For x = [1, 0, 0, 0]: fc1 output h = [1, -1, 2] (second unit off), and the class-0
    row of fc2 is v = [1, 1, -1]: the three rules give the signal at fc1's output
    gradient v * 1[h > 0] = [1, 0, -1]; DeconvNet v * 1[v > 0] = [1, 1, 0];
    guided [1, 0, 0]."""
    fc1, fc2 = Linear(4, 3), Linear(3, 2)
    fc1.params["weight"] = np.array([[1, 2, 0, 1], [-1, 0, 1, 0], [2, 0, 0, -1]], np.float32)
    fc2.params["weight"] = np.array([[1, 1, -1], [0, 1, 1]], np.float32)
    return Net([("flatten", Flatten()), ("fc1", fc1), ("relu1", ReLU()), ("fc2", fc2)],
               meta={"preprocessing": {"input_size": [2, 2]}, "class_names": ["a", "b"]})


def tiny_vgg(seed=0):
    net = minicnn.vgg_from_config([4, "M", 8, "M"], num_classes=3, input_size=(16, 16),
                                  fc_sizes=(8,), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for _, layer in net:   # non-zero biases: the zero image is not a critical point
        if "bias" in layer.params:
            layer.params["bias"] = (0.1 * rng.standard_normal(layer.params["bias"].shape)
                                    ).astype(np.float32)
    return net


def canvas(size=16, box=(4, 5, 11, 12), colour=(230, 200, 40), background=(40, 110, 190),
           seed=0):
    """(size, size, 3) uint8 picture: noisy background, one coloured rectangle
    box = [x0, y0, x1, y1] (exclusive)."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float64)
    img[:] = background
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = colour
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.h5"
    minicnn.save(tiny_vgg(), path, {"class_names": CLASS_NAMES,
                                    "preprocessing": {"input_size": [16, 16],
                                                      "mean": [0.5, 0.5, 0.5],
                                                      "std": [0.25, 0.25, 0.25]}})
    return str(path)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    from PIL import Image
    folder = tmp_path_factory.mktemp("images")
    small = folder / "small.png"
    Image.fromarray(canvas()).save(small)
    big = folder / "big.png"           # larger than the 16x16 input: ten crops
    Image.fromarray(canvas(40, (10, 12, 28, 30))).save(big)
    return {"small": str(small), "big": str(big)}


def run_tool(name, *args, cwd=None):
    """Run tools/<name>.py in a subprocess; returns CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(TOOLS, name + ".py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
