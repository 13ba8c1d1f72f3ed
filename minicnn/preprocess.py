"""Image <-> network input, as a model file's metadata says.

A model's ``preprocessing`` metadata (all keys optional but ``input_size``)::

    channel_order  "RGB" or "BGR"            (torchvision: RGB; Caffe/Keras: BGR)
    input_scale    value of a white pixel     (1.0: pixels in [0, 1]; 255.0: 0-255)
    mean, std      per channel, in the model's channel order and input_scale units
    input_size     [H, W] of the network input
    resize         shorter side before the centre crop (torchvision: 256); null: the
                   image is resized straight to input_size
"""
from dataclasses import dataclass, field
import os

import numpy as np

MAX_IMAGE_PIXELS = 64_000_000   # bigger files are refused (decompression bombs)
# The resized frame the network input is cropped from. Its size follows the image's
# aspect ratio, not the file's size: a 20000x1 image whose shorter side is scaled to 256
# would need 5 gigapixels. The limit allows aspect ratios up to 256:1 at a shorter side of 256.
MAX_FRAME_PIXELS = 4096 * 4096
MAX_INPUT_MAGNITUDE = 1e4       # |network input| a pixel may become (Caffe BGR 0-255: 152)


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""


@dataclass
class Preprocessing:
    input_size: tuple = (224, 224)
    channel_order: str = "RGB"
    input_scale: float = 1.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    resize: object = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing must be an object, got {type(d).__name__}")
        d = dict(d)
        try:
            size = d.pop("input_size", (224, 224))
            p = cls(input_size=(int(size[0]), int(size[1])),
                    channel_order=str(d.pop("channel_order", "RGB")).upper(),
                    input_scale=float(d.pop("input_scale", 1.0)),
                    mean=tuple(float(v) for v in d.pop("mean", (0.0, 0.0, 0.0))),
                    std=tuple(float(v) for v in d.pop("std", (1.0, 1.0, 1.0))),
                    resize=d.pop("resize", None), extra=d)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"bad preprocessing metadata: {exc}") from None
        p.validate()
        return p

    def to_dict(self):
        d = {"input_size": list(self.input_size), "channel_order": self.channel_order,
             "input_scale": self.input_scale, "mean": list(self.mean), "std": list(self.std),
             "resize": self.resize}
        d.update(self.extra)
        return d

    def validate(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if min(self.input_size) < 1:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if self.input_size[0] * self.input_size[1] > MAX_FRAME_PIXELS:
            raise ValueError(f"input_size {self.input_size} is larger than {MAX_FRAME_PIXELS} "
                             f"pixels")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need 3 values (one per channel)")
        if not all(np.isfinite(self.mean)) or not all(0 < s < np.inf for s in self.std):
            raise ValueError("mean must be finite and std positive and finite")
        if not 0 < self.input_scale < np.inf:
            raise ValueError(f"input_scale must be positive and finite, got {self.input_scale}")
        # the network input of a black and of a white pixel: a scale of 1e300 (or a std of
        # 1e-300) is "finite" but makes every pass overflow float32
        extremes = [abs((v - m) / s) for v in (0.0, float(self.input_scale))
                    for m, s in zip(self.mean, self.std)]
        if not max(extremes) <= MAX_INPUT_MAGNITUDE:
            raise ValueError(f"input_scale {self.input_scale:g}, mean and std make network "
                             f"inputs up to {max(extremes):.3g}; expected at most "
                             f"{MAX_INPUT_MAGNITUDE:g} (a white pixel is input_scale)")
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize < 1):
            raise ValueError(f"resize must be a positive integer or null, got {self.resize!r}")

    # ------------------------------------------------------------------ image -> input
    def _resized(self, size):
        """Image (width, height) -> (resized (width, height), crop (left, top))."""
        h, w = self.input_size
        if self.resize is None:
            return (w, h), (0, 0)
        scale = self.resize / min(size)
        new = (max(w, round(size[0] * scale)), max(h, round(size[1] * scale)))
        check_frame(size, new)
        return new, ((new[0] - w) // 2, (new[1] - h) // 2)

    def fit_image(self, image):
        """Resize / centre-crop a PIL image to the input size; returns an RGB PIL image."""
        from PIL import Image
        image = to_rgb(image)
        h, w = self.input_size
        new, (left, top) = self._resized(image.size)
        image = image.resize(new, Image.BILINEAR)
        return image if new == (w, h) else image.crop((left, top, left + w, top + h))

    def fit_geometry(self, size):
        """Where :meth:`fit_image` puts an image of ``size`` (width, height): returns
        ((sx, sy), (ox, oy)) with image pixel = input pixel * s + o."""
        new, (left, top) = self._resized(size)
        sx, sy = size[0] / new[0], size[1] / new[1]
        return (sx, sy), (left * sx, top * sy)

    def array_to_input(self, rgb):
        """(H, W, 3) uint8 RGB -> (3, H, W) float32 network input; a batch
        (N, H, W, 3) -> (N, 3, H, W)."""
        x = np.asarray(rgb).astype(np.float32) * np.float32(self.input_scale / 255.0)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, -3), dtype=np.float32)

    def image_to_input(self, image):
        """PIL image (any mode, any size) -> (3, H, W) float32 network input."""
        return self.array_to_input(np.asarray(self.fit_image(image), dtype=np.uint8))

    def input_to_array(self, x):
        """(3, H, W) network input -> (H, W, 3) float RGB in 0-255 (not clipped)."""
        x = np.asarray(x, np.float32).transpose(1, 2, 0)
        x = x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)
        if self.channel_order == "BGR":
            x = x[:, :, ::-1]
        return x * np.float32(255.0 / self.input_scale)

    def input_to_image(self, x):
        """(3, H, W) network input -> (H, W, 3) uint8 RGB for display (clipped)."""
        return np.clip(np.rint(self.input_to_array(x)), 0, 255).astype(np.uint8)


def check_frame(size, new):
    """Refuse resizing an image of ``size`` (width, height) to ``new`` when the result
    would exceed MAX_FRAME_PIXELS (checked before any pixel is allocated)."""
    if new[0] * new[1] > MAX_FRAME_PIXELS:
        raise ImageError(f"a {size[0]}x{size[1]} image would be resized to {new[0]}x{new[1]} "
                         f"for the network, more than {MAX_FRAME_PIXELS} pixels; expected an "
                         f"aspect ratio closer to 1:1 (crop the image first)")


def to_rgb(image):
    """Any PIL mode -> RGB (alpha composited on white; 16-bit and float rescaled)."""
    from PIL import Image
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageError("a float image with non-finite pixels (inf or NaN); expected "
                             "finite values")
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path):
    """Open an image file fully (PNG, JPEG, ...) -> RGB PIL image.

    Raises ImageError naming the file for: a missing file, something that is not an
    image, a truncated or corrupt file, a zero-sized or huge image."""
    from PIL import Image
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w < 1 or h < 1:
                raise ImageError(f"{path}: image has zero size ({w}x{h})")
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageError(f"{path}: image is too large ({w}x{h} pixels; at most "
                                 f"{MAX_IMAGE_PIXELS} pixels)")
            im.load()   # decode now: truncated files fail here, not later
            return to_rgb(im)
    except ImageError as exc:
        if str(exc).startswith(path):
            raise
        raise ImageError(f"{path}: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: image is too large ({exc})") from None
    except MemoryError:       # the machine's state, not the file's: say so, as itself
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (expected PNG, JPEG or "
                         "another format Pillow knows)") from None
    except Exception as exc:   # OSError (truncated), SyntaxError ...
        detail = str(exc).replace(repr(path), "the file").replace(path, "the file")
        raise ImageError(f"{path}: corrupt or truncated image ({type(exc).__name__}: "
                         f"{detail})") from None
