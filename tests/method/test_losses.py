"""Losses and prototypes of c2s.method.losses against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from c2s.method.losses import (
    FrosterProjector,
    cosine_distill,
    froster_distill,
    global_prototype,
    info_nce,
    l2_distill,
    masked_cross_entropy,
    masked_mean_prototypes,
    nel_loss,
    region_weights,
    sigmoid_focal,
)


def test_global_prototype_hand_value():
    # positions: (1, 0) and (0, 1); token (1, 0): scores [1, 0] / sqrt(2)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    proto = global_prototype(feats, torch.tensor([[1.0, 0.0]]))
    w0 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    assert torch.allclose(proto, torch.tensor([[w0, 1 - w0]]), atol=1e-6)


def test_prototypes_are_masked_means_at_same_resolution():
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[5, 5], [7, 5]]).view(1, 2, 2)
    ids = torch.tensor([[5, 7, 9]])  # 9 is absent -> zero area, zero prototype
    protos, area = masked_mean_prototypes(feats, region_weights(mask, ids, (2, 2)))
    assert torch.allclose(protos[0, :, 0], torch.tensor([7 / 3, 3.0, 0.0]))
    assert area[0].tolist() == [3.0, 1.0, 0.0]


def test_prototypes_area_weighted_when_mask_is_finer():
    # label grid 4x4, feature grid 2x2: region 7 covers half of the bottom-left cell and all of bottom-right
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    mask = torch.zeros(1, 4, 4, dtype=torch.long)
    mask[0, 2:, 1] = 7
    mask[0, 2:, 2:] = 7
    weights = region_weights(mask, torch.tensor([[7]]), (2, 2))
    assert torch.allclose(weights[0, 0], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))
    protos, _ = masked_mean_prototypes(feats, weights)
    assert math.isclose(float(protos[0, 0, 0]), (0.5 * 3 + 4) / 1.5, rel_tol=1e-6)
    # equals the masked mean at label resolution of nearest-upsampled features
    up = F.interpolate(feats, size=(4, 4), mode="nearest")[0, 0]
    assert math.isclose(float(protos[0, 0, 0]), float(up[mask[0] == 7].mean()), rel_tol=1e-6)


def test_info_nce_hand_value_and_cross_entropy_equivalence():
    q = torch.tensor([[2.0, 0.0]])  # normalised inside: scale does not matter
    keys = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    loss = info_nce(q, keys, torch.tensor([0]), tau=1.0)
    assert math.isclose(float(loss), math.log(1 + math.exp(-1)), rel_tol=1e-6)  # 0.31326

    torch.manual_seed(0)
    q, keys = torch.randn(5, 8), torch.randn(7, 8)
    pos = torch.tensor([0, 3, 6, 2, 2])
    sims = F.normalize(q, dim=-1) @ F.normalize(keys, dim=-1).t()
    expected = F.cross_entropy(sims / 0.07, pos)
    assert torch.allclose(info_nce(q, keys, pos, tau=0.07), expected, atol=1e-5)


def test_info_nce_key_mask_drops_candidates():
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    mask = torch.tensor([[True, True, False]])
    loss = info_nce(q, keys, torch.tensor([0]), tau=1.0, key_mask=mask)
    assert math.isclose(float(loss), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    assert float(info_nce(torch.zeros(0, 2), keys, torch.zeros(0, dtype=torch.long), 1.0)) == 0.0


def test_pairwise_distillations_hand_values():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[1.0, 1.0]]) / math.sqrt(2)
    assert math.isclose(float(cosine_distill(s, t)), 1 - 1 / math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(float(l2_distill(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2))), 2.5, rel_tol=1e-6)
    proj = FrosterProjector(2, 4, alpha=0.1)  # zero-initialised residual: identity at start
    assert torch.equal(proj(s), s)
    assert math.isclose(float(froster_distill(s, torch.tensor([[0.0, 5.0]]), proj).detach()), 2.0, rel_tol=1e-6)


def test_froster_projector_receives_gradient():
    proj = FrosterProjector(3, 5, alpha=0.1)
    s = torch.randn(4, 3, requires_grad=True)
    froster_distill(s, torch.randn(4, 3), proj).backward()
    assert proj.fc2.weight.grad is not None and proj.fc2.weight.grad.abs().sum() > 0
    assert s.grad is not None


def test_sigmoid_focal_hand_value():
    # p = 0.5, positive: alpha * (1 - p)^2 * log 2 = 0.25 * 0.25 * 0.6931
    v = sigmoid_focal(torch.tensor([0.0]), torch.tensor([1.0]), alpha=0.25, gamma=2.0)
    assert math.isclose(float(v), 0.25 * 0.25 * math.log(2), rel_tol=1e-6)
    v = sigmoid_focal(torch.tensor([0.0]), torch.tensor([0.0]), alpha=0.25, gamma=2.0)
    assert math.isclose(float(v), 0.75 * 0.25 * math.log(2), rel_tol=1e-6)


def test_nel_present_mode_hand_value_ignore_excluded():
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 255]]])
    focal, dice = nel_loss(logits, target, mode="present")
    assert math.isclose(float(focal), 0.25 * 0.25 * math.log(2), rel_tol=1e-6)  # one valid pixel, one mask
    assert math.isclose(float(dice), 1 - (2 * 0.5 + 1) / (0.5 + 1 + 1), rel_tol=1e-6)  # 0.2


def test_nel_present_mode_normalised_by_number_of_masks():
    # image 0: class 0 everywhere; image 1: classes 0 and 1 -> 3 masks; class 2 absent everywhere
    logits = torch.zeros(2, 3, 1, 2)
    target = torch.tensor([[[0, 0]], [[0, 1]]])
    focal, dice = nel_loss(logits, target, mode="present")
    pos, neg = 0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)
    # masks: (0,0): 2 pos; (1,0): pos+neg; (1,1): neg+pos -> per-mask pixel means
    expected_focal = (pos + (pos + neg) / 2 + (pos + neg) / 2) / 3
    assert math.isclose(float(focal), expected_focal, rel_tol=1e-6)
    d_full = 1 - (2 * 1.0 + 1) / (1.0 + 2 + 1)  # sum sigma = 1, sum t = 2, intersection 1
    d_half = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    assert math.isclose(float(dice), (d_full + 2 * d_half) / 3, rel_tol=1e-6)


def test_nel_upsamples_only_selected_classes_consistently():
    torch.manual_seed(0)
    low = torch.randn(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 6, 6))
    target[0, 0] = 255
    up = F.interpolate(low, size=(6, 6), mode="bilinear", align_corners=False)
    for mode in ("zegclip", "present"):
        a, b = nel_loss(low, target, mode=mode), nel_loss(up, target, mode=mode)
        assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)


# ---- NEL as ZegCLIP defines it (ZiqinZhou66/ZegCLIP models/losses/criterion.py + atm_loss.py) ----------
POS = 0.25 * 0.25 * math.log(2)  # focal of a zero logit, target 1 (alpha 0.25, gamma 2)
NEG = 0.75 * 0.25 * math.log(2)  # focal of a zero logit, target 0


def zegclip_reference(logits, target, ignore=255, alpha=0.25, gamma=2.0):
    """ZegCLIP's loss_masks written literally, one image at a time: prepare_targets -> the binary
    (B, C, H*W) target scattered from non-ignore pixels only -> focal ``.mean(1).sum() / num_masks`` over
    every map; dice over the present classes' maps on all pixels; num_masks = number of present labels."""
    b, c, h, w = logits.shape
    up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    hw = target.shape[-2] * target.shape[-1]
    onehot = torch.zeros(b, c, hw)
    labels = []
    for i in range(b):
        mask = target[i].reshape(-1)
        idx = torch.arange(hw)[mask != ignore]
        onehot[i, mask[mask != ignore], idx] = 1
        present = target[i].unique()
        labels.append(present[present != ignore])
    num_masks = max(sum(len(lab) for lab in labels), 1)
    x, t = up.reshape(b * c, hw), onehot.reshape(b * c, hw)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p = x.sigmoid()
    p_t = p * t + (1 - p) * (1 - t)
    focal = ((alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma).mean(1).sum() / num_masks
    dice = torch.zeros(())
    for i in range(b):
        for cls in labels[i].tolist():
            q = up[i, cls].sigmoid().flatten()
            m = (target[i] == cls).float().flatten()
            dice = dice + 1 - (2 * (q * m).sum() + 1) / (q.sum() + m.sum() + 1)
    return focal, dice / num_masks


def test_nel_zegclip_absent_class_is_a_negative_everywhere():
    # one image, 3 classes, only class 0 present on both pixels: the absent classes 1 and 2 count as two
    # all-negative maps (the "present" reading drops them)
    logits = torch.zeros(1, 3, 1, 2)
    target = torch.tensor([[[0, 0]]])
    focal, dice = nel_loss(logits, target)
    assert math.isclose(float(focal), (POS + 2 * NEG) / 1, rel_tol=1e-6)
    assert math.isclose(float(dice), 1 - (2 * 1.0 + 1) / (1.0 + 2 + 1), rel_tol=1e-6)
    focal_present, _ = nel_loss(logits, target, mode="present")
    assert math.isclose(float(focal_present), POS, rel_tol=1e-6)


def test_nel_zegclip_ignore_pixels_are_negatives_for_every_class():
    # pixel 0 class 0, pixel 1 ignore. Focal: map 0 = (POS + NEG)/2 (the ignore pixel is a negative and
    # counts in the mean), map 1 = NEG; one mask. Dice runs over both pixels: sum sigma = 1, t = 1.
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 255]]])
    focal, dice = nel_loss(logits, target)
    assert math.isclose(float(focal), (POS + NEG) / 2 + NEG, rel_tol=1e-6)
    assert math.isclose(float(dice), 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1), rel_tol=1e-6)


def test_nel_zegclip_image_without_valid_pixel():
    # image 1 is all ignore: it adds no target mask and no dice term, but its 2 maps are negatives in focal
    logits = torch.zeros(2, 2, 1, 2)
    target = torch.tensor([[[0, 1]], [[255, 255]]])
    focal, dice = nel_loss(logits, target)
    per_map_img0 = (POS + NEG) / 2
    assert math.isclose(float(focal), (2 * per_map_img0 + 2 * NEG) / 2, rel_tol=1e-6)
    d_half = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    assert math.isclose(float(dice), 2 * d_half / 2, rel_tol=1e-6)
    # every pixel ignored everywhere: no mask; the count clamps at 1 and dice is 0
    focal, dice = nel_loss(torch.zeros(1, 2, 1, 2), torch.full((1, 1, 2), 255))
    assert math.isclose(float(focal), 2 * NEG, rel_tol=1e-6) and float(dice) == 0.0


def test_nel_zegclip_matches_the_reference_on_random_inputs():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 4, 4) * 3
    target = torch.randint(0, 4, (3, 8, 8))  # classes 4 and 5 absent everywhere
    target[0, :3] = 255
    target[2] = 255  # an image with no valid pixel
    focal, dice = nel_loss(logits, target)
    ref_focal, ref_dice = zegclip_reference(logits, target)
    assert torch.allclose(focal, ref_focal, rtol=1e-5) and torch.allclose(dice, ref_dice, rtol=1e-5)
    # the two readings agree only when every class is present and nothing is ignored
    full = torch.arange(6).repeat(11)[:64].view(1, 8, 8)
    a, b = nel_loss(logits[:1], full), nel_loss(logits[:1], full, mode="present")
    assert torch.allclose(a[0], b[0], rtol=1e-5) and torch.allclose(a[1], b[1], rtol=1e-5)
    assert not torch.allclose(nel_loss(logits, target)[0], nel_loss(logits, target, mode="present")[0], rtol=0.1)


def test_nel_zegclip_gradient_matches_the_reference():
    """nel_terms computes focal as "every element a negative, then swap the labelled pixels' own class" and
    dice from scattered sums: its gradient w.r.t. the logits equals autograd through ZegCLIP's literal form,
    with saturated logits (+-30), a padded class, ignore pixels, absent classes and an all-ignore image."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(3, 6, 4, 4, generator=g) * 3
    base[0, 1, 0, 0], base[1, 2, 1, 1], base[2, 0, 2, 2] = 30.0, -30.0, 25.0
    base[:, 5] = -1.0e4  # a padded latent class: never labelled
    target = torch.randint(0, 4, (3, 8, 8), generator=g)
    target[0, :3] = 255
    target[2] = 255
    for alpha, gamma in ((0.25, 2.0), (0.4, 1.5)):
        ours, ref = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
        focal, dice = nel_loss(ours, target, focal_alpha=alpha, focal_gamma=gamma)
        (3.0 * focal + 0.5 * dice).backward()
        ref_focal, ref_dice = zegclip_reference(ref, target, alpha=alpha, gamma=gamma)
        (3.0 * ref_focal + 0.5 * ref_dice).backward()
        assert torch.allclose(focal, ref_focal, rtol=1e-5) and torch.allclose(dice, ref_dice, rtol=1e-5)
        assert torch.allclose(ours.grad, ref.grad, rtol=1e-4, atol=1e-7)
        assert float(ours.grad[:, 5].abs().sum()) == 0.0  # the padded class: exactly no gradient


def test_nel_terms_are_unnormalised_sums_and_count():
    # two images, 3 classes: image 0 has classes 0 and 2, image 1 class 1 only -> 3 target masks
    from c2s.method.losses import nel_terms

    logits = torch.zeros(2, 3, 1, 2)
    target = torch.tensor([[[0, 2]], [[1, 1]]])
    focal, dice, count = nel_terms(logits, target)
    assert float(count) == 3.0
    # per-map means: image 0's maps 0 and 2 hold one positive and one negative, its map 1 two negatives;
    # image 1's map 1 two positives, its maps 0 and 2 two negatives
    per_map = torch.tensor([[(POS + NEG) / 2, NEG, (POS + NEG) / 2], [NEG, POS, NEG]]).sum()
    assert math.isclose(float(focal), float(per_map), rel_tol=1e-6)
    d_half = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)  # sum sigma = 1 over 2 pixels, one labelled
    d_full = 1 - (2 * 1.0 + 1) / (1.0 + 2 + 1)
    assert math.isclose(float(dice), 2 * d_half + d_full, rel_tol=1e-6)


def test_nel_zegclip_padded_latent_class_adds_nothing():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    padded = torch.cat([logits, torch.full((1, 1, 2, 2), -1.0e4)], dim=1)
    target = torch.tensor([[[0, 1], [1, 255]]])
    with_pad, without = nel_loss(padded, target), nel_loss(logits, target)
    assert torch.allclose(with_pad[0], without[0]) and torch.allclose(with_pad[1], without[1])


def test_nel_mode_is_checked():
    with pytest.raises(ValueError, match="loss.nel_mode"):
        nel_loss(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long), mode="all")


def test_masked_cross_entropy():
    logits = torch.zeros(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    assert math.isclose(float(masked_cross_entropy(logits, target)), math.log(2), rel_tol=1e-6)
    all_ignored = torch.full((1, 1, 3), 255)
    assert float(masked_cross_entropy(logits, all_ignored)) == 0.0


def test_sigmoid_focal_equals_torchvisions_for_binary_targets():
    """c2s's 9-op form equals torchvision.ops.sigmoid_focal_loss (the form ZegCLIP's criterion.py copies:
    alpha_t * BCE * (1 - p_t)^gamma) element-wise, including saturated logits and the padded-class logit,
    whose loss and gradient stay exactly 0 as negatives."""
    from torchvision.ops import sigmoid_focal_loss

    from c2s.method.losses import PAD_LOGIT, sigmoid_focal

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(500, generator=g) * 4, torch.tensor([30.0, -30.0, 80.0, -80.0, 0.0])])
    t = (torch.rand(x.shape, generator=g) < 0.3).float()
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.0), (0.9, 0.0)):
        ours, ref = sigmoid_focal(x, t, alpha, gamma), sigmoid_focal_loss(x, t, alpha, gamma, reduction="none")
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    pad = torch.full((3,), PAD_LOGIT, requires_grad=True)
    loss = sigmoid_focal(pad, torch.zeros(3)).sum()
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(pad.grad.abs().sum()) == 0.0
