"""mmseg's default schedule as a plain LambdaLR: linear warm-up, then poly decay to ``min_lr``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def lr_factor(step: int, total: int, optim_cfg: Mapping[str, Any]) -> float:
    """Multiplier of the base lr at ``step`` (0-based) of ``total`` steps.

    Warm-up (mmseg ``LinearLR``): factor grows linearly from ``warmup_ratio`` to 1 over ``warmup_iters``.
    Poly (mmseg ``PolyLR``): ``(1 - step/total) ** poly_power``, floored at ``min_lr / lr``.
    """
    lr = float(optim_cfg["lr"])
    floor = float(optim_cfg["min_lr"]) / lr if lr > 0 else 0.0
    poly = max((1.0 - min(step, total) / max(total, 1)) ** float(optim_cfg["poly_power"]), floor)
    warmup = int(optim_cfg["warmup_iters"])
    if step < warmup:
        ratio = float(optim_cfg["warmup_ratio"])
        poly *= ratio + (1.0 - ratio) * step / warmup
    return poly


def build_optimizer(
    param_groups: list[dict], optim_cfg: Mapping[str, Any], total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the given groups (each may carry its own ``lr``) and the warm-up + poly scheduler."""
    optimizer = torch.optim.AdamW(param_groups, lr=float(optim_cfg["lr"]), betas=tuple(optim_cfg["betas"]),
                                  weight_decay=float(optim_cfg["weight_decay"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, optim_cfg))
    return optimizer, scheduler
