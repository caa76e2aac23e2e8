import math

import pytest
import torch
import torch.nn.functional as F

from c2s import compat


def test_point_sample_matches_grid_sample_definition():
    feats = torch.arange(16.0).view(1, 1, 4, 4)
    # Pixel centres with align_corners=False: (x + 0.5) / W.
    points = torch.tensor([[[0.5 / 4, 0.5 / 4], [3.5 / 4, 1.5 / 4]]])
    out = compat.point_sample(feats, points, align_corners=False)
    assert out.shape == (1, 1, 2)
    assert out[0, 0].tolist() == pytest.approx([0.0, 7.0])  # (x=0,y=0) -> 0 ; (x=3,y=1) -> 7
    grid = torch.rand(2, 3, 5, 2)
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(compat.point_sample(x, grid), F.grid_sample(x, grid * 2 - 1, align_corners=False))


def test_sigmoid_focal_loss_hand_computed():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([1])
    p0, p1 = 0.5, 1 / (1 + math.exp(-2.0))
    alpha, gamma = 0.25, 2.0
    neg = -(1 - alpha) * p0**gamma * math.log(1 - p0)  # class 0 is a negative
    pos = -alpha * (1 - p1) ** gamma * math.log(p1)  # class 1 is the positive
    out = compat.sigmoid_focal_loss(logits, target, gamma, alpha, reduction="none")
    assert out[0].tolist() == pytest.approx([neg, pos], rel=1e-5)
    # mmcv's 'mean' divides the sum by N (rows), not N*C.
    two = compat.sigmoid_focal_loss(logits.repeat(2, 1), target.repeat(2), gamma, alpha)
    assert two.item() == pytest.approx(neg + pos, rel=1e-5)
    # weight is indexed by the target class.
    w = torch.tensor([1.0, 3.0])
    assert compat.sigmoid_focal_loss(logits, target, weight=w, reduction="sum").item() == pytest.approx(3 * (neg + pos), rel=1e-5)
    # target == C means "no class": every entry is a negative.
    none = compat.sigmoid_focal_loss(logits, torch.tensor([2]), reduction="none")
    assert none[0, 1].item() == pytest.approx(-(1 - alpha) * p1**gamma * math.log(1 - p1), rel=1e-5)


def test_mmseg_imports_and_missing_ops_explain_themselves():
    compat.import_mmseg()
    import mmcv.ops
    from mmseg.registry import MODELS

    for name in ("MixVisionTransformer", "MSCAN", "VisionTransformer", "SegformerHead", "LightHamHead",
                 "SETRUPHead", "SETRMLAHead"):
        assert MODELS.get(name) is not None, name
    assert mmcv.ops.point_sample is compat.point_sample
    with pytest.raises(compat.MissingCompiledOp, match="CrissCrossAttention.*mmcv-lite"):
        mmcv.ops.CrissCrossAttention(4)
