"""Edges of c2s/method/bank.py that mutation testing (``make mutate``) showed no other test pinned down: the
multi-worker gather (faked ``torch.distributed``: planted per-rank tokens of different lengths) and the
buffers' dtypes."""

from __future__ import annotations

import pytest
import torch

from c2s.method import bank as bank_mod
from c2s.method.bank import ClsTokenBank, _gather_all


class FakeDist:
    """``torch.distributed`` as seen by one rank of a ``world``-worker group whose other ranks hold ``others``.

    ``all_gather`` behaves like gloo's: every rank must send a tensor of the same shape and dtype (the output
    list's), and the output list gets one tensor per rank in rank order."""

    def __init__(self, rank: int, others: dict[int, torch.Tensor]) -> None:
        self.rank, self.others = rank, others
        self.world = len(others) + 1
        self.calls: list[tuple[int, ...]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: self.world)
        monkeypatch.setattr(torch.distributed, "all_gather", self.all_gather)

    def all_gather(self, out: list[torch.Tensor], tensor: torch.Tensor) -> None:
        assert isinstance(out, list) and len(out) == self.world, "one output tensor per rank"
        assert all(o.shape == tensor.shape and o.dtype == tensor.dtype for o in out), "gloo needs equal shapes"
        self.calls.append(tuple(tensor.shape))
        for r in range(self.world):
            if r == self.rank:
                out[r].copy_(tensor)
            elif tensor.dtype == torch.int64:  # the size exchange
                out[r].copy_(torch.tensor([self.others[r].shape[0]]))
            else:  # the padded tokens: the other rank pads its own tokens the same way
                padded = torch.zeros_like(tensor)
                padded[: self.others[r].shape[0]] = self.others[r]
                out[r].copy_(padded)


def rows(*values: float) -> torch.Tensor:
    return torch.tensor([[v, 10 * v, 100 * v] for v in values], dtype=torch.float32)


def test_gather_pads_to_the_longest_worker_and_trims_in_rank_order(monkeypatch):
    # rank 1 of 3 holds 2 tokens; rank 0 holds 1, rank 2 holds 3 (a last, uneven batch): gathered in rank order
    fake = FakeDist(rank=1, others={0: rows(1), 2: rows(5, 6, 7)})
    fake.install(monkeypatch)
    out = _gather_all(rows(3, 4))
    assert out.tolist() == rows(1, 3, 4, 5, 6, 7).tolist()
    # sizes first (one int64 each), then the tokens padded to the longest worker's 3 rows
    assert fake.calls == [(1,), (3, 3)]


def test_gather_with_this_rank_the_longest(monkeypatch):
    fake = FakeDist(rank=0, others={1: rows(9)})
    fake.install(monkeypatch)
    assert _gather_all(rows(1, 2)).tolist() == rows(1, 2, 9).tolist()
    assert fake.calls == [(1,), (2, 3)]


def test_no_gather_for_one_worker_or_without_an_initialised_group(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("no collective call expected")

    x = rows(1, 2)
    monkeypatch.setattr(torch.distributed, "all_gather", never)
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "get_world_size", never)
    assert _gather_all(x) is x  # available but not initialised: a single process
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    monkeypatch.setattr(torch.distributed, "is_initialized", never)
    assert _gather_all(x) is x  # not even available
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 1)
    assert _gather_all(x) is x  # an initialised group of one
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    with pytest.raises(AssertionError, match="no collective call expected"):
        _gather_all(x)  # two workers do gather


def test_enqueue_gathers_every_workers_tokens_unless_told_not_to(monkeypatch):
    FakeDist(rank=0, others={1: rows(7, 8)}).install(monkeypatch)
    bank = ClsTokenBank(size=3, dim=3)
    bank.enqueue(rows(1))  # this worker's 1 token, then worker 1's 2
    assert bank.get().tolist() == rows(1, 7, 8).tolist()
    bank.enqueue(rows(2), gather=False)  # only this worker's token: the oldest (1) drops out
    assert bank.get().tolist() == rows(7, 8, 2).tolist()
    assert bank_mod._gather_all is _gather_all


def test_buffers_dtypes_and_dim_bounds():
    bank = ClsTokenBank(size=2, dim=1)  # dim 1 is allowed
    assert bank.tokens.dtype == torch.float32 and bank.tokens.shape == (2, 1)
    # integer bookkeeping: checkpoints carry it, and ptr indexes the ring storage
    assert bank.ptr.dtype == torch.int64 and bank.count.dtype == torch.int64
    assert bank.ptr.shape == () and bank.count.shape == ()
    with pytest.raises(ValueError, match=r"^bank dim must be > 0, got 0$"):
        ClsTokenBank(size=2, dim=0)
    with pytest.raises(ValueError, match=r"^bank.size must be >= 0, got -1$"):
        ClsTokenBank(size=-1, dim=2)
    assert repr(ClsTokenBank(size=4, dim=2)) == "ClsTokenBank(size=4, dim=2)"
