"""The pictures the page shows (served as PNG): (H, W, 3) uint8 arrays or PIL images
made from an :class:`~minicnn.explore.core.Explorer`'s cached results with the same
:mod:`minicnn.viz` renderers and figures the tools use, so a picture's bytes are the
tool's."""
import math

import numpy as np

from ..functional import RULES
from ..viz.attribution import METHODS
from ..viz import figures, render
from .errors import RequestError
from .settings import ClassModelSettings, GraphCutSettings, SaliencySettings, parse_choice, \
    parse_int

TOP_CROPS = 6               # top-activating sample crops shown for a unit
SALIENCY_KINDS = ("saliency", "overlay", "saliency_figure")
LOCALIZE_KINDS = ("boxed", "seeds", "mask", "localize_figure")
LAYER_KINDS = ("activations", "unit", "crop")


def picture(explorer, kind, args):
    """A picture the page shows -> (H, W, 3) uint8 array or PIL image (figures).
    ``args``: the request's parameters. RequestError for unknown kinds/values."""
    if kind == "gallery" or kind == "class_model":
        return class_model_picture(explorer, kind, args)
    entry = explorer.image(args.get("image"))
    if kind == "input":
        return explorer.input_rgb(entry)
    if kind in SALIENCY_KINDS + LOCALIZE_KINDS:
        return saliency_picture(explorer, kind, entry, args)
    if kind in LAYER_KINDS:
        return layer_picture(explorer, kind, entry, args)
    raise RequestError(f"unknown picture {kind[:40]!r}", 404)


def saliency_picture(explorer, kind, entry, args):
    """A saliency map, its overlay or figure, or (LOCALIZE_KINDS) a localisation step."""
    cls = explorer.resolve_class(entry, args.get("class"))
    method = parse_choice(args.get("method"), "method", list(METHODS), "gradient")
    settings = SaliencySettings.from_args(args)
    sal = explorer.saliency(entry, cls, method, settings)
    m = sal.map[0]
    if kind == "saliency":
        return render.heatmap(m)
    if kind == "overlay":
        return render.overlay(explorer.input_rgb(entry), m)
    if kind == "saliency_figure":
        smooth = f"SmoothGrad n={settings.smoothgrad}, " if settings.smoothgrad else ""
        return figures.saliency_figure(explorer.net, [explorer.images.named_view(entry)], [sal],
                                       method, [smooth])
    graphcut = GraphCutSettings.from_args(args)
    loc, file_box = explorer.localization(entry, cls, method, settings, graphcut)
    return localize_picture(explorer, kind, entry, sal, loc, file_box)


def layer_picture(explorer, kind, entry, args):
    """A layer's activation grid, a unit's picture or one of its top crops."""
    layer = explorer.resolve_layer(args.get("layer"))
    if kind == "activations":
        return activation_grid(explorer, entry, layer)[0]
    channel = explorer.check_channel(layer, args.get("unit"))
    if kind == "crop":
        return crop_picture(explorer, layer, channel, args.get("rank"))
    return unit_picture(explorer, entry, layer, channel, args.get("view", "field"))


def crop_picture(explorer, layer, channel, rank):
    """The receptive field of the unit's ``rank``-th strongest response over the samples."""
    rank = parse_int(rank, "rank", 0, TOP_CROPS - 1)
    crops = explorer.top_crops(layer, channel)
    if rank >= len(crops):
        raise RequestError(f"rank {rank}: only {len(crops)} samples", 404)
    x0, y0, x1, y1 = crops[rank]["box"]
    return explorer.input_rgb(explorer.image(crops[rank]["image"]))[y0:y1, x0:x1]


def unit_picture(explorer, entry, layer, channel, view):
    """A unit's receptive field (view "field"), deconv figure ("figure") or one
    reconstruction ("RULE_signed" or "RULE_abs")."""
    rec = explorer.unit(entry, layer, channel)
    if view == "field":
        return receptive_field_picture(explorer, entry, layer, rec)
    if view == "figure":
        return figures.deconv_figure(explorer.net, [explorer.images.named_view(entry)], rec,
                                     layer)
    rule, _, part = str(view).partition("_")
    parse_choice(rule, "view", RULES)
    parse_choice(part, "view part", ("signed", "abs"))
    signal = rec.signals[rule][0]
    if part == "signed":
        return render.signed_rgb(signal, explorer.net.preprocessing.channel_order)
    return render.heatmap(np.abs(signal).max(axis=0))


def localize_picture(explorer, kind, entry, sal, loc, file_box):
    """A step of the weakly supervised localisation: the whole figure, the GraphCut seeds
    (red: object, blue: background), the mask, or the input with the true and found boxes."""
    view = explorer.images.named_view(entry)
    truth = explorer.truth_box(entry)
    row = figures.localize_figure(explorer.net, view, sal, loc, file_box, truth,
                                  (entry.truth or {}).get("name", ""))
    if kind == "localize_figure":
        return render.grid([row], title="Weakly supervised localisation: saliency -> colour "
                                        "models -> GraphCut -> largest component (Simonyan "
                                        "et al. 2013, Sect. 3.2)")
    if kind == "seeds":
        seeds = (view.rgb.astype(np.float64) * 0.45).astype(np.uint8)
        seeds[loc.fg_seeds] = (255, 40, 40)
        seeds[loc.bg_seeds] = (60, 110, 255)
        return seeds
    if kind == "mask":
        mask = np.zeros_like(view.rgb)
        mask[loc.segmentation] = (110, 110, 110)
        mask[loc.mask] = (255, 255, 255)
        return mask
    boxes = [(truth, figures.TRUTH_COLOUR)] if truth is not None else []
    if loc.box is not None:
        boxes.append((loc.box, figures.PRED_COLOUR))
    return boxed_picture(view.rgb, boxes)


def activation_grid(explorer, entry, layer):
    """(picture (H, W, 3) uint8, geometry): every channel of the layer as a tile, in
    rows of ``columns``, colour = activation / the layer's maximum (negative values
    shown as 0). geometry: columns, rows, tile (h, w), gap, channels, vmax."""
    act = explorer.activation(entry, layer)
    maps = act.reshape(act.shape[0], *(act.shape[1:] if act.ndim == 3 else (1, 1)))
    c, th, tw = maps.shape
    columns = int(math.ceil(math.sqrt(c)))
    rows = int(math.ceil(c / columns))
    gap = 1 if min(th, tw) >= 4 else 0
    vmax = float(maps.max())
    out = np.full((rows * (th + gap) - gap if rows else 0, columns * (tw + gap) - gap, 3),
                  60, np.uint8)
    coloured = render.heatmap(np.maximum(maps, 0).reshape(c * th, tw),
                              vmax=vmax if vmax > 0 else 1.0).reshape(c, th, tw, 3)
    for k in range(c):
        r, q = divmod(k, columns)
        out[r * (th + gap):r * (th + gap) + th, q * (tw + gap):q * (tw + gap) + tw] = coloured[k]
    return out, {"columns": columns, "rows": rows, "tile": [th, tw], "gap": gap,
                 "channels": c, "vmax": vmax,
                 "maxima": [float(v) for v in maps.reshape(c, -1).max(axis=1)]}


def receptive_field_picture(explorer, entry, layer, rec):
    """The input with the unit's receptive field (yellow) around its strongest
    position, upscaled and lined as :func:`boxed_picture` does."""
    box = explorer.receptive_box(layer, rec.positions[0])
    return boxed_picture(explorer.input_rgb(entry), [(box, figures.SUPPORT_COLOUR)])


def class_model_picture(explorer, kind, args):
    """The figure of a computed gallery ("gallery") or one of its class models
    ("class_model"); 404 while the gallery is not computed."""
    settings = ClassModelSettings.from_args(args)
    classes = explorer.gallery_classes(args.get("classes"))
    job = explorer.class_model_job(settings, classes, start=False)
    if job is None or job.state != "done":
        raise RequestError("this gallery is not computed (yet); start it first", 404)
    if kind == "gallery":
        return figures.class_model_figure(explorer.net, job.result, "rescale", 5,
                                          settings.title())
    if not args.get("class"):
        raise RequestError("missing parameter 'class'")
    cls = explorer.find_class(args.get("class"))
    if cls not in classes:
        raise RequestError(f"class {cls} is not in this gallery", 404)
    p = explorer.net.preprocessing
    return render.rescaled_rgb(p.input_to_array(job.result.x[classes.index(cls)]))


def box_line_width(size):
    """Line width of the boxes on a picture whose long side is ``size`` pixels: 3 up to
    280 pixels (a 64x64 input upscaled 4x, a 224x224 one as it is), about 1/80 of larger
    pictures, so a picture shown smaller still shows its box."""
    return max(3, int(round(size / 80)))


def boxed_picture(rgb, boxes):
    """The picture with ``boxes`` [(box [x0, y0, x1, y1] in ``rgb`` pixels, x1/y1
    exclusive, colour)], upscaled as the figures upscale panels (a 64x64 input 4x), the
    lines inside each box and as wide as :func:`box_line_width` of the upscaled picture
    (the page draws its own boxes over the image at display size)."""
    from PIL import ImageDraw
    h, w = rgb.shape[:2]
    scale = render.upscale_factor(h, w)
    pic = render.panel(rgb, "", scale)
    draw = ImageDraw.Draw(pic)
    width = box_line_width(max(pic.size))
    for (x0, y0, x1, y1), colour in boxes:
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1],
                       outline=colour, width=width)
    return pic
