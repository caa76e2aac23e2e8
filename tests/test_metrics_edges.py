"""Edges of c2s/metrics.py that mutation testing (``make mutate``) showed no other test pinned down."""

from __future__ import annotations

import math

import pytest
import torch

from c2s.metrics import ConfusionMatrix, summarize


def test_default_ignore_index_is_255_and_counts_are_int64_on_the_given_device():
    cm = ConfusionMatrix(3)
    assert cm.ignore_index == 255
    cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 255, 2]))
    assert torch.equal(cm.matrix, torch.tensor([[1, 0, 0], [0, 0, 0], [0, 0, 1]]))
    # exact integer counts: float32 would lose pixels past 2**24 (a COCO-Stuff val pass has ~1e9)
    assert cm.matrix.dtype == torch.int64
    assert ConfusionMatrix(2, device="meta").matrix.device.type == "meta"


def test_num_classes_must_be_positive():
    assert ConfusionMatrix(1).matrix.shape == (1, 1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match=rf"num_classes must be > 0, got {bad}"):
            ConfusionMatrix(bad)


def test_unseen_ids_bounds_are_0_to_n_minus_1():
    iou = torch.tensor([0.5, 0.25, 0.75], dtype=torch.float64)
    m = summarize(iou, unseen_ids=[0])  # id 0 is a valid unseen id
    assert math.isclose(m["uIoU"], 50.0) and math.isclose(m["sIoU"], 50.0)
    with pytest.raises(ValueError, match=r"unseen_ids \[3\] outside \[0, 3\)"):
        summarize(iou, unseen_ids=[3])
    with pytest.raises(ValueError, match=r"unseen_ids \[-1\]"):
        summarize(iou, unseen_ids=[-1])


def test_hiou_of_equal_sides_is_that_value():
    m = summarize(torch.tensor([0.4, 0.4], dtype=torch.float64), unseen_ids=[1])
    assert math.isclose(m["hIoU"], 40.0)


def test_side_without_classes_is_nan_not_zero():
    m = summarize(torch.tensor([0.5, float("nan")], dtype=torch.float64), unseen_ids=[1])
    assert math.isnan(m["uIoU"]) and math.isnan(m["hIoU"]) and math.isclose(m["sIoU"], 50.0)
