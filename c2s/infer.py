"""The one inference path of the student alone (no CLIP): ``c2s eval``, ``c2s predict``, :class:`c2s.Segmenter`
and the graph ``c2s export`` writes all go through the functions here.

    logits = image_logits(student, images, text, alpha, eval_cfg, form=..., out_size=(H, W))  # (B, N, H, W)

A class's score is ``c2s.method.objective.classify`` of the student's features and its text embedding,
upsampled bilinearly to the input (``dense_logits``). Whole-image or sliding-window inference follows mmseg's
``EncoderDecoder.whole_inference`` / ``slide_inference`` (mmseg 1.2.2, ``mmseg/models/segmentors/
encoder_decoder.py``: the window grid ``max(H - crop + stride - 1, 0) // stride + 1``, the last window flush with
the border, overlapping logits averaged); the logits are then resized bilinearly to the original image size as
``BaseSegmentor.postprocess_result`` does (``mmseg/models/segmentors/base.py``, ``ori_shape``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from c2s.method.objective import classify


def dense_logits(student: nn.Module, x: torch.Tensor, text: torch.Tensor, alpha: float,
                 form: str = "dot") -> torch.Tensor:
    """Normalised images ``(B, 3, H, W)`` -> class scores ``(B, N, H, W)``: ``classify(student(x))`` upsampled
    bilinearly (align_corners=False, mmseg's ``resize``) to the input size."""
    scores = classify(student(x).float(), text, alpha, form)
    return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


def window_logits(student: nn.Module, x: torch.Tensor, text: torch.Tensor, alpha: float,
                  eval_cfg: Mapping[str, Any], form: str = "dot") -> torch.Tensor:
    """``(B, 3, H, W)`` normalised -> ``(B, N, H, W)``: whole-image, or sliding windows averaged
    (``evaluation.mode`` = ``whole`` | ``slide`` with ``crop_size`` and ``stride``)."""
    mode = eval_cfg["mode"]
    if mode == "whole":
        return dense_logits(student, x, text, alpha, form)
    if mode != "slide":
        raise ValueError(f"evaluation.mode must be 'whole' or 'slide', got {mode!r}")
    batch, _, height, width = x.shape
    ch, cw = (int(v) for v in eval_cfg["crop_size"])
    sh, sw = (int(v) for v in eval_cfg["stride"])
    total = torch.zeros(batch, text.shape[0], height, width, device=x.device)
    count = torch.zeros(1, 1, height, width, device=x.device)
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh, max(height - ch, 0)), min(c * sw, max(width - cw, 0))
            y2, x2 = min(y1 + ch, height), min(x1 + cw, width)
            total[:, :, y1:y2, x1:x2] += dense_logits(student, x[:, :, y1:y2, x1:x2], text, alpha, form)
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


@torch.no_grad()
def image_logits(student: nn.Module, images: np.ndarray | torch.Tensor, text: torch.Tensor, alpha: float,
                 eval_cfg: Mapping[str, Any], device: torch.device | str = "cpu", form: str = "dot",
                 out_size: Sequence[int] | None = None) -> torch.Tensor:
    """uint8 images ``(B, H, W, 3)`` of one size -> logits ``(B, N, *out_size)`` on ``device``.

    ``out_size`` (default: the input's ``(H, W)``) is the original image size when the images were resized
    for inference (mmseg's ``ori_shape``): the logits are resized to it bilinearly before any argmax.
    """
    images = torch.from_numpy(np.array(images, copy=True)) if isinstance(images, np.ndarray) else images
    x = student.normalize(images.to(device))
    logits = window_logits(student, x, text.to(device), alpha, eval_cfg, form)
    if out_size is not None and tuple(out_size) != tuple(logits.shape[-2:]):
        logits = F.interpolate(logits, size=tuple(int(v) for v in out_size), mode="bilinear", align_corners=False)
    return logits


def predict(student: nn.Module, image: np.ndarray, text: torch.Tensor, alpha: float, eval_cfg: Mapping[str, Any],
            device: torch.device | str = "cpu", form: str = "dot",
            out_size: Sequence[int] | None = None) -> np.ndarray:
    """Class map ``(H, W)`` int64 of one uint8 image ``(H, W, 3)`` (``out_size`` as in :func:`image_logits`)."""
    logits = image_logits(student, np.asarray(image)[None], text, alpha, eval_cfg, device, form, out_size)
    return logits[0].argmax(0).cpu().numpy()


class OpenVocabularyModel(nn.Module):
    """What ``c2s export`` writes: ``(pixels, text) -> logits``; the class list stays free after export.

    ``pixels``: float32 ``(B, 3, H, W)``, RGB in 0..255 (normalised inside with the student's mean / std, as
    ``Student.normalize`` does); ``text``: ``(N, D)`` L2-normalised text embeddings; ``logits``:
    ``(B, N, H, W)`` from :func:`dense_logits` (whole-image inference at the given size).
    """

    def __init__(self, student: nn.Module, alpha: float, form: str = "dot") -> None:
        super().__init__()
        self.student = student
        self.alpha = float(alpha)
        self.form = str(form)

    def forward(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = (pixels - self.student.mean) / self.student.std
        return dense_logits(self.student, x, text, self.alpha, self.form)


class FixedVocabularyModel(OpenVocabularyModel):
    """``pixels -> logits`` with the text embeddings of a fixed class list baked in (``c2s export --classes``)."""

    def __init__(self, student: nn.Module, alpha: float, form: str, text: torch.Tensor) -> None:
        super().__init__(student, alpha, form)
        self.register_buffer("text", text.detach().float().clone())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(pixels, self.text)
