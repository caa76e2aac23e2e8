"""Edges of c2s/method/losses.py that mutation testing (``make mutate``) showed no other test pinned down:
the pairwise distillations' empty batches, dtypes and hand values on vectors of unequal norm, the FROSTER
residual's sign, InfoNCE's mean over one kept query, ids at the class count, the pixel terms' defaults and
ignore index, the "present" NEL's focal gamma and the global pool's refusal."""

from __future__ import annotations

import math

import pytest
import torch

from c2s.method.losses import (
    IGNORE_INDEX,
    FrosterProjector,
    cosine_distill,
    dense_pixel_terms,
    distill_schedule_scale,
    froster_distill,
    global_attention,
    info_nce,
    l2_distill,
    label_index,
    nel_loss,
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


def test_info_nce_averages_over_the_kept_queries_only():
    """One kept query: its own cross-entropy, not half of it; two: their mean; none: an exact 0."""
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([0, 0, 1])
    per_query = [info_nce(query[i:i + 1], keys, positive[i:i + 1], tau=0.5).item() for i in range(3)]
    # query 0 against keys at cos 1 and 0, positive first: -log(e^2 / (e^2 + e^0))
    assert math.isclose(per_query[0], -math.log(math.exp(2) / (math.exp(2) + 1)), rel_tol=1e-6)
    one = info_nce(query, keys, positive, tau=0.5, query_mask=torch.tensor([False, True, False]))
    assert math.isclose(one.item(), per_query[1], rel_tol=1e-6)
    two = info_nce(query, keys, positive, tau=0.5, query_mask=torch.tensor([True, False, True]))
    assert math.isclose(two.item(), (per_query[0] + per_query[2]) / 2, rel_tol=1e-6)
    assert info_nce(query, keys, positive, tau=0.5, query_mask=torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_label_index_gives_ids_at_or_past_the_class_count_no_class():
    """An id of C (a latent slot of a wider head, say) is no class's positive here: index 0, not labelled."""
    target = torch.tensor([[[0, 2, 3, 4, IGNORE_INDEX, -1]]])
    index, labelled = label_index(target, num_classes=3)
    assert index.shape == (1, 1, 1, 6) and labelled.shape == (1, 1, 1, 6)
    assert index.flatten().tolist() == [0, 2, 0, 0, 0, 0]
    assert labelled.flatten().tolist() == [True, True, False, False, False, False]


def _pixel_case() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]], [[-1.0, 1.5], [0.0, 3.0]], [[0.0, 0.0], [-2.0, 1.0]]]])
    target = torch.tensor([[[0, 1], [IGNORE_INDEX, 2]]])
    return logits, target  # (1, 3, 2, 2), (1, 2, 2)


def test_dense_pixel_terms_defaults_are_zegclips_and_nel_off_is_zeros():
    logits, target = _pixel_case()
    default = dense_pixel_terms(logits, target)
    explicit = dense_pixel_terms(logits, target, IGNORE_INDEX, focal_alpha=0.25, focal_gamma=2.0, nel=True)
    other = dense_pixel_terms(logits, target, IGNORE_INDEX, focal_alpha=0.5, focal_gamma=0.0, nel=True)
    assert [t.item() for t in default] == [t.item() for t in explicit]
    assert default[1].item() != other[1].item()  # the defaults are what the focal term reads
    assert default[3].item() == 3.0  # three labelled classes in the one image
    off = dense_pixel_terms(logits, target, nel=False)
    assert off[0].item() == default[0].item()
    assert all(isinstance(t, torch.Tensor) and t.shape == () and t.item() == 0.0 for t in off[1:])


def test_dense_pixel_terms_read_the_ignore_index_they_are_given():
    """The same pixel ignored as 7 (``ignore_index=7``) or as 255 (the default) gives the same four terms."""
    logits, target = _pixel_case()
    seven = torch.where(target == IGNORE_INDEX, 7, target)
    assert [t.item() for t in dense_pixel_terms(logits, seven, 7)] == \
        [t.item() for t in dense_pixel_terms(logits, target)]


def test_present_nel_reads_its_focal_gamma():
    """``mode="present"``, gamma 0: the focal term is alpha_t * BCE averaged over the one present map."""
    logits = torch.tensor([[[[1.0, -2.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2); class 0 on both pixels
    target = torch.zeros(1, 1, 2, dtype=torch.long)
    focal, _ = nel_loss(logits, target, focal_alpha=0.25, focal_gamma=0.0, mode="present")
    softplus = [math.log1p(math.exp(-x)) for x in (1.0, -2.0)]  # BCE of a positive at x
    assert math.isclose(focal.item(), 0.25 * sum(softplus) / 2, rel_tol=1e-6)
    squared, _ = nel_loss(logits, target, focal_alpha=0.25, focal_gamma=2.0, mode="present")
    sig = [1 / (1 + math.exp(x)) for x in (1.0, -2.0)]  # 1 - p_t of a positive
    assert math.isclose(squared.item(), 0.25 * sum(b * s * s for b, s in zip(softplus, sig)) / 2, rel_tol=1e-6)


def test_global_attention_names_its_pools_when_refusing_one():
    with pytest.raises(ValueError, match=r"^config key 'distill.global_pool' must be one of paper, centered, "
                                         r"cosine; got 'max'$"):
        global_attention(torch.zeros(1, 2, 1, 1), torch.zeros(1, 2), pool="max")
