"""Fixtures of the explorer tests: the shipped model, servers on free ports of 127.0.0.1
that stop by themselves, plain HTTP through urllib (what a second tab would send)."""
import io
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("flask", reason="the explorer needs Flask (pip install -e '.[explore]')")

import minicnn  # noqa: E402
from minicnn import assets  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def shipped_net():
    """The shipped model, for computing reference results with the Python API (never
    the server's own net objects)."""
    return minicnn.load(assets.default_model())


def make_server(**explorer_kwargs):
    from minicnn.explore.core import Explorer
    from minicnn.explore.server import ExplorerServer
    max_upload = explorer_kwargs.pop("max_upload", 2 * 1024 * 1024)
    explorer = Explorer(minicnn.load(assets.default_model()), **explorer_kwargs)
    return ExplorerServer(explorer, "127.0.0.1", 0, max_upload=max_upload).start()


@pytest.fixture(scope="module")
def server():
    """An explorer of the shipped model serving from a thread on a free port."""
    srv = make_server()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server():
    """A server with empty caches, for one test."""
    srv = make_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def imagenet_weights(tmp_path_factory):
    """A VGG16-shaped model file with ImageNet's 1000 classes and torchvision's
    preprocessing (narrow layers: tests/imagenet_model.py), no samples."""
    from imagenet_model import imagenet_vgg16_like
    return imagenet_vgg16_like(tmp_path_factory.mktemp("imagenet") / "vgg16_like.h5")


@pytest.fixture(scope="session")
def imagenet_net(imagenet_weights):
    """That model, for computing reference results (never the server's own net)."""
    return minicnn.load(imagenet_weights)


def make_imagenet_server(weights, **explorer_kwargs):
    from minicnn.explore.core import Explorer
    from minicnn.explore.server import ExplorerServer
    explorer = Explorer(minicnn.load(weights), weights=weights, **explorer_kwargs)
    return ExplorerServer(explorer, "127.0.0.1", 0, max_upload=4 * 1024 * 1024).start()


@pytest.fixture(scope="module")
def imagenet_server(imagenet_weights):
    """An explorer of the 1000-class model serving from a thread on a free port."""
    srv = make_imagenet_server(imagenet_weights)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def photo(tmp_path_factory):
    """A real photo: scikit-image's Chelsea the cat (451x300), as a PNG file."""
    from skimage import data
    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    path.write_bytes(png_of(data.chelsea()))
    return path


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode())

    def pixels(self):
        from PIL import Image
        assert self.headers.get("Content-Type", "").startswith("image/png"), self.body[:200]
        return np.asarray(Image.open(io.BytesIO(self.body)).convert("RGB"))


def http(base, path, data=None, headers=None, method=None, timeout=120):
    """One request to the server at ``base`` -> Reply (HTTP errors are replies too)."""
    req = urllib.request.Request(base.rstrip("/") + path, data=data, headers=headers or {},
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, dict(e.headers), e.read())


def multipart(filename, content, field="file"):
    """(body, headers) of a multipart/form-data upload of one file."""
    boundary = "minicnnexplorertestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
        + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png_of(array):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
