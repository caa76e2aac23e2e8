"""Losses and prototypes of C2S distillation (paper Sec. 3.2-3.3), pure PyTorch.

Shapes: ``B`` images, ``D`` embedding dim, ``h x w`` feature grid, ``H x W`` label grid, ``L`` local slots,
``C`` classes. Nothing here knows about Ray or configs; :mod:`c2s.method.objective` wires it together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = 255
# Logit given to padded latent classes: exp(-1e4 - max) underflows to exactly 0 in fp32/bf16 softmax, so
# a padded class never wins an argmax and never receives probability mass. Not -inf: -inf - -inf = NaN
# inside log_softmax when a whole row were padded, and finite values keep the backward pass finite.
PAD_LOGIT = -1.0e4

DISTILL_KINDS = ("infonce", "cosine", "l2", "froster")
DISTILL_SCHEDULES = ("constant", "linear", "cosine")


def distill_schedule_scale(schedule: str, step: int, total: int) -> float:
    """The multiplier of the distillation weights ``w_g``, ``w_l`` at ``step`` (0-based) of ``total`` steps.

    ``"constant"``: 1 at every step, the paper's fixed weights (Eq. 6). ``"linear"``: ``1 - step / total``.
    ``"cosine"``: ``(1 + cos(pi * step / total)) / 2``. Both decay from 1 at the first step towards 0 at the
    last, leaving the pixel loss alone at the end of training (docs/table3-toy.md measures why one would).
    """
    if schedule not in DISTILL_SCHEDULES:
        raise ValueError(f"distill schedule must be one of {DISTILL_SCHEDULES}, got {schedule!r}")
    if total < 1 or not 0 <= step <= total:
        raise ValueError(f"distill schedule needs 0 <= step <= total and total >= 1, got step {step} of {total}")
    if schedule == "constant":
        return 1.0
    progress = step / total
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------- prototypes
GLOBAL_POOLS = ("paper", "centered", "cosine")


def global_prototype(feats: Tensor, cls_token: Tensor, pool: str = "paper", attn_tau: float = 0.07) -> Tensor:
    """Global feature prototype ``F_g = softmax(C_gᵀ F / √D) Fᵀ`` (Sec. 3.2) and two variants.

    * ``"paper"``: the paper's literal form on the raw features.
    * ``"centered"``: the same on ``F - mean(F)``, the batch's mean feature (over images and positions,
      detached) removed first. A component shared by every pixel of every image (the features carry one
      when the logits have no bias, see ``loss.logit_bias``) makes the dot-product attention uniform and
      every image's ``F_g`` the same vector; centring leaves only what differs between pixels and images.
    * ``"cosine"``: attention ``softmax(cos(C_g, f) / attn_tau)`` over the raw features, which no feature
      norm or offset can flatten.

    Args:
        feats: ``(B, D, h, w)`` student features (unnormalised).
        cls_token: ``(B, D)`` teacher global CLS token (treated as a constant: detach it before calling
            if it may carry a graph).
        pool: ``"paper"`` | ``"centered"`` | ``"cosine"`` (config key ``distill.global_pool``).
        attn_tau: temperature of the cosine attention (``distill.global_attn_tau``; cosine pool only).
    Returns:
        ``(B, D)``: the attention-weighted mean of the dense features, weights softmaxed over the ``h*w``
        positions.
    """
    weights, flat = global_attention(feats, cls_token, pool, attn_tau)
    return torch.einsum("bl,bdl->bd", weights, flat)


def global_attention(feats: Tensor, cls_token: Tensor, pool: str = "paper",
                     attn_tau: float = 0.07) -> tuple[Tensor, Tensor]:
    """The attention of :func:`global_prototype` and the features it averages.

    Returns ``(weights (B, L), values (B, D, L))`` with ``L = h*w``; ``values`` is ``F`` (centred for
    ``pool="centered"``).
    """
    if pool not in GLOBAL_POOLS:
        raise ValueError(f"config key 'distill.global_pool' must be one of {', '.join(GLOBAL_POOLS)}; got {pool!r}")
    b, d = feats.shape[:2]
    flat = feats.reshape(b, d, -1)  # (B, D, L)
    token = cls_token.to(flat.dtype)
    if pool == "centered":
        flat = flat - flat.mean(dim=(0, 2), keepdim=True).detach()
    if pool == "cosine":
        scores = torch.einsum("bd,bdl->bl", F.normalize(token, dim=-1), F.normalize(flat, dim=1)) / attn_tau
    else:
        scores = torch.einsum("bd,bdl->bl", token, flat) / d**0.5
    return torch.softmax(scores, dim=-1), flat


def region_weights(mask: Tensor, ids: Tensor, size: tuple[int, int]) -> Tensor:
    """Fraction of each feature cell covered by each region (area downsampling of binary region masks).

    The masked mean of Eq. 3 needs the pseudo mask at feature resolution. Nearest downsampling drops
    regions thinner than the stride (their local CLS token would then have no prototype); area weights
    keep every region and equal Eq. 3 evaluated at label resolution on nearest-upsampled features.

    Args:
        mask: ``(B, H, W)`` int64 region ids (pseudo mask), any id space.
        ids: ``(B, L)`` int64 id of each region slot (padding slots may hold any id; weight them out later).
        size: ``(h, w)`` of the feature grid.
    Returns:
        ``(B, L, h, w)`` float weights in ``[0, 1]``.
    """
    onehot = (mask.unsqueeze(1) == ids[:, :, None, None]).float()  # (B, L, H, W)
    if tuple(onehot.shape[-2:]) == tuple(size):
        return onehot
    return F.adaptive_avg_pool2d(onehot, size)


def masked_mean_prototypes(feats: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Local prototypes (Eq. 3): the weighted mean of ``F`` over each region.

    Args:
        feats: ``(B, D, h, w)``.
        weights: ``(B, L, h, w)`` non-negative region weights (binary masks or :func:`region_weights`).
    Returns:
        ``(protos (B, L, D), area (B, L))``; a slot with zero area gets a zero prototype (never NaN), so
        callers mark it invalid via ``area > 0``.
    """
    weights = weights.to(feats.dtype)
    area = weights.flatten(2).sum(-1)  # (B, L)
    summed = torch.einsum("blhw,bdhw->bld", weights, feats)
    return summed / area.clamp_min(1e-6).unsqueeze(-1), area


# ------------------------------------------------------------------------------------------- distillation
def info_nce(query: Tensor, keys: Tensor, positive: Tensor, tau: float, key_mask: Tensor | None = None,
             query_mask: Tensor | None = None) -> Tensor:
    """Standard InfoNCE: mean cross-entropy of the positive key among the candidates.

    The paper writes Eqs. 2 and 4 as the softmax probability of the positive *without* the ``-log``;
    minimising that literally would push the positive away. We implement the standard InfoNCE of
    Oord et al. (2018), ``-log softmax(sim / τ)[positive]``. Query and keys are L2-normalised first, so the
    similarity is a cosine (the student's features are unnormalised; raw dot products over τ = 0.07 would
    explode).

    Args:
        query: ``(N, D)`` student prototypes.
        keys: ``(M, D)`` candidate teacher tokens.
        positive: ``(N,)`` int64 index into ``keys`` of each query's positive.
        tau: temperature.
        key_mask: optional ``(N, M)`` bool, False = candidate removed from that query's denominator
            (the positive itself must stay True).
        query_mask: optional ``(N,)`` bool, False = the query is padding: the mean runs over the True rows
            only (fixed shapes instead of selecting rows, which would synchronise with the device).
    Returns:
        scalar; 0 (with a graph) when ``N == 0`` or no query is kept.
    """
    if query.shape[0] == 0:
        return query.sum() * 0.0
    logits = F.normalize(query, dim=-1) @ F.normalize(keys.to(query.dtype), dim=-1).t() / tau
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask, float("-inf"))
    if query_mask is None:
        return F.cross_entropy(logits, positive)
    per_query = F.cross_entropy(logits, positive, reduction="none")
    kept = query_mask.to(per_query.dtype)
    return torch.where(query_mask, per_query, 0.0).sum() / kept.sum().clamp_min(1.0)


def cosine_distill(student: Tensor, teacher: Tensor) -> Tensor:
    """``mean(1 - cos(student_i, teacher_i))`` over pairs (Table 4, "cosine similarity"). ``(N, D)`` each."""
    if student.shape[0] == 0:
        return student.sum() * 0.0
    return (1.0 - F.cosine_similarity(student, teacher.to(student.dtype), dim=-1)).mean()


def l2_distill(student: Tensor, teacher: Tensor) -> Tensor:
    """Plain mean squared error between raw prototypes and tokens (Table 4, "L2 loss"). ``(N, D)`` each.

    Deliberately unnormalised: this is the naive feature-matching baseline the paper reports as poor.
    """
    if student.shape[0] == 0:
        return student.sum() * 0.0
    return F.mse_loss(student, teacher.to(student.dtype))


class FrosterProjector(nn.Module):
    """FROSTER-style residual projector (Huang et al., ICLR 2024): ``z' = z + a · W2 GELU(W1 z)``.

    FROSTER distils a frozen CLIP into a fine-tuned model through a residual sub-network (two-layer MLP
    plus identity), so the distillation target constrains the student only through a learned residual
    and the identity path keeps the student features free to serve the task loss. ``W2`` starts at zero,
    so ``z' = z`` at initialisation. ``(..., D) -> (..., D)``.
    """

    def __init__(self, dim: int, hidden: int, alpha: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.alpha = alpha

    def forward(self, z: Tensor) -> Tensor:
        return z + self.alpha * self.fc2(F.gelu(self.fc1(z)))


def froster_distill(student: Tensor, teacher: Tensor, projector: FrosterProjector) -> Tensor:
    """Residual feature distillation: MSE between L2-normalised ``projector(student)`` and teacher tokens.

    ``(N, D)`` each; on unit vectors the squared distance is ``2 - 2 cos``, summed over D, averaged over N.
    """
    if student.shape[0] == 0:
        return student.sum() * 0.0
    diff = F.normalize(projector(student), dim=-1) - F.normalize(teacher.to(student.dtype), dim=-1)
    return diff.pow(2).sum(-1).mean()


# ------------------------------------------------------------------------------------------- pixel losses
def _world_sum(value: Tensor) -> Tensor:
    """Sum a tensor over DDP workers when torch.distributed is initialised (else return it unchanged)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = value.clone()
        torch.distributed.all_reduce(value)
    return value


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def sigmoid_focal(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise binary sigmoid focal loss (Lin et al. 2017) for targets in {0, 1}, same shapes in and out.

    ``alpha_t * BCE(x, t) * (1 - p_t)^gamma`` written with ``z = x`` for positives and ``-x`` for negatives:
    ``BCE = softplus(-z)`` and ``1 - p_t = sigmoid(-z)`` (equal to ZegCLIP's ``sigmoid_focal_loss`` for 0/1
    targets, in 9 element-wise ops instead of 15: over all class maps at label size this is the objective's
    largest cost on a GPU, `c2s bench objective --profile`).
    """
    z = logits * (2 * targets - 1)
    alpha_t = (1 - alpha) + (2 * alpha - 1) * targets
    return alpha_t * F.softplus(-z) * torch.sigmoid(-z).pow(gamma)


NEL_MODES = ("zegclip", "present")


def _present_pairs(target: Tensor, num_classes: int, ignore_index: int) -> tuple[Tensor, Tensor]:
    """``(img_idx, cls_idx)`` of every (image, class) pair whose class labels at least one pixel.

    One bincount over (image, class) keys, no per-image loop. ``target (B, H, W)`` -> two ``(P,)`` int64.
    """
    b = target.shape[0]
    valid = target != ignore_index
    safe = torch.where(valid & (target < num_classes), target, torch.full_like(target, num_classes))
    keys = (torch.arange(b, device=target.device).view(b, 1, 1) * (num_classes + 1) + safe).flatten()
    present = torch.bincount(keys, minlength=b * (num_classes + 1)).view(b, num_classes + 1)[:, :num_classes] > 0
    return present.nonzero(as_tuple=True)


def num_target_masks(count: Tensor) -> Tensor:
    """ZegCLIP's normaliser: target masks summed over DDP workers, divided by the world size, at least 1.

    ``count`` is a float tensor on the logits' device: no host synchronisation."""
    return (_world_sum(count) / _world_size()).clamp_min(1.0)


def _dice(prob: Tensor, t: Tensor) -> Tensor:
    """Per-mask dice loss ``1 - (2Σpt + 1) / (Σp + Σt + 1)``; ``prob, t (P, H, W)`` -> ``(P,)``."""
    num = 2 * (prob * t).flatten(1).sum(-1) + 1
    den = prob.flatten(1).sum(-1) + t.flatten(1).sum(-1) + 1
    return 1 - num / den


def label_index(target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """Each pixel's class as a gather/scatter index over the class dim, and whether it has one.

    ``target (B, H, W)`` -> ``(index (B, 1, H, W) int64 in [0, C), labelled (B, 1, H, W) bool)``. Ignore pixels
    (and ids outside ``[0, C)``) get index 0 and ``labelled=False``: they are a positive of no class.
    """
    labelled = (target != ignore_index) & (target >= 0) & (target < num_classes)
    return torch.where(labelled, target, torch.zeros_like(target)).unsqueeze(1), labelled.unsqueeze(1)


def nel_terms(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX, focal_alpha: float = 0.25,
              focal_gamma: float = 2.0) -> tuple[Tensor, Tensor, Tensor]:
    """ZegCLIP's NEL before its normaliser: ``(focal, dice, number of target masks)``, all scalars: the focal
    loss's per-map means summed over the ``B*C`` maps, the dice losses summed over the present maps.

    :func:`nel_loss` (``mode="zegclip"``) divides the first two by the third (summed over DDP workers). The
    same definition, arranged so that its cost over ``C`` class maps at label size is a handful of passes,
    with static shapes and no host synchronisation (so ``torch.compile`` fuses it whole, ``loss.compile``):

    * focal: every element is first costed as a negative, ``(1-α) softplus(x) σ(x)^γ`` (``BCE(x, 0)`` and
      ``p_t = 1 - σ(x)``); then, at the ``B*H*W`` elements gathered at each labelled pixel's own class, the
      negative's term is swapped for the positive's ``α softplus(-x) σ(-x)^γ``. No one-hot target, sign flip
      or per-element ``α_t`` over all maps. The sum over maps of per-map means is the total over ``H*W``.
    * dice: ``Σσ(x)`` per map over all pixels; ``Σσ(x)t`` and ``Σt`` per map by scattering the gathered
      ``σ(x)`` and ones into ``(B, C)``; summed over the maps with ``Σt > 0`` (the present pairs) only.

    Args:
        logits: ``(B, C, h, w)``; upsampled bilinearly to ``target``'s size when smaller.
        target: ``(B, H, W)`` int64 in ``[0, C)`` or ``ignore_index``.
    Returns:
        ``(focal, dice, count)``: fp32 scalars on the logits' device.
    """
    b, c = logits.shape[:2]
    size = tuple(target.shape[-2:])
    x = logits if tuple(logits.shape[-2:]) == size else F.interpolate(
        logits, size=size, mode="bilinear", align_corners=False)  # (B, C, H, W)
    index, labelled = label_index(target, c, ignore_index)
    prob = torch.sigmoid(x)
    as_negative = F.softplus(x) * prob.pow(focal_gamma)  # (1 - alpha) applied to the sum below
    x_pos = x.gather(1, index)  # (B, 1, H, W): each pixel's logit of its own class
    prob_pos = torch.sigmoid(x_pos)  # = prob.gather(1, index), without a second (B, C, H, W) scatter in backward
    swap = (focal_alpha * F.softplus(-x_pos) * torch.sigmoid(-x_pos).pow(focal_gamma)
            - (1 - focal_alpha) * F.softplus(x_pos) * prob_pos.pow(focal_gamma))
    focal = ((1 - focal_alpha) * as_negative.sum() + torch.where(labelled, swap, 0.0).sum()) / (size[0] * size[1])

    flat_index, mask = index.flatten(1), labelled.flatten(1).to(prob.dtype)
    sum_t = prob.new_zeros(b, c).scatter_add_(1, flat_index, mask)  # (B, C) pixels labelled c
    sum_pt = prob.new_zeros(b, c).scatter_add_(1, flat_index, prob_pos.flatten(1) * mask)
    dice = 1 - (2 * sum_pt + 1) / (prob.flatten(2).sum(-1) + sum_t + 1)  # (B, C)
    present = sum_t > 0
    return focal, torch.where(present, dice, 0.0).sum(), present.sum().to(prob.dtype)


def nel_loss(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = IGNORE_INDEX,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    mode: str = "zegclip",
) -> tuple[Tensor, Tensor]:
    """ZegCLIP's non-mutually-exclusive loss, unweighted terms ``(focal, dice)``.

    ``mode="zegclip"`` (the default) is ZegCLIP's definition, checked against ZiqinZhou66/ZegCLIP
    ``models/losses/criterion.py`` (``SegPlusCriterion.loss_masks``, ``_get_target_mask_binary_cross_entropy``,
    ``sigmoid_focal_loss``, ``dice_loss``, ``forward``'s ``num_masks``) and ``models/losses/atm_loss.py``
    (``SegLossPlus.prepare_targets``):

    * focal: a one-hot target over **all** ``C`` class maps, 1 where the pixel has that label and 0
      elsewhere; **ignore pixels are 0 for every class** (ZegCLIP drops them from the scatter, it does not
      mask them out of the loss), so every class absent from an image, and every ignore pixel, is a
      negative. Every map is upsampled bilinearly to label size; the sigmoid focal loss is averaged over
      all ``H*W`` pixels of each map, summed over the ``B*C`` maps and divided by the number of target masks.
    * dice: over the (image, class) pairs present in the target only, ``1 - (2Σσ(x)t + 1) / (Σσ(x) + Σt + 1)``
      over all ``H*W`` pixels (ignore pixels included, as in ZegCLIP), summed, divided by the same count.
    * the count: present (image, class) pairs, summed over DDP workers, divided by the world size, at
      least 1. An image with no valid pixel adds no mask and no dice term, but its focal maps still count.

    Padded latent classes (logit :data:`PAD_LOGIT`) have a focal loss and gradient of exactly 0.

    ``mode="present"`` is c2s's earlier reading: only the present (image, class) pairs, only non-ignored
    pixels, for both terms (absent classes contribute nothing).

    Args:
        logits: ``(B, C, h, w)`` at feature or label resolution.
        target: ``(B, H, W)`` int64 in ``[0, C)`` or ``ignore_index``.
        mode: ``"zegclip"`` or ``"present"`` (config key ``loss.nel_mode``).
    Returns:
        ``(focal, dice)`` scalars.
    """
    if mode not in NEL_MODES:
        raise ValueError(f"config key 'loss.nel_mode' must be one of {', '.join(NEL_MODES)}; got {mode!r}")
    if mode == "zegclip":
        focal, dice, count = nel_terms(logits, target, ignore_index, focal_alpha, focal_gamma)
        num_masks = num_target_masks(count)
        return focal / num_masks, dice / num_masks
    c = logits.shape[1]
    size = tuple(target.shape[-2:])
    img_idx, cls_idx = _present_pairs(target, c, ignore_index)  # the P target masks
    num_masks = num_target_masks(torch.tensor(float(img_idx.numel()), device=logits.device))
    if img_idx.numel() == 0:
        zero = logits.sum() * 0.0
        return zero, zero
    # Only the present classes' maps are upsampled (the same values as upsampling all and selecting,
    # without materialising and backpropagating through all C maps at H x W).
    sel = logits[img_idx, cls_idx]  # (P, h, w)
    if tuple(sel.shape[-2:]) != size:
        sel = F.interpolate(sel.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0]
    t = (target[img_idx] == cls_idx.view(-1, 1, 1)).to(sel.dtype)
    v = (target[img_idx] != ignore_index).to(sel.dtype)
    n_valid = v.flatten(1).sum(-1).clamp_min(1.0)
    focal = (sigmoid_focal(sel, t, focal_alpha, focal_gamma) * v).flatten(1).sum(-1) / n_valid
    dice = _dice(torch.sigmoid(sel) * v, t)
    return focal.sum() / num_masks, dice.sum() / num_masks


def dense_pixel_terms(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX, focal_alpha: float = 0.25,
                      focal_gamma: float = 2.0, nel: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The pixel loss's work at label size in one function: bilinear upsampling, CE, and NEL's sums.

    Static shapes and no host synchronisation, so ``torch.compile`` fuses it whole (``loss.compile``); no
    collective inside (NEL's normaliser is summed over DDP workers outside, :func:`num_target_masks`).

    Args:
        logits: ``(B, C, h, w)``, upsampled to ``target``'s size when smaller.
        target: ``(B, H, W)`` int64 in ``[0, C)`` or ``ignore_index``.
        nel: False skips NEL (its three terms are then zeros).
    Returns:
        ``(ce, focal_sum, dice_sum, target_masks)``: :func:`masked_cross_entropy` and :func:`nel_terms`.
    """
    size = tuple(target.shape[-2:])
    up = logits if tuple(logits.shape[-2:]) == size else F.interpolate(
        logits, size=size, mode="bilinear", align_corners=False)
    ce = masked_cross_entropy(up, target, ignore_index)
    if not nel:
        zero = up.new_zeros(())
        return ce, zero, zero, zero
    return (ce, *nel_terms(up, target, ignore_index, focal_alpha, focal_gamma))


def masked_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixel cross-entropy averaged over non-ignored pixels; 0 (not NaN) when every pixel is ignored.

    ``logits (B, C, H, W)``, ``target (B, H, W)``.
    """
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp_min(1)
    return total / count
