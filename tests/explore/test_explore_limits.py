"""The explorer's server under load and hostile requests: a bounded class-model queue
(429 busy), bounded concurrent decodes (429 busy, and an out-of-memory decode said as
such, not blamed on the file), and generated parameters and JSON bodies at every route
answered with a 2xx or a one-line 4xx/503, never a 500."""
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import http, make_server, multipart, png_of

SNEAKER = "sample:sample_07_sneaker.png"


@pytest.fixture(scope="module")
def server():
    srv = make_server()
    yield srv
    srv.stop()


def test_class_model_jobs_queue_is_bounded(tmp_path):
    from minicnn.explore.gallery import MAX_WAITING
    srv = make_server()
    try:
        answers = []
        for seed in range(8):      # long jobs: the first runs, MAX_WAITING wait, then busy
            answers.append(http(srv.url, "/api/classmodels", method="POST",
                                data=json.dumps({"steps": 5000, "seed": seed}).encode(),
                                headers={"Content-Type": "application/json"}))
        statuses = [a.status for a in answers]
        assert statuses[:1 + MAX_WAITING] == [200] * (1 + MAX_WAITING), statuses
        assert set(statuses[1 + MAX_WAITING:]) == {429}, statuses
        message = answers[-1].json()["error"]
        assert message.startswith("busy:") and f"{MAX_WAITING} class-model galleries" in message
        # the same gallery again is not a new job: it answers its status, not busy
        again = http(srv.url, "/api/classmodels", method="POST",
                     data=json.dumps({"steps": 5000, "seed": 0}).encode(),
                     headers={"Content-Type": "application/json"})
        assert again.status == 200
    finally:
        srv.stop()


def test_decodes_beyond_the_bound_are_told_busy(monkeypatch, shipped_net):
    import numpy as np
    from minicnn.explore import images
    monkeypatch.setattr(images, "DECODE_WAIT_S", 0.2)
    srv = make_server()
    try:
        slots = srv.explorer.images._decodes
        for _ in range(images.MAX_DECODES):     # every decode slot taken by "other uploads"
            assert slots.acquire(timeout=5)
        picture = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        body, headers = multipart("photo.png", png_of(picture))
        reply = http(srv.url, "/api/upload", body, headers, "POST")
        assert reply.status == 429 and reply.json()["error"].startswith("busy:")
        for _ in range(images.MAX_DECODES):
            slots.release()
        reply = http(srv.url, "/api/upload", body, headers, "POST")
        assert reply.status == 200, reply.body[:300]
    finally:
        srv.stop()


def test_a_decode_out_of_memory_is_said_as_such(monkeypatch):
    import numpy as np
    from minicnn.explore import images

    def no_memory(net, path):
        raise MemoryError("Unable to allocate 183. MiB for an array with shape "
                          "(8000, 8000, 3) and data type uint8")
    monkeypatch.setattr(images, "read_image", no_memory)
    srv = make_server()
    try:
        picture = np.zeros((30, 30, 3), np.uint8)
        body, headers = multipart("big photo.png", png_of(picture))
        reply = http(srv.url, "/api/upload", body, headers, "POST")
        message = reply.json()["error"]
        assert reply.status == 503 and "out of memory: decoding big photo.png" in message
        assert "corrupt" not in message and "183. MiB" in message
    finally:
        srv.stop()


def test_load_image_lets_a_memory_error_through(monkeypatch, tmp_path):
    """MemoryError while decoding is the machine's state: not 'corrupt or truncated'."""
    import numpy as np
    from PIL import Image
    import minicnn
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)

    def load(self):
        raise MemoryError("Unable to allocate")
    monkeypatch.setattr(Image.Image, "load", load)
    with pytest.raises(MemoryError):
        minicnn.load_image(path)


# ----------------------------------------------------------------------------- generated requests

GET_ROUTES = ["/api/model", "/api/image", "/api/canvas", "/api/classes", "/api/predict",
              "/api/saliency", "/api/localize", "/api/layer", "/api/unit", "/api/classmodels",
              "/png/input", "/png/saliency", "/png/localize", "/png/layer", "/png/unit",
              "/png/classmodels"]
NAMES = ["image", "seed", "q", "page", "per_page", "top", "class", "method", "layer", "unit",
         "view", "smoothgrad", "noise", "steps", "classes", "objective", "lam", "step",
         "jitter", "components", "smoothness", "fg_quantile", "bg_quantile", "download"]
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-2**70, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from([SNEAKER, "sample:../../etc/passwd", "upload:" + "0" * 64, "canvas:3",
                     "gradient", "deconvnet", "guided", "smoothgrad", "conv1_1", "fc7",
                     "1,2", "0", "-1", "10", "1e309", "nan", "", " ", "\x00", "%", "\u202e"]))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                    | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), inner,
                                      max_size=4),
                    max_leaves=8)


def _check(reply, what):
    assert reply.status < 500 or reply.status == 503, (what, reply.status, reply.body[:300])
    if reply.status >= 400:
        message = reply.json()["error"]
        assert "\n" not in message and "Traceback" not in message, (what, message)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(GET_ROUTES),
       params=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=5),
       real_image=st.booleans())
def test_generated_parameters_at_every_route_get_an_answer_not_a_500(server, route, params,
                                                                     real_image):
    from urllib.parse import urlencode
    if real_image:       # past the image check, into each route's own parameters
        params["image"] = SNEAKER
    # steps kept small: a valid generated gallery would otherwise compute for minutes
    if "steps" in params:
        params["steps"] = params["steps"][:1]
    path = route + ("?" + urlencode(params) if params else "")
    _check(http(server.url, path), path)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=JSON, raw=st.booleans())
def test_generated_json_bodies_get_an_answer_not_a_500(server, body, raw):
    if isinstance(body, dict) and "steps" in body:
        body["steps"] = 1
    data = json.dumps(body).encode() if not raw else json.dumps(body).encode()[:-1]
    for route in ("/api/classmodels", "/api/upload"):
        _check(http(server.url, route, data=data, method="POST",
                    headers={"Content-Type": "application/json"}), (route, data))


def test_costly_maps_are_computed_one_at_a_time(monkeypatch):
    """Occlusion and Integrated Gradients hold a replica for many passes: while one is
    computed another waits, then is told the server is busy (429); SmoothGrad's settings,
    which they do not read, do not make new cache entries."""
    from minicnn.explore import core
    monkeypatch.setattr(core, "COSTLY_WAIT_S", 0.2)
    srv = make_server()
    try:
        assert srv.explorer._costly.acquire(timeout=5)     # another costly map running
        busy = http(srv.url, f"/api/saliency?image={SNEAKER}&method=occlusion")
        assert busy.status == 429 and busy.json()["error"].startswith("busy:")
        srv.explorer._costly.release()
        first = http(srv.url, f"/api/saliency?image={SNEAKER}&method=occlusion")
        assert first.status == 200, first.body[:300]
        again = http(srv.url, f"/api/saliency?image={SNEAKER}&method=occlusion&smoothgrad=5&seed=3")
        assert again.json()["methods"]["occlusion"] == first.json()["methods"]["occlusion"]
    finally:
        srv.stop()
