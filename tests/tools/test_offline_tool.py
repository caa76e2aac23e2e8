"""tools/offline_c2s.py: the confusion summary it prints (hand-computed on a 4-class toy)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("offline_c2s", Path(__file__).parents[2] / "tools" / "offline_c2s.py")
offline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offline)


def test_confusion_summary_counts_colour_shape_and_unseen():
    classes = ("red circle", "red cross", "blue circle", "blue cross")
    unseen = (1,)  # red cross
    conf = np.zeros((4, 4), np.int64)
    conf[0, 0], conf[0, 1] = 6, 4  # red circle: 6 right, 4 as the unseen red cross
    conf[2, 3] = 10  # blue circle always as blue cross (seen): colour right, shape wrong
    conf[3, 3] = 10
    conf[1, 1], conf[1, 0] = 3, 1  # red cross (unseen): 3 right, 1 as red circle
    out = offline.confusion_summary(conf, classes, unseen)
    assert out["seen"]["correct"] == pytest.approx(16 / 30, abs=1e-3)
    assert out["seen"]["as_unseen"] == pytest.approx(4 / 30, abs=1e-3)
    assert out["seen"]["colour_ok"] == 1.0
    assert out["seen"]["shape_ok"] == pytest.approx(16 / 30, abs=1e-3)
    assert out["unseen"] == {"correct": 0.75, "as_unseen": 0.75, "colour_ok": 1.0, "shape_ok": 0.75}
