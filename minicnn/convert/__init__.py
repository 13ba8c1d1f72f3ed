"""Convert public VGG weight files (torchvision, Keras, Caffe) to minicnn model files.

    net, meta = convert("vgg16-397923af.pth")          # format detected from content
    minicnn.save(net, "vgg16.h5", meta)

See tools/convert_weights.py for the command line and docs/converters.md for the layouts.
"""
import os

from .common import ConvertError, parse_arch
from .torch_pickle import UnsafePickleError

__all__ = ["ConvertError", "UnsafePickleError", "FORMATS", "convert", "convert_file",
           "detect_format"]

FORMATS = ("auto", "torchvision", "keras", "caffe")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
# pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2): PROTO 2, LONG1 of 10 bytes
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + (0x1950a86a20f9469cfc6c).to_bytes(10, "little")


def _describe(head):
    if not head:
        return "an empty file"
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        return "a pickle without the torch magic number"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file"
    try:
        text = head.decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text[:200]):
            return f"text starting {text[:30]!r}"
    except UnicodeDecodeError:
        pass
    return f"bytes {head[:8].hex(' ')}"


def detect_format(path):
    """Container of ``path`` from its content (never its name):
    'torch-zip', 'torch-legacy', 'torch-tar', 'keras' or 'caffe'. Raises ConvertError."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as exc:
        raise ConvertError(f"{path}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise ConvertError(f"{path}: empty file (expected a torch, Keras or Caffe weights file)")
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(LEGACY_PREFIX):
        return "torch-legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "torch-tar"
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048):   # HDF5 may sit after a user block
            f.seek(offset)
            if f.read(8) == HDF5_SIGNATURE:
                return "keras"
    from .caffe import looks_like_caffe
    from .torch_pickle import open_map
    mm = open_map(path)
    try:
        if looks_like_caffe(mm):
            return "caffe"
    finally:
        mm.close()
    raise ConvertError(f"{path}: unrecognized format: expected a torch.save file (zip, legacy "
                       f"pickle or tar), a Keras HDF5 file or a Caffe .caffemodel, found "
                       f"{_describe(head)}")


FAMILY = {"torch-zip": "torchvision", "torch-legacy": "torchvision", "torch-tar": "torchvision",
          "keras": "keras", "caffe": "caffe"}


def convert(path, fmt="auto", arch="auto", classes=None, quiet=False, _rehearsed=False):
    """Read a weights file -> (Net with the weights, meta for minicnn.save).

    fmt: 'auto' (detect from content), 'torchvision', 'keras' or 'caffe' (must agree with
    the content). arch: 'auto', 'vgg16', 'vgg19' or a config like '64,64,M,128,M'.
    classes: optional file of class names, one per line. quiet: no progress bar (by
    default a tqdm bar shows on a terminal). A Keras (HDF5) file is first converted once
    in a child process (minicnn.h5local.rehearse), as model files are loaded."""
    from . import common
    if fmt not in FORMATS:
        raise ConvertError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConvertError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: not a file")
    arch_config = parse_arch(arch)
    container = detect_format(path)
    family = FAMILY[container]
    if fmt != "auto" and fmt != family:
        raise ConvertError(f"--format {fmt}, but {path} is a {family} file ({container})")
    source = {"format": family, "container": container, "file": os.path.basename(path)}
    input_size = None
    handle = None
    try:
        if family == "torchvision":
            from .torch_pickle import open_map, read_state
            from .torch_map import torchvision_ops
            mm = open_map(path)
            tensors = read_state(path, container.split("-")[1], mm)
            ops = torchvision_ops(tensors, arch_config, arch)
            preprocessing = dict(common.TORCHVISION_PREPROCESSING)
        elif family == "keras":
            from .keras import read_keras
            if not _rehearsed:
                from ..h5local import LibraryFailure, rehearse
                try:
                    rehearse(path, lambda p: convert(p, "keras", arch, classes, True, True))
                except LibraryFailure as exc:
                    raise ConvertError(f"{path}: {exc}") from None
            ops, info, handle = read_keras(path)
            source.update(info)
            preprocessing = dict(common.CAFFE_PREPROCESSING)
        else:
            from .caffe import read_caffe
            from .torch_pickle import open_map
            ops, info = read_caffe(open_map(path))
            source.update({k: v for k, v in info.items() if k != "input_size"})
            input_size = info.get("input_size")
            preprocessing = dict(common.CAFFE_PREPROCESSING)

        common.check_chain(ops)
        common.check_arch(ops, arch_config, arch)
        inferred = common.infer_input_size(ops)
        if inferred is not None:
            if input_size and tuple(input_size) != (inferred, inferred):
                raise ConvertError(f"the file declares input {input_size} but fc6 expects a "
                                   f"{inferred}x{inferred} input")
            input_size = [inferred, inferred]
        input_size = list(input_size or [224, 224])
        config = common.config_of(ops)
        name = common.arch_name(config)
        source["arch"] = name or common.format_config(config)
        class_names = common.class_names_for(ops, classes)

        net, assign = common.build_net(ops)
        try:
            net.shapes((net.input_channels, *input_size))
        except ValueError as exc:
            raise ConvertError(f"the layers do not fit a {input_size} input: {exc}") from None
        common.fill_weights(net, assign, quiet)
    finally:
        if handle is not None:
            handle.close()
    preprocessing.update({"input_size": input_size,
                          "resize": int(round(input_size[0] * 256 / 224))})
    meta = {"preprocessing": preprocessing, "class_names": class_names, "source": source}
    net.meta = dict(meta)
    return net, meta


def convert_file(src, dst, fmt="auto", arch="auto", classes=None, quiet=False):
    """convert() then minicnn.save (atomic: no partial output on any failure)."""
    from ..io import save
    net, meta = convert(src, fmt, arch, classes, quiet)
    save(net, dst, meta)
    return net, meta
