"""Drawing: heat maps, signed signals, labelled panels and grids (Pillow + matplotlib cm).

Panels are upscaled by an integer factor with nearest-neighbour sampling, so a 64x64
canvas keeps its pixels and the labels stay legible; every panel has a title bar.
"""
import numpy as np

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MARGIN = 6
TARGET_SIZE = 256      # panels are upscaled to about this many pixels on their long side


def font(size=14):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def upscale_factor(h, w, target=TARGET_SIZE):
    return max(1, int(round(target / max(h, w))))


def heatmap(m, cmap="inferno", vmax=None):
    """(H, W) non-negative map -> (H, W, 3) uint8 through a perceptual colour map,
    scaled so 0 is the darkest and ``vmax`` (default the map's maximum) the brightest."""
    from matplotlib import colormaps
    m = np.asarray(m, np.float64)
    top = float(m.max()) if vmax is None else float(vmax)
    norm = np.clip(m / top, 0.0, 1.0) if top > 0 else np.zeros_like(m)
    return (colormaps[cmap](norm)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(rgb, m, cmap="inferno", alpha=0.65):
    """Heat map blended over a (H, W, 3) picture; opacity grows with the map value."""
    m = np.asarray(m, np.float64)
    a = (m / m.max() if m.max() > 0 else np.zeros_like(m))[..., None] * alpha
    grey = np.asarray(rgb, np.float64).mean(axis=2, keepdims=True).repeat(3, axis=2)
    out = grey * (1 - a) + heatmap(m, cmap).astype(np.float64) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def signed_rgb(signal, channel_order="RGB"):
    """(C, H, W) signed input-space signal -> (H, W, 3) uint8: grey is 0, each channel
    scaled by the largest |value| (Zeiler & Fergus's display)."""
    s = np.asarray(signal, np.float64)
    if s.shape[0] == 1:
        s = np.repeat(s, 3, axis=0)
    if channel_order == "BGR":
        s = s[::-1]
    top = np.abs(s).max()
    s = s / (2 * top) + 0.5 if top > 0 else np.full_like(s, 0.5)
    return (np.clip(s, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def rescaled_rgb(arr):
    """(H, W, 3) float picture in any range -> uint8, min..max stretched to 0..255."""
    a = np.asarray(arr, np.float64)
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return (a * 255 + 0.5).astype(np.uint8)


def _wrap(draw, text, fnt, width):
    lines = []
    for para in str(text).split("\n"):
        words, line = para.split(" "), ""
        for word in words:
            trial = f"{line} {word}".strip()
            if line and draw.textlength(trial, font=fnt) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def panel(rgb, title="", scale=None, boxes=(), font_size=14):
    """A labelled panel: ``rgb`` (H, W, 3) uint8 upscaled by ``scale`` (nearest
    neighbour) under a title bar. ``boxes``: [(box [x0, y0, x1, y1] in ``rgb`` pixels,
    x1/y1 exclusive, colour)] drawn on the upscaled picture. Returns a PIL image."""
    from PIL import Image, ImageDraw
    rgb = np.asarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    scale = upscale_factor(h, w) if scale is None else int(scale)
    pic = Image.fromarray(rgb, "RGB").resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pic)
    for box, colour in boxes:
        x0, y0, x1, y1 = box
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1],
                       outline=colour, width=max(2, scale // 2))
    fnt = font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(probe, title, fnt, pic.width - 4) if title else []
    line_h = font_size + 4
    out = Image.new("RGB", (pic.width, pic.height + line_h * len(lines) + (4 if lines else 0)),
                    BACKGROUND)
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((2, 2 + i * line_h), line, fill=TEXT, font=fnt)
    out.paste(pic, (0, out.height - pic.height))
    return out


def grid(rows, title=None, font_size=16):
    """Rows of PIL panels -> one PIL image (rows top to bottom, panels left to right),
    with an optional title line on top."""
    from PIL import Image, ImageDraw
    rows = [list(r) for r in rows if r]
    widths = [sum(p.width for p in r) + MARGIN * (len(r) + 1) for r in rows]
    heights = [max(p.height for p in r) for r in rows]
    fnt = font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(widths) if widths else 100
    head = _wrap(probe, title, fnt, width - 2 * MARGIN) if title else []
    top = (len(head) * (font_size + 4) + MARGIN) if head else 0
    out = Image.new("RGB", (width, top + sum(heights) + MARGIN * (len(rows) + 1)), BACKGROUND)
    d = ImageDraw.Draw(out)
    for i, line in enumerate(head):
        d.text((MARGIN, MARGIN + i * (font_size + 4)), line, fill=TEXT, font=fnt)
    y = top + MARGIN
    for r, h in zip(rows, heights):
        x = MARGIN
        for p in r:
            out.paste(p, (x, y))
            x += p.width + MARGIN
        y += h + MARGIN
    return out


def tile(panels, columns):
    """Panels -> rows of at most ``columns`` panels (for :func:`grid`)."""
    columns = max(1, int(columns))
    return [panels[i:i + columns] for i in range(0, len(panels), columns)]
