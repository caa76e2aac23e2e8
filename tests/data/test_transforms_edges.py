"""Edge cases of c2s/data/transforms.py that mutation testing found unpinned: the HSV conversion against
OpenCV's own (mmcv's ``bgr2hsv`` / ``hsv2bgr`` are ``cv2.cvtColor``; mmseg ``PhotoMetricDistortion`` in
mmseg/datasets/transforms/transforms.py), the distortion's steps in order with a scripted generator, and the
resizes against mmcv's own (mmcv/image/geometric.py: ``rescale_size``, ``imresize``)."""

from __future__ import annotations

import cv2
import mmcv
import numpy as np
import pytest

from c2s.data.transforms import (
    _hsv_to_rgb,
    _resize_label,
    _rgb_to_hsv,
    eval_transform,
    photometric_distortion,
    rescale_size,
    resize_pair,
    train_transform,
)


def _pixels() -> np.ndarray:
    """Primaries, greys, black, white, dark, nearly grey and random colours as float RGB (N, 3) in 0..255."""
    fixed = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255], [0, 0, 0],
             [255, 255, 255], [128, 128, 128], [200, 100, 50], [50, 200, 100], [100, 50, 200], [10, 20, 30],
             # dark (V <= 1) and nearly grey (max - min < 1) colours: float images after brightness/contrast
             [1, 0, 0], [0.5, 0.25, 0], [0.2, 0.9, 0.4], [10, 9.6, 9.5], [200, 199.5, 199.2], [3, 3.4, 3.1]]
    rand = np.random.default_rng(0).integers(0, 256, (200, 3))
    return np.concatenate([np.array(fixed), rand]).astype(np.float32)


def _cv2_hsv(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's float HSV (H in degrees, S in 0..1) in the 8-bit convention: H / 2 in [0, 180), S and V in 0..255."""
    hsv = cv2.cvtColor(rgb[None].astype(np.float32), cv2.COLOR_RGB2HSV)[0]
    return np.stack([hsv[:, 0] / 2, hsv[:, 1] * 255, hsv[:, 2]], -1)


def test_rgb_to_hsv_equals_opencv():
    rgb = _pixels()
    got, want = _rgb_to_hsv(rgb), _cv2_hsv(rgb)
    hue_diff = np.abs(got[:, 0] - want[:, 0])
    assert np.all(np.minimum(hue_diff, 180 - hue_diff) < 1e-3)  # hue is circular: 0 and 180 are the same
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-3)
    # hand values: red (0, 255, 255), green (60, ...), blue (120, ...), grey has no hue and no saturation
    np.testing.assert_allclose(_rgb_to_hsv(np.array([[255.0, 0, 0], [0, 255.0, 0], [0, 0, 255.0], [128.0, 128, 128]])),
                               [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 128]], atol=1e-4)


def test_hsv_to_rgb_inverts_and_equals_opencv():
    rgb = _pixels()
    np.testing.assert_allclose(_hsv_to_rgb(_rgb_to_hsv(rgb)), rgb, atol=1e-3)
    hsv = _cv2_hsv(rgb)
    back = cv2.cvtColor(np.stack([hsv[:, 0] * 2, hsv[:, 1] / 255, hsv[:, 2]], -1)[None].astype(np.float32),
                        cv2.COLOR_HSV2RGB)[0]
    np.testing.assert_allclose(_hsv_to_rgb(hsv), back, atol=1e-2)


class ScriptedRng:
    """Stands in for np.random.Generator: returns scripted values and records each call's arguments."""

    def __init__(self, values):
        self.values, self.calls = list(values), []

    def integers(self, *args):
        self.calls.append(("integers", args))
        return self.values.pop(0)

    def uniform(self, *args):
        self.calls.append(("uniform", args))
        return self.values.pop(0)


def _expected(image, delta, contrast, saturation, hue, contrast_first):
    """mmseg's PhotoMetricDistortion with every step on, through OpenCV's HSV (mmcv.bgr2hsv / hsv2bgr)."""
    img = np.clip(image.astype(np.float32) + delta, 0, 255)
    if contrast_first:
        img = np.clip(img * contrast, 0, 255)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    hsv[..., 0] = ((hsv[..., 0] / 2 + hue) % 180) * 2
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first:
        img = np.clip(img * contrast, 0, 255)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("contrast_first", [1, 0])
def test_photometric_distortion_steps_in_order_against_opencv(contrast_first):
    image = np.random.default_rng(1).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    if contrast_first:
        script = [1, 10.0, 1, 1, 1.2, 1, 1, 1.3, 5]
    else:
        script = [1, 10.0, 0, 1, 1, 1.3, 5, 1, 1.2]
    rng = ScriptedRng(script)
    got = photometric_distortion(image, rng)
    assert not rng.values  # every scripted draw was used
    want = _expected(image, 10.0, 1.2, 1.3, 5, contrast_first)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # float rounding at .5 only
    assert np.mean(got != want) < 0.05
    # the draws mmseg makes, with its default ranges: brightness +-32, contrast and saturation 0.5..1.5, hue +-18
    calls = [c for c in rng.calls if c[1] != (2,)]
    assert calls == [("uniform", (-32, 32)), ("uniform", (0.5, 1.5)), ("uniform", (0.5, 1.5)), ("integers", (-18, 18))] \
        if contrast_first else calls == [("uniform", (-32, 32)), ("uniform", (0.5, 1.5)), ("integers", (-18, 18)),
                                         ("uniform", (0.5, 1.5))]


def test_photometric_distortion_all_steps_off_only_rounds():
    image = np.random.default_rng(2).integers(0, 256, (5, 5, 3)).astype(np.uint8)
    rng = ScriptedRng([0, 1, 0, 0, 0])  # no brightness; contrast first but off; no saturation, no hue
    assert np.array_equal(photometric_distortion(image, rng), image)
    assert not rng.values


@pytest.mark.parametrize("hw", [(500, 375), (100, 1000), (1000, 100), (1, 3000), (96, 96), (48, 64)])
def test_rescale_size_equals_mmcvs(hw):
    """mmcv's rescale_size takes and returns (w, h); the long edge binds for (100, 1000), the short for
    (500, 375). Below one pixel, where mmcv returns 0, c2s keeps 1 (checked below)."""
    h, w = hw
    new_w, new_h = mmcv.rescale_size((w, h), (2048, 512))
    assert rescale_size(h, w, (2048, 512)) == (new_h, new_w)


def test_rescale_size_keeps_at_least_one_pixel():
    assert mmcv.rescale_size((10000, 1), (2048, 512)) == (2048, 0)
    assert rescale_size(1, 10000, (2048, 512)) == (1, 2048)
    assert rescale_size(10000, 1, (2048, 512)) == (2048, 1)


@pytest.mark.parametrize("size_hw", [(60, 80), (90, 120), (150, 200), (240, 320), (37, 211)])
def test_image_resize_is_mmcvs_pillow_bilinear(size_hw):
    """The image resize is mmcv's ``imresize(..., 'bilinear', backend='pillow')`` to the byte, not its default
    cv2 backend (mmseg's): on downscales PIL filters over each output pixel's footprint; see the module's
    docstring for the measured difference."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur((rng.random((120, 160, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
    h, w = size_hw
    ours, _ = resize_pair(image, None, size_hw)
    assert ours.dtype == np.uint8 and ours.shape == (h, w, 3)
    assert np.array_equal(ours, mmcv.imresize(image, (w, h), interpolation="bilinear", backend="pillow"))


def test_label_resize_samples_pixel_centres():
    """Output row i reads source row floor((i + 0.5) * lh / h): PIL's nearest (mmcv ``backend='pillow'``) at
    whole factors; where the product is a whole number PIL's float rounding can read the row before it
    (120 -> 90: PIL reads row 5 for output row 4, c2s row 6)."""
    label = np.arange(120, dtype=np.uint8)[:, None].repeat(160, 1)
    for h in (60, 240):
        pil = mmcv.imresize(label, (160, h), interpolation="nearest", backend="pillow")
        assert np.array_equal(_resize_label(label, h, 160), pil)
    assert _resize_label(label, 90, 160)[:8, 0].tolist() == [0, 2, 3, 4, 6, 7, 8, 10]
    assert _resize_label(label, 60, 160)[:4, 0].tolist() == [1, 3, 5, 7]  # centres, where cv2 reads 0, 2, 4, 6


def test_pipelines_name_a_size_mismatch_and_a_missing_key():
    image, label = np.zeros((10, 10, 3), np.uint8), np.zeros((9, 10), np.int64)
    for transform in (train_transform, eval_transform):
        with pytest.raises(ValueError) as err:
            transform(image, label, {}, np.random.default_rng(0))
        assert str(err.value) == "image (10, 10) and label (9, 10) differ in size"
    with pytest.raises(KeyError) as err:
        eval_transform(image, np.zeros((10, 10), np.int64), {})
    assert err.value.args[0] == "data config has no key 'eval_scale' (needed by the transform pipeline)"
