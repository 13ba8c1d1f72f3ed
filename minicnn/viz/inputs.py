"""Images in, network inputs out: the one place the visualisation tools read images.

Every tool calls :func:`load_view` (image file -> network input through
``minicnn.load_image`` + ``net.preprocess``, or an already preprocessed ``.npy`` tensor),
and :func:`resolve_classes` / :func:`resolve_layer` for user-given names.

A :class:`View` is a (C, H, W) network-space tensor plus what is needed to draw it and to
map its pixel coordinates back to the pixels of the file the user gave (boxes in
``tools/localize.py`` are reported in the file's pixels).
"""
from dataclasses import dataclass
import math
import os

import numpy as np

from ..net import unknown_name_error
from ..preprocess import ImageError, check_frame, load_image

# The ILSVRC protocol the paper follows: shorter side 256, crops of 224 (ratio 8/7).
TENCROP_RATIO = 256.0 / 224.0


@dataclass
class View:
    """A network-space tensor of one image and its geometry.

    x      (C, H, W) float32, preprocessed (mean subtracted, model channel order)
    rgb    (H, W, 3) uint8 RGB picture of ``x`` for display
    scale  (sx, sy): file pixels per view pixel
    offset (ox, oy): file pixel coordinate of the view's left / top edge
    size   (width, height) of the file's image
    path   the file
    """
    x: np.ndarray
    rgb: np.ndarray
    scale: tuple
    offset: tuple
    size: tuple
    path: str

    def box_to_file(self, box):
        """[x0, y0, x1, y1] (x1, y1 exclusive) in view pixels -> the same box in the file's
        pixels (outward rounding, clipped to the image)."""
        (sx, sy), (ox, oy), (w, h) = self.scale, self.offset, self.size
        x0, y0, x1, y1 = box
        return [int(min(max(math.floor(x0 * sx + ox + 1e-6), 0), w)),
                int(min(max(math.floor(y0 * sy + oy + 1e-6), 0), h)),
                int(min(max(math.ceil(x1 * sx + ox - 1e-6), 0), w)),
                int(min(max(math.ceil(y1 * sy + oy - 1e-6), 0), h))]


def _read_npy(path, net):
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:   # ValueError, OSError, EOFError, UnpicklingError
        raise ImageError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise ImageError(f"{path}: an .npz archive, expected one .npy array")
    c = net.input_channels
    if arr.ndim != 3 or arr.shape[0] != c:
        raise ImageError(f"{path}: expected a preprocessed ({c}, H, W) tensor, got shape "
                         f"{arr.shape}")
    if min(arr.shape[1:]) < 1:
        raise ImageError(f"{path}: the tensor has zero size {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ImageError(f"{path}: the tensor must hold real numbers, not dtype {arr.dtype}")
    with np.errstate(over="ignore"):
        x = arr.astype(np.float32)
    if not np.isfinite(x).all():
        raise ImageError(f"{path}: the tensor must be finite numbers within the float32 "
                         f"range (the engine computes in float32)")
    return x


def read_image(net, path):
    """A file -> ("image", RGB PIL image) or ("tensor", (C, H, W) float32 array).

    ``.npy`` files hold an already preprocessed tensor; anything else goes through
    ``minicnn.load_image``. Raises ImageError with a one-line message."""
    path = os.fspath(path)
    if path.lower().endswith(".npy"):
        if not os.path.isfile(path):
            raise ImageError(f"{path}: no such file")
        return "tensor", _read_npy(path, net)
    return "image", load_image(path)


def is_larger(net, source):
    """True when the image (or tensor) is larger than the network input in a dimension."""
    kind, data = source
    h, w = net.preprocessing.input_size
    ih, iw = (data.size[1], data.size[0]) if kind == "image" else data.shape[1:]
    return ih > h or iw > w


def network_view(net, source, path=""):
    """The view the network sees: ``net.preprocess(image)`` (resize / centre crop to the
    input size). A tensor must already have the input size."""
    kind, data = source
    p = net.preprocessing
    h, w = p.input_size
    if kind == "tensor":
        if data.shape[1:] != (h, w):
            raise ImageError(f"{path}: tensor is {data.shape[1]}x{data.shape[2]}, the network "
                             f"takes {h}x{w} (larger tensors work with ten-crop averaging)")
        x = data
        scale, offset, size = (1.0, 1.0), (0.0, 0.0), (w, h)
    else:
        try:
            x = net.preprocess(data)
        except ImageError as exc:
            raise ImageError(f"{path}: {exc}") from None
        scale, offset = p.fit_geometry(data.size)
        size = data.size
    return View(x=x, rgb=p.input_to_image(x), scale=scale, offset=offset, size=tuple(size),
                path=str(path))


def tencrop_view(net, source, path=""):
    """The frame the ten crops are cut from (the paper's ILSVRC protocol).

    Images are rescaled so the network input fits with the 256:224 margin (shorter side
    ``preprocessing.resize`` when the model sets it); tensors are used as they are and
    must be at least the input size."""
    from PIL import Image
    kind, data = source
    p = net.preprocessing
    h, w = p.input_size
    if kind == "tensor":
        if data.shape[1] < h or data.shape[2] < w:
            raise ImageError(f"{path}: tensor is {data.shape[1]}x{data.shape[2]}, smaller than "
                             f"the network input {h}x{w}")
        return View(x=data, rgb=p.input_to_image(data), scale=(1.0, 1.0), offset=(0.0, 0.0),
                    size=(data.shape[2], data.shape[1]), path=str(path))
    w0, h0 = data.size
    if p.resize is not None:
        s = max(p.resize / min(w0, h0), h / h0, w / w0)
    else:
        s = max(round(h * TENCROP_RATIO) / h0, round(w * TENCROP_RATIO) / w0)
    new = (max(w, round(w0 * s)), max(h, round(h0 * s)))
    try:
        check_frame((w0, h0), new)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    rgb = np.asarray(data.resize(new, Image.BILINEAR), dtype=np.uint8)
    x = p.array_to_input(rgb)
    return View(x=x, rgb=p.input_to_image(x), scale=(w0 / new[0], h0 / new[1]),
                offset=(0.0, 0.0), size=(w0, h0), path=str(path))


def load_view(net, path, tencrop=False):
    """Read ``path`` and return its :class:`View` (``tencrop``: the ten-crop frame)."""
    source = read_image(net, path)
    return (tencrop_view if tencrop else network_view)(net, source, path)


def stack(views):
    """(N, C, H, W) batch of views of equal shape."""
    shapes = {v.x.shape for v in views}
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes cannot form one batch: {sorted(shapes)}")
    return np.stack([v.x for v in views]).astype(np.float32)


# ----------------------------------------------------------------------------- names

def resolve_class(net, spec):
    """A class given as an index (int or digit string) or a name (case-insensitive) ->
    index. Unknown names raise ValueError listing the close matches."""
    names = net.class_names
    num = net.num_classes
    if isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
        index = int(spec)
        if not 0 <= index < num:
            raise ValueError(f"class index {index} out of range: the model has {num} classes "
                             f"(0-{num - 1})")
        return index
    spec = str(spec).strip()
    lowered = [n.lower() for n in names]
    if spec.lower() in lowered:
        return lowered.index(spec.lower())
    if not names:
        raise ValueError(f"the model has no class names; give a class index 0-{num - 1}")
    raise unknown_name_error("class", spec, names)


def resolve_classes(net, specs):
    return [resolve_class(net, s) for s in specs]


def classes_per_image(net, specs, count):
    """--class values for ``count`` images: none (None: each image's top-1), one for
    all, or one per image -> list of ``count`` indices or None."""
    if not specs:
        return None
    if len(specs) not in (1, count):
        raise ValueError(f"--class: give one class or one per image ({count}), got "
                         f"{len(specs)}")
    classes = resolve_classes(net, specs)
    return classes * count if len(classes) == 1 else classes


def class_name(net, index):
    names = net.class_names
    return names[index] if index < len(names) else f"class {index}"


def resolve_layer(net, name):
    """A layer name -> the same name; unknown names raise ValueError with close matches."""
    net.index(name)
    return name


# --crops: "auto" is five crops for an image larger than the network input, else the
# network's own view; the older --tencrop spelled 10 "on" and 1 "off"
CROP_CHOICES = ("auto", "1", "5", "10")
AUTO_CROPS = 5
TENCROP_WORDS = {"on": "10", "off": "1", "auto": "auto"}


def load_views(net, paths, crops="auto"):
    """Read several files. crops: "auto", 1 (the network's view: resize / centre crop as
    the model's preprocessing does), 5 or 10 (crops of the ten-crop frame, see
    :func:`minicnn.viz.saliency.crop_saliency`). Returns a list of (View, crop count)."""
    crops = TENCROP_WORDS.get(crops, str(crops))
    if crops not in CROP_CHOICES:
        raise ValueError(f"crops must be one of {', '.join(CROP_CHOICES)}, got {crops!r}")
    out = []
    for path in paths:
        source = read_image(net, path)
        count = (AUTO_CROPS if is_larger(net, source) else 1) if crops == "auto" else int(crops)
        out.append(((tencrop_view if count > 1 else network_view)(net, source, path), count))
    return out
