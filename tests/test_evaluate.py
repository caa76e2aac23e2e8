"""Evaluation on a planted prediction gives the hand-computed IoUs and hIoU."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from c2s.config import load_config
from c2s.evaluate import evaluate_student, predict


class PlantedStudent(torch.nn.Module):
    """'Predicts' a fixed class map: features are one-hot rows of the planted map (D = N classes)."""

    stride = 1

    def __init__(self, planted: np.ndarray, num_classes: int):
        super().__init__()
        self.planted = torch.from_numpy(planted)
        self.num_classes = num_classes

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(self.planted, self.num_classes).permute(2, 0, 1).float()
        return onehot[None].expand(images.shape[0], -1, -1, -1)


def _write_toy_val(root, label: np.ndarray):
    from PIL import Image

    for sub in ("img_dir/val", "ann_dir/val", "img_dir/train", "ann_dir/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = label.shape
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "img_dir/val/a.png")
    Image.fromarray(label.astype(np.uint8)).save(root / "ann_dir/val/a.png")


def test_planted_prediction_gives_hand_computed_hiou(tmp_path):
    from c2s.data.catalog import get_dataset_info

    info = get_dataset_info("toy")
    seen, unseen = info.seen_ids[0], info.unseen_ids[0]
    n = len(info.classes)
    # Ground truth: left half seen class, right half unseen class, one ignore row.
    label = np.full((8, 8), seen, np.int64)
    label[:, 4:] = unseen
    label[0] = 255
    # Prediction: the seen class spills one column into the unseen half.
    planted = np.full((8, 8), seen, np.int64)
    planted[:, 5:] = unseen
    # Toy masks on disk hold raw ids; write the inverse of the catalog's mapping.
    valid = info.valid_raw_ids
    inverse = dict(zip(info.map_raw(valid).tolist(), valid.tolist(), strict=True))
    raw = np.vectorize(lambda v: inverse.get(int(v), 255))(label)
    _write_toy_val(tmp_path, raw)
    cfg = load_config("toy_c2s", ["evaluation.mode=whole", "data.eval_scale=[8, 8]", "loss.alpha=1.0"])
    student = PlantedStudent(planted, n)
    text = torch.eye(n)
    metrics = evaluate_student(student, text, cfg, tmp_path, tmp_path / "out", step=3)
    # 7 labelled rows: seen TP 28, FP 7 (column 4) -> IoU 28/35; unseen TP 21, FN 7 -> IoU 21/28.
    s, u = 100 * 28 / 35, 100 * 21 / 28
    assert metrics["sIoU"] == pytest.approx(s)
    assert metrics["uIoU"] == pytest.approx(u)
    assert metrics["hIoU"] == pytest.approx(2 * s * u / (s + u))
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["step"] == 3 and saved["hIoU"] == pytest.approx(metrics["hIoU"])
    table = pd.read_parquet(tmp_path / "out" / "per_class.parquet")
    assert table.set_index("class_id").loc[unseen, "iou"] == pytest.approx(u)
    assert not table.set_index("class_id").loc[unseen, "seen"]
    assert (tmp_path / "out" / "panels.png").stat().st_size > 1000


class PointwiseStudent(torch.nn.Module):
    """Features at each pixel are the one-hot of that pixel's red value: the class map of any crop is the
    crop of the class map, so slide inference must reproduce whole inference exactly. Records its calls."""

    stride = 1

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.crops: list[tuple[int, int]] = []

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.crops.append(tuple(images.shape[-2:]))
        return torch.nn.functional.one_hot(images[:, 0].long(), self.num_classes).permute(0, 3, 1, 2).float()


def test_slide_inference_equals_whole_for_a_pointwise_model():
    planted = np.random.default_rng(0).integers(0, 5, size=(20, 28))
    student = PlantedStudent(planted, 5)
    image = np.zeros((20, 28, 3), np.uint8)
    whole = predict(student, image, torch.eye(5), 1.0, {"mode": "whole"})
    assert np.array_equal(whole, planted)
    # The same map through sliding 8x8 windows at stride 5 (overlapping, the last window flush with the
    # border): a pointwise model must give the whole-image answer pixel for pixel.
    image[..., 0] = planted
    pointwise = PointwiseStudent(5)
    slide = predict(pointwise, image, torch.eye(5), 1.0, {"mode": "slide", "crop_size": [8, 8], "stride": [5, 5]})
    assert np.array_equal(slide, planted)
    # mmseg's grid: rows = ceil((20 - 8) / 5) + 1 = 4, cols = ceil((28 - 8) / 5) + 1 = 5, all full crops
    assert pointwise.crops == [(8, 8)] * 20
    # An image smaller than the crop is one window of the image's own size.
    pointwise.crops.clear()
    small = predict(pointwise, image[:6, :7], torch.eye(5), 1.0, {"mode": "slide", "crop_size": [8, 8],
                                                                  "stride": [5, 5]})
    assert np.array_equal(small, planted[:6, :7]) and pointwise.crops == [(6, 7)]
    with pytest.raises(ValueError, match="evaluation.mode"):
        predict(student, image, torch.eye(5), 1.0, {"mode": "tiles"})


def test_slide_inference_averages_overlapping_windows():
    """Each pixel's logits combine exactly the windows covering it (mmseg slide_inference). Mean and sum
    give the same argmax (the count is shared by all classes of a pixel), so this pins the window layout."""

    class WindowCounter(torch.nn.Module):
        # class 0 scores 1 in every window; class 1 scores 1.5 only in the first window (top-left)
        stride = 1

        def __init__(self):
            super().__init__()
            self.calls = 0

        def normalize(self, images):
            return images.permute(0, 3, 1, 2).float()

        def forward(self, images):
            self.calls += 1
            out = torch.zeros(images.shape[0], 2, *images.shape[-2:])
            out[:, 0] = 1.0
            out[:, 1] = 1.5 if self.calls == 1 else 0.0
            return out

    pred = predict(WindowCounter(), np.zeros((6, 6, 3), np.uint8), torch.eye(2), 1.0,
                   {"mode": "slide", "crop_size": [4, 4], "stride": [2, 2]})
    # windows start at 0 and 2 on each axis: only pixels in rows and cols 0-1 are covered by the first
    # window alone (class 1 wins, 1.5 > 1); the rest of it is shared by 2 or 4 windows (1.5/2 < 1).
    expected = np.zeros((6, 6), np.int64)
    expected[:2, :2] = 1
    assert np.array_equal(pred, expected)
