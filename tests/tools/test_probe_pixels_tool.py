"""tools/probe_pixels.py: objects' own shares (interiors only) and a class's summary, on hand-built label maps."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("probe_pixels", Path(__file__).parents[2] / "tools" / "probe_pixels.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Three objects of class 1 on class 0: A 7x7 read wholly as 1; B 6x6 whose interior is read half as 1 and
    half as 2, its rim as 0; C 2x2 read as 2."""
    label = np.zeros((20, 20), dtype=np.int64)
    pred = np.zeros((20, 20), dtype=np.int64)
    label[2:9, 2:9] = 1
    pred[2:9, 2:9] = 1
    label[11:17, 11:17] = 1
    pred[12:16, 12:14] = 1  # B's 4x4 interior: left half its own class
    pred[12:16, 14:16] = 2  # right half the other
    label[18:20, 0:2] = 1
    pred[18:20, 0:2] = 2
    return label, pred


def test_object_shares_read_interiors_only_and_drop_small_objects():
    label, pred = _scene()
    # one erosion (4-neighbour): A keeps its 5x5 interior, B its 4x4, C vanishes
    assert probe.object_shares(label, pred, 1, min_pixels=10, interior=1) == [(1.0, 25), (0.5, 16)]
    # no erosion: B's rim (read as 0) counts, 8 own pixels of 36; C has 4 pixels, under min_pixels
    assert probe.object_shares(label, pred, 1, min_pixels=10, interior=0) == [(1.0, 49), (pytest.approx(8 / 36), 36)]
    assert probe.object_shares(label, pred, 1, min_pixels=4, interior=0)[-1] == (0.0, 4)
    assert probe.object_shares(label, pred, 3, min_pixels=1, interior=0) == []


def test_class_row_counts_pixels_reads_and_split_objects():
    reads = np.array([20, 50, 8])  # the class's (id 1) pixels read as 0, 1, 2
    row = probe.class_row([(1.0, 25), (0.5, 16), (0.05, 12)], reads, 1)
    assert row["pixels"] == 78
    assert row["pixel_acc"] == pytest.approx(50 / 78)
    assert row["read_as"] == 0
    assert row["objects"] == 3
    assert row["mean_own_share"] == pytest.approx(1.55 / 3)
    assert row["objects_split"] == 1  # 1.0 read whole and 0.05 missed whole are decided; 0.5 is split
    whole = probe.class_row([(0.9, 10), (0.1, 10)], np.array([0, 7, 0]), 1)
    assert whole["read_as"] is None and whole["pixel_acc"] == 1.0 and whole["objects_split"] == 0
