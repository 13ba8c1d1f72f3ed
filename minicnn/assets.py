"""Where the shipped model and sample images live (the repository's weights/ folder)."""
import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "fashion_vgg.h5"
SAMPLES_DIR = WEIGHTS_DIR / "samples"
SAMPLES_INDEX = SAMPLES_DIR / "samples.json"


def default_model():
    """Path of the shipped model; a clear error when it is missing."""
    if not DEFAULT_MODEL.is_file():
        raise FileNotFoundError(f"the shipped model {DEFAULT_MODEL} is missing; pass --weights "
                                "MODEL.h5 (train one with tools/train.py)")
    return DEFAULT_MODEL


def samples():
    """The shipped sample canvases: list of dicts with "file" (absolute path), "label"
    (class index), "name" (class name) and "box" [x0, y0, x1, y1] (x1, y1 exclusive)."""
    if not SAMPLES_INDEX.is_file():
        raise FileNotFoundError(f"the shipped samples index {SAMPLES_INDEX} is missing")
    entries = json.loads(SAMPLES_INDEX.read_text())
    for e in entries:
        e["file"] = str(SAMPLES_DIR / e["file"])
    return entries


def default_image():
    """Path of the first shipped sample image."""
    return samples()[0]["file"]
