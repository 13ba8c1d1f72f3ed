"""Labelled images with true boxes: the data sets the evaluations run over.

A source is a sequence of items addressed by index; ``source.item(i)`` reads one (on a
worker too: sources pickle small and load lazily) and ``source.key(i)`` names it without
reading it. Two kinds:

- :class:`ClutteredTest`: the shipped model's own test canvases (cluttered Fashion-MNIST,
  canvas k drawn from test image k with seed (1234, k), as ``tools/train.py`` evaluates),
  with the item's exact mask. Needs the Fashion-MNIST test files.
- :class:`BoxFolder`: a folder in the ILSVRC localisation layout: images (JPEG or PNG, in
  any sub-folders) with one Pascal-VOC XML annotation each (same stem, in the same folder
  or in a parallel ``Annotations`` tree), and a synsets file naming the classes.

An item whose image or annotation cannot be used raises :class:`ItemError` with one line;
the evaluation reports it and goes on.
"""
from dataclasses import dataclass
import os

import numpy as np

from ..preprocess import ImageError, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ANNOTATION_DIRS = ("Annotations", "annotations")
# folder names that hold images in the layouts people download; their parallel tree
# holds the XML (ILSVRC: Data/CLS-LOC/val <-> Annotations/CLS-LOC/val; VOC: JPEGImages)
IMAGE_DIRS = ("Data", "data", "JPEGImages", "Images", "images")
MAX_XML_BYTES = 1 << 20


class ItemError(ValueError):
    """One image of a data set cannot be evaluated; the message names it and says why."""


# the words of the message for an image without an annotation: the summary counts these
# apart from the unreadable images
NO_ANNOTATION = "no XML annotation"


def skip_counts(skipped):
    """{"no annotation": n, "unusable": m} of the skipped.jsonl rows ({"image", "error"})."""
    missing = sum(1 for s in skipped if NO_ANNOTATION in s["error"])
    return {"no annotation": missing, "unusable": len(skipped) - missing}


def skip_words(counts):
    """:func:`skip_counts` in words: "2 without an annotation, 1 with an unusable image or
    annotation" ("" when nothing was skipped)."""
    words = [f"{counts['no annotation']} without an annotation" if counts.get("no annotation") else "",
             f"{counts['unusable']} with an unusable image or annotation"
             if counts.get("unusable") else ""]
    return ", ".join(w for w in words if w)


@dataclass
class Item:
    """One labelled image.

    key        its name: the path relative to the data root
    image      (H, W, 3) uint8 RGB
    label      class index
    true_boxes boxes [x0, y0, x1, y1] (x1, y1 exclusive, image pixels) of the label's
               objects
    mask       (H, W) bool object mask, or None
    """
    key: str
    image: np.ndarray
    label: int
    true_boxes: list
    mask: object = None

    @property
    def size(self):
        """(width, height)"""
        return (int(self.image.shape[1]), int(self.image.shape[0]))


# ----------------------------------------------------------------------------- cluttered

_FASHION_CACHE = {}


class ClutteredTest:
    """The cluttered Fashion-MNIST test canvases (one per Fashion-MNIST test image)."""

    name = "cluttered-test"

    def __init__(self, folder=None, seed=1234, size=64):
        from ..datasets.fashion_mnist import DEFAULT_DIR
        self.folder = os.path.abspath(folder or DEFAULT_DIR)
        self.seed, self.size = int(seed), int(size)
        self._generator()     # a missing data set fails here, in one line

    def _generator(self):
        from ..datasets.cluttered import ClutteredFashion
        key = (self.folder, self.size)
        if key not in _FASHION_CACHE:      # once per process: workers reuse it
            from ..datasets.fashion_mnist import load_fashion_mnist
            images, labels = load_fashion_mnist("test", self.folder)
            _FASHION_CACHE[key] = ClutteredFashion(images, labels, size=self.size)
        return _FASHION_CACHE[key]

    def __len__(self):
        return len(self._generator())

    def key(self, index):
        return f"canvas_{int(index):05d}.png"

    def item(self, index):
        canvas = self._generator().render(int(index), (self.seed, int(index)))
        return Item(key=self.key(index), image=canvas["image"], label=canvas["label"],
                    true_boxes=[canvas["box"]], mask=canvas["mask"])

    def class_names(self):
        from ..datasets.fashion_mnist import CLASS_NAMES
        return list(CLASS_NAMES)


# ----------------------------------------------------------------------------- ILSVRC / VOC

def read_synsets(path):
    """A synsets file (line k: ``SYNSET description``, naming class k) -> (synsets list,
    descriptions list). Blank lines are not allowed between entries."""
    import stat
    try:
        # non-blocking open, then only a regular file is read: a FIFO would block for ever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ValueError(f"--synsets {path}: not a regular file; expected a text "
                                 "file of synsets")
            raw = f.read(MAX_XML_BYTES * 16)
    except OSError as exc:
        raise ValueError(f"--synsets {path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--synsets {path}: not a UTF-8 text file") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    synsets, names = [], []
    for number, line in enumerate(lines, 1):
        parts = line.strip().split(None, 1)
        if not parts:
            raise ValueError(f"--synsets {path}: line {number} is empty (line k names class "
                             "k-1, so no blank lines)")
        synsets.append(parts[0])
        names.append(parts[1].split(",")[0].strip() if len(parts) > 1 else parts[0])
    if not synsets:
        raise ValueError(f"--synsets {path}: no classes in the file")
    if len(set(synsets)) != len(synsets):
        raise ValueError(f"--synsets {path}: a synset is listed twice")
    return synsets, names


def _text(node, tag, where):
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ItemError(f"{where}: <{tag}> missing")
    return child.text.strip()


def _number(node, tag, where):
    text = _text(node, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise ItemError(f"{where}: <{tag}> is not a number: {text[:40]!r}") from None
    if not np.isfinite(value):
        raise ItemError(f"{where}: <{tag}> is not finite")
    return value


def parse_annotation(path, origin=1):
    """A Pascal-VOC XML file -> (size (width, height) or None, [(name, box)]) with boxes
    converted to [x0, y0, x1, y1], x1/y1 exclusive. ``origin``: 1 when the file counts
    pixels from 1 with inclusive corners (Pascal VOC), 0 when from 0 (inclusive)."""
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException
    where = os.fspath(path)
    from ..outfolder import read_bounded
    try:
        # a regular file of bounded size only: a FIFO would block, /dev/zero never end
        text = read_bounded(path, MAX_XML_BYTES, follow_links=True)
    except (OSError, ValueError) as exc:
        raise ItemError(f"{where}: not a readable annotation "
                        f"({' '.join(str(exc).replace(where, 'the file').split())[:160]})") from None
    try:
        root = ElementTree.fromstring(text)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
        raise ItemError(f"{where}: not a readable XML annotation "
                        f"({type(exc).__name__}: {str(exc)[:120]})") from None
    if root.tag != "annotation":
        raise ItemError(f"{where}: expected an <annotation> root, found <{root.tag[:40]}>")
    size = None
    node = root.find("size")
    if node is not None:
        size = (int(_number(node, "width", where)), int(_number(node, "height", where)))
    objects = []
    for obj in root.findall("object"):
        name = _text(obj, "name", where)
        bb = obj.find("bndbox")
        if bb is None:
            raise ItemError(f"{where}: an <object> has no <bndbox>")
        x0, y0, x1, y1 = (_number(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise ItemError(f"{where}: box of {name[:40]!r} has xmax < xmin or ymax < ymin")
        objects.append((name, [int(round(x0)) - origin, int(round(y0)) - origin,
                               int(round(x1)) - origin + 1, int(round(y1)) - origin + 1]))
    return size, objects


def _annotation_candidates(root, rel):
    """XML paths to try for the image ``rel`` (relative to ``root``), in order: beside
    it; ``root/Annotations/<same sub-path>``; the parallel tree, with a folder of the
    image's path named like an image folder (Data, JPEGImages, ...) replaced by
    Annotations (deepest first: ILSVRC's Data/CLS-LOC/val -> Annotations/CLS-LOC/val)."""
    folder, name = os.path.split(rel)
    stem = os.path.splitext(name)[0] + ".xml"
    out = [os.path.join(root, folder, stem)]
    out += [os.path.join(root, ann, folder, stem) for ann in ANNOTATION_DIRS]
    parts = os.path.join(root, folder).split(os.sep)
    for i in reversed(range(len(parts))):
        if parts[i] in IMAGE_DIRS:
            out += [os.sep.join(parts[:i] + [ann] + parts[i + 1:] + [stem])
                    for ann in ANNOTATION_DIRS]
    return out


class BoxFolder:
    """Images with Pascal-VOC XML boxes under ``root``; classes from a synsets file.

    The label of an image is the class of its first object whose name is a known synset;
    its true boxes are all objects of that class (objects of other classes are ignored).
    """

    name = "folder"

    def __init__(self, root, synsets_file, origin=1):
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise ValueError(f"--data {root}: no such folder")
        self.synsets, self.names = read_synsets(synsets_file)
        self.index = {s: k for k, s in enumerate(self.synsets)}
        self.origin = int(origin)
        files = []
        for folder, dirs, names in os.walk(self.root):
            dirs.sort()
            for n in sorted(names):
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(folder, n), self.root))
        if not files:
            raise ValueError(f"--data {root}: no JPEG or PNG images in the folder")
        self.files = files

    def __len__(self):
        return len(self.files)

    def key(self, index):
        return self.files[index].replace(os.sep, "/")

    def annotation_path(self, index):
        for path in _annotation_candidates(self.root, self.files[index]):
            if os.path.isfile(path):
                return path
        return None

    def item(self, index):
        rel = self.files[index]
        xml = self.annotation_path(index)
        if xml is None:
            raise ItemError(f"{rel}: {NO_ANNOTATION} (looked beside it and in Annotations/)")
        size, objects = parse_annotation(xml, self.origin)
        known = [(self.index[n], b) for n, b in objects if n in self.index]
        if not known:
            names = sorted({n for n, _ in objects})
            raise ItemError(f"{rel}: no object of a class in the synsets file "
                            f"(objects: {', '.join(repr(n[:20]) for n in names[:5]) or 'none'})")
        label = known[0][0]
        try:
            picture = load_image(os.path.join(self.root, rel))
        except ImageError as exc:
            raise ItemError(str(exc)) from None
        image = np.asarray(picture, np.uint8)
        w, h = image.shape[1], image.shape[0]
        if size is not None and size != (w, h):
            raise ItemError(f"{rel}: the annotation says {size[0]}x{size[1]} but the image is "
                            f"{w}x{h}")
        boxes = [[max(0, min(b[0], w)), max(0, min(b[1], h)), max(0, min(b[2], w)),
                  max(0, min(b[3], h))] for c, b in known if c == label]
        boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
        if not boxes:
            raise ItemError(f"{rel}: the boxes of its class lie outside the image")
        return Item(key=self.key(index), image=image, label=label, true_boxes=boxes)

    def class_names(self):
        return list(self.names)


def open_source(data, synsets=None, origin=1, fashion_folder=None):
    """``--data`` value -> a source: "cluttered-test" or a folder (needs ``synsets``)."""
    if data == ClutteredTest.name:
        if synsets:
            raise ValueError("--synsets goes with a folder --data, not cluttered-test")
        return ClutteredTest(fashion_folder)
    if not synsets:
        raise ValueError(f"--data {data}: a folder needs --synsets FILE (line k: 'SYNSET "
                         "description', naming class k)")
    return BoxFolder(data, synsets, origin)
