"""More edges of c2s/data/transforms.py that mutation testing (``make mutate``) showed no other test pinned
down: nearest label resizing against PIL in both axes, the random-resize ratio draw, crop positions (every one
reachable, none past the border), mmseg's cat_max_ratio rule at its boundary, padding per axis, the clips of
the photometric steps, and the training pipeline's optional keys with their defaults."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from c2s.data.transforms import (
    _resize_label,
    pad_to,
    photometric_distortion,
    random_crop,
    random_resize,
    rescale_size,
    train_transform,
)


class Script:
    """Stands in for np.random.Generator: scripted return values, each call's arguments recorded."""

    def __init__(self, *values):
        self.values, self.calls = list(values), []

    def _next(self, name, args):
        self.calls.append((name, args))
        return self.values.pop(0)

    def integers(self, *args):
        return self._next("integers", args)

    def uniform(self, *args):
        return self._next("uniform", args)

    def random(self, *args):
        return self._next("random", args)


@pytest.mark.parametrize("src, dst", [((4, 6), (9, 5)), ((7, 3), (3, 8)), ((5, 5), (11, 12)), ((10, 9), (4, 4))])
def test_nearest_label_resize_equals_pil_nearest_in_both_axes(src, dst):
    label = np.arange(src[0] * src[1], dtype=np.uint8).reshape(src)
    want = np.asarray(Image.fromarray(label).resize((dst[1], dst[0]), Image.NEAREST))
    assert np.array_equal(_resize_label(label, *dst), want)


def test_random_resize_draws_the_ratio_from_the_range_and_scales_both_edges():
    image, label = np.zeros((20, 40, 3), np.uint8), np.zeros((20, 40), np.uint8)
    rng = Script(1.5)
    out, lab = random_resize(image, label, (100, 30), (0.5, 2.0), rng)
    assert rng.calls == [("uniform", (0.5, 2.0))]
    # scale (150, 45): the long edge fits 150, the short one 45 -> factor min(150/40, 45/20) = 2.25
    assert out.shape[:2] == lab.shape == rescale_size(20, 40, (150.0, 45.0)) == (45, 90)


def test_every_crop_position_is_reachable_and_none_passes_the_border():
    label = np.arange(6 * 7).reshape(6, 7)
    image = np.stack([label] * 3, -1).astype(np.uint8)
    rng = np.random.default_rng(0)
    corners = set()
    for _ in range(300):
        img, lab = random_crop(image, label, (4, 5), 1.0, rng)
        assert img.shape == (4, 5, 3) and lab.shape == (4, 5)
        corners.add((int(lab[0, 0]) // 7, int(lab[0, 0]) % 7))
    assert corners == {(y, x) for y in range(3) for x in range(3)}  # y, x in 0..6-4 and 0..7-5
    # a crop as large as the image (or larger) is the whole image every time
    for size in ((6, 7), (8, 9)):
        for _ in range(20):
            assert np.array_equal(random_crop(image, label, size, 1.0, rng)[1], label)


def test_cat_max_ratio_retries_until_below_and_the_boundary_retries():
    label = np.full((4, 8), 255, np.int64)
    label[:, :4] = 1  # left half: one class only
    label[:, 4:6] = 2
    label[:, 6:] = 3  # right half: 2 and 3 cover 8 pixels each
    label[0, 4] = 255  # ... of its 15 non-ignored: 2 covers 7/15, 3 covers 8/15
    image = np.zeros((4, 8, 3), np.uint8)
    # box() draws y then x: first the left half (one class: retry), then the right half (8/15 < 0.6: keep)
    rng = Script(0, 0, 0, 4)
    _, lab = random_crop(image, label, (4, 4), 0.6, rng)
    assert lab[1, 0] == 2 and not rng.values
    # at exactly the ratio the crop is retried (mmseg: `< cat_max_ratio` keeps it); two classes at 3:1
    label2 = np.array([[1, 1, 1, 2, 5, 6]])
    rng = Script(0, 0, 0, 2)
    _, lab = random_crop(np.zeros((1, 6, 3), np.uint8), label2, (1, 4), 0.75, rng)
    assert lab.tolist() == [[1, 2, 5, 6]] and not rng.values  # 3:1 (= 0.75) retried, then 1:1:1:1 kept
    # below the ratio the first crop is kept, two classes or more
    rng = Script(0, 0, 0, 2)
    _, lab = random_crop(np.zeros((1, 6, 3), np.uint8), label2, (1, 4), 0.8, rng)
    assert lab.tolist() == [[1, 1, 1, 2]]  # 3:1 < 0.8: kept at once
    assert rng.values == [0, 2]


def test_padding_per_axis():
    image, label = np.ones((2, 3, 3), np.uint8), np.zeros((2, 3), np.uint8)
    img, lab = pad_to(image, label, (4, 3))  # only the height needs padding
    assert img.shape == (4, 3, 3) and lab.shape == (4, 3) and (lab[2:] == 255).all() and (img[2:] == 0).all()
    img, lab = pad_to(image, label, (2, 5))  # only the width
    assert img.shape == (2, 5, 3) and (lab[:, 3:] == 255).all() and (lab[:, :3] == 0).all()
    img, lab = pad_to(image, label, (3, 6))  # height 2 -> 3 and width 3 -> 6, from a non-square target
    assert lab.shape == (3, 6)


def test_brightness_clips_at_0_and_255_before_the_hsv_steps():
    # brightness -40 takes (10, 100, 30) to (0, 60, 0), not (-30, 60, -10) or (1, 60, 1); +40 takes
    # (250, 200, 90) to (255, 240, 130), not (256, ...). Saturation x1 (no hue) is an exact HSV round trip
    # (a negative channel is not: it raises S above 255); contrast x0.98 last lets 255 and 256 round apart.
    image = np.array([[[10, 100, 30], [250, 200, 90]]], np.uint8)
    for delta in (-40.0, 40.0):
        rng = Script(1, delta, 0, 1, 0, 1.0, 1, 0.98)  # brightness; contrast last; saturation only; contrast on
        want = np.floor(np.clip(image.astype(np.float64) + delta, 0, 255) * 0.98 + 0.5)
        assert photometric_distortion(image, rng).tolist() == want.tolist()
        assert not rng.values
    assert want.tolist() == [[[49, 137, 69], [250, 235, 127]]]  # hand check of the +40 case


def test_saturation_keeps_grey_grey_and_runs_without_hue():
    # saturation x1.5 alone (no hue step) on a grey and a coloured pixel: grey has S = 0 and stays exactly grey
    # (a lower clip at 1 would tint it); the coloured one's S 153 -> 229.5 (s = 0.9), so its smallest channel
    # is V (1 - s) = 200 x 0.1 = 20 and, at hue fraction f = 0.5, the middle one V (1 - s (1 - f)) = 110
    image = np.array([[[128, 128, 128], [200, 140, 80]]], np.uint8)
    rng = Script(0, 1, 0, 1, 0, 1.5)  # no brightness; contrast first but off; saturation only
    assert photometric_distortion(image, rng).tolist() == [[[128, 128, 128], [200, 110, 20]]]
    assert not rng.values


def test_train_transform_defaults_and_optional_steps():
    label = np.array([[1, 1, 2, 3], [1, 1, 2, 3], [4, 4, 5, 6]], np.uint8)
    image = np.stack([label * 10] * 3, -1).astype(np.uint8)
    base = {"crop_size": (3, 4), "scale": (4, 3), "ratio_range": (1.0, 1.0)}
    # defaults: cat_max_ratio 1 (no retry), flip_prob 0 (no flip, but the draw is made), no photometric
    rng = Script(1.0, 0, 0, 0.0)
    img, lab = train_transform(image, label, base, rng)
    assert np.array_equal(lab, label) and not rng.values
    assert [c[0] for c in rng.calls] == ["uniform", "integers", "integers", "random"]
    # every optional key set: the crop is retried (one class dominates), flipped, photometrically distorted
    cfg = {**base, "cat_max_ratio": 0.3, "flip_prob": 0.5, "photometric": True}
    rng = Script(1.0, *[0, 0] * 11, 0.25, 0, 0, 0, 0, 0)
    img, lab = train_transform(image, label, cfg, rng)
    assert np.array_equal(lab, label[:, ::-1]) and not rng.values  # 1 draw + 10 retries (class 1 covers 4/12 >= 0.3), flipped
    assert np.array_equal(img, image[:, ::-1])  # every photometric step drawn off: only rounding
    assert [c[0] for c in rng.calls].count("integers") == 22 + 5
    with pytest.raises(ValueError, match=r"^image \(3, 4\) and label \(2, 4\) differ in size$"):
        train_transform(image, label[:2], base, Script())
