"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its IDX files.

Debian ships them: ``apt-get install dataset-fashion-mnist`` puts them in
/usr/share/datasets/fashion-mnist/.
"""
import gzip
import math
import os

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
NUM_CLASSES = len(CLASS_NAMES)
MAX_IDX_BYTES = 2**30      # the real training images are 47 MB
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DatasetMissing(FileNotFoundError):
    pass


def _open(folder, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path, (gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb"))
    raise DatasetMissing(
        f"Fashion-MNIST file {stem}[.gz] not found in {folder}; install the data with "
        "'apt-get install dataset-fashion-mnist' (Debian) or pass the folder holding the "
        "IDX files")


def _read_idx(folder, stem, magic, dims):
    path, fh = _open(folder, stem)
    header = 4 + 4 * dims
    with fh:
        head = fh.read(header)
        if len(head) < header or int.from_bytes(head[:4], "big") != magic:
            raise ValueError(f"{path}: not an IDX file with magic {magic:#x}")
        shape = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
        expected = math.prod(shape)
        if expected > MAX_IDX_BYTES:
            raise ValueError(f"{path}: the header declares shape {shape}, more than "
                             f"{MAX_IDX_BYTES} bytes")
        # read one byte more than declared: a longer (or decompressing) file is refused
        # without being read whole
        data = fh.read(expected + 1)
    if len(data) != expected:
        found = "more" if len(data) > expected else len(data)
        raise ValueError(f"{path}: expected {expected} bytes of data for shape "
                         f"{shape}, found {found}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def load_fashion_mnist(split="train", folder=DEFAULT_DIR):
    """-> images (N, 28, 28) uint8, labels (N,) uint8 for split "train" or "test"."""
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    images_stem, labels_stem = FILES[split]
    images = _read_idx(folder, images_stem, 0x00000803, 3)
    labels = _read_idx(folder, labels_stem, 0x00000801, 1)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise ValueError(f"{folder}: {labels_stem} holds label {int(labels.max())}; expected "
                         f"the classes 0-{NUM_CLASSES - 1}")
    return images, labels
