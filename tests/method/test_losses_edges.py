"""Edges of c2s/method/losses.py that mutation testing (``make mutate``) showed no other test pinned down:
the pairwise distillations' empty batches, dtypes and hand values on vectors of unequal norm, and the FROSTER
residual's sign."""

from __future__ import annotations

import math

import pytest
import torch

from c2s.method.losses import (
    FrosterProjector,
    cosine_distill,
    distill_schedule_scale,
    froster_distill,
    l2_distill,
)

PAIR_LOSSES = {
    "cosine": cosine_distill,
    "l2": l2_distill,
    "froster": lambda s, t: froster_distill(s, t, FrosterProjector(3, 4, alpha=0.5)),
}


@pytest.mark.parametrize("kind", PAIR_LOSSES)
def test_no_pairs_is_an_exact_zero_that_still_backpropagates(kind):
    student = torch.zeros(0, 3, requires_grad=True)
    loss = PAIR_LOSSES[kind](student, torch.zeros(0, 3))
    assert loss.shape == () and loss.item() == 0.0  # not the NaN of a mean over nothing
    loss.backward()
    assert student.grad is not None and student.grad.shape == (0, 3)


@pytest.mark.parametrize("kind", PAIR_LOSSES)
def test_teacher_tokens_are_cast_to_the_students_dtype(kind):
    student = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    loss = PAIR_LOSSES[kind](student, teacher)
    assert loss.dtype == torch.float32  # float64 teacher tokens would promote the whole loss otherwise
    assert math.isclose(loss.item(), PAIR_LOSSES[kind](student, teacher.float()).item(), rel_tol=1e-6)


def test_pair_losses_hand_values_on_two_pairs():
    s = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])
    t = torch.tensor([[4.0, 3.0, 0.0], [1.0, 0.0, 0.0]])
    # cos = 24/25 and 0: mean(1 - cos) = (1/25 + 1) / 2
    assert math.isclose(float(cosine_distill(s, t)), (1 / 25 + 1) / 2, rel_tol=1e-6)
    # mse over all 6 entries: (1 + 1 + 0 + 1 + 0 + 4) / 6
    assert math.isclose(float(l2_distill(s, t)), 7 / 6, rel_tol=1e-6)
    # unit vectors: |a - b|^2 = 2 - 2 cos per pair, averaged over the pairs: (2 - 48/25 + 2) / 2
    proj = FrosterProjector(3, 4, alpha=0.5)  # identity at initialisation
    assert math.isclose(froster_distill(s, t, proj).item(), (4 - 48 / 25) / 2, rel_tol=1e-6)


def test_froster_projector_adds_the_scaled_residual():
    proj = FrosterProjector(2, 3, alpha=0.5)
    with torch.no_grad():
        proj.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        proj.fc1.bias.zero_()
        proj.fc2.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
        proj.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
    z = torch.tensor([[10.0, 20.0]])  # gelu is ~the identity at these values: h = (10, 20, 30)
    out = proj(z)
    # z + 0.5 * (h0, 2 h2 + 1) = (10 + 5, 20 + 0.5 * 61)
    assert torch.allclose(out, torch.tensor([[15.0, 50.5]]), atol=1e-4)


def test_distill_schedule_scale_edges():
    """A one-step run is a run (1 then 0 for linear); no steps, an unknown name and a step past the run are refused."""
    assert [distill_schedule_scale("linear", s, 1) for s in (0, 1)] == [1.0, 0.0]
    assert distill_schedule_scale("cosine", 1, 1) == pytest.approx(0.0, abs=1e-12)
    assert distill_schedule_scale("constant", 1, 1) == 1.0
    with pytest.raises(ValueError, match=r"total >= 1, got step 0 of 0"):
        distill_schedule_scale("linear", 0, 0)
    with pytest.raises(ValueError, match=r"must be one of \('constant', 'linear', 'cosine'\), got 'step'"):
        distill_schedule_scale("step", 0, 10)
