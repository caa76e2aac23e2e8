"""mmseg's standard segmentation pipelines on paired numpy arrays (pure functions, no Ray, no torch).

Training (mmseg ``RandomResize`` -> ``RandomCrop`` -> ``RandomFlip`` -> ``PhotoMetricDistortion``, then
padding to the crop size as mmseg's data preprocessor does, so every row has the same shape):

- resize with a random ratio in ``data.ratio_range`` times ``data.scale`` (long, short edge), keeping the
  aspect ratio; image bilinear, label nearest (so the ignore index 255 survives);
- random crop to ``data.crop_size``; up to 10 tries until no single class covers more than
  ``data.cat_max_ratio`` of the non-ignored crop (mmseg's rule);
- horizontal flip with probability ``data.flip_prob`` (image and label together);
- photometric distortion on the image only, when ``data.photometric``;
- pad to the crop size: image with 0, label with 255.

Evaluation (mmseg ``Resize(keep_ratio=True)``): the image is resized to ``data.eval_scale``; the label
stays at its original size (mmseg evaluates at the original resolution, up-sampling the logits), unless
``data.eval_resize_label`` is true, then it is resized with nearest.

Resizing is mmcv's ``imresize`` with ``backend="pillow"`` (mmcv/image/geometric.py; the test pins it to the
byte), not the ``"cv2"`` backend that mmseg's ``Resize`` and ``RandomResize`` default to, which mmcv documents as
"slightly different results". Measured on a blurred random 120 x 160 image: at 0.5x the cv2 image differs by
1.9 grey levels on average (at most 10: PIL filters over each output pixel's footprint, cv2 reads 4 source
pixels), at 0.75x by 0.8 (at most 5), on upscales by at most 1. The label's nearest reads each output pixel's
centre, as PIL does; cv2's ``INTER_NEAREST`` reads ``floor(i * scale)``, half an output pixel up-left of the
centre. Switching either to cv2's would change every toy-world number in docs/results/ (the toy pipeline
resizes every training image), so both stay.

All randomness comes from the ``rng`` argument, so a seed fixes the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

IGNORE_INDEX = 255


def _get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    if key in cfg:
        return cfg[key]
    if default is None:
        raise KeyError(f"data config has no key {key!r} (needed by the transform pipeline)")
    return default


def rescale_size(h: int, w: int, scale: tuple[float, float]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with keep_ratio: fit the long edge in max(scale), short edge in min(scale)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return max(int(h * factor + 0.5), 1), max(int(w * factor + 0.5), 1)


def resize_pair(image: np.ndarray, label: np.ndarray | None, size_hw: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize the image bilinearly and the label with nearest neighbour (keeps 255 and ids exact)."""
    h, w = size_hw
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    if label is not None and label.shape[:2] != (h, w):
        label = _resize_label(label, h, w)
    return image, label


def _resize_label(label: np.ndarray, h: int, w: int) -> np.ndarray:
    # Nearest by index arithmetic at pixel centres (PIL's sampling; not cv2's, see the module docstring),
    # exact for any dtype.
    lh, lw = label.shape
    ys = np.minimum(((np.arange(h) + 0.5) * lh / h).astype(np.intp), lh - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * lw / w).astype(np.intp), lw - 1)
    return label[ys[:, None], xs[None, :]]


def random_resize(image: np.ndarray, label: np.ndarray, scale: tuple[int, int],
                  ratio_range: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ratio = rng.uniform(ratio_range[0], ratio_range[1])
    target = (scale[0] * ratio, scale[1] * ratio)
    size = rescale_size(image.shape[0], image.shape[1], target)
    out_img, out_lab = resize_pair(image, label, size)
    assert out_lab is not None
    return out_img, out_lab


def random_crop(image: np.ndarray, label: np.ndarray, crop_size: tuple[int, int], cat_max_ratio: float,
                rng: np.random.Generator, ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomCrop``: crop_size is (h, w); crops smaller than that where the image is smaller."""
    ch, cw = crop_size
    h, w = label.shape

    def box() -> tuple[int, int]:
        return int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))

    y, x = box()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            crop = label[y:y + ch, x:x + cw]
            _, counts = np.unique(crop[crop != ignore_index], return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            y, x = box()
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 255] -> H in [0, 180), S, V in [0, 255] (OpenCV's 8-bit convention, as mmcv uses)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    mn = rgb.min(-1)
    d = v - mn
    s = np.where(v > 0, d / np.maximum(v, 1e-6) * 255.0, 0.0)
    safe = np.maximum(d, 1e-6)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(d > 0, (h * 30.0) % 180.0, 0.0)
    return np.stack([h, s, v], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0] / 30.0, hsv[..., 1] / 255.0, hsv[..., 2]
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    return np.stack([np.choose(i, choices_r), np.choose(i, choices_g), np.choose(i, choices_b)], -1)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast_range: tuple[float, float] = (0.5, 1.5),
                           saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion``: each step applied with probability 1/2, contrast first or last."""
    img = image.astype(np.float32)
    if rng.integers(2):
        img = np.clip(img + rng.uniform(-brightness_delta, brightness_delta), 0, 255)
    contrast_first = bool(rng.integers(2))

    def contrast(x: np.ndarray) -> np.ndarray:
        return np.clip(x * rng.uniform(*contrast_range), 0, 255) if rng.integers(2) else x

    if contrast_first:
        img = contrast(img)
    do_sat, do_hue = bool(rng.integers(2)), bool(rng.integers(2))
    if do_sat or do_hue:
        hsv = _rgb_to_hsv(img)
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*saturation_range), 0, 255)
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.integers(-hue_delta, hue_delta)) % 180
        img = _hsv_to_rgb(hsv)
    if not contrast_first:
        img = contrast(img)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def pad_to(image: np.ndarray, label: np.ndarray, size_hw: tuple[int, int], ignore_index: int = IGNORE_INDEX
           ) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to ``size_hw``: image with 0, label with ``ignore_index`` (mmseg's pad values)."""
    h, w = label.shape
    ph, pw = max(size_hw[0] - h, 0), max(size_hw[1] - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=ignore_index)
    return image, label


def train_transform(image: np.ndarray, label: np.ndarray, data_cfg: Mapping[str, Any],
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The training pipeline. image uint8 (H, W, 3), label (H, W) -> shapes ``data.crop_size``."""
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape[:2]} differ in size")
    crop = tuple(int(v) for v in _get(data_cfg, "crop_size"))
    image, label = random_resize(image, label, tuple(_get(data_cfg, "scale")),
                                 tuple(_get(data_cfg, "ratio_range")), rng)
    image, label = random_crop(image, label, crop, float(_get(data_cfg, "cat_max_ratio", 1.0)), rng)
    if rng.random() < float(_get(data_cfg, "flip_prob", 0.0)):
        image, label = image[:, ::-1], label[:, ::-1]
    if _get(data_cfg, "photometric", False):
        image = photometric_distortion(image, rng)
    image, label = pad_to(image, label, crop)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def eval_transform(image: np.ndarray, label: np.ndarray, data_cfg: Mapping[str, Any],
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation pipeline: resize the image keeping its ratio to ``data.eval_scale``; no crop.

    The label keeps its original size (mmseg's evaluation) unless ``data.eval_resize_label`` is true.
    ``rng`` is unused (the pipeline is deterministic); it is accepted so both pipelines share a signature.
    """
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape[:2]} differ in size")
    size = rescale_size(image.shape[0], image.shape[1], tuple(_get(data_cfg, "eval_scale")))
    resize_label = bool(data_cfg.get("eval_resize_label", False))
    image, new_label = resize_pair(image, label if resize_label else None, size)
    return np.ascontiguousarray(image), np.ascontiguousarray(new_label if resize_label else label)
