"""Paired transforms: alignment under crop/flip, nearest resize keeps ignore, determinism (unit, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from c2s.data.transforms import eval_transform, random_crop, rescale_size, resize_pair, train_transform

CFG = dict(crop_size=(64, 64), scale=(128, 96), ratio_range=(0.5, 2.0), cat_max_ratio=0.75, flip_prob=0.5,
           photometric=True, eval_scale=(128, 96))


def planted(h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A white square on black with label 7, a 255 (ignore) stripe, the rest class 1."""
    image = np.zeros((h, w, 3), np.uint8)
    label = np.ones((h, w), np.int64)
    image[30:60, 40:70] = 255
    label[30:60, 40:70] = 7
    label[:, :4] = 255
    return image, label


def test_square_moves_with_label_under_crop_and_flip():
    image, label = planted()
    cfg = dict(CFG, photometric=False, ratio_range=(1.0, 1.0), scale=(128, 96))
    flipped = 0
    for seed in range(40):
        img, lab = train_transform(image, label, cfg, np.random.default_rng(seed))
        assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
        white = img.min(-1) == 255
        # Without resizing (ratio 1) every white pixel is exactly a label-7 pixel, wherever the crop/flip put it.
        assert np.array_equal(white, lab == 7), seed
        if (lab == 255).any() and (lab[:, -1] == 255).all():
            flipped += 1
    assert flipped > 0  # some flip moved the ignore stripe to the right edge


def test_alignment_survives_random_resize():
    image, label = planted()
    for seed in range(10):
        img, lab = train_transform(image, label, dict(CFG, photometric=False), np.random.default_rng(seed))
        bright = img.mean(-1) > 200
        inside = lab == 7
        if inside.sum() > 20:
            # Bilinear image edge vs nearest label edge: at most a one-pixel border disagrees.
            assert (bright & inside).sum() / inside.sum() > 0.8


def test_nearest_resize_keeps_ignore_and_ids():
    label = np.full((10, 10), 3, np.int64)
    label[::2] = 255
    image = np.zeros((10, 10, 3), np.uint8)
    for size in [(7, 13), (25, 25), (3, 3)]:
        _, lab = resize_pair(image, label, size)
        assert lab.shape == size
        assert set(np.unique(lab).tolist()) <= {3, 255}
    _, big = resize_pair(image, label, (20, 20))
    assert (big == 255).sum() == 200  # exactly half, as in the source


def test_padding_uses_ignore_and_zero():
    image, label = planted(40, 50)
    img, lab = train_transform(image, label, dict(CFG, ratio_range=(1.0, 1.0), scale=(50, 40), flip_prob=0.0,
                                                  photometric=False), np.random.default_rng(0))
    assert img.shape == (64, 64, 3)
    assert (lab[40:] == 255).all() and (lab[:, 50:] == 255).all()
    assert (img[40:] == 0).all()


def test_determinism_under_seed():
    image, label = planted()
    image = (np.random.default_rng(5).random(image.shape) * 255).astype(np.uint8)
    a = train_transform(image, label, CFG, np.random.default_rng(123))
    b = train_transform(image, label, CFG, np.random.default_rng(123))
    c = train_transform(image, label, CFG, np.random.default_rng(124))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


def test_photometric_never_touches_label():
    image, label = planted()
    cfg = dict(CFG, ratio_range=(1.0, 1.0), flip_prob=0.0)
    _, with_p = train_transform(image, label, cfg, np.random.default_rng(3))
    _, without = train_transform(image, label, dict(cfg, photometric=False), np.random.default_rng(3))
    assert np.array_equal(with_p, without)


def test_cat_max_ratio_prefers_mixed_crops():
    label = np.zeros((100, 100), np.int64)
    label[80:, 80:] = 1
    image = np.zeros((100, 100, 3), np.uint8)
    mixed = 0
    for seed in range(20):
        _, lab = random_crop(image, label, (30, 30), 0.75, np.random.default_rng(seed))
        mixed += len(np.unique(lab)) > 1
    plain = sum(len(np.unique(random_crop(image, label, (30, 30), 1.0, np.random.default_rng(s))[1])) > 1
                for s in range(20))
    assert mixed > plain


def test_eval_keeps_label_size_and_resizes_image():
    image, label = planted(48, 64)
    img, lab = eval_transform(image, label, CFG)
    assert img.shape == (96, 128, 3) and lab.shape == (48, 64)
    img, lab = eval_transform(image, label, dict(CFG, eval_resize_label=True))
    assert lab.shape == (96, 128) and set(np.unique(lab).tolist()) == {1, 7, 255}


def test_rescale_size_keeps_ratio():
    assert rescale_size(500, 375, (2048, 512)) == (683, 512)
    assert rescale_size(96, 96, (96, 96)) == (96, 96)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        train_transform(np.zeros((10, 10, 3), np.uint8), np.zeros((9, 10), np.int64), CFG, np.random.default_rng())
