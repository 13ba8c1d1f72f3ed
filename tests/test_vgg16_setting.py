"""The paper's setting: every tool on a VGG16-shaped model with ImageNet's 1000 classes
(narrow widths, seeded random weights: tests/imagenet_model.py) and real photos (the ones
scikit-image ships), as a user who converted a torchvision VGG16 runs them."""
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imagenet_model import imagenet_vgg16_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIG1 = ["washer", "computer keyboard", "kit fox", "goose", "ostrich", "limousine"]


def tool(name, *args, cwd=None, memory=None):
    def limit():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name + ".py"),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, preexec_fn=limit)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """(model path, {name: photo path}) in a folder of their own."""
    from skimage import data
    folder = tmp_path_factory.mktemp("vgg16")
    photos = {}
    for name, array in (("astronaut", data.astronaut()), ("chelsea", data.chelsea()),
                        ("coffee", data.coffee())):
        photos[name] = folder / f"{name}.jpg"
        Image.fromarray(array).save(photos[name], quality=90)
    return imagenet_vgg16_like(folder / "vgg16.h5"), photos


def test_saliency_of_photos_of_several_sizes(setting, tmp_path):
    model, photos = setting
    r = tool("saliency", "--weights", model, "--image", photos["astronaut"], photos["chelsea"],
             "--npy", tmp_path / "s.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "saliency.png" in r.stdout and r.stdout.count("class ") == 2
    with np.load(tmp_path / "s.npz") as arrays:
        astronaut, chelsea = arrays["astronaut.jpg"], arrays["chelsea.jpg"]
    # five crops of the ten-crop frame: shorter side 256, the whole photo covered
    assert astronaut.shape == (3, 256, 256) and chelsea.shape == (3, 256, 385)
    assert np.isfinite(chelsea).all() and np.abs(chelsea).max() > 0
    with Image.open(tmp_path / "saliency.png") as picture:
        assert picture.size[0] > 3 * 200


def test_localize_a_photo_gives_a_box_in_its_pixels(setting, tmp_path):
    model, photos = setting
    r = tool("localize", "--weights", model, "--image", photos["coffee"], "--json",
             tmp_path / "box.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "box.json").read_text())
    x0, y0, x1, y1 = rec["box"]
    assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400
    from minicnn.convert.common import imagenet_class_names
    assert rec["name"] == imagenet_class_names()[rec["class"]]


def test_deconv_and_info_on_the_model(setting, tmp_path):
    model, photos = setting
    r = tool("deconv", "--weights", model, "--image", photos["chelsea"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tool("info", model)
    assert r.returncode == 0, r.stderr
    assert "conv5_3" in r.stdout and "fc8" in r.stdout


def test_class_models_default_to_the_papers_figure_1_classes(setting, tmp_path):
    model, _ = setting
    r = tool("class_model", "--weights", model, "--steps", "2", "--npy", tmp_path / "c.npy",
             "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class models of 6 classes" in r.stdout
    assert np.load(tmp_path / "c.npy").shape == (6, 3, 224, 224)
    import minicnn
    from minicnn.viz.class_model import default_classes
    net = minicnn.load(model)
    assert [net.class_names[c] for c in default_classes(net)] == FIG1


def test_class_models_of_many_classes_run_in_bounded_memory(setting, tmp_path):
    """150 classes under a 2.75 GiB address-space limit: in the default memory-bounded
    batches they run; all in one batch (--batch 150) the same run is refused with one
    line (so the limit binds and the batching is what keeps it)."""
    model, _ = setting
    classes = [str(c) for c in range(150)]
    args = ("--weights", model, "--steps", "1", "--no-progress", "--out", tmp_path / "c.png",
            "--class", *classes)
    memory = int(2.75 * 2**30)
    r = tool("class_model", *args, memory=memory)
    assert r.returncode == 0, r.stderr
    r = tool("class_model", *args, "--batch", "150", memory=memory)
    assert r.returncode == 1
    assert r.stderr.strip() == ("class_model.py: error: out of memory (try fewer images or "
                                "classes)"), r.stderr


def test_evaluate_localize_on_photos_in_the_ilsvrc_layout(setting, tmp_path):
    model, photos = setting
    from minicnn.convert.common import imagenet_class_names
    names = imagenet_class_names()
    data = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    ann = tmp_path / "ILSVRC" / "Annotations" / "CLS-LOC" / "val"
    data.mkdir(parents=True)
    ann.mkdir(parents=True)
    synsets = tmp_path / "LOC_synset_mapping.txt"
    synsets.write_text("".join(f"n{k:08d} {n}\n" for k, n in enumerate(names)))
    for k, (name, path) in enumerate(sorted(photos.items())):
        w, h = Image.open(path).size
        (data / f"ILSVRC2012_val_{k:08d}.JPEG").write_bytes(path.read_bytes())
        (ann / f"ILSVRC2012_val_{k:08d}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height></size><object>"
            f"<name>n{281 + k:08d}</name><bndbox><xmin>{w // 4}</xmin><ymin>{h // 4}</ymin>"
            f"<xmax>{3 * w // 4}</xmax><ymax>{3 * h // 4}</ymax></bndbox></object>"
            "</annotation>")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), "localize",
                        "--weights", model, "--data", data, "--synsets", synsets,
                        "--methods", "gradient", "--boxes", "label", "--no-progress",
                        "--out", out], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in open(out / "records.jsonl")]
    assert len(records) == 3 and {r["label"] for r in records} == {281, 282, 283}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and summary["skipped"] == {"no annotation": 0, "unusable": 0}
