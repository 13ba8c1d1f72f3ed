"""The explorer's input images, named by strings, never by paths: ``sample:FILE`` (a file
of the model's samples index), ``upload:SHA256`` (bytes the page uploaded, kept in a
private temporary folder under a name the server chose) and ``canvas:SEED`` (a cluttered
Fashion-MNIST canvas rendered for the shipped model); and the View the network sees of
each (decoded once, refusing what is not an image or too large to decode)."""
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from .. import assets
from ..preprocess import ImageError
from ..viz.inputs import network_view, read_image
from .cache import LRU
from .errors import RequestError, out_of_memory_line
from .settings import MAX_SEED, parse_int

MAX_UPLOADS = 64            # uploads kept (oldest files deleted first)
MAX_CANVASES = 256          # canvas files kept (re-rendered when asked for again)
MAX_DECODES = 2             # images decoded at once (each up to 64 Mpixel)
DECODE_WAIT_S = 30          # how long a decode waits for its turn before "busy" (429)
CANVAS_SEED_BASE = 7077     # canvas SEED is rendered from seed (CANVAS_SEED_BASE, SEED)


@dataclass
class ImageEntry:
    """One input image: ``spec`` (its name in requests), ``path`` (server side only),
    ``label`` (for the page), ``cli_path`` (what --image says in the command line),
    ``truth`` (a sample's class index and box, or None)."""
    spec: str
    path: str
    label: str
    cli_path: str
    truth: dict = None



def load_samples(samples, shipped):
    """The samples an explorer offers: file name -> sample record (as
    :func:`minicnn.assets.samples` gives them); ``samples`` None: the shipped samples when
    the model is the shipped one, else none."""
    if samples is None:
        try:
            samples = assets.samples() if shipped else []
        except FileNotFoundError:
            samples = []
    return OrderedDict((os.path.basename(s["file"]), s) for s in samples)


class ImageStore:
    """The images requests name and the network's view of each.

    net: the model (its input size and preprocessing); samples: from
    :func:`load_samples`; shipped: whether ``net`` is the shipped model (fresh canvases
    need it); class_names: index -> name (a canvas's truth); fashion_dir: where
    Fashion-MNIST is (None: its default folder)."""

    def __init__(self, net, samples, shipped, class_names, fashion_dir=None):
        self.net, self.samples, self.shipped = net, samples, shipped
        self._class_names = class_names
        # removed by close(), or at exit / garbage collection when close() is never called
        self._tmpdir = tempfile.TemporaryDirectory(prefix="minicnn-explore-")
        self.folder = self._tmpdir.name
        self._uploads = OrderedDict()          # sha -> ImageEntry
        self._uploads_lock = threading.Lock()
        self.views = LRU(128)
        self._decodes = threading.BoundedSemaphore(MAX_DECODES)
        self._fashion_dir = fashion_dir
        self._canvas_gen, self._canvas_error = None, None
        self._canvas_lock = threading.Lock()
        self._canvas_truth = OrderedDict()     # seed -> class, box, name (files on disk)

    def close(self):
        """Delete the uploads and canvases."""
        self._tmpdir.cleanup()

    def entry(self, spec):
        """A request's image name -> ImageEntry (RequestError when unknown)."""
        spec = str(spec or "")
        kind, _, key = spec.partition(":")
        if kind == "sample":
            return self._sample(spec, key)
        if kind == "upload":
            with self._uploads_lock:
                entry = self._uploads.get(key)
            if entry is None:
                raise RequestError("unknown upload (the server keeps the last "
                                   f"{MAX_UPLOADS}; upload the image again)", 404)
            return entry
        if kind == "canvas":
            seed = parse_int(key, "canvas seed", 0, MAX_SEED)
            return self._canvas(seed)
        raise RequestError("image: expected sample:NAME, upload:ID or canvas:SEED, got "
                           f"{spec[:60]!r}", 400)

    def _sample(self, spec, key):
        sample = self.samples.get(key)
        if sample is None:
            raise RequestError(f"unknown sample {key[:60]!r}", 404)
        rel = os.path.relpath(sample["file"], os.getcwd())
        return ImageEntry(spec, sample["file"], f"{key} ({sample.get('name', '')})",
                          rel if not rel.startswith("..") else sample["file"],
                          {"class": sample.get("label"), "box": sample.get("box"),
                           "name": sample.get("name", "")})

    def add_upload(self, data, filename="upload.png"):
        """Keep uploaded bytes and check they are an image the model can take.
        Returns the ImageEntry; RequestError with the reason otherwise."""
        if not data:
            raise RequestError("the uploaded file is empty")
        sha = hashlib.sha256(data).hexdigest()
        shown = os.path.basename(str(filename or "upload.png")).strip() or "upload.png"
        shown = "".join(ch for ch in shown if ch.isprintable())[:80] or "upload.png"
        path = os.path.join(self.folder, f"upload_{sha}")
        entry = ImageEntry(f"upload:{sha}", path, shown, shown)
        with self._uploads_lock:
            if sha in self._uploads:
                self._uploads.move_to_end(sha)
                return self._uploads[sha]
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            self.view(entry)       # refuses non-images, truncated files, bombs
        except ImageError as exc:
            os.unlink(path)
            raise RequestError(str(exc).replace(path, shown)) from None
        except RequestError:      # busy, or out of memory: the upload is not kept
            os.unlink(path)
            raise
        with self._uploads_lock:
            self._uploads[sha] = entry
            while len(self._uploads) > MAX_UPLOADS:
                _, old = self._uploads.popitem(last=False)
                try:
                    os.unlink(old.path)
                except OSError:
                    pass
        return entry

    def canvas_available(self):
        """{"available": bool, "reason": text}: fresh canvases need the shipped model
        (its 64x64 Fashion-MNIST classes) and the Fashion-MNIST files."""
        if not self.shipped:
            return {"available": False, "reason": "fresh canvases are for the shipped model "
                                                  "(cluttered Fashion-MNIST) only"}
        try:
            self._canvas_generator()
        except RequestError as exc:
            return {"available": False, "reason": str(exc)}
        return {"available": True, "reason": ""}

    def _canvas_generator(self):
        with self._canvas_lock:
            if self._canvas_gen is None and self._canvas_error is None:
                from ..datasets.cluttered import ClutteredFashion
                from ..datasets.fashion_mnist import DEFAULT_DIR, load_fashion_mnist
                try:
                    images, labels = load_fashion_mnist("test", self._fashion_dir or DEFAULT_DIR)
                    self._canvas_gen = ClutteredFashion(images, labels)
                except (OSError, ValueError) as exc:
                    self._canvas_error = (f"fresh canvases need Fashion-MNIST: {exc}")
            if self._canvas_error:
                raise RequestError(self._canvas_error, 503)
            return self._canvas_gen

    def _canvas(self, seed):
        """Canvas ``seed``: Fashion-MNIST test item seed % 10000 on a canvas drawn from
        seed (CANVAS_SEED_BASE, seed); written once as PNG so the tools can read it."""
        if not self.shipped:
            raise RequestError("fresh canvases are for the shipped model only", 400)
        gen = self._canvas_generator()
        path = os.path.join(self.folder, f"canvas_{seed}.png")
        name = f"canvas_{seed}.png"
        source = seed % len(gen)
        with self._canvas_lock:
            if not os.path.isfile(path):
                from PIL import Image
                canvas = gen.render(source, (CANVAS_SEED_BASE, seed))
                tmp = path + ".tmp"
                Image.fromarray(canvas["image"]).save(tmp, format="PNG")
                os.replace(tmp, path)
                self._canvas_truth[seed] = {"class": canvas["label"], "box": canvas["box"],
                                            "name": self._class_names[canvas["label"]]}
                while len(self._canvas_truth) > MAX_CANVASES:    # bounded disk use
                    old, _ = self._canvas_truth.popitem(last=False)
                    try:
                        os.unlink(os.path.join(self.folder, f"canvas_{old}.png"))
                    except OSError:
                        pass
            truth = self._canvas_truth.get(seed)
        return ImageEntry(f"canvas:{seed}", path, f"fresh canvas {seed}", name, truth)

    def view(self, entry):
        """ImageEntry -> the View the network sees (as the tools with NETWORK_VIEW)."""
        def compute():
            # a decoded 8000x8000 upload is 192 MB, more while it is converted: at most
            # MAX_DECODES at once, the others wait a while, then are told the server is busy
            if not self._decodes.acquire(timeout=DECODE_WAIT_S):
                raise RequestError(f"busy: {MAX_DECODES} other images are being decoded; "
                                   "try again in a moment", 429)
            try:
                return network_view(self.net, read_image(self.net, entry.path), entry.path)
            except ImageError as exc:
                raise ImageError(str(exc).replace(entry.path, entry.label)) from None
            except MemoryError as exc:
                raise RequestError(out_of_memory_line(exc, f"decoding {entry.label}",
                                                      "try again when the server is less "
                                                      "busy, or send a smaller image"),
                                   503) from None
            finally:
                self._decodes.release()
        return self.views.get(entry.spec, compute)

    def image_info(self, entry):
        """JSON-able facts of an image: name, label, file and input sizes, truth."""
        view = self.view(entry)
        w, h = view.size
        ih, iw = self.net.preprocessing.input_size
        return {"image": entry.spec, "label": entry.label, "cli_path": entry.cli_path,
                "size": [w, h], "input_size": [iw, ih], "resized": (w, h) != (iw, ih),
                "truth": entry.truth}

    def input_rgb(self, entry):
        """(H, W, 3) uint8: the picture of the network input."""
        return self.view(entry).rgb

    def named_view(self, entry):
        """The view with the name the command line would print (for the figures' titles)."""
        return replace(self.view(entry), path=entry.cli_path)

    def truth_box(self, entry):
        """A sample's or canvas's true box in the network input's pixels, when the image
        is not resized (as the localisation figure draws it), else None."""
        view = self.view(entry)
        box = (entry.truth or {}).get("box")
        return list(box) if box is not None and view.size == tuple(view.rgb.shape[1::-1]) \
            else None
