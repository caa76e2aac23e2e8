"""tools/probe_seen.py: the seen-pixel breakdown it prints, on a hand-built confusion matrix."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("probe_seen", Path(__file__).parents[2] / "tools" / "probe_seen.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

# background; two seen objects; two unseen objects, one sharing the red colour, one sharing the square shape
CLASSES = ("background", "red circle", "blue square", "red cross", "green square")
UNSEEN = (3, 4)


def confusion() -> np.ndarray:
    """Rows ground truth, columns prediction (as c2s.metrics.ConfusionMatrix stores it)."""
    m = np.zeros((5, 5), np.int64)
    m[0] = [90, 5, 0, 5, 0]  # background: 5 px read as a seen object, 5 as the unseen red cross
    m[1] = [10, 60, 10, 20, 0]  # red circle: 20 px read as the same-colour unseen red cross
    m[2] = [0, 0, 80, 0, 20]  # blue square: 20 px read as the same-shape unseen green square
    m[3] = [0, 30, 0, 70, 0]  # red cross (unseen): 30 px read as the seen red circle
    m[4] = [0, 0, 0, 0, 50]
    return m


def test_pixel_breakdown_splits_seen_object_pixels_by_what_they_are_read_as():
    out = probe.pixel_breakdown(confusion(), CLASSES, UNSEEN)
    # seen-object rows 1 and 2: 200 px, 140 right, 10 as background, 10 as the other seen, 40 as unseen
    assert out["seen_obj_correct"] == pytest.approx(140 / 200)
    assert out["seen_obj_as_background"] == pytest.approx(10 / 200)
    assert out["seen_obj_as_other_seen"] == pytest.approx(10 / 200)
    assert out["seen_obj_as_unseen"] == pytest.approx(40 / 200)
    assert out["as_unseen_same_colour"] == pytest.approx(20 / 40)
    assert out["as_unseen_same_shape"] == pytest.approx(20 / 40)
    assert out["background_correct"] == pytest.approx(0.9)
    assert out["unseen_gt_correct"] == pytest.approx(120 / 150)
    assert out["unseen_gt_as_seen_obj"] == pytest.approx(30 / 150)
    # IoU = tp / (row + column - tp) over the seen classes 0, 1, 2
    background = 90 / (100 + 100 - 90)
    red_circle = 60 / (100 + 95 - 60)
    blue_square = 80 / (100 + 90 - 80)
    assert out["sIoU"] == pytest.approx(100 * (background + red_circle + blue_square) / 3)
    # without the unseen ground-truth rows the red cross's 30 px no longer count against the red circle
    assert out["sIoU_without_unseen_gt"] == pytest.approx(
        100 * (background + 60 / (100 + 65 - 60) + blue_square) / 3)



def test_states_name_a_run_and_optionally_the_step_of_its_checkpoint():
    assert probe.parse_state("runs/sweeps/schedule_probe/runs/t001_s0") == (
        Path("runs/sweeps/schedule_probe/runs/t001_s0"), None)
    assert probe.parse_state("runs/a@b/t001_s0@900") == (Path("runs/a@b/t001_s0"), 900)
    with pytest.raises(SystemExit, match=r"--states 'run@last': expected RUN_DIR or RUN_DIR@STEP"):
        probe.parse_state("run@last")
