"""torchvision VGG state_dict keys -> ops.

torchvision builds ``features`` from a config: each width adds Conv2d then ReLU (two
indices), each "M" adds MaxPool2d (one index), and the config always ends with "M".
``classifier`` is Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear (0, 3, 6).

Pools are not in a state_dict, so they come from:

- ``--arch vgg16 | vgg19 | CONFIG``: the config says where they are; the feature indices
  must be those torchvision would give it;
- ``--arch auto``: the gaps between conv indices: +2 within a block (conv, relu), +3
  across a pool (conv, relu, pool); a final pool after the last conv (torchvision configs
  all end with "M"). This covers small VGG-shaped nets made with torchvision's recipe.

Classifier linears are taken in index order whatever their indices and become fc6, fc7,
...; a state_dict without them gives a convolutional-only net ending at the last pool.
"""
import re

from ..terminal import short
from .common import ConvertError, ConvOp, FCOp, PoolOp, Source, format_config

KEY = re.compile(r"^(features|classifier)\.(\d{1,9})\.(weight|bias)$")


def _expected_indices(config):
    """torchvision's feature index of each conv for ``config``."""
    out, i = [], 0
    for item in config:
        if item == "M":
            i += 1
        else:
            out.append(i)
            i += 2
    return out


def torchvision_ops(tensors, arch_config=None, arch="auto"):
    groups = {"features": {}, "classifier": {}}
    unknown = []
    for key, tensor in tensors.items():
        m = KEY.match(key)
        if not m:
            unknown.append(key)
            continue
        groups[m.group(1)].setdefault(int(m.group(2)), {})[m.group(3)] = tensor
    if any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in unknown):
        raise ConvertError("batch-norm VGG (vgg*_bn) state_dict: only plain VGG is supported "
                           "(found running_mean / running_var keys)")
    if unknown or not groups["features"]:
        shown = ", ".join(short(k, 60)[1:-1] for k in (unknown[:4] or list(tensors)[:4]))
        raise ConvertError(f"not a torchvision VGG state_dict: expected keys "
                           f"features.N.weight/bias and classifier.N.weight/bias, found {shown}"
                           f"{' ...' if len(unknown) > 4 else ''}")
    for part, layers in groups.items():
        for index, pair in layers.items():
            for p in ("weight", "bias"):
                if p not in pair:
                    raise ConvertError(f"{part}.{index}: has "
                                       f"{' and '.join(pair)} but no {p}")
            want = 4 if part == "features" else 2
            if len(pair["weight"].shape) != want:
                raise ConvertError(f"{part}.{index}.weight: expected a {want}-D "
                                   f"{'conv' if want == 4 else 'linear'} weight, found shape "
                                   f"{pair['weight'].shape}")

    indices = sorted(groups["features"])
    if arch_config is not None:
        expected = _expected_indices(arch_config)
        if indices != expected:
            raise ConvertError(f"--arch {arch} expects conv layers at features."
                               f"{','.join(map(str, expected))}, the file has features."
                               f"{','.join(map(str, indices))}")
        pool_after = _pools_from_config(arch_config)
    else:
        if indices[0] != 0:
            raise ConvertError(f"features start at index {indices[0]}: expected a conv at "
                               f"features.0 (torchvision VGG layout)")
        pool_after = set()
        for n, (a, b) in enumerate(zip(indices, indices[1:])):
            if b - a == 3:
                pool_after.add(n)
            elif b - a != 2:
                raise ConvertError(f"feature indices jump from {a} to {b}: expected steps of 2 "
                                   f"(conv, relu) or 3 (conv, relu, pool) as in torchvision's "
                                   f"VGG; give the layout with --arch CONFIG")
        pool_after.add(len(indices) - 1)

    ops = []
    for n, index in enumerate(indices):
        pair = groups["features"][index]
        ops.append(ConvOp(_src(pair["weight"]), _src(pair["bias"]), 1, 1,
                          name=f"features.{index}"))
        if n in pool_after:
            ops.append(PoolOp(2, 2, name=f"pool after features.{index}"))
    for index in sorted(groups["classifier"]):
        pair = groups["classifier"][index]
        ops.append(FCOp(_src(pair["weight"]), _src(pair["bias"]), name=f"classifier.{index}"))
    for op in ops:
        if isinstance(op, ConvOp) and op.weight.shape[2:] != (3, 3):
            raise ConvertError(f"{op.name}.weight: expected 3x3 VGG kernels, found shape "
                               f"{op.weight.shape}")
    if arch_config is not None and len(indices) != sum(c != "M" for c in arch_config):
        raise ConvertError(f"--arch {format_config(arch_config)} does not match the file")
    return ops


def _pools_from_config(config):
    out, n = set(), -1
    for item in config:
        if item == "M":
            out.add(n)
        else:
            n += 1
    return out


def _src(tensor):
    return Source(tensor.shape, tensor.load, name=tensor.name)
