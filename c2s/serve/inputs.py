"""Checking what a client sent, before any of it reaches the model: class names, image bytes, query options.

Every refusal is a :class:`BadInput`: an HTTP status (400 a field is wrong or missing, 413 over a size limit,
415 a body the endpoint does not read), the field it is about, and what was expected. Pure functions over
bytes and strings (PIL + numpy): no Ray, no web framework, so they are tested alone.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from c2s.serve.settings import ServeSettings

FORMATS = ("json", "png", "overlay")
IMAGE_KINDS = "PNG, JPEG, BMP, GIF, TIFF or WebP"


class BadInput(Exception):
    """A request the server refuses; ``body()`` is the JSON answer."""

    def __init__(self, status: int, field: str, message: str, expected: str) -> None:
        super().__init__(status, field, message, expected)
        self.status, self.field, self.message, self.expected = status, field, message, expected

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "expected": self.expected, "status": self.status}


def parse_classes(value: Any, settings: ServeSettings, *, field: str = "classes") -> list[str]:
    """A list of names, or one comma-separated string, checked: at least one, at most ``max_classes``, none
    empty or longer than ``max_name_chars``, no two giving the same prompt (``potted_plant`` = ``potted
    plant``: c2s.segmenter.check_class_names)."""
    from c2s.segmenter import ClassNameError, check_class_names

    expected = (f"a list of 1 to {settings.max_classes} class names (or one comma-separated string), each 1 to "
                f"{settings.max_name_chars} characters, no two the same")
    if isinstance(value, str):
        names = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        names = list(value)
        if len(names) == 1 and "," in names[0]:
            names = names[0].split(",")
    else:
        raise BadInput(400, field, f"got {type(value).__name__} {_short(value)}", expected)
    names = [n.strip() for n in names]
    if not any(names):
        raise BadInput(400, field, "no class names given", expected)
    if len(names) > settings.max_classes:
        raise BadInput(400, field, f"{len(names)} class names, over the limit of {settings.max_classes}", expected)
    long = [i for i, n in enumerate(names) if len(n) > settings.max_name_chars]
    if long:
        raise BadInput(400, field, f"names at positions {long} (0-based) are longer than "
                                   f"{settings.max_name_chars} characters", expected)
    try:
        return check_class_names(names)
    except ClassNameError as err:
        raise BadInput(400, field, str(err), expected) from None


def parse_format(value: str | None) -> str:
    if value is None or value == "":
        return "json"
    if value not in FORMATS:
        raise BadInput(400, "format", f"unknown format {_short(value)}", " or ".join(FORMATS))
    return value


def parse_flag(value: str | None, field: str) -> bool:
    if value is None or value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise BadInput(400, field, f"got {_short(value)}", "true or false (1 or 0)")


def decode_base64(value: Any, field: str = "image") -> bytes:
    """Standard base64, optionally as a ``data:image/...;base64,`` URL."""
    expected = "the image file's bytes in base64 (optionally a data:image/...;base64, URL)"
    if not isinstance(value, str):
        raise BadInput(400, field, f"got {type(value).__name__} {_short(value)}", expected)
    if value.startswith("data:"):
        head, sep, value = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise BadInput(400, field, f"a data URL that is not base64 ({_short(head)})", expected)
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadInput(400, field, f"not valid base64 ({err})", expected) from None


def decode_image(data: bytes, settings: ServeSettings, eval_scale: Sequence[float], num_classes: int,
                 field: str = "image") -> np.ndarray:
    """uint8 (H, W, 3) RGB: :func:`open_image` (the checks), then :func:`rgb_pixels` (the decoding)."""
    return rgb_pixels(open_image(data, settings, eval_scale, num_classes, field), field)


def open_image(data: bytes, settings: ServeSettings, eval_scale: Sequence[float], num_classes: int,
               field: str = "image"):
    """The PIL image, its size checked from the header before any pixel is decoded: pixels, pixels x classes,
    and the shortest side once resized to ``eval_scale`` (what the student will see)."""
    from PIL import Image, UnidentifiedImageError

    from c2s.data.transforms import rescale_size

    if not data:
        raise BadInput(400, field, "the file is empty", f"an image file ({IMAGE_KINDS})")
    try:
        im = Image.open(io.BytesIO(data))
        width, height = im.size
    except Image.DecompressionBombError as err:
        raise BadInput(413, field, f"too many pixels ({err})", f"at most {settings.max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise BadInput(400, field, f"not an image PIL can read ({len(data)} bytes starting {data[:8]!r})",
                       f"an image file ({IMAGE_KINDS})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadInput(400, field, f"not an image PIL can read ({err})", f"an image file ({IMAGE_KINDS})") from None
    pixels = width * height
    if pixels > settings.max_pixels:
        raise BadInput(413, field, f"{width}x{height} = {pixels} pixels, over the limit of {settings.max_pixels}",
                       f"at most {settings.max_pixels} pixels (width x height)")
    if pixels * num_classes > settings.max_scores:
        raise BadInput(413, field, f"{width}x{height} pixels x {num_classes} classes = {pixels * num_classes} "
                                   f"class scores, over the limit of {settings.max_scores}",
                       f"pixels x classes at most {settings.max_scores}: a smaller image or fewer classes")
    small = rescale_size(height, width, tuple(eval_scale))
    if min(small) < settings.min_side:
        raise BadInput(400, field, f"{width}x{height} is resized to {small[1]}x{small[0]} for the student "
                                   f"(data.eval_scale {list(eval_scale)}), narrower than {settings.min_side} px",
                       f"an aspect ratio whose short side stays >= {settings.min_side} px once resized")
    return im


def rgb_pixels(im, field: str = "image") -> np.ndarray:
    """Decode every byte of an :func:`open_image` image to uint8 (H, W, 3) RGB: a truncated file fails here."""
    from PIL import Image

    try:
        return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as err:
        raise BadInput(413, field, f"too many pixels ({err})", "fewer pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadInput(400, field, f"truncated or corrupt image data ({err})", f"an image file ({IMAGE_KINDS})") from None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
