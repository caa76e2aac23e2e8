"""FeatureCentering (model.center_features): no feature offset can act as a per-class logit bias."""

import pytest
import torch

from c2s.method.objective import classify
from c2s.student.model import FeatureCentering


def test_training_subtracts_the_batch_mean_and_tracks_it() -> None:
    torch.manual_seed(0)
    center = FeatureCentering(4, momentum=0.25).train()
    feats = torch.randn(2, 4, 3, 5) + torch.tensor([3.0, -1.0, 0.5, 7.0]).view(1, 4, 1, 1)
    out = center(feats)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-6)
    batch_mean = feats.mean(dim=(0, 2, 3))
    assert torch.allclose(center.running_mean, 0.25 * batch_mean, atol=1e-6)
    center(feats)  # second step: running = 0.75 * running + 0.25 * mean
    assert torch.allclose(center.running_mean, (0.25 + 0.75 * 0.25) * batch_mean, atol=1e-6)


def test_evaluation_subtracts_the_running_mean_only() -> None:
    center = FeatureCentering(3).eval()
    center.running_mean.copy_(torch.tensor([1.0, 2.0, -3.0]))
    feats = torch.zeros(1, 3, 2, 2)
    out = center(feats)
    assert torch.equal(out[0, :, 0, 0], torch.tensor([-1.0, -2.0, 3.0]))
    assert torch.equal(center.running_mean, torch.tensor([1.0, 2.0, -3.0]))  # not updated at eval


def test_gradient_flows_through_the_batch_mean() -> None:
    # out sums to zero per channel, so a loss weighting every pixel of a channel equally has zero gradient:
    # the student cannot earn anything by moving all pixels together.
    feats = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = FeatureCentering(3).train()(feats)
    (out * torch.tensor([1.0, -2.0, 5.0]).view(1, 3, 1, 1)).sum().backward()
    assert feats.grad is not None and float(feats.grad.abs().max()) < 1e-5


def test_a_shared_offset_is_no_per_class_bias_once_centred() -> None:
    # The collapsed case of issue 13: every pixel carries the same large offset m; through X = F^T A it gives
    # class c the bias m^T A_c. Centred, every class's mean logit over the batch is the same (0).
    torch.manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    offset = -40.0 * text[:4].sum(0)  # pushes the first four ("seen") classes down, the rest free
    feats = torch.randn(2, 8, 5, 5) + offset.view(1, 8, 1, 1)
    raw = classify(feats, text, 1.0).mean(dim=(0, 2, 3))
    assert float(raw[:4].mean()) < float(raw[4:].mean()) - 20  # seen classes biased down, unseen not
    centred = classify(FeatureCentering(8).train()(feats), text, 1.0).mean(dim=(0, 2, 3))
    assert torch.allclose(centred, torch.zeros(6), atol=1e-4)


def test_momentum_is_checked() -> None:
    with pytest.raises(ValueError, match="model.center_momentum"):
        FeatureCentering(2, momentum=0.0)


def test_build_student_adds_the_centring_only_when_asked() -> None:
    from c2s.student import build_student

    plain = build_student({"name": "segformer_tiny", "embed_dim": 16})
    assert plain.center is None and not any("center" in k for k in plain.state_dict())
    centred = build_student({"name": "segformer_tiny", "embed_dim": 16, "center_features": True,
                             "center_momentum": 0.5})
    assert centred.center is not None and centred.center.momentum == 0.5
    assert tuple(centred.state_dict()["center.running_mean"].shape) == (16,)  # saved with checkpoints/exports
    centred.train()
    feats = centred(torch.randn(2, 3, 64, 64))
    assert torch.allclose(feats.mean(dim=(0, 2, 3)), torch.zeros(16), atol=1e-5)
