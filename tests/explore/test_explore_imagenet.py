"""The explorer with a model shaped like a converted torchvision VGG16: 1000 ImageNet
classes, 224x224 input, torchvision's preprocessing, no samples (tests/imagenet_model.py;
narrow layers so that it runs in CI time), on a real photo (scikit-image's Chelsea).

Prediction, the three maps and the box are those of the Python API; the class search
finds names; the class-model gallery computes a page of classes, never all 1000, and
its PNG is what the command it shows writes; running out of memory is one line."""
import subprocess
import sys
import time
from urllib.parse import quote

import numpy as np
import pytest

from minicnn.convert.common import imagenet_class_names
from minicnn.viz import render
from minicnn.viz.inputs import load_views
from minicnn.viz.localize import localize_map
from minicnn.viz.saliency import saliency_of_views

from conftest import REPO, http, multipart


@pytest.fixture(scope="module")
def uploaded(imagenet_server, photo):
    """The photo uploaded to the module's server: the answer of /api/upload."""
    body, headers = multipart("chelsea.png", photo.read_bytes())
    reply = http(imagenet_server.url, "/api/upload", body, headers, "POST")
    assert reply.status == 200, reply.body[:300]
    return reply.json()


def test_the_model_file_looks_like_a_converted_vgg16(imagenet_net):
    net = imagenet_net
    assert net.num_classes == 1000 and net.class_names == imagenet_class_names()
    p = net.preprocessing
    assert (p.input_size, p.resize, p.channel_order) == ((224, 224), 256, "RGB")
    assert p.mean == pytest.approx((0.485, 0.456, 0.406)) and p.std == pytest.approx((0.229, 0.224, 0.225))
    kinds = [layer.kind for _, layer in net]
    assert kinds.count("conv2d") == 13 and kinds.count("maxpool2d") == 5
    assert kinds.count("linear") == 3


def test_model_facts_list_no_samples_and_a_gallery_page(imagenet_server):
    info = http(imagenet_server.url, "/api/model").json()
    assert info["samples"] == [] and info["num_classes"] == 1000
    assert info["classes"][281] == "tabby"
    g = info["gallery"]
    assert g["page_size"] == 10 and g["pages"] == 100 and g["max_classes"] == 20
    # the paper's Fig. 1 classes, as tools/class_model.py draws them by default
    assert [info["classes"][c] for c in g["default_classes"]] == [
        "washer", "computer keyboard", "kit fox", "goose", "ostrich", "limousine"]


def test_photo_prediction_maps_and_box_are_the_api_results(imagenet_server, imagenet_net,
                                                           uploaded, photo):
    url, net = imagenet_server.url, imagenet_net
    assert uploaded["size"] == [451, 300] and uploaded["resized"]
    view = load_views(net, [str(photo)], 1)[0][0]
    assert np.array_equal(http(url, uploaded["input_url"]).pixels(), view.rgb)
    image = uploaded["image"]

    logits = net.forward(view.x[None])[0]
    top = http(url, f"/api/predict?image={image}&top=10").json()["top"]
    assert [t["class"] for t in top] == list(np.argsort(-logits, kind="stable")[:10])
    assert top[0]["name"] == net.class_names[top[0]["class"]]
    assert top[0]["score"] == pytest.approx(float(logits.max()), rel=1e-5)

    cls = int(top[2]["class"])
    answer = http(url, f"/api/saliency?image={image}&class={cls}").json()
    assert answer["class"] == cls and answer["name"] == net.class_names[cls]
    for method, m in answer["methods"].items():
        ref = saliency_of_views(net, [(view, 1)], [cls], method)[0]
        assert m["score"] == pytest.approx(float(ref.scores[0]), rel=1e-5)
        assert np.array_equal(http(url, m["map_url"]).pixels(), render.heatmap(ref.map[0]))
        assert m["command"].endswith(f"--class {cls} --method {method} --crops 1")

    box = http(url, f"/api/localize?image={image}&class={cls}&method=guided").json()
    ref = saliency_of_views(net, [(view, 1)], [cls], "guided")[0]
    loc = localize_map(view.rgb, ref.map[0])
    assert box["box"] == loc.box and box["file_box"] == view.box_to_file(loc.box)
    assert box["input_size"] == [224, 224] and box["truth_box"] is None
    assert box["input_url"] == uploaded["input_url"]
    # the PNG offered for download: the box in red, 3 pixels wide on 224 pixels
    boxed = http(url, box["urls"]["boxed"]).pixels()
    x0, y0, x1, y1 = loc.box
    red = np.all(boxed == (255, 40, 40), axis=2)
    assert boxed.shape == (224, 224, 3)
    assert red[(y0 + y1) // 2, x0:x0 + 3].all() and not red[(y0 + y1) // 2, x0 + 3:x1 - 3].all()


def test_class_search_and_class_names(imagenet_server, uploaded):
    url = imagenet_server.url
    cats = http(url, "/api/classes?q=CAT").json()
    names = [c["name"] for c in cats["classes"]]
    assert cats["total"] == 8 and names[:4] == ["tiger cat", "Persian cat", "Siamese cat",
                                                 "Egyptian cat"]
    assert names[-2:] == ["oystercatcher", "polecat"]       # the name contains it: last
    page = http(url, "/api/classes?page=3").json()
    assert [c["class"] for c in page["classes"]] == list(range(20, 30)) and page["pages"] == 100
    assert http(url, "/api/classes?q=281").json()["classes"][0] == {"class": 281, "name": "tabby"}
    assert http(url, "/api/classes?q=no+such+thing").json()["total"] == 0
    assert http(url, "/api/classes?per_page=1000").status == 400

    image = uploaded["image"]
    for spec, cls in (("tabby", 281), ("TABBY", 281), ("281: tabby", 281), ("281", 281),
                      ("kit fox", 278)):
        assert http(url, f"/api/saliency?image={image}&class={quote(spec)}").json()["class"] == cls
    for spec, words in (("crane", "names 2 classes: 134 (crane), 517 (crane)"),
                        ("tabbby", "close matches: tabby"), ("1000", "out of range")):
        reply = http(url, f"/api/saliency?image={image}&class={quote(spec)}")
        assert reply.status == 400 and words in reply.json()["error"], reply.body


def test_gallery_computes_a_page_of_classes_as_the_tool_does(imagenet_server, imagenet_weights,
                                                             monkeypatch, tmp_path):
    from minicnn.explore import gallery
    asked = []
    real = gallery.class_model

    def spy(net, classes, *args, **kwargs):
        asked.append(list(classes))
        return real(net, classes, *args, **kwargs)

    monkeypatch.setattr(gallery, "class_model", spy)
    url = imagenet_server.url
    q = "steps=2&seed=1"
    default = http(url, "/api/classmodels?" + q).json()
    assert len(default["classes"]) == 6 and default["status"]["state"] == "not started"
    too_many = http(url, "/api/classmodels?" + q, b'{"classes": %s}' % str(list(range(1000))).encode(),
                    {"Content-Type": "application/json"}, "POST")
    assert too_many.status == 400 and "at most 20 class models" in too_many.json()["error"]

    page = ",".join(str(c) for c in range(10, 20))
    started = http(url, f"/api/classmodels?{q}&classes={page}", b"", method="POST").json()
    assert started["command"] == (f"python3 tools/class_model.py --weights {imagenet_weights} "
                                  "--class 10 11 12 13 14 15 16 17 18 19 --steps 2 --seed 1")
    deadline = time.time() + 120
    while True:
        status = http(url, f"/api/classmodels?{q}&classes={page}").json()
        if status["status"]["state"] in ("done", "failed") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert status["status"]["state"] == "done", status["status"]
    assert status["status"]["done"] == status["status"]["total"]
    assert [t["class"] for t in status["tiles"]] == list(range(10, 20))
    assert [t["name"] for t in status["tiles"]][:2] == ["brambling", "goldfinch"]
    assert asked == [list(range(10, 20))]               # the page, never all 1000 classes
    # another page is another gallery; the first stays cached
    other = http(url, f"/api/classmodels?{q}&classes=20,21").json()
    assert other["status"]["state"] == "not started"
    assert http(url, f"/png/class_model?{q}&classes={page}&class=15").status == 200
    assert http(url, f"/png/class_model?{q}&classes={page}&class=25").status == 404

    out = tmp_path / "gallery.png"
    words = status["command"].split()
    run = subprocess.run([sys.executable, *words[1:], "--out", str(out), "--no-progress"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == http(url, status["gallery_url"]).body


def _unable_to_allocate(*args, **kwargs):
    """What NumPy raises when an array does not fit (a 64 TiB one here)."""
    return np.empty((2**44,), np.float32)


def test_running_out_of_memory_is_one_line(imagenet_server, uploaded, monkeypatch):
    from minicnn.explore import gallery
    with pytest.raises(MemoryError, match="Unable to allocate"):
        _unable_to_allocate()
    monkeypatch.setattr(gallery, "class_model", _unable_to_allocate)
    url = imagenet_server.url
    q = "steps=1&seed=9&classes=1,2,3"
    http(url, "/api/classmodels?" + q, b"", method="POST")
    deadline = time.time() + 60
    while (status := http(url, "/api/classmodels?" + q).json()["status"])["state"] not in (
            "done", "failed") and time.time() < deadline:
        time.sleep(0.1)
    assert status["state"] == "failed"
    error = status["error"]
    assert error == ("out of memory: 3 class models of 3x224x224 needs more memory than is free "
                     "(an array of 64.0 TiB could not be allocated); pick fewer classes")
    # a request that runs out of memory: HTTP 503 and one line
    explorer = imagenet_server.explorer
    monkeypatch.setattr(explorer, "saliencies", _unable_to_allocate)
    reply = http(url, f"/api/saliency?image={uploaded['image']}&class=7")
    assert reply.status == 503
    message = reply.json()["error"]
    assert message.startswith("out of memory: this request needs more memory than is free "
                              "(an array of 64.0 TiB could not be allocated)")
    assert "\n" not in message and "Unable" not in message
