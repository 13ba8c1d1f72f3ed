"""Shared command-line plumbing of the visualisation tools (tools/*.py).

- :func:`parser`: argparse with one-line errors ("prog: error: ... (see --help)", exit 2);
- :func:`add_model_args`, :func:`add_image_args`: --weights, --device, --image;
- option types that refuse bad values with a clear message;
- :func:`checked_output`: output paths validated before any work is done;
- :func:`write_png`, :func:`write_npy`, :func:`write_json`: every output goes through
  ``minicnn.io.atomic_write`` (a failed run leaves no partial file);
- :func:`run`: runs a tool's main and turns any expected error into one line on stderr
  and exit status 1.
"""
import argparse
import json
import os
import sys

import numpy as np

from .. import assets
from ..io import ModelFileError, atomic_write
from ..preprocess import ImageError

EXIT_ERROR = 1


class Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; appends "(default: X)" where there is one to say."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("(default" not in text and action.option_strings and default is not None
                and default is not False and default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def parser(prog, description, epilog=None):
    return Parser(prog=prog, description=description, epilog=epilog, formatter_class=_Formatter)


# ----------------------------------------------------------------------------- option types

def _typed(convert, test, what):
    def parse(text):
        try:
            value = convert(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


positive_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
# the engine computes in float32: a larger value would become inf on first use
FLOAT32_MAX = float(np.finfo(np.float32).max)
positive_float = _typed(float, lambda v: 0 < v <= FLOAT32_MAX, "a number > 0 (at most 3.4e38)")
nonneg_float = _typed(float, lambda v: 0 <= v <= FLOAT32_MAX, "a number >= 0 (at most 3.4e38)")
fraction = _typed(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
unit_interval_open = _typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
percentile = _typed(float, lambda v: 0 <= v < 100, "a number in [0, 100)")
# SmoothGrad samples: Smilkov et al. use up to 50; each is a forward and backward pass
MAX_SMOOTHGRAD = 1000
smoothgrad_samples = _typed(int, lambda v: 0 <= v <= MAX_SMOOTHGRAD,
                            f"an integer from 0 to {MAX_SMOOTHGRAD}")
smoothgrad_samples_on = _typed(int, lambda v: 1 <= v <= MAX_SMOOTHGRAD,
                               f"an integer from 1 to {MAX_SMOOTHGRAD}")


MAX_IG_STEPS = 1000         # Integrated Gradients' points: each a forward and backward
ig_steps = _typed(int, lambda v: 1 <= v <= MAX_IG_STEPS, f"an integer from 1 to {MAX_IG_STEPS}")
finite_float = _typed(float, lambda v: abs(v) <= FLOAT32_MAX, "a finite number")


# ----------------------------------------------------------------------------- common options

def add_method_args(p, default="gradient", what="the map"):
    """--method (the paper's rules and their descendants) and each method's options."""
    from ..viz.attribution import METHODS
    p.add_argument("--method", choices=list(METHODS), default=default,
                   help=f"how {what} is computed: gradient (the paper's saliency), deconvnet, "
                        "guided (the other backward rules of its Sect. 4); gradcam "
                        "(Selvaraju et al. 2017), integrated_gradients (Sundararajan et al. "
                        "2017), occlusion (Zeiler & Fergus 2014), gradient_x_input")
    add_method_options(p)


def add_method_options(p):
    """The options of the descendants of the paper's map (see add_method_args)."""
    p.add_argument("--layer", default=None,
                   help="gradcam: the conv layer's rectified output it reads (default: the "
                        "last conv's ReLU, relu5_3 in VGG16)")
    p.add_argument("--steps", type=ig_steps, default=32,
                   help="integrated_gradients: points of the midpoint rule on the path")
    p.add_argument("--baseline", type=finite_float, default=0.0,
                   help="integrated_gradients' baseline and occlusion's patch: this value "
                        "at every network input (0: the mean image of the preprocessing)")
    p.add_argument("--patch", type=nonneg_int, default=0,
                   help="occlusion: side of the square in network-input pixels (0: an "
                        "eighth of the input's shorter side)")
    p.add_argument("--stride", type=nonneg_int, default=0,
                   help="occlusion: step of the square (0: half the patch; at most the patch)")


def method_settings(args):
    """MethodSettings from add_method_args' options (and --smoothgrad/--noise/--seed)."""
    from ..viz.attribution import MethodSettings
    return MethodSettings(smoothgrad=getattr(args, "smoothgrad", 0) or 0,
                          noise=getattr(args, "noise", 0.15), seed=getattr(args, "seed", 0),
                          gradcam_layer=args.layer, ig_steps=args.steps,
                          baseline=args.baseline, patch=args.patch, stride=args.stride)


def add_model_args(p):
    p.add_argument("--weights", metavar="MODEL.h5", default=None,
                   help="minicnn model file (default: the shipped model weights/fashion_vgg.h5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="run on the CPU (NumPy) or a GPU (CuPy)")


def add_image_args(p, what="image"):
    p.add_argument("--image", metavar="PATH", nargs="+", default=None,
                   help=f"one or more {what} files: PNG/JPEG (any size; read with "
                        "minicnn.load_image and the model's preprocessing) or .npy holding an "
                        "already preprocessed (C, H, W) float tensor (default: the first "
                        "shipped sample, weights/samples/)")


def add_crop_args(p):
    """--crops (and the older --tencrop spelling of it)."""
    from ..viz.inputs import CROP_CHOICES, TENCROP_WORDS
    p.add_argument("--crops", choices=CROP_CHOICES, default="auto",
                   help="1: the network's view of the image (resized / centre-cropped as the "
                        "model's preprocessing does); 5: the four corner crops and the centre "
                        "crop of the image rescaled to the ten-crop frame (shorter side 256 "
                        "for 224 inputs), blended without seams; 10: those and their "
                        "mirrors (the paper's ten crops, twice the time); auto: 5 for an "
                        "image larger than the network input, else 1")
    def tencrop_word(text):
        if text not in TENCROP_WORDS:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(TENCROP_WORDS)}, "
                                             f"got {text!r}")
        return TENCROP_WORDS[text]
    p.add_argument("--tencrop", dest="crops", type=tencrop_word, help=argparse.SUPPRESS)


def add_graphcut_args(p):
    """The options of the saliency -> colour models -> GraphCut box procedure."""
    from ..viz.localize import BOX
    p.add_argument("--fg-quantile", type=fraction, default=BOX.fg_quantile,
                   help="foreground colour-model seeds: saliency above this quantile")
    p.add_argument("--bg-quantile", type=fraction, default=BOX.bg_quantile,
                   help="background colour-model seeds: saliency below this quantile")
    p.add_argument("--components", type=positive_int, default=BOX.components,
                   help="Gaussians per colour model")
    p.add_argument("--smoothness", type=nonneg_float, default=BOX.smoothness,
                   help="weight of the contrast-sensitive pairwise term (GrabCut's 50)")


def load_net(args):
    from ..io import load
    return load(args.weights if args.weights else assets.default_model(), device=args.device)


def image_paths(args):
    return list(args.image) if args.image else [assets.default_image()]


def sample_entry(path):
    """The shipped-sample record of ``path`` (label, name, box) or None."""
    try:
        entries = assets.samples()
    except (FileNotFoundError, ValueError):
        return None
    target = os.path.realpath(path)
    for e in entries:
        if os.path.realpath(e["file"]) == target:
            return e
    return None


# ----------------------------------------------------------------------------- outputs

def checked_output(path, extensions, option):
    """Validate an output path before the work starts: known extension, existing folder,
    not a folder itself. Returns the path."""
    if path is None:
        return None
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in extensions:
        raise ValueError(f"{option} {path}: expected a file name ending in {' or '.join(extensions)}")
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: folder {folder} is not writable")
    return path


def _png_writer(image):
    return lambda tmp: image.save(tmp, format="PNG")


def _npy_writer(array):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array, np.float32))
    return write


def _npz_writer(arrays):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    return write


def array_names(paths):
    """Image paths -> unique array names for an .npz: the file name, with "-2", "-3" ...
    for repeats."""
    names, seen = [], {}
    for path in paths:
        base = os.path.basename(str(path)) or "image"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _json_writer(obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    return write


def _text_writer(text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return write


WRITERS = {".png": _png_writer, ".npy": _npy_writer, ".npz": _npz_writer,
           ".json": _json_writer, ".md": _text_writer}


def write_outputs(outputs):
    """All of a tool's outputs, or none: ``outputs`` is [(path or None, content, what)];
    the writer is chosen by the path's extension (.png: PIL image, .npy: array, .npz:
    {name: array}, .json: JSON-able, .md: text). Then each is reported on stdout."""
    from ..io import atomic_write_all
    outputs = [(p, c, w) for p, c, w in outputs if p]
    atomic_write_all([(p, WRITERS[os.path.splitext(p)[1].lower()](c)) for p, c, _ in outputs])
    for path, _, what in outputs:
        report(path, what)


def write_png(path, image):
    """Write a PIL image as PNG through atomic_write."""
    atomic_write(path, _png_writer(image))
    return path


def write_npy(path, array):
    atomic_write(path, _npy_writer(array))
    return path


def write_json(path, obj):
    atomic_write(path, _json_writer(obj))
    return path


def report(path, what):
    print(f"wrote {what}: {os.path.abspath(path)}")


# ----------------------------------------------------------------------------- errors

PIP_NAMES = {"maxflow": "PyMaxflow", "sklearn": "scikit-learn", "cupy": "cupy-cuda12x",
             "cupyx": "cupy-cuda12x", "PIL": "pillow"}

EXPECTED_ERRORS = (ImportError, ImageError, ModelFileError, FileNotFoundError, ValueError, RuntimeError,
                   OSError, MemoryError)


def run(main, prog, argv=None):
    """Call ``main(argv)``; expected errors -> one line on stderr and exit status 1."""
    from ..terminal import one_line, protect
    protect()
    try:
        return main(argv) or 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except EXPECTED_ERRORS as exc:
        # one line: a line break (from a file name, say) shown as \n, not run together
        message = one_line(str(exc).strip()) or type(exc).__name__
        if isinstance(exc, MemoryError):
            message = "out of memory (try fewer images or classes)"
        elif isinstance(exc, ImportError) and exc.name:
            top = exc.name.split(".")[0]
            message = (f"missing Python package {top!r} (pip install "
                       f"{PIP_NAMES.get(top, top)}): {message}")
        sys.stderr.write(f"{prog}: error: {message}\n")
        return EXIT_ERROR
