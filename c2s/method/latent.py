"""Latent embedding generator (Sec. 3.3): synthetic class embeddings ``A'_u`` for latent regions.

Queries are the latent regions' visual prototypes ``F_u`` (Eq. 3 on the latent masks); keys/values are the
image's global and/or local CLS tokens; a small transformer decoder calibrates the prototypes into
``A'_u``, which the objective uses as the latent classes' classifier (``X_u = β cos(F, A'_u)``).

Ablation switches (Tables 5 and 6):
  * ``kind``: ``none`` (the input itself), ``mlp`` (residual MLP calibrator), ``transformer`` (decoder);
  * ``inputs``: ``prototypes`` (``F_u``), ``cls_tokens`` (the latent region's own local CLS token),
    ``both`` (prototypes as queries, CLS tokens as keys/values; the paper's method);
  * ``cls_tokens``: which CLS tokens are keys/values: ``global``, ``local`` (all valid local tokens of the
    image, seen and latent regions) or ``both``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KINDS = ("none", "mlp", "transformer")
INPUTS = ("prototypes", "cls_tokens", "both")
CLS_TOKENS = ("global", "local", "both")


def _choice(cfg: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = cfg[key]
    if value not in choices:
        raise ValueError(f"config key 'latent.{key}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def _never_empty(valid: Tensor) -> Tensor:
    """Unmask slot 0 of rows with no valid slot: attention over an all-masked row is NaN, and a NaN in a
    padded row would poison the backward pass even after its output is discarded."""
    valid = valid.clone()
    valid[:, 0] |= ~valid.any(dim=1)
    return valid


class LatentGenerator(nn.Module):
    """``A'_u`` from latent prototypes and CLIP CLS tokens.

    Args:
        cfg: the ``latent`` config section (kind, inputs, cls_tokens, num_layers, num_heads, ffn_ratio,
            dropout).
        dim: embedding dim ``D``.
    """

    def __init__(self, cfg: Mapping[str, Any], dim: int) -> None:
        super().__init__()
        self.kind = _choice(cfg, "kind", KINDS)
        self.inputs = _choice(cfg, "inputs", INPUTS)
        self.cls_tokens = _choice(cfg, "cls_tokens", CLS_TOKENS)
        self.dim = dim
        hidden = int(cfg["ffn_ratio"]) * dim
        if self.kind == "none" and self.inputs == "both":
            raise ValueError("latent.kind='none' has no calibrator to combine two inputs; "
                             "set latent.inputs to 'prototypes' or 'cls_tokens', or latent.kind to mlp/transformer")
        if self.kind == "mlp":
            in_dim = 2 * dim if self.inputs == "both" else dim
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        elif self.kind == "transformer":
            heads = int(cfg["num_heads"])
            if heads <= 0 or dim % heads:
                raise ValueError(f"config key 'latent.num_heads' must divide the embedding dim {dim}; got {heads}")
            if int(cfg["num_layers"]) < 1:
                raise ValueError(f"config key 'latent.num_layers' must be >= 1; got {cfg['num_layers']}")
            layer = nn.TransformerDecoderLayer(
                d_model=dim, nhead=heads, dim_feedforward=hidden, dropout=float(cfg["dropout"]),
                activation="gelu", batch_first=True, norm_first=True,
            )
            self.decoder = nn.TransformerDecoder(layer, num_layers=int(cfg["num_layers"]))

    def memory(self, global_token: Tensor, local: Tensor, local_valid: Tensor) -> tuple[Tensor, Tensor]:
        """Keys/values chosen by ``cls_tokens``: ``(B, S, D)`` and validity ``(B, S)``."""
        b = global_token.shape[0]
        g = global_token.unsqueeze(1)
        g_valid = torch.ones(b, 1, dtype=torch.bool, device=g.device)
        if self.cls_tokens == "global":
            return g, g_valid
        if self.cls_tokens == "local":
            return local, local_valid
        return torch.cat([g, local], dim=1), torch.cat([g_valid, local_valid], dim=1)

    def forward(
        self,
        protos: Tensor,
        latent_tokens: Tensor,
        latent_valid: Tensor,
        global_token: Tensor,
        local: Tensor,
        local_valid: Tensor,
    ) -> Tensor:
        """Generate latent class embeddings.

        Args:
            protos: ``(B, K, D)`` latent prototypes ``F_u`` (any scale; L2-normalised here so they live on
                the CLIP tokens' scale).
            latent_tokens: ``(B, K, D)`` each latent region's own local CLS token.
            latent_valid: ``(B, K)`` bool, False for padded latent slots.
            global_token: ``(B, D)`` global CLS tokens.
            local: ``(B, L, D)`` local CLS tokens of all regions; ``local_valid (B, L)`` bool.
        Returns:
            ``(B, K, D)`` ``A'_u``; padded slots are zero (the objective also masks their logits).
        """
        protos = F.normalize(protos, dim=-1)
        latent_tokens = F.normalize(latent_tokens.to(protos.dtype), dim=-1)
        query = latent_tokens if self.inputs == "cls_tokens" else protos
        if self.kind == "none":
            out = query
        elif self.kind == "mlp":
            x = torch.cat([protos, latent_tokens], dim=-1) if self.inputs == "both" else query
            out = query + self.mlp(x)
        else:
            if self.inputs == "prototypes":
                # no CLS tokens: the prototypes calibrate each other (self-contained decoder memory)
                mem, mem_valid = protos, latent_valid
            else:
                mem, mem_valid = self.memory(global_token.to(protos.dtype), local.to(protos.dtype), local_valid)
            out = self.decoder(
                query, mem,
                tgt_key_padding_mask=~_never_empty(latent_valid),
                memory_key_padding_mask=~_never_empty(mem_valid),
            )
        return torch.where(latent_valid.unsqueeze(-1), out, torch.zeros_like(out))
