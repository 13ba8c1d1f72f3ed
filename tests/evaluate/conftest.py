"""Small data sets the evaluation tests make themselves: the shipped sample canvases
written out in the ILSVRC / Pascal-VOC layout, and Fashion-MNIST IDX files."""
import gzip
import json
import os

import numpy as np
import pytest
from PIL import Image

from minicnn import assets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "evaluate.py")
SYNSETS = [f"n{k:08d}" for k in range(10)]


def voc_xml(size, objects, origin=1):
    """Pascal-VOC XML text: size (w, h); objects [(synset, [x0, y0, x1, y1] exclusive)]."""
    parts = [f"<annotation><filename>x</filename><size><width>{size[0]}</width>"
             f"<height>{size[1]}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1) in objects:
        parts.append(f"<object><name>{name}</name><bndbox><xmin>{x0 + origin}</xmin>"
                     f"<ymin>{y0 + origin}</ymin><xmax>{x1 - 1 + origin}</xmax>"
                     f"<ymax>{y1 - 1 + origin}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>\n"


def write_synsets(path, names=None):
    names = names or [s["name"] for s in sorted(assets.samples(), key=lambda s: s["label"])][:10]
    path.write_text("".join(f"{s} {n}, more words\n" for s, n in zip(SYNSETS, names)))
    return path


def make_box_folder(root, count=8):
    """ILSVRC-layout folder from the first ``count`` shipped samples. Returns (data dir,
    synsets file, expected dict key -> (label, true boxes in the written image's pixels)).

    Sample k goes to Data/CLS-LOC/val/ with its XML in the parallel Annotations tree
    (even k) or beside the image in extra/ (odd k). Sample 1 is upscaled to 96x80 (boxes
    scaled), sample 2 is JPEG, sample 3 carries an object of another class first and a
    second box of its own class, sample 4 an object of an unknown synset."""
    samples = assets.samples()[:count]
    data = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    ann = root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val"
    extra = root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / "extra"
    for d in (data, ann, extra):
        d.mkdir(parents=True, exist_ok=True)
    expected = {}
    for k, s in enumerate(samples):
        img = Image.open(s["file"]).convert("RGB")
        box = list(s["box"])
        if k == 1:
            img = img.resize((96, 80), Image.NEAREST)
            box = [box[0] * 3 // 2, box[1] * 5 // 4, box[2] * 3 // 2, box[3] * 5 // 4]
        stem = f"ILSVRC2012_val_{k:08d}"
        folder, xml_folder = (data, ann) if k % 2 == 0 else (extra, extra)
        ext = ".JPEG" if k == 2 else ".png"
        img.save(folder / (stem + ext), format="JPEG" if k == 2 else "PNG", quality=95)
        label = int(s["label"])
        objects = [(SYNSETS[label], box)]
        truth = [box]
        if k == 3:
            other = SYNSETS[(label + 1) % 10]
            second = [0, 0, 8, 8]
            objects = [("n99999999", [2, 2, 9, 9]), (SYNSETS[label], box),
                       (other, [3, 3, 12, 12]), (SYNSETS[label], second)]
            truth = [box, second]
        if k == 4:
            objects = objects + [("not-a-synset", [0, 0, 5, 5])]
        (xml_folder / (stem + ".xml")).write_text(voc_xml(img.size, objects))
        rel = os.path.relpath(folder / (stem + ext), data).replace(os.sep, "/")
        expected[rel] = (label, truth)
    return data, write_synsets(root / "synsets.txt"), expected


def add_bad_items(data):
    """Three images the evaluation must skip with one line each: a corrupt PNG, one with
    broken XML, one with no XML. Returns their keys."""
    good = next(p for p in sorted(data.iterdir()) if p.suffix == ".png")
    (data / "bad_corrupt.png").write_bytes(good.read_bytes()[:60])
    (data / "bad_corrupt.xml").write_text(voc_xml((64, 64), [(SYNSETS[0], [1, 1, 9, 9])]))
    Image.open(good).save(data / "bad_xml.png")
    (data / "bad_xml.xml").write_text("<annotation><size><width>64</wid")
    Image.open(good).save(data / "bad_noxml.png")
    return ["bad_corrupt.png", "bad_noxml.png", "bad_xml.png"]


@pytest.fixture
def box_folder(tmp_path):
    return make_box_folder(tmp_path)


def write_idx(path, magic, array):
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(int(magic).to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path):
    """A Fashion-MNIST 'test split' of 6 synthetic items (bright rectangles)."""
    rng = np.random.default_rng(0)
    images = np.zeros((6, 28, 28), np.uint8)
    for i in range(6):
        y0, x0 = rng.integers(2, 10, size=2)
        images[i, y0:y0 + 14, x0:x0 + 12] = 200
    labels = np.arange(6) % 10
    folder = tmp_path / "fashion"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", 0x803, images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", 0x801, labels)
    return folder


def read_records(folder):
    with open(os.path.join(folder, "records.jsonl")) as f:
        return [json.loads(line) for line in f]
