"""Segmentation metrics: confusion matrix on any device, per-class IoU, mIoU / sIoU / uIoU / hIoU.

    cm = ConfusionMatrix(num_classes, ignore_index=255, device="cuda")
    cm.update(pred, target)              # (..., H, W) int tensors, batched
    cm.all_reduce()                      # sum over DDP workers (no-op when not distributed)
    summarize(cm.iou(), unseen_ids)      # {'mIoU', 'sIoU', 'uIoU', 'hIoU'} in percent
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class ConfusionMatrix:
    """``(N, N)`` int64 counts, rows = ground truth, columns = prediction; ignore-index pixels skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate a batch. ``pred`` and ``target``: int tensors of the same shape (any leading dims).

        Raises if a non-ignored target id or a prediction is outside ``[0, num_classes)``: a silent drop
        would make the IoU look better than it is.
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        pred = pred.to(self.matrix.device, torch.int64).flatten()
        target = target.to(self.matrix.device, torch.int64).flatten()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        n = self.num_classes
        for name, ids in (("target", target), ("pred", pred)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
                bad = ids[(ids < 0) | (ids >= n)].unique()[:8].tolist()
                raise ValueError(f"{name} holds ids {bad} outside [0, {n}) (ignore index {self.ignore_index})")
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).view(n, n)

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the counts over DDP workers in place (when torch.distributed is initialised); returns self."""
        all_reduce_(self.matrix)
        return self

    def iou(self) -> Tensor:
        """``(N,)`` float64 IoU per class; NaN for a class absent from both prediction and ground truth."""
        m = self.matrix.double()
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        return tp / union  # 0/0 -> NaN exactly for classes never predicted nor present


def all_reduce_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over DDP workers in place when torch.distributed is initialised; returns it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor


def _nanmean_percent(values: Tensor) -> float:
    values = values[~torch.isnan(values)]
    return float(values.mean()) * 100.0 if values.numel() else float("nan")


def summarize(iou: Tensor, unseen_ids: Iterable[int]) -> dict[str, float]:
    """mIoU, sIoU, uIoU, hIoU in percent from per-class IoU (NaN classes excluded from means, as mmseg).

    hIoU = 2·s·u / (s + u), and 0 when s + u == 0. A side whose classes are all NaN has a NaN mean; hIoU is
    then NaN too (nothing to evaluate), never a silent 0.
    """
    iou = iou.detach().double().cpu()
    n = iou.numel()
    unseen = sorted({int(i) for i in unseen_ids})
    bad = [i for i in unseen if not 0 <= i < n]
    if bad:
        raise ValueError(f"unseen_ids {bad} outside [0, {n}) for {n} classes")
    is_unseen = torch.zeros(n, dtype=torch.bool)
    is_unseen[unseen] = True
    s = _nanmean_percent(iou[~is_unseen])
    u = _nanmean_percent(iou[is_unseen])
    if s + u == 0:
        h = 0.0
    else:
        h = 2 * s * u / (s + u)  # NaN propagates if a side is NaN
    return {"mIoU": _nanmean_percent(iou), "sIoU": s, "uIoU": u, "hIoU": h}
