"""Zeiler & Fergus reconstruction of one unit, with each backward rule
(Simonyan et al. 2013, Sect. 4; docs/backward_rules.md).

For layer L and channel k of each image: run the network up to L, keep only the
strongest activation of channel k (its value at its position; every other activation of
the layer set to zero) and send that signal back to the input with
``net.backward(..., start=L)`` under the rule "gradient", "deconvnet" and "guided".
The passes share the pooling switches and the linear layers and differ only in the ReLU
rule, which is what the picture shows.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, to_numpy
from ..functional import RULES, check_rule


@dataclass(frozen=True)
class ReconstructionSettings:
    """The defaults that :func:`unit_reconstruction`, ``tools/deconv.py`` (--layer,
    --channel, --zoom) and the explorer share. layer: a layer name, or None for the last
    ReLU after a convolution (:func:`default_layer`); channel: an index, or "top" (per
    image, the channel with the strongest activation); zoom: the picture crops each panel
    to where the reconstruction reaches."""
    layer: str = None
    channel: object = "top"
    zoom: bool = False


RECONSTRUCTION = ReconstructionSettings()


@dataclass
class UnitReconstruction:
    """Results for a batch of N images.

    signals    {rule: (N, C, H, W) float32} input-space reconstruction per rule
    channels   (N,) channel index used per image
    positions  N tuples: position of the kept activation inside the channel ((i, j) for
               a conv map, () for a fully connected unit)
    values     (N,) the kept activation value
    """
    signals: dict
    channels: np.ndarray
    positions: list
    values: np.ndarray


def top_channel(activation):
    """(N, C, ...) activations -> (N,) channel with the strongest single activation."""
    a = to_numpy(activation)
    return a.reshape(a.shape[0], a.shape[1], -1).max(axis=2).argmax(axis=1)


def keep_strongest(activation, channels):
    """Signal equal to ``activation`` at the strongest position of channel ``channels[n]``
    of each image and zero everywhere else. Returns (signal on the activation's device,
    positions, values)."""
    xp = get_array_module(activation)
    n, c = activation.shape[:2]
    spatial = activation.shape[2:]
    flat = activation.reshape(n, c, -1)
    signal = xp.zeros_like(flat)
    positions, values = [], []
    for i in range(n):
        k = int(channels[i])
        if not 0 <= k < c:
            raise ValueError(f"channel {k} out of range: the layer has {c} channels (0-{c - 1})")
        j = int(to_numpy(flat[i, k].argmax()))
        signal[i, k, j] = flat[i, k, j]
        positions.append(tuple(int(v) for v in np.unravel_index(j, spatial)) if spatial else ())
        values.append(float(to_numpy(flat[i, k, j])))
    return signal.reshape(activation.shape), positions, np.array(values)


def unit_reconstruction(net, x, layer=RECONSTRUCTION.layer, channel=RECONSTRUCTION.channel,
                        rules=RULES):
    """Reconstruct the strongest activation of ``channel`` in ``layer`` for each image of
    x (N, C, H, W). layer: a name, or None for :func:`default_layer`; channel: an index
    (same for all images), a sequence of N indices, or "top" (per image, the channel with
    the strongest activation). Returns a :class:`UnitReconstruction` (NumPy arrays)."""
    if layer is None:
        layer = default_layer(net)
    for rule in rules:
        check_rule(rule)
    x = np.asarray(to_numpy(x), np.float32)
    act = net.forward(x, until=layer)
    n = act.shape[0]
    if channel == "top":
        channels = top_channel(act)
    elif np.ndim(channel) == 0:
        channels = np.full(n, int(channel))
    else:
        channels = np.asarray(channel, np.int64)
    signal, positions, values = keep_strongest(act, channels)
    signals = {rule: to_numpy(net.backward(signal, rule=rule, start=layer)).astype(np.float32)
               for rule in rules}
    return UnitReconstruction(signals=signals, channels=np.asarray(channels), positions=positions,
                              values=values)


def default_layer(net):
    """The last ReLU that follows a convolution (a Zeiler-Fergus style feature map)."""
    last, seen_conv = None, False
    for name, layer in net:
        if layer.kind == "conv2d":
            seen_conv = True
        elif layer.kind in ("flatten", "global_avgpool"):
            break
        elif layer.kind == "relu" and seen_conv:
            last = name
    return last or net.names[-1]
