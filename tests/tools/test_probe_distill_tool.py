"""tools/probe_distill.py: the region statistics it prints, on hand-built vectors."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("probe_distill", Path(__file__).parents[2] / "tools" / "probe_distill.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_region_stats_on_hand_built_tokens_and_prototypes():
    text = torch.eye(3)  # class c's text is axis c; class 2 is unseen
    unseen = torch.tensor([False, False, True])
    cls = torch.tensor([0, 1, 2, 0])
    tokens = text[cls]  # each region's token is its class's axis: different classes orthogonal, no gap to text
    # prototypes: class 0 regions on their token; the class-1 and the unseen class-2 region both on (1, 1, 0)
    protos = torch.tensor([[2.0, 0, 0], [1, 1, 0], [1, 1, 0], [3, 0, 0]])
    out = probe.class_region_stats(tokens, protos, cls, text, unseen)
    assert (out["regions_seen"], out["regions_unseen"]) == (3, 1)
    assert out["teacher_cos_between_classes"] == pytest.approx(0.0)
    assert out["teacher_cos_to_own_text"] == pytest.approx(1.0)
    # mean direction of the tokens (2, 1, 1)/sqrt 6: squared projections 4/6, 1/6, 1/6, 4/6
    assert out["teacher_common_share"] == pytest.approx((4 + 1 + 1 + 4) / 6 / 4)
    s = 2 ** -0.5
    assert out["seen_proto_cos_to_own_token"] == pytest.approx((1 + s + 1) / 3)
    assert out["seen_proto_cos_to_own_text"] == out["seen_proto_cos_to_own_token"]
    assert out["unseen_proto_cos_to_own_token"] == pytest.approx(0.0)
    # different-class pairs (ordered): (0,1) (0,2) (1,0) (1,2) (1,3) (2,0) (2,1) (2,3) (3,1) (3,2): cosines
    # s, s, s, 1, s, s, 1, s, s, s -> (8 s + 2) / 10
    assert out["proto_cos_between_classes"] == pytest.approx((8 * s + 2) / 10)
    # argmax of proto . text over all classes: regions 0, 3 right; regions 1 and 2 tie between classes 0 and 1,
    # argmax picks 0: the seen class-1 region is wrong, the unseen region is read as a seen class
    assert out["seen_region_acc"] == pytest.approx(2 / 3)
    assert out["seen_read_as_seen"] == 1.0
    assert out["unseen_region_acc"] == 0.0 and out["unseen_read_as_seen"] == 1.0


def test_an_unseen_region_on_its_own_text_is_read_right_and_groups_without_rows_are_left_out():
    text = torch.eye(2)
    out = probe.class_region_stats(text[[1]], torch.tensor([[0.1, 2.0]]), torch.tensor([1]), text,
                                   torch.tensor([False, True]))
    assert out["unseen_region_acc"] == 1.0 and out["unseen_read_as_seen"] == 0.0
    assert "seen_region_acc" not in out and out["regions_seen"] == 0


def test_off_diagonal_mean_skips_same_class_pairs():
    sim = torch.tensor([[1.0, 0.2], [0.4, 1.0]])
    assert probe.off_diagonal_mean(sim, torch.eye(2, dtype=torch.bool)) == pytest.approx(0.3)
    same = torch.ones(2, 2, dtype=torch.bool)
    assert probe.off_diagonal_mean(sim, same) != probe.off_diagonal_mean(sim, same)  # nan: no such pair


def test_unseen_class_reads_names_who_misreads_an_unseen_class():
    text = torch.eye(3)  # classes 0, 1 seen; 2 unseen
    unseen = torch.tensor([False, False, True])
    cls = torch.tensor([2, 2, 2, 0])
    # the teacher's tokens of the three unseen regions: two on their own text, one nearer class 1 (by cosine:
    # its norm must not matter); the student's prototypes: all three read as seen class 1, two by a small margin
    tokens = torch.tensor([[0, 0, 5.0], [0.1, 0, 1], [0, 0.2, 0.1], [1, 0, 0]])
    protos = torch.tensor([[0, 1.0, 0.9], [0, 1.0, 0.5], [0.3, 2.0, 0], [1, 0, 0]])
    (row,) = probe.unseen_class_reads(tokens, protos, cls, text, unseen)
    assert row == {"class_id": 2, "regions": 3, "teacher_reads_own": pytest.approx(2 / 3), "teacher_reads": 2,
                   "student_reads_own": 0.0, "student_reads": 1}


def test_unseen_class_reads_skips_unseen_classes_without_regions():
    text = torch.eye(3)
    unseen = torch.tensor([False, True, True])
    out = probe.unseen_class_reads(text[[1]], text[[1]], torch.tensor([1]), text, unseen)
    assert [r["class_id"] for r in out] == [1]
    assert out[0]["teacher_reads_own"] == out[0]["student_reads_own"] == 1.0


def test_pair_cosines_average_unit_rows_per_class():
    # class 0 along x; class 1's unit rows at 45 and 90 degrees average to 67.5 degrees (unnormalised rows would
    # give 76 degrees: the longer row would weigh more)
    tokens = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    protos = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, -2.0], [0.0, -1.0]])
    cls = torch.tensor([0, 0, 1, 1])
    (row, missing) = probe.pair_cosines(tokens, protos, cls, [(0, 1), (0, 2)])
    assert row["pair"] == (0, 1) and row["regions"] == (2, 2)
    assert row["teacher_cos"] == pytest.approx(math.cos(math.radians(67.5)))
    assert row["student_cos"] == pytest.approx(0.0, abs=1e-7)
    assert missing["regions"] == (2, 0) and math.isnan(missing["teacher_cos"]) and math.isnan(missing["student_cos"])
