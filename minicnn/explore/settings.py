"""Request parameters: checked parsing (RequestError naming the parameter) and the frozen
settings a saliency map, a GraphCut box and a class-model gallery depend on; each
settings object also spells itself as the tool's command-line options."""
import math
from dataclasses import dataclass

from ..viz.class_model import (DEFAULTS as CLASS_MODEL_DEFAULTS, OBJECTIVES,
                               ClassModelSettings as VizClassModelSettings)
from ..viz.localize import BOX
from ..viz.saliency import SALIENCY
from .errors import RequestError

MAX_SMOOTHGRAD = 200        # SmoothGrad samples one request may ask for
MAX_CLASS_MODEL_STEPS = 5000
MAX_SEED = 2**32 - 1


def parse_int(value, name, low, high, default=None):
    """A request parameter -> int in [low, high]; RequestError naming the parameter."""
    if value is None or value == "":
        if default is None:
            raise RequestError(f"missing parameter {name!r}")
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise RequestError(f"{name}: expected an integer, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise RequestError(f"{name}: expected an integer in [{low}, {high}], got {number}")
    return number


def parse_float(value, name, low, high, default=None, high_open=False):
    """A request parameter -> finite float in [low, high] (or [low, high))."""
    if value is None or value == "":
        if default is None:
            raise RequestError(f"missing parameter {name!r}")
        return float(default)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise RequestError(f"{name}: expected a number, got {str(value)[:40]!r}") from None
    bad = not math.isfinite(number) or number < low or number > high or (high_open and number == high)
    if bad:
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise RequestError(f"{name}: expected a number in {interval}, got {str(value)[:40]}")
    return number


def parse_choice(value, name, choices, default=None):
    """A request parameter -> one of ``choices`` (a sequence of strings)."""
    if value is None or value == "":
        if default is None:
            raise RequestError(f"missing parameter {name!r}")
        return default
    if value not in choices:
        raise RequestError(f"{name}: expected one of {', '.join(choices)}, got {str(value)[:40]!r}")
    return value


@dataclass(frozen=True)
class SaliencySettings:
    """What a saliency map depends on besides the image and the class (defaults: the
    tools', minicnn.viz.saliency.SALIENCY)."""
    smoothgrad: int = SALIENCY.smoothgrad
    noise: float = SALIENCY.noise
    seed: int = SALIENCY.seed

    @classmethod
    def from_args(cls, args):
        d = cls()
        return cls(smoothgrad=parse_int(args.get("smoothgrad"), "smoothgrad", 0, MAX_SMOOTHGRAD,
                                        d.smoothgrad),
                   noise=parse_float(args.get("noise"), "noise", 0.0, 1.0, d.noise),
                   seed=parse_int(args.get("seed"), "seed", 0, MAX_SEED, d.seed))

    def options(self):
        """Command-line options (as tools/saliency.py spells them)."""
        out = ["--smoothgrad", str(self.smoothgrad), "--noise", f"{self.noise:g}"] \
            if self.smoothgrad else []
        return out + (["--seed", str(self.seed)] if self.seed else [])


@dataclass(frozen=True)
class GraphCutSettings:
    """What a GraphCut box depends on besides the saliency map (defaults: the tools',
    minicnn.viz.localize.BOX)."""
    fg_quantile: float = BOX.fg_quantile
    bg_quantile: float = BOX.bg_quantile
    components: int = BOX.components
    smoothness: float = BOX.smoothness

    @classmethod
    def from_args(cls, args):
        d = cls()
        s = cls(fg_quantile=parse_float(args.get("fg_quantile"), "fg_quantile", 0.0, 1.0,
                                        d.fg_quantile),
                bg_quantile=parse_float(args.get("bg_quantile"), "bg_quantile", 0.0, 1.0,
                                        d.bg_quantile),
                components=parse_int(args.get("components"), "components", 1, 20, d.components),
                smoothness=parse_float(args.get("smoothness"), "smoothness", 0.0, 1e6,
                                       d.smoothness))
        if not s.bg_quantile < s.fg_quantile:
            raise RequestError(f"bg_quantile ({s.bg_quantile:g}) must be below fg_quantile "
                               f"({s.fg_quantile:g})")
        return s

    def options(self):
        out = []
        for flag, value, default in (("--fg-quantile", self.fg_quantile, BOX.fg_quantile),
                                     ("--bg-quantile", self.bg_quantile, BOX.bg_quantile),
                                     ("--components", self.components, BOX.components),
                                     ("--smoothness", self.smoothness, BOX.smoothness)):
            if value != default:
                out += [flag, f"{value:g}"]
        return out


@dataclass(frozen=True)
class ClassModelSettings:
    """The options of tools/class_model.py that the gallery exposes (defaults: the tool's)."""
    steps: int = CLASS_MODEL_DEFAULTS["steps"]
    step: float = CLASS_MODEL_DEFAULTS["step"]
    lam: float = CLASS_MODEL_DEFAULTS["lam"]
    jitter: int = CLASS_MODEL_DEFAULTS["jitter"]
    blur_every: int = CLASS_MODEL_DEFAULTS["blur_every"]
    blur_sigma: float = CLASS_MODEL_DEFAULTS["blur_sigma"]
    decay: float = CLASS_MODEL_DEFAULTS["decay"]
    norm_pct: float = CLASS_MODEL_DEFAULTS["norm_pct"]
    init_noise: float = CLASS_MODEL_DEFAULTS["init_noise"]
    objective: str = "score"
    seed: int = 0

    FLAGS = (("steps", "--steps"), ("step", "--step"), ("lam", "--lam"), ("jitter", "--jitter"),
             ("blur_every", "--blur-every"), ("blur_sigma", "--blur-sigma"), ("decay", "--decay"),
             ("norm_pct", "--norm-pct"), ("init_noise", "--init-noise"),
             ("objective", "--objective"), ("seed", "--seed"))

    @classmethod
    def from_args(cls, args):
        d = cls()
        return cls(
            steps=parse_int(args.get("steps"), "steps", 1, MAX_CLASS_MODEL_STEPS, d.steps),
            step=parse_float(args.get("step"), "step", 1e-9, 1e6, d.step),
            lam=parse_float(args.get("lam"), "lam", 0.0, 1e6, d.lam),
            jitter=parse_int(args.get("jitter"), "jitter", 0, 64, d.jitter),
            blur_every=parse_int(args.get("blur_every"), "blur_every", 0, 1000, d.blur_every),
            blur_sigma=parse_float(args.get("blur_sigma"), "blur_sigma", 0.0, 100.0, d.blur_sigma),
            decay=parse_float(args.get("decay"), "decay", 0.0, 1.0, d.decay, high_open=True),
            norm_pct=parse_float(args.get("norm_pct"), "norm_pct", 0.0, 100.0, d.norm_pct,
                                 high_open=True),
            init_noise=parse_float(args.get("init_noise"), "init_noise", 0.0, 1e3, d.init_noise),
            objective=parse_choice(args.get("objective"), "objective", OBJECTIVES, d.objective),
            seed=parse_int(args.get("seed"), "seed", 0, MAX_SEED, d.seed))

    def as_dict(self):
        return {name: getattr(self, name) for name, _ in self.FLAGS}

    def options(self):
        """Command-line options of tools/class_model.py that differ from its defaults."""
        default, out = ClassModelSettings(), []
        for name, flag in self.FLAGS:
            value = getattr(self, name)
            if value != getattr(default, name):
                out += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return out

    def title(self):
        """The gallery figure's title, worded as tools/class_model.py words it."""
        what = {"score": "S_c(I)", "softmax": "P_c(I)", "log-softmax": "log P_c(I)"}[self.objective]
        return (f"Class models: argmax_I {what} - {self.lam:g} ||I||^2, {self.steps} steps of "
                f"{self.step:g}, jitter {self.jitter}, blur {self.blur_sigma:g} every "
                f"{self.blur_every}, decay {self.decay:g}, norm pct {self.norm_pct:g}, start "
                f"noise {self.init_noise:g}, seed {self.seed}")

    def for_viz(self):
        """These settings as :func:`minicnn.viz.class_model` takes them (the gallery's
        steps are RMS-normalised, as the tool's without --raw-step)."""
        return VizClassModelSettings(
            normalize=True, **{name: getattr(self, name) for name, _ in self.FLAGS})

