"""Measurements of the global distillation's health (pure PyTorch, no gradients).

Used by recipe probes (``tools/offline_c2s.py``) to tell a global loss that learns from one stuck at chance:
a feature offset shared by every pixel makes the dot-product attention of ``F_g`` uniform and every image's
prototype the same vector, so InfoNCE cannot tell images apart (its value stays near ``ln(B + bank)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from c2s.method.losses import global_attention


@torch.no_grad()
def global_distill_stats(feats: Tensor, cls_token: Tensor, bank: Tensor | None = None, pool: str = "paper",
                         attn_tau: float = 0.07) -> dict[str, float]:
    """Statistics of the global prototypes of one batch.

    Args:
        feats: ``(B, D, h, w)`` student features.
        cls_token: ``(B, D)`` the images' global CLS tokens.
        bank: ``(M, D)`` extra negative tokens (the CLS token bank), or None.
        pool, attn_tau: as :func:`c2s.method.losses.global_prototype`.
    Returns:
        ``offset_ratio``: norm of the batch-mean feature / median pixel feature norm (1 = every pixel is the
        same vector); ``pixel_cos_to_mean``: median cosine of a pixel to the batch-mean feature;
        ``attn_positions``: effective number of attended positions ``exp(entropy)`` / ``h*w`` (1 = uniform);
        ``proto_cos``: mean cosine between prototypes of different images; ``own_rank``: mean rank (1 = best)
        of each image's own token among the batch's tokens and the bank; ``chance_loss``: ``ln`` of the
        number of candidates.
    """
    b, d = feats.shape[:2]
    flat = feats.float().reshape(b, d, -1)
    mean = flat.mean(dim=(0, 2))
    pixels = flat.permute(0, 2, 1).reshape(-1, d)
    pixel_norm = pixels.norm(dim=-1).median()
    token = cls_token.float()
    weights, values = global_attention(feats.float(), token, pool, attn_tau)
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1)
    protos = F.normalize(torch.einsum("bl,bdl->bd", weights, values), dim=-1)
    sim = protos @ protos.t()
    off = sim[~torch.eye(b, dtype=torch.bool, device=sim.device)]
    keys = token if bank is None or bank.numel() == 0 else torch.cat([token, bank.float()])
    logits = protos @ F.normalize(keys, dim=-1).t()
    own = logits[torch.arange(b), torch.arange(b)]
    rank = (logits > own.unsqueeze(1)).sum(-1).float() + 1
    return {
        "offset_ratio": float(mean.norm() / pixel_norm.clamp_min(1e-12)),
        "pixel_cos_to_mean": float(F.cosine_similarity(pixels, mean.unsqueeze(0), dim=-1).median()),
        "attn_positions": float(entropy.exp().mean() / flat.shape[-1]),
        "proto_cos": float(off.mean()) if off.numel() else 1.0,
        "own_rank": float(rank.mean()),
        "chance_loss": math.log(keys.shape[0]),
    }
