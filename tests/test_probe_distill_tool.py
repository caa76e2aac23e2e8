"""tools/probe_distill.py: the region statistics it prints, on hand-built vectors."""

import importlib.util
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("probe_distill", Path(__file__).parents[1] / "tools" / "probe_distill.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_region_stats_on_hand_built_tokens_and_prototypes():
    e = torch.eye(3)
    text = e.clone()  # class c's text is axis c
    cls = torch.tensor([0, 1, 2, 0])
    tokens = e[cls]  # each region's token is its class's axis: different classes orthogonal, no gap to text
    # prototypes: class 0 regions exactly on their token; classes 1 and 2 share the direction (1, 1, 0) / sqrt 2
    protos = torch.tensor([[2.0, 0, 0], [1, 1, 0], [1, 1, 0], [3, 0, 0]])
    out = probe.class_region_stats(tokens, protos, cls, text)
    assert out["teacher_cos_between_classes"] == pytest.approx(0.0)
    assert out["teacher_cos_to_own_text"] == pytest.approx(1.0)
    # mean direction of the tokens (2, 1, 1)/sqrt 6: squared projections 4/6, 1/6, 1/6, 4/6
    assert out["teacher_common_share"] == pytest.approx((4 + 1 + 1 + 4) / 6 / 4)
    s = 2 ** -0.5
    assert out["proto_cos_to_own_token"] == pytest.approx((1 + s + 0 + 1) / 4)
    assert out["proto_cos_to_own_text"] == out["proto_cos_to_own_token"]
    # different-class pairs (ordered): (0,1) (0,2) (1,0) (1,2) (1,3) (2,0) (2,1) (2,3) (3,1) (3,2): cosines
    # s, s, s, 1, s, s, 1, s, s, s -> (8 s + 2) / 10
    assert out["proto_cos_between_classes"] == pytest.approx((8 * s + 2) / 10)
    # argmax of proto . text: regions 0, 3 right; regions 1, 2 tie between classes 0 and 1 -> argmax picks 0
    assert out["region_acc"] == pytest.approx(0.5)
    assert out["region_acc_class_2"] == 0.0 and out["region_acc_class_1"] == 0.0 and out["region_acc_class_0"] == 1.0


def test_off_diagonal_mean_skips_same_class_pairs():
    sim = torch.tensor([[1.0, 0.2], [0.4, 1.0]])
    assert probe.off_diagonal_mean(sim, torch.eye(2, dtype=torch.bool)) == pytest.approx(0.3)
    assert probe.off_diagonal_mean(sim, torch.ones(2, 2, dtype=torch.bool)) != probe.off_diagonal_mean(
        sim, torch.ones(2, 2, dtype=torch.bool))  # nan: no pair of different classes
