"""The training step's precision, shared by the worker loop and the benchmarks that time a training step."""

from __future__ import annotations

import contextlib

import torch


def training_autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled`` (``train.amp``), else nothing: on CPU training stays fp32.

    The C2S objective casts back to fp32 inside (c2s.method.objective), so only the student runs in bf16.
    """
    device = torch.device(device)
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
