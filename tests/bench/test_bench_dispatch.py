"""c2s.bench.dispatch.DispatchCounter: ops and host synchronisations counted by hand on tiny cases."""

from __future__ import annotations

import torch

from c2s.bench.dispatch import DispatchCounter


def test_counts_ops_and_names_each_sync():
    x = torch.tensor([1.0, -2.0, 3.0])
    counter = DispatchCounter()
    with counter:
        y = x * 2 + 1  # two ops, no read
        assert counter.syncs == [] and counter.ops == 2
        total = float(y.sum())  # sum, then the read of its value
        picked = y[y > 0]  # gt, then boolean indexing (a nonzero inside: its size depends on the data)
        if bool((y > 100).any()):  # gt, any, the read
            total += 1
    assert total == 7.0 and picked.tolist() == [3.0, 7.0]
    assert counter.syncs == ["_local_scalar_dense", "index", "_local_scalar_dense"]
    assert counter.ops == 2 + 2 + 2 + 3


def test_index_with_integer_tensors_is_not_a_sync():
    x = torch.arange(6.0)
    counter = DispatchCounter()
    with counter:
        x[torch.tensor([0, 2])]
        torch.where(x > 2, x, 0.0)
    assert counter.syncs == []
