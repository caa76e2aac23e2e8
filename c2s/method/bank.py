"""CLS token bank (Sec. 3.2): a FIFO of the last ``M`` global CLS tokens, the extra InfoNCE negatives."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _gather_all(tokens: Tensor) -> Tensor:
    """All-gather ``(n, D)`` tokens from every DDP worker, in rank order (unchanged when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tokens
    world = torch.distributed.get_world_size()
    if world == 1:
        return tokens
    # sizes may differ per worker (last batch): gather sizes first, pad to the max, then trim
    n = torch.tensor([tokens.shape[0]], device=tokens.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    torch.distributed.all_gather(sizes, n)
    n_max = int(max(int(s) for s in sizes))
    padded = tokens.new_zeros((n_max, tokens.shape[1]))
    padded[: tokens.shape[0]] = tokens
    parts = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)], dim=0)


class ClsTokenBank(nn.Module):
    """FIFO of the last ``size`` tokens of dim ``dim``, kept in buffers so checkpoints carry it.

    Buffers: ``tokens (size, dim)`` (ring storage), ``ptr`` (next write slot) and ``count`` (tokens held,
    at most ``size``). :meth:`get` returns them oldest first. Under DDP, :meth:`enqueue` first gathers the
    tokens of every worker, so all replicas hold the same bank.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"bank.size must be >= 0, got {size}")
        if dim <= 0:
            raise ValueError(f"bank dim must be > 0, got {dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.register_buffer("tokens", torch.zeros(self.size, self.dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def enqueue(self, new: Tensor, gather: bool = True) -> None:
        """Append ``(n, dim)`` tokens (oldest dropped first); with ``gather`` and DDP, those of all workers."""
        if new.dim() != 2 or new.shape[1] != self.dim:
            raise ValueError(f"bank expects tokens of shape (n, {self.dim}), got {tuple(new.shape)}")
        if self.size == 0:
            return
        new = new.detach()
        if gather:
            new = _gather_all(new)
        new = new[-self.size :].to(self.tokens.dtype)  # only the newest `size` can survive
        n = new.shape[0]
        if n == 0:
            return
        slots = (self.ptr + torch.arange(n, device=self.tokens.device)) % self.size
        self.tokens[slots] = new.to(self.tokens.device)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.count.copy_(torch.clamp(self.count + n, max=self.size))

    def slots(self) -> tuple[Tensor, Tensor]:
        """``(tokens (size, dim), filled (size,) bool)``: the ring storage as is and which slots hold a token.

        What the InfoNCE needs (its negatives' order does not matter), with static shapes and without reading
        ``count`` on the host: no device synchronisation, unlike :meth:`get`."""
        return self.tokens, torch.arange(self.size, device=self.count.device) < self.count

    def get(self) -> Tensor:
        """``(count, dim)`` tokens, oldest first."""
        count = int(self.count)
        if count < self.size:
            return self.tokens[:count]
        ptr = int(self.ptr)
        return torch.cat([self.tokens[ptr:], self.tokens[:ptr]], dim=0)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
