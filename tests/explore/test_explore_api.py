"""The explorer's HTTP side against the Python API: every picture the page shows is the
one minicnn.viz computes for the same request, a request gets the same bytes alone or
among parallel ones, bad input gets a 4xx with a message, and tools/explore.py behaves
like the other tools (one error line, Ctrl-C stops it)."""
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from minicnn import assets
from minicnn.viz import render
from minicnn.viz.class_model import class_model
from minicnn.viz.deconv import unit_reconstruction
from minicnn.viz.inputs import load_views
from minicnn.viz.localize import localize_map
from minicnn.viz.saliency import saliency_of_views

from conftest import FASHION_DIR, REPO, http, make_server, multipart, png_of

SNEAKER = "sample:sample_07_sneaker.png"
BAG = "sample:sample_08_bag.png"


def view_of(net, spec):
    path = os.path.join(assets.SAMPLES_DIR, spec.split(":", 1)[1])
    return load_views(net, [path], 1)[0][0]


# ----------------------------------------------------------------------------- results

def test_model_and_prediction_match_the_api(server, shipped_net):
    info = http(server.url, "/api/model").json()
    assert info["classes"][7] == "Sneaker" and len(info["samples"]) == 20
    assert [r["name"] for r in info["layers"]] == shipped_net.names
    relu3_2 = next(r for r in info["layers"] if r["name"] == "relu3_2")
    assert relu3_2["shape"] == [128, 16, 16] and relu3_2["rf_size"] == 26
    top = http(server.url, f"/api/predict?image={SNEAKER}").json()["top"]
    logits = shipped_net.forward(view_of(shipped_net, SNEAKER).x[None])[0]
    assert [t["class"] for t in top] == list(np.argsort(-logits)[:5])
    assert top[0]["score"] == pytest.approx(float(logits.max()), rel=1e-6)
    assert sum(t["prob"] for t in top) <= 1.0 + 1e-9


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided"])
def test_saliency_pictures_are_the_api_maps(server, shipped_net, method):
    view = view_of(shipped_net, BAG)
    sal = saliency_of_views(shipped_net, [(view, 1)], [3], method)[0]
    answer = http(server.url, f"/api/saliency?image={BAG}&class=Dress").json()
    assert answer["class"] == 3
    m = answer["methods"][method]
    assert m["score"] == pytest.approx(float(sal.scores[0]), rel=1e-6)
    assert np.array_equal(http(server.url, m["map_url"]).pixels(), render.heatmap(sal.map[0]))
    assert np.array_equal(http(server.url, m["overlay_url"]).pixels(),
                          render.overlay(view.rgb, sal.map[0]))
    assert f"--class 3 --method {method}" in m["command"]


def test_smoothgrad_and_localisation_match_the_api(server, shipped_net):
    view = view_of(shipped_net, SNEAKER)
    sal = saliency_of_views(shipped_net, [(view, 1)], [7], "guided", 4, 0.2, 3)[0]
    q = f"image={SNEAKER}&class=7&smoothgrad=4&noise=0.2&seed=3"
    answer = http(server.url, "/api/saliency?" + q).json()
    assert np.array_equal(http(server.url, answer["methods"]["guided"]["map_url"]).pixels(),
                          render.heatmap(sal.map[0]))
    loc = localize_map(view.rgb, sal.map[0], 0.9, 0.3, 3, 50.0, 3)
    box = http(server.url, f"/api/localize?{q}&method=guided&fg_quantile=0.9&components=3").json()
    assert box["box"] == loc.box and box["file_box"] == view.box_to_file(loc.box)
    seeds = http(server.url, box["urls"]["seeds"]).pixels()
    assert np.array_equal(seeds[loc.fg_seeds], np.tile([255, 40, 40], (loc.fg_seeds.sum(), 1)))
    mask = http(server.url, box["urls"]["mask"]).pixels()
    assert np.array_equal(mask.min(axis=2) == 255, loc.mask)
    assert "--smoothgrad 4 --noise 0.2 --seed 3 --fg-quantile 0.9 --components 3" in box["command"]


def test_layer_grid_and_unit_match_the_api(server, shipped_net):
    view = view_of(shipped_net, SNEAKER)
    layer = http(server.url, f"/api/layer?image={SNEAKER}&layer=relu2_1").json()
    g = layer["grid"]
    assert layer["shape"] == [64, 32, 32] and g["channels"] == 64 and g["columns"] == 8
    act = shipped_net.forward(view.x[None], until="relu2_1")[0]
    grid = http(server.url, layer["grid_url"]).pixels()
    k = 13
    r, c = divmod(k, g["columns"])
    tile = grid[r * 33:r * 33 + 32, c * 33:c * 33 + 32]
    assert np.array_equal(tile, render.heatmap(act[k], vmax=float(act.max())))

    unit = http(server.url, f"/api/unit?image={SNEAKER}&layer=relu2_1&unit={k}").json()
    rec = unit_reconstruction(shipped_net, view.x[None], "relu2_1", k)
    assert unit["position"] == list(rec.positions[0])
    assert unit["value"] == pytest.approx(float(rec.values[0]))
    for rule, urls in unit["reconstructions"].items():
        signal = rec.signals[rule][0]
        assert np.array_equal(http(server.url, urls["signed_url"]).pixels(),
                              render.signed_rgb(signal, "RGB"))
        assert np.array_equal(http(server.url, urls["abs_url"]).pixels(),
                              render.heatmap(np.abs(signal).max(axis=0)))
    i, j = rec.positions[0]       # relu2_1: window 8 (pad 1), jump 2: starts at 2*i - 3
    assert unit["receptive_field"] == [max(2 * j - 3, 0), max(2 * i - 3, 0), 2 * j + 5, 2 * i + 5]
    assert unit["command"].endswith(f"--layer relu2_1 --channel {k}")
    # the top crops are the samples where the channel's maximum is largest
    crops = unit["top_crops"]
    values = [c["value"] for c in crops]
    assert values == sorted(values, reverse=True) and len(crops) == 6
    best = crops[0]
    bview = view_of(shipped_net, best["image"])
    best_act = shipped_net.forward(bview.x[None], until="relu2_1")[0, k]
    assert best["value"] == pytest.approx(float(best_act.max()))
    x0, y0, x1, y1 = best["box"]
    assert np.array_equal(http(server.url, best["url"]).pixels(), bview.rgb[y0:y1, x0:x1])


def test_fully_connected_units_and_the_tool_default_layer(server):
    info = http(server.url, "/api/model").json()
    assert info["default_layer"] == "relu4_2"
    unit = http(server.url, f"/api/unit?image={SNEAKER}&layer=fc7&unit=7").json()
    assert unit["position"] == [] and unit["receptive_field"] == [0, 0, 64, 64]


def test_the_commands_shown_write_the_pictures_shown(server, tmp_path):
    """The figure PNG the page offers is byte-for-byte the picture the shown command
    writes (saliency with SmoothGrad, localisation, unit reconstruction)."""
    sal = http(server.url, f"/api/saliency?image={BAG}&class=8&smoothgrad=2").json()
    loc = http(server.url, f"/api/localize?image={BAG}&class=8&method=deconvnet").json()
    unit = http(server.url, f"/api/unit?image={BAG}&layer=conv3_1&unit=5").json()
    cases = [(sal["methods"]["guided"]["command"], sal["methods"]["guided"]["figure_url"]),
             (loc["command"], loc["urls"]["localize_figure"]),
             (unit["command"], unit["figure_url"])]
    for i, (command, url) in enumerate(cases):
        out = tmp_path / f"out{i}.png"
        words = command.split()
        assert words[:2] == ["python3", words[1]] and words[1].startswith("tools/")
        run = subprocess.run([sys.executable, *words[1:], "--out", str(out)], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert out.read_bytes() == http(server.url, url).body, command


# ----------------------------------------------------------------------------- uploads, canvases

def test_upload_of_any_size_is_shown_as_preprocessed(server, shipped_net, tmp_path):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    body, headers = multipart("wide photo.png", png_of(picture))
    info = http(server.url, "/api/upload", body, headers, "POST").json()
    assert info["size"] == [130, 90] and info["resized"] and info["cli_path"] == "wide photo.png"
    path = tmp_path / "same.png"
    path.write_bytes(png_of(picture))
    view = load_views(shipped_net, [str(path)], 1)[0][0]
    assert np.array_equal(http(server.url, info["input_url"]).pixels(), view.rgb)
    sal = http(server.url, f"/api/saliency?image={info['image']}&class=1").json()
    assert sal["methods"]["gradient"]["command"].endswith("--crops 1")
    ref = saliency_of_views(shipped_net, [(view, 1)], [1], "gradient")[0]
    assert np.array_equal(http(server.url, sal["methods"]["gradient"]["map_url"]).pixels(),
                          render.heatmap(ref.map[0]))


def _png_declaring(width, height):
    """A valid-looking PNG whose header declares width x height (a decompression bomb's
    header, without the bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, content, status, words", [
    ("notes.txt", b"just some text, not a picture", 400, "not an image"),
    ("cut.png", png_of(np.random.default_rng(0).integers(0, 256, (40, 40, 3)))[:2000], 400,
     "truncated"),
    ("bomb.png", _png_declaring(30000, 30000), 400, "too large"),
    ("empty.png", b"", 400, "empty"),
    ("huge.png", b"\0" * (3 * 1024 * 1024), 413, "larger than the limit"),
])
def test_bad_uploads_get_a_message_and_a_4xx(server, name, content, status, words):
    body, headers = multipart(name, content)
    reply = http(server.url, "/api/upload", body, headers, "POST")
    assert reply.status == status
    message = reply.json()["error"]
    assert words in message and "Traceback" not in message
    assert "/tmp" not in message and "minicnn-explore" not in message   # no server paths


@pytest.mark.parametrize("path, status, words", [
    ("/api/predict?image=sample:../../weights/fashion_vgg.h5", 404, "unknown sample"),
    ("/api/predict?image=/etc/passwd", 400, "expected sample:NAME"),
    ("/api/predict?image=upload:deadbeef", 404, "unknown upload"),
    (f"/api/saliency?image={SNEAKER}&class=Snekaer", 400, "close matches: Sneaker"),
    (f"/api/saliency?image={SNEAKER}&class=10", 400, "out of range"),
    (f"/api/saliency?image={SNEAKER}&smoothgrad=100000", 400, "smoothgrad"),
    (f"/api/saliency?image={SNEAKER}&noise=nan", 400, "noise"),
    (f"/api/localize?image={SNEAKER}&method=backprop", 400, "method"),
    (f"/api/localize?image={SNEAKER}&fg_quantile=0.2&bg_quantile=0.5", 400, "must be below"),
    (f"/api/layer?image={SNEAKER}&layer=conv9", 400, "unknown layer"),
    (f"/api/unit?image={SNEAKER}&layer=conv1_1&unit=32", 400, "[0, 31]"),
    (f"/api/unit?image={SNEAKER}&layer=conv1_1&unit=-1", 400, "unit"),
    (f"/api/unit?image={SNEAKER}&layer=fc7&unit=x", 400, "integer"),
    ("/api/classmodels?steps=0", 400, "steps"),
    ("/api/classmodels?objective=probability", 400, "objective"),
    ("/png/secret?image=" + SNEAKER, 404, "unknown picture"),
    ("/static/../core.py", 404, "Not Found"),
    ("/api/nothing", 404, "Not Found"),
])
def test_bad_requests_get_a_message_and_a_4xx(server, path, status, words):
    reply = http(server.url, path)
    assert reply.status == status, reply.body[:300]
    message = reply.json()["error"]
    assert words in message and "Traceback" not in message


@pytest.mark.parametrize("body", [b"[1, 2]", b'"steps"', b"3", b"null", b"{bad json",
                                  b'{"steps": [1]}'])
def test_class_model_posts_other_than_a_json_object_get_a_400(server, body):
    """A JSON body that is not an object of settings is refused in one line; it never
    starts a default gallery (it did) nor answers 500."""
    before = http(server.url, "/api/classmodels").json()
    reply = http(server.url, "/api/classmodels", data=body, method="POST",
                 headers={"Content-Type": "application/json"})
    assert reply.status == 400, reply.body[:300]
    message = reply.json()["error"]
    assert "expected" in message and "Traceback" not in message and "\n" not in message
    after = http(server.url, "/api/classmodels").json()
    assert after["status"]["state"] == before["status"]["state"]     # no job started


def test_canvas_without_fashion_mnist_says_so(tmp_path):
    srv = make_server(fashion_dir=str(tmp_path))
    try:
        info = http(srv.url, "/api/model").json()["canvas"]
        assert not info["available"] and "Fashion-MNIST" in info["reason"]
        reply = http(srv.url, "/api/canvas?seed=5")
        assert reply.status == 503 and "dataset-fashion-mnist" in reply.json()["error"]
    finally:
        srv.stop()


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fresh_canvas_is_the_rendered_canvas(server):
    from minicnn.datasets.cluttered import ClutteredFashion
    from minicnn.datasets.fashion_mnist import load_fashion_mnist
    from minicnn.explore.images import CANVAS_SEED_BASE
    images, labels = load_fashion_mnist("test")
    canvas = ClutteredFashion(images, labels).render(123 % len(images), (CANVAS_SEED_BASE, 123))
    info = http(server.url, "/api/canvas?seed=123").json()
    assert info["image"] == "canvas:123" and info["truth"]["class"] == canvas["label"]
    assert np.array_equal(http(server.url, info["input_url"]).pixels(), canvas["image"])


# ----------------------------------------------------------------------------- concurrency

def _requests():
    """A mix of requests over images, classes, methods, layers and units."""
    paths = []
    for image in (SNEAKER, BAG, "sample:sample_01_trouser.png"):
        paths.append(f"/api/predict?image={image}")
        for cls in (7, 8):
            paths += [f"/png/saliency?image={image}&class={cls}&method={m}"
                      for m in ("gradient", "deconvnet", "guided")]
            paths.append(f"/png/overlay?image={image}&class={cls}&method=guided&smoothgrad=3")
        for layer, unit in (("relu1_1", 3), ("relu3_2", 40), ("fc6", 9)):
            paths.append(f"/png/activations?image={image}&layer={layer}")
            paths += [f"/png/unit?image={image}&layer={layer}&unit={unit}&view={v}"
                      for v in ("field", "gradient_signed", "deconvnet_abs", "guided_signed")]
    return paths


def test_parallel_requests_get_what_serial_requests_get():
    """Two fresh servers (empty caches): one answers the requests one by one, the other
    answers them shuffled from 6 threads at once; every answer is byte-identical. The
    first serves without the warm-up pass, the second after it: the same bytes."""
    paths = _requests()
    serial_server, parallel_server = make_server(warm=False), make_server(replicas=3)
    try:
        serial = {p: http(serial_server.url, p) for p in paths}
        shuffled = random.Random(1).sample(paths, len(paths))
        with ThreadPoolExecutor(6) as pool:
            parallel = dict(zip(shuffled, pool.map(lambda p: http(parallel_server.url, p), shuffled)))
    finally:
        serial_server.stop()
        parallel_server.stop()
    for p in paths:
        assert serial[p].status == 200, (p, serial[p].body[:200])
        assert parallel[p].body == serial[p].body, p


# ----------------------------------------------------------------------------- class models

def test_class_model_gallery_runs_in_the_background_and_is_cached(server, shipped_net):
    q = "steps=3&jitter=1&blur_every=2&seed=4&lam=0.02"
    first = http(server.url, "/api/classmodels?" + q).json()
    assert first["status"]["state"] == "not started"
    assert first["command"] == ("python3 tools/class_model.py --steps 3 --lam 0.02 --jitter 1 "
                                "--blur-every 2 --seed 4")
    started = http(server.url, "/api/classmodels?" + q, b"", method="POST").json()
    assert started["status"]["state"] in ("queued", "running", "done")
    deadline = time.time() + 120
    while True:
        status = http(server.url, "/api/classmodels?" + q).json()
        assert status["status"]["done"] <= status["status"]["total"] == 4
        if status["status"]["state"] == "done" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert status["status"]["state"] == "done"
    ref = class_model(shipped_net, list(range(10)), steps=3, step=0.1, lam=0.02, jitter=1,
                      blur_every=2, blur_sigma=1.0, seed=4, init_noise=0.01)
    p = shipped_net.preprocessing
    for tile in status["tiles"]:
        c = tile["class"]
        assert tile["score"] == pytest.approx(float(ref.scores[c]), rel=1e-5)
        assert np.array_equal(http(server.url, tile["url"]).pixels(),
                              render.rescaled_rgb(p.input_to_array(ref.x[c])))
    again = http(server.url, "/api/classmodels?" + q, b"", method="POST").json()
    assert again["status"]["state"] == "done"            # cached: not recomputed
    assert http(server.url, status["gallery_url"]).status == 200


# ----------------------------------------------------------------------------- the tool

def _tool(*args, **kwargs):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "explore.py"), *args],
                          capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("args, code, words", [
    (["--port", "http"], 2, "--port: expected a port number"),
    (["--port", "70000"], 2, "--port"),
    (["--device", "tpu"], 2, "invalid choice"),
    (["--weights", "/nonexistent/model.h5"], 1, "no such file"),
])
def test_tool_refuses_bad_options_in_one_line(args, code, words):
    run = _tool(*args)
    assert run.returncode == code
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in run.stderr


def test_a_port_in_use_is_said_in_one_line():
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = _tool("--port", str(port))
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert f"cannot listen on 127.0.0.1:{port}: port {port} is in use" in lines[0]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_tool_serves_and_stops_on_ctrl_c(stop):
    from children import default_dispositions
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "explore.py"),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_dispositions)
    try:
        line = proc.stdout.readline()
        assert line.startswith("minicnn explorer: http://127.0.0.1:"), line
        url = line.split()[2]
        assert http(url, "/").status == 200
        assert b"minicnn explorer" in http(url, "/").body
        assert http(url, "/static/app.js").status == 200
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_canvas_files_are_bounded_and_rendered_again(monkeypatch, shipped_net):
    from minicnn.explore import images
    from minicnn.explore.core import Explorer
    monkeypatch.setattr(images, "MAX_CANVASES", 2)
    explorer = Explorer(shipped_net.replica())
    try:
        first = explorer.input_rgb(explorer.image("canvas:1")).copy()
        for seed in (2, 3):
            explorer.image(f"canvas:{seed}")
        files = sorted(f for f in os.listdir(explorer.images.folder) if f.startswith("canvas_"))
        assert files == ["canvas_2.png", "canvas_3.png"]
        explorer.images.views.clear()
        assert np.array_equal(explorer.input_rgb(explorer.image("canvas:1")), first)
    finally:
        explorer.close()
    assert not os.path.exists(explorer.images.folder)


def test_another_model_gets_its_own_command_lines(shipped_net):
    from minicnn.explore.core import Explorer
    from minicnn.explore.settings import ClassModelSettings
    explorer = Explorer(shipped_net.replica(), weights="/models/my vgg.h5", samples=[])
    try:
        info = explorer.model_info()
        assert info["samples"] == [] and not info["canvas"]["available"]
        assert "shipped model" in info["canvas"]["reason"]
        assert info["info_command"] == "python3 tools/info.py '/models/my vgg.h5'"
        assert explorer.class_model_command(ClassModelSettings(steps=5)) == \
            "python3 tools/class_model.py --weights '/models/my vgg.h5' --steps 5"
    finally:
        explorer.close()
