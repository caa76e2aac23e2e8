"""Make mmsegmentation import on ``mmcv-lite``.

Full ``mmcv`` does not build against torch >= 2.10 and ships no wheel for it, so the project installs
``mmcv-lite``, which lacks the compiled ``mmcv.ops`` package.  mmseg imports a handful of ``mmcv.ops``
names at module level.  :func:`install` registers a pure-Python ``mmcv.ops`` module *before* the first
mmseg import:

* ``point_sample`` and ``sigmoid_focal_loss`` are real, pure-PyTorch implementations, numerically equal
  to mmcv's definitions (``mmcv/ops/point_sample.py`` and the CUDA kernel of ``sigmoid_focal_loss``);
* every other op mmseg names is a stand-in class whose construction raises :class:`MissingCompiledOp`
  saying which op is missing and why, so an unused head imports fine and a used one fails loudly.

Call :func:`install` (or :func:`import_mmseg`) from one place: ``c2s.student`` does it.
"""

from __future__ import annotations

import importlib
import sys
import types

import torch
import torch.nn.functional as F

# Compiled ops that mmseg 1.2.2 imports at module level (in heads/backbones c2s never builds).
_MISSING_OPS = (
    "CrissCrossAttention",
    "PSAMask",
    "DeformConv",
    "DeformConv2d",
    "ModulatedDeformConv2d",
    "ModulatedDeformConv2dPack",
    "DeformConv2dPack",
    "MultiScaleDeformableAttention",
    "CARAFEPack",
    "SyncBatchNorm",
    "nms",
    "batched_nms",
    "RoIAlign",
    "roi_align",
)


class MissingCompiledOp(RuntimeError):
    """Raised when code uses an ``mmcv.ops`` op that only full (compiled) mmcv provides."""


def point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False, **kwargs) -> torch.Tensor:
    """Sample ``input`` at normalised point coordinates, as ``mmcv.ops.point_sample``.

    Args:
        input: ``(N, C, H, W)`` feature map.
        points: ``(N, P, 2)`` or ``(N, Hgrid, Wgrid, 2)`` coordinates in ``[0, 1] x [0, 1]`` (x, y).
        align_corners: passed to :func:`torch.nn.functional.grid_sample`.

    Returns:
        ``(N, C, P)`` or ``(N, C, Hgrid, Wgrid)`` sampled features.
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    if add_dim:
        output = output.squeeze(3)
    return output


def sigmoid_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss with class-index targets, as mmcv's compiled op.

    Args:
        input: ``(N, C)`` logits.
        target: ``(N,)`` int64 class indices; a value outside ``[0, C)`` means "no class" (all negatives).
        weight: optional ``(C,)`` per-class weight, indexed by each sample's *target* class as in mmcv.
        reduction: ``'none'`` (``(N, C)``), ``'mean'`` (sum divided by ``N``, mmcv's definition) or ``'sum'``.
    """
    if input.dim() != 2 or target.dim() != 1 or target.shape[0] != input.shape[0]:
        raise ValueError(
            f"sigmoid_focal_loss expects input (N, C) and target (N,), got {tuple(input.shape)} and {tuple(target.shape)}"
        )
    num_classes = input.shape[1]
    classes = torch.arange(num_classes, device=input.device)
    is_pos = (target.unsqueeze(1) == classes.unsqueeze(0)).to(input.dtype)
    p = torch.sigmoid(input)
    tiny = torch.finfo(input.dtype).tiny
    term_p = (1.0 - p).pow(gamma) * torch.log(p.clamp_min(tiny))
    term_n = p.pow(gamma) * torch.log((1.0 - p).clamp_min(tiny))
    loss = -is_pos * alpha * term_p - (1.0 - is_pos) * (1.0 - alpha) * term_n
    if weight is not None:
        if weight.shape != (num_classes,):
            raise ValueError(f"sigmoid_focal_loss weight must have shape ({num_classes},), got {tuple(weight.shape)}")
        # mmcv indexes the weight by the target class; "no class" targets (== C) have no weight entry
        # in the kernel either, so they are clamped here exactly as an out-of-range read would not be.
        loss = loss * weight[target.clamp(0, num_classes - 1)].unsqueeze(1)
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.sum() / input.shape[0]
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"sigmoid_focal_loss reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _missing(name: str) -> type:
    def _raise(*args, **kwargs):
        raise MissingCompiledOp(
            f"mmcv.ops.{name} is a compiled CUDA/C++ op that mmcv-lite does not ship, and full mmcv does not "
            "build against torch>=2.10. c2s only uses students whose ops are pure PyTorch (SegFormer, SegNeXt, "
            "SETR); pick one of those, or install a full mmcv build matching your torch yourself."
        )

    return type(name, (), {"__init__": _raise, "__call__": _raise, "__doc__": f"Stand-in for mmcv.ops.{name}."})


def install() -> None:
    """Register the pure-Python ``mmcv.ops`` module. Idempotent; a real compiled mmcv.ops wins."""
    existing = sys.modules.get("mmcv.ops")
    if existing is not None:
        return
    try:
        importlib.import_module("mmcv.ops")
        return  # full mmcv with compiled ops is installed: leave it alone
    except ImportError:
        pass
    module = types.ModuleType("mmcv.ops")
    module.__doc__ = "c2s pure-PyTorch stand-in for mmcv.ops (see c2s/compat.py)."
    module.point_sample = point_sample
    module.sigmoid_focal_loss = sigmoid_focal_loss
    module.__c2s_compat__ = True
    for name in _MISSING_OPS:
        setattr(module, name, _missing(name))
    # mmcv.cnn imports this submodule at import time and warns when it is missing; give it the stand-in.
    deform_attn = types.ModuleType("mmcv.ops.multi_scale_deform_attn")
    deform_attn.MultiScaleDeformableAttention = module.MultiScaleDeformableAttention
    module.multi_scale_deform_attn = deform_attn
    import mmcv

    sys.modules["mmcv.ops"] = module
    sys.modules["mmcv.ops.multi_scale_deform_attn"] = deform_attn
    mmcv.ops = module


def import_mmseg() -> types.ModuleType:
    """Install the compat layer, then import and return ``mmseg`` with its models registered."""
    install()
    import mmseg
    import mmseg.models  # noqa: F401  (registers backbones and heads)

    return mmseg
