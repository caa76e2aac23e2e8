"""CLS token bank: FIFO order, size, state round trip."""

from __future__ import annotations

import pytest
import torch

from c2s.method.bank import ClsTokenBank


def tok(*values: float) -> torch.Tensor:
    return torch.tensor([[v, -v] for v in values])


def test_fifo_order_and_size():
    bank = ClsTokenBank(size=3, dim=2)
    assert len(bank) == 0 and bank.get().shape == (0, 2)
    bank.enqueue(tok(1, 2))
    assert bank.get()[:, 0].tolist() == [1, 2]
    bank.enqueue(tok(3, 4))  # 1 drops out
    assert bank.get()[:, 0].tolist() == [2, 3, 4]
    bank.enqueue(tok(5))
    assert bank.get()[:, 0].tolist() == [3, 4, 5]
    assert len(bank) == 3
    bank.enqueue(tok(6, 7, 8, 9, 10))  # more than size at once: only the newest survive
    assert bank.get()[:, 0].tolist() == [8, 9, 10]
    assert bank.get()[:, 1].tolist() == [-8, -9, -10]


def test_state_round_trip_keeps_exact_order():
    bank = ClsTokenBank(size=4, dim=2)
    for v in range(1, 7):
        bank.enqueue(tok(v))
    state = bank.state_dict()
    assert set(state) == {"tokens", "ptr", "count"}
    other = ClsTokenBank(size=4, dim=2)
    other.load_state_dict(state)
    assert other.get()[:, 0].tolist() == [3, 4, 5, 6]
    other.enqueue(tok(7))
    bank.enqueue(tok(7))
    assert torch.equal(other.get(), bank.get())
    assert other.get()[:, 0].tolist() == [4, 5, 6, 7]


def test_partial_bank_round_trip():
    bank = ClsTokenBank(size=5, dim=2)
    bank.enqueue(tok(1, 2))
    other = ClsTokenBank(size=5, dim=2)
    other.load_state_dict(bank.state_dict())
    assert len(other) == 2 and other.get()[:, 0].tolist() == [1, 2]


def test_zero_size_and_bad_shape():
    bank = ClsTokenBank(size=0, dim=2)
    bank.enqueue(tok(1))
    assert len(bank) == 0 and bank.get().shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        ClsTokenBank(size=2, dim=2).enqueue(torch.zeros(3))
    with pytest.raises(ValueError, match="bank.size"):
        ClsTokenBank(size=-1, dim=2)


def test_enqueue_detaches():
    bank = ClsTokenBank(size=2, dim=2)
    x = tok(1.0).requires_grad_(True)
    bank.enqueue(x * 2)
    assert not bank.get().requires_grad
