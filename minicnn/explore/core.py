"""The explorer's model side, no web code: :class:`Explorer` holds the model's replicas
and the request-keyed result caches, computes what the page shows (predictions,
saliency, localisation, layers, units, command lines) and composes the parts that have
modules of their own: images (:mod:`.images`), class names (:mod:`.classes`), the
class-model gallery (:mod:`.gallery`) and the pictures (:mod:`.pictures`).

Every result is a pure function of its request (image, class, method, layer, unit,
settings), computed with the same :mod:`minicnn.viz` functions the tools call, so a
request gets exactly what the same request alone gets and what the command line writes.
Caches are keyed by the whole request; a cache hit and a recomputation give the same
bytes.

Layers keep per-forward caches, so a Net must serve one computation at a time: requests
borrow one of a few replicas (:meth:`Net.replica`: own layer objects, shared parameters)
from a queue; the class-model gallery runs in a background thread on a replica of its
own, so it never blocks the interactive requests.
"""
import logging
import os
import queue
import shlex
import threading
from contextlib import contextmanager

import numpy as np

from .. import assets
from ..backend import get_array_module, to_numpy
from ..functional import RULES
from ..viz.attribution import METHODS, one_hot
from ..summary import summarize
from ..viz.class_model import OBJECTIVES
from ..viz.deconv import unit_reconstruction
from ..viz.inputs import resolve_layer
from ..viz.localize import localize_map
from ..viz.saliency import Saliency, saliency, saliency_map, softmax
from . import pictures
from .cache import LRU
from .classes import ClassNames
from .errors import RequestError
from .gallery import Gallery
from .images import ImageStore, load_samples
from .pictures import TOP_CROPS
from .settings import (MAX_CLASS_MODEL_STEPS, MAX_SMOOTHGRAD, ClassModelSettings,
                       SaliencySettings, parse_int)

log = logging.getLogger("minicnn.explore")

# how the tools are told to use the network's own view of an image (no crops)
NETWORK_VIEW = ["--crops", "1"]
MAX_TOP = 100               # classes /api/predict may list
MAX_SEARCH_PAGE = 100       # class names one search answer may list
COSTLY_METHODS = ("integrated_gradients", "occlusion")   # one computed at a time
COSTLY_WAIT_S = 60          # how long a costly map waits for its turn before "busy" (429)


# ----------------------------------------------------------------------------- the explorer

class Explorer:
    """The model, its images and every computation the page shows.

    net: a loaded :class:`minicnn.Net`; weights: the model file it came from (for the
    command lines; None: the shipped model); samples: list of sample records as
    :func:`minicnn.assets.samples` gives them (None: the shipped samples when ``net`` is
    the shipped model, else none); replicas: nets serving requests at once; warm: run
    one pass on each replica in the background before it serves (see :meth:`_warm`)."""

    def __init__(self, net, weights=None, samples=None, replicas=2, fashion_dir=None,
                 warm=True):
        net.eval()
        self.net = net
        self.weights = weights
        self.shipped = weights is None or os.path.realpath(weights) == os.path.realpath(
            assets.DEFAULT_MODEL)
        self.samples = load_samples(samples, self.shipped)
        self._nets = queue.Queue()
        replicas = [net if i == 0 else net.replica() for i in range(max(1, int(replicas)))]
        self._closing = threading.Event()
        self._warming = None
        if warm:
            self._warming = threading.Thread(target=self._warm, args=(replicas,), daemon=True,
                                             name="explore-warm-up")
            self._warming.start()
        else:
            for replica in replicas:
                self._nets.put(replica)
        self._results = LRU(256)
        self._costly = threading.BoundedSemaphore(1)     # see COSTLY_METHODS
        self._activations = LRU(16)            # whole feature maps: VGG16's conv1 is 13 MB
        self._sample_maxima = LRU(64)
        self.layer_rows = summarize(net, net.input_shape)
        self._geometry = self._receptive_geometry()
        self.class_names = ClassNames(net)
        self.images = ImageStore(net, self.samples, self.shipped, self.class_names.names,
                                 fashion_dir)
        self.gallery = Gallery(net, self._closing)

    # ------------------------------------------------------------------ life
    def close(self):
        """Cancel the background work and delete the temporary folder."""
        self._closing.set()
        if self._warming is not None:
            self._warming.join()
        self.gallery.close()
        self.images.close()

    def _warm(self, replicas):
        """One forward and one backward pass of a zero image on each replica, which then
        starts serving. A layer's first pass prepares what later passes reuse (kernel
        transforms, buffers): on VGG16 a replica's first forward took 0.6 s and its first
        backward 0.37 s, then 0.11 s and 0.12 s, so without this the first photo after
        the start waited about a second longer. Requests wait for the first ready
        replica; results do not depend on it."""
        x = np.zeros((1,) + tuple(self.net.input_shape), np.float32)
        for replica in replicas:
            try:
                if not self._closing.is_set():
                    out = replica.forward(x)
                    seed = get_array_module(out).zeros(out.shape, dtype=out.dtype)
                    seed[0, 0] = 1.0
                    replica.backward(seed, rule="gradient")
            except Exception as exc:      # a warm-up problem must not stop the server
                if not self._closing.is_set():    # (closing: the pass was cut short)
                    log.warning("warm-up pass failed: %s", " ".join(str(exc).split()))
            finally:
                self._nets.put(replica)

    @contextmanager
    def borrow(self):
        """One net for one computation (blocks while all are busy)."""
        net = self._nets.get()
        try:
            yield net
        finally:
            self._nets.put(net)

    # ------------------------------------------------------------------ model facts
    @property
    def classes(self):
        """Every class name (index order)."""
        return list(self.class_names.names)

    def class_name(self, index):
        return self.class_names.names[int(index)]

    def search_classes(self, query="", page=1, per_page=None):
        """Classes whose name matches ``query``, paged: ``page`` (from 1) of ``per_page``
        (default the gallery's page); see :meth:`ClassNames.search`."""
        per_page = self.gallery_page_size() if per_page is None else int(per_page)
        return self.class_names.search(query, page, per_page)

    def find_class(self, spec):
        """A class given as an index, "INDEX: name", a name or a synonym -> index
        (RequestError naming the candidates; see :meth:`ClassNames.find`)."""
        return self.class_names.find(spec)


    def model_info(self):
        """JSON-able description of the model for the page."""
        p = self.net.preprocessing
        layers = [{"name": r["name"], "type": r["type"], "shape": list(r["output_shape"]),
                   "params": r["params"], "macs": r["macs"], "rf_size": r["rf_size"],
                   "rf_jump": r["rf_jump"]} for r in self.layer_rows]
        return {
            "model": os.path.basename(self.weights) if self.weights else "fashion_vgg.h5 (shipped)",
            "device": self.net.device,
            "input_shape": list(self.net.input_shape),
            "preprocessing": {"channel_order": p.channel_order, "input_size": list(p.input_size),
                              "resize": p.resize},
            "classes": self.classes,
            "num_classes": self.net.num_classes,
            "gallery": self.gallery_info(),
            "layers": layers,
            "default_layer": self.default_layer(),
            "samples": [{"spec": f"sample:{name}", "name": name, "label": s.get("label"),
                         "class": s.get("name", "")} for name, s in self.samples.items()],
            "canvas": self.canvas_available(),
            "methods": list(METHODS),      # the backward rules first, then descendants
            "rules": list(RULES),
            "objectives": list(OBJECTIVES),
            "class_model_defaults": ClassModelSettings().as_dict(),
            "limits": {"smoothgrad": MAX_SMOOTHGRAD, "steps": MAX_CLASS_MODEL_STEPS},
            "info_command": self.command("info.py", [], model_positional=True),
        }

    def default_layer(self):
        """The last ReLU after a convolution (tools/deconv.py's default)."""
        from ..viz.deconv import default_layer
        return default_layer(self.net)

    def _receptive_geometry(self):
        """layer -> (first window's top-left in input pixels, size, jump) or None (the
        whole input: after a flatten). Windows may start outside the image (padding)."""
        out, start, size, jump = {}, 0, 1, 1
        for name, layer in self.net:
            if layer.kind in ("flatten", "linear", "global_avgpool") or size is None:
                size = None
            elif layer.kind in ("conv2d", "maxpool2d"):
                start -= layer.pad * jump
                size += (layer.kernel_size - 1) * jump
                jump *= layer.stride
            out[name] = None if size is None else (start, size, jump)
        return out

    def receptive_box(self, layer, position):
        """[x0, y0, x1, y1] (x1, y1 exclusive, clipped to the input) of the unit at
        ``position`` (i, j) of ``layer``; the whole input for fully connected units."""
        h, w = self.net.preprocessing.input_size
        geo = self._geometry[layer]
        if geo is None or len(position) != 2:
            return [0, 0, w, h]
        start, size, jump = geo
        y0, x0 = start + position[0] * jump, start + position[1] * jump
        return [max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)]

    # ------------------------------------------------------------------ command lines
    def command(self, tool, options, image=None, model_positional=False):
        """The command line of ``tools/<tool>`` that computes what the page shows."""
        words = ["python3", f"tools/{tool}"]
        model = self.weights if self.weights and not self.shipped else None
        if model_positional:
            words.append(model or "weights/fashion_vgg.h5")
        elif model:
            words += ["--weights", model]
        if self.net.device != "cpu" and not model_positional:
            words += ["--device", self.net.device]
        if image is not None:
            words += ["--image", image.cli_path]
        return " ".join(shlex.quote(w) for w in words + list(options))

    # ------------------------------------------------------------------ images
    def image(self, spec):
        """A request's image name -> ImageEntry (RequestError when unknown)."""
        return self.images.entry(spec)

    def add_upload(self, data, filename="upload.png"):
        """Keep uploaded bytes that are an image the model can take -> ImageEntry."""
        return self.images.add_upload(data, filename)

    def canvas_available(self):
        return self.images.canvas_available()

    def view(self, entry):
        """ImageEntry -> the View the network sees (as the tools with NETWORK_VIEW)."""
        return self.images.view(entry)

    def image_info(self, entry):
        return self.images.image_info(entry)

    def input_rgb(self, entry):
        """(H, W, 3) uint8: the picture of the network input."""
        return self.images.input_rgb(entry)

    def truth_box(self, entry):
        return self.images.truth_box(entry)

    # ------------------------------------------------------------------ predictions
    def logits(self, entry):
        """(K,) float64 class scores S_c of the image."""
        def compute():
            x = self.view(entry).x[None]
            with self.borrow() as net:
                return to_numpy(net.forward(x)).astype(np.float64)[0]
        return self._results.get(("logits", entry.spec), compute)

    def predict(self, entry, top=5):
        logits = self.logits(entry)
        probs = softmax(logits[None])[0]
        order = np.argsort(-logits, kind="stable")[:top]
        return [{"class": int(c), "name": self.class_name(c),
                 "score": float(logits[c]), "prob": float(probs[c])} for c in order]

    def resolve_class(self, entry, spec):
        """A class given by index or name (see :meth:`find_class`), or empty for the
        image's top-1."""
        if spec is None or str(spec).strip() == "":
            return int(np.argmax(self.logits(entry)))
        return self.find_class(spec)

    # ------------------------------------------------------------------ saliency
    def saliency(self, entry, cls, method, settings):
        """Saliency (N = 1) of class ``cls`` with backward rule ``method``: what
        tools/saliency.py computes with NETWORK_VIEW (its saliency_of_views: one
        image at the input size, the class given)."""
        if method not in RULES:       # SmoothGrad's settings do not apply: one cache entry
            settings = SaliencySettings()

        def compute():
            x = np.stack([self.view(entry).x]).astype(np.float32)
            costly = method in COSTLY_METHODS
            # tens to hundreds of passes each (occlusion: 117 gradient passes on VGG16):
            # one at a time, so that they never hold every replica
            if costly and not self._costly.acquire(timeout=COSTLY_WAIT_S):
                raise RequestError(f"busy: another {method.replace('_', ' ')} map is being "
                                   "computed; try again in a moment", 429)
            try:
                with self.borrow() as net:
                    return saliency(net, x, [cls], method, settings.smoothgrad,
                                    settings.noise, settings.seed)
            finally:
                if costly:
                    self._costly.release()
        return self._results.get(("saliency", entry.spec, cls, method, settings), compute)

    def saliencies(self, entry, cls, settings):
        """{rule: Saliency} for the three backward rules: for each exactly what
        :meth:`saliency` gives, but without SmoothGrad one forward pass serves the three
        backward passes (the caches of a forward stay valid for any number of backward
        passes)."""
        if settings.smoothgrad:
            return {rule: self.saliency(entry, cls, rule, settings) for rule in RULES}

        def compute():
            # saliency() -> class_signal(), with the forward shared
            x = np.stack([self.view(entry).x]).astype(np.float32)
            classes = np.asarray([cls], np.int64)
            idx = np.arange(1)
            out = {}
            with self.borrow() as net:
                logits = net.forward(x)
                logits_np = to_numpy(logits).astype(np.float64)
                seed = one_hot(logits, classes)
                for rule in RULES:
                    signal = to_numpy(net.backward(seed, rule=rule)).astype(np.float32)
                    out[rule] = Saliency(signal=signal,
                                         map=to_numpy(saliency_map(signal)).astype(np.float32),
                                         classes=classes, scores=logits_np[idx, classes],
                                         probs=softmax(logits_np)[idx, classes])
            for rule, sal in out.items():
                self._results.put(("saliency", entry.spec, cls, rule, settings), sal)
            return out
        return self._results.get(("saliencies", entry.spec, cls, settings), compute)

    def saliency_command(self, entry, cls, method, settings):
        opts = ["--class", str(cls), "--method", method] + settings.options()
        if self.image_info(entry)["resized"]:
            opts += NETWORK_VIEW
        return self.command("saliency.py", opts, entry)

    def localization(self, entry, cls, method, settings, graphcut):
        """(Localization, box in the file's pixels or None): tools/localize.py's steps."""
        def compute():
            view = self.view(entry)
            sal = self.saliency(entry, cls, method, settings)
            loc = localize_map(view.rgb, sal.map[0], graphcut.fg_quantile, graphcut.bg_quantile,
                               graphcut.components, graphcut.smoothness, settings.seed)
            return loc, (view.box_to_file(loc.box) if loc.box is not None else None)
        return self._results.get(("localize", entry.spec, cls, method, settings, graphcut), compute)

    def localize_command(self, entry, cls, method, settings, graphcut):
        opts = ["--class", str(cls), "--method", method] + settings.options() + graphcut.options()
        if self.image_info(entry)["resized"]:
            opts += NETWORK_VIEW
        return self.command("localize.py", opts, entry)

    # ------------------------------------------------------------------ layers
    def resolve_layer(self, name):
        try:
            return resolve_layer(self.net, str(name or ""))
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def activation(self, entry, layer):
        """The layer's output for the image: (C, H, W) or (C,) float32."""
        def compute():
            x = self.view(entry).x[None]
            with self.borrow() as net:
                return to_numpy(net.forward(x, until=layer))[0].astype(np.float32)
        return self._activations.get((entry.spec, layer), compute)

    def check_channel(self, layer, channel):
        count = int(self.net.shapes(self.net.input_shape)[layer][0])
        return parse_int(channel, "unit", 0, count - 1)

    def unit(self, entry, layer, channel):
        """UnitReconstruction (N = 1) of the strongest activation of ``channel``:
        tools/deconv.py --layer L --channel K."""
        def compute():
            x = self.view(entry).x[None]
            with self.borrow() as net:
                return unit_reconstruction(net, x, layer, channel)
        return self._results.get(("unit", entry.spec, layer, channel), compute)

    def deconv_command(self, entry, layer, channel):
        return self.command("deconv.py", ["--layer", layer, "--channel", str(channel)], entry)

    def sample_maxima(self, layer):
        """Over the model's samples: (values (S, C), positions (S, C) flat index) of each
        channel's strongest activation in ``layer``."""
        def compute():
            names = list(self.samples)
            if not names:
                return names, np.zeros((0, 0)), np.zeros((0, 0), np.int64)
            x = np.stack([self.view(self.image(f"sample:{n}")).x for n in names])
            with self.borrow() as net:
                act = to_numpy(net.forward(x, until=layer)).astype(np.float32)
            flat = act.reshape(act.shape[0], act.shape[1], -1)
            return names, flat.max(axis=2), flat.argmax(axis=2)
        return self._sample_maxima.get(layer, compute)

    def top_crops(self, layer, channel, count=TOP_CROPS):
        """The samples where ``channel`` of ``layer`` responds most: list of dicts with
        sample spec, value, position and receptive-field box, strongest first."""
        names, values, positions = self.sample_maxima(layer)
        if not names:
            return []
        spatial = self.net.shapes(self.net.input_shape)[layer][1:]
        order = np.argsort(-values[:, channel], kind="stable")[:count]
        out = []
        for s in order:
            pos = tuple(int(v) for v in np.unravel_index(int(positions[s, channel]), spatial)) \
                if spatial else ()
            out.append({"image": f"sample:{names[s]}", "value": float(values[s, channel]),
                        "position": list(pos), "box": self.receptive_box(layer, pos)})
        return out

    # ------------------------------------------------------------------ class models
    def gallery_page_size(self):
        """Classes per picker page (see :meth:`Gallery.page_size`)."""
        return self.gallery.page_size()

    def default_gallery(self):
        """(classes, what): the gallery shown before any class is picked."""
        return self.gallery.default()

    def gallery_info(self):
        return self.gallery.info()

    def gallery_classes(self, value):
        """A request's classes -> tuple of distinct indices (see :meth:`Gallery.classes`)."""
        return self.gallery.classes(value)

    def class_model_job(self, settings, classes=None, start=True):
        """The gallery job for ``settings`` and ``classes`` (see :meth:`Gallery.job`)."""
        return self.gallery.job(settings, classes, start)

    def class_model_command(self, settings, classes=None):
        """tools/class_model.py's command line for the gallery of ``classes`` (None: the
        default gallery); --class is left out when they are every class of the model
        (the tool's default for all but ImageNet's names)."""
        classes = self.default_gallery()[0] if classes is None else tuple(classes)
        every = classes == tuple(range(self.net.num_classes))
        opts = [] if every else ["--class", *(str(c) for c in classes)]
        return self.command("class_model.py", opts + settings.options())

    # ------------------------------------------------------------------ pictures
    def picture(self, kind, args):
        """A picture the page shows -> (H, W, 3) uint8 array or PIL image (figures).
        ``args``: the request's parameters. RequestError for unknown kinds/values."""
        return pictures.picture(self, kind, args)

    def activation_grid(self, entry, layer):
        """(picture, geometry): the layer's channels as tiles (see
        :func:`pictures.activation_grid`)."""
        return pictures.activation_grid(self, entry, layer)
