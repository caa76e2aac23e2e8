"""Counting what a piece of PyTorch asks of the device: aten ops (each one kernel launch or more on a GPU) and
host synchronisations (an op whose result the host must read, so the CPU stops queueing kernels until the GPU
has caught up). Counted with a TorchDispatchMode on any device, CPU included: the same code makes the same
calls everywhere. Compiled code runs fused kernels that no dispatch mode sees (and torch.compile refuses to
run under one): count the eager form."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Ops that read a value back to the host (or size their output by the data): on a GPU each one stops the CPU
# from queueing kernels until the device has caught up. Boolean-mask indexing counts too (a nonzero inside).
HOST_SYNC_OPS = frozenset({"_local_scalar_dense", "item", "is_nonzero", "nonzero", "masked_select", "_unique2",
                           "unique_dim", "unique_consecutive", "bincount", "equal"})


class DispatchCounter(TorchDispatchMode):
    """Counts the aten ops run under it (each one kernel launch or more on a GPU) and lists the host syncs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func.overloadpacket.__name__
        self.ops += 1
        bool_index = name in ("index", "index_put", "index_put_") and len(args) > 1 and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))
        if name in HOST_SYNC_OPS or bool_index:
            self.syncs.append(name)
        return func(*args, **(kwargs or {}))
