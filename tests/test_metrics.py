"""Confusion matrix, IoU and sIoU/uIoU/hIoU on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from c2s.metrics import ConfusionMatrix, summarize


def test_confusion_matrix_and_iou_by_hand():
    cm = ConfusionMatrix(4, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 1]])
    cm.update(pred[None], target[None])  # batched
    expected = torch.tensor([[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm.matrix, expected)
    iou = cm.iou()
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: 3/(3+4-3)=3/4; class 2: 1/2; class 3: absent -> NaN
    assert torch.allclose(iou[:3], torch.tensor([1 / 3, 3 / 4, 1 / 2], dtype=torch.float64))
    assert math.isnan(float(iou[3]))
    cm.update(pred, target)  # accumulates
    assert torch.equal(cm.matrix, 2 * expected)


def test_summarize_excludes_nan_and_computes_hiou():
    iou = torch.tensor([0.5, 0.7, float("nan"), 0.2], dtype=torch.float64)
    m = summarize(iou, unseen_ids=[2, 3])
    assert math.isclose(m["sIoU"], 60.0) and math.isclose(m["uIoU"], 20.0)
    assert math.isclose(m["mIoU"], (50 + 70 + 20) / 3)
    assert math.isclose(m["hIoU"], 2 * 60 * 20 / 80)  # 30


def test_hiou_when_one_side_is_zero():
    m = summarize(torch.tensor([0.8, 0.0], dtype=torch.float64), unseen_ids=[1])
    assert m["uIoU"] == 0.0 and m["hIoU"] == 0.0 and math.isclose(m["sIoU"], 80.0)
    m = summarize(torch.tensor([0.0, 0.0]), unseen_ids=[1])
    assert m["hIoU"] == 0.0  # s + u == 0


def test_errors_name_the_problem():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target holds ids \[7\]"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="same shape"):
        cm.update(torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unseen_ids"):
        summarize(torch.zeros(3), [5])


def test_all_reduce_is_noop_without_ddp():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([1]), torch.tensor([1]))
    assert torch.equal(cm.all_reduce().matrix, torch.tensor([[0, 0], [0, 1]]))
