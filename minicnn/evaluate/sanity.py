"""Does a saliency map depend on what the network learned? The model-parameter
randomisation test of Adebayo et al. (2018, "Sanity checks for saliency maps").

The parameters of the network's layers are replaced by a fresh initialisation, as at
training start (He normal weights from ``seed``, zero biases; layer k's draw comes from
(seed, k), so it is the same in every step and on every worker):

- cascade: from the top layer down, one more layer at a time, until all are random;
- independent: one layer at a time, the others trained.

At each step each method's map of the image's original top-1 class is compared with the
map of the trained network: Spearman rank correlation of the absolute maps (max over
channels |signal|, as the saliency map), of the signed signals (all C x H x W values), and
SSIM of the maps scaled to [0, 1] (scikit-image). A map that shows what the network
learned changes as its layers are randomised; one that stays similar shows the image
more than the model.
"""
from dataclasses import dataclass

import numpy as np

from ..viz.attribution import attribute
from .metrics import ci95
from .localization import METHODS, MapSettings, _scores, _view, class_signals, method_options

MODES = ("cascade", "independent")
ORIGINAL = "original"


@dataclass
class SanitySettings(MapSettings):
    """Everything that decides a sanity record besides the model and the image (seed:
    also of the re-initialised weights)."""


def parameter_layers(net):
    """Names of the layers with parameters, input to output."""
    return [name for name, layer in net if layer.params]


def random_parameters(net, seed=0):
    """{layer name: {"weight": He normal, "bias": zeros}} for every layer with parameters,
    on the net's device; layer k (in :func:`parameter_layers` order) draws from (seed, k)."""
    from ..backend import to_device
    out = {}
    for k, name in enumerate(parameter_layers(net)):
        layer = net[name]
        rng = np.random.default_rng((int(seed), k))
        params = {}
        for pname, value in layer.params.items():
            shape = tuple(value.shape)
            if pname == "weight":
                fan_in = int(np.prod(shape[1:]))
                arr = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            else:
                arr = np.zeros(shape, np.float32)
            params[pname] = to_device(arr, net.device)
        out[name] = params
    return out


def randomisation_steps(net):
    """[(mode, layer, randomised layer names)]: the trained net first ("cascade",
    "original", ()), then the cascade from the top layer down, then each layer alone
    (top layer first)."""
    top_down = parameter_layers(net)[::-1]
    steps = [("cascade", ORIGINAL, ())]
    steps += [("cascade", name, tuple(top_down[:i + 1])) for i, name in enumerate(top_down)]
    steps += [("independent", name, (name,)) for name in top_down]
    return steps


class swapped_parameters:
    """Context: the given layers of ``net`` use ``params`` (layer -> dict) inside, their
    own parameters again after."""

    def __init__(self, net, params, layers):
        self.net, self.params, self.layers = net, params, layers

    def __enter__(self):
        self.saved = {name: self.net[name].params for name in self.layers}
        for name in self.layers:
            self.net[name].params = self.params[name]
        return self.net

    def __exit__(self, *exc):
        for name, params in self.saved.items():
            self.net[name].params = params
        return False


def spearman(a, b):
    """Spearman rank correlation of two arrays of equal size (0 when one is constant)."""
    from scipy.stats import spearmanr
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def normalised(m):
    top = float(np.max(m))
    return np.asarray(m, np.float64) / top if top > 0 else np.zeros(np.shape(m))


def ssim(a, b):
    """SSIM of two (H, W) maps after scaling each to [0, 1] by its maximum."""
    from skimage.metrics import structural_similarity
    a, b = normalised(a), normalised(b)
    side = min(a.shape)
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return float(np.array_equal(a, b))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def compare(reference, current):
    """(signal (C, H, W), map (H, W)) of the trained and of a randomised net -> the three
    similarities: Spearman of the maps, of the signed signals, SSIM of the maps."""
    (reference, ref_map), (signal, map_) = reference, current
    return {"spearman_abs": round(spearman(ref_map, map_), 6),
            "spearman_signed": round(spearman(reference, signal), 6),
            "ssim": round(ssim(ref_map, map_), 6)}


_RANDOM_CACHE = {}


def _random_for(net, seed):
    """random_parameters(net, seed), drawn once per process for the net in use."""
    if _RANDOM_CACHE.get("net") is not net or _RANDOM_CACHE.get("seed") != int(seed):
        _RANDOM_CACHE.update(net=net, seed=int(seed), params=random_parameters(net, seed))
    return _RANDOM_CACHE["params"]


def signals_of(net, view, cls, methods, settings, index):
    """{method: (signal (C', H, W), map (H, W))} of class ``cls`` for one view."""
    out = {}
    for method in methods:
        rule, smooth = METHODS[method]
        if rule is None:      # a descendant: the registry's signal and map
            x = np.asarray(view.x, np.float32)[None]
            signal, map_ = attribute(net, x, [cls], method, method_options(settings))
            out[method] = (signal[0].astype(np.float64), map_[0].astype(np.float64))
            continue
        samples = settings.smoothgrad_samples if smooth else 0
        signal = class_signals(net, view.x, [cls], rule, samples, settings.noise,
                               (settings.seed, int(index)), settings.batch_size)[0]
        out[method] = (signal, np.abs(signal).max(axis=0))
    return out


def evaluate_item(net, item, index, settings):
    """One image -> {"image", "label", "class", "cascade": {method: [step...]},
    "independent": {method: [step...]}} with step = {"layer", "spearman_abs",
    "spearman_signed", "ssim"}; the class is the trained net's top-1."""
    view = _view(net, item, False)
    cls = int(np.argmax(_scores(net, view, False)))
    reference = signals_of(net, view, cls, settings.methods, settings, index)
    random = _random_for(net, settings.seed)
    record = {"image": item.key, "label": int(item.label), "class": cls,
              "cascade": {m: [] for m in settings.methods},
              "independent": {m: [] for m in settings.methods}}
    for mode, layer, randomised in randomisation_steps(net):
        with swapped_parameters(net, random, randomised):
            current = (reference if not randomised else
                       signals_of(net, view, cls, settings.methods, settings, index))
        for method in settings.methods:
            record[mode][method].append({"layer": layer,
                                         **compare(reference[method], current[method])})
    return record


def summarise(records, methods):
    """Records -> sanity.json: per mode, method and step the mean over images of each
    similarity, with its standard deviation (``*_std``) and a bootstrap 95% confidence
    interval of the mean (``*_ci95``)."""
    out = {"n": len(records)}
    keys = ("spearman_abs", "spearman_signed", "ssim")
    for mode in MODES:
        out[mode] = {}
        for method in methods:
            rows = []
            steps = records[0][mode][method] if records else []
            for k, step in enumerate(steps):
                row = {"layer": step["layer"]}
                for key in keys:
                    values = np.array([r[mode][method][k][key] for r in records], np.float64)
                    row[key] = float(values.mean())
                    row[key + "_std"] = float(values.std())
                    row[key + "_ci95"] = ci95(values)
                rows.append(row)
            out[mode][method] = rows
    return out


def cascade_maps(net, item, settings, index):
    """One image's saliency maps along the cascade, for the strip figure. Returns (step
    labels, {method: [(H, W) map per step]}, the picture the network sees)."""
    view = _view(net, item, False)
    cls = int(np.argmax(_scores(net, view, False)))
    random = _random_for(net, settings.seed)
    steps = [s for s in randomisation_steps(net) if s[0] == "cascade"]
    maps = {m: [] for m in settings.methods}
    for _, layer, randomised in steps:
        with swapped_parameters(net, random, randomised):
            sig = signals_of(net, view, cls, settings.methods, settings, index)
        for m in settings.methods:
            maps[m].append(sig[m][1])
    labels = ["trained" if layer == ORIGINAL else f"random to {layer}" for _, layer, _ in steps]
    return labels, maps, view.rgb
