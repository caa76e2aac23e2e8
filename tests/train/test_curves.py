"""TensorBoard curves (c2s/train/curves.py): written with tensorboardX, read back from the event files."""

from __future__ import annotations

import time

import pytest

from c2s.train.curves import CurveWriter, read_scalars, scalar_items


def _train(step, loss):
    return {"step": step, "kind": "train", "loss": loss, "loss_global": loss / 2, "loss_local": 0.25,
            "lr": 1e-3 * step, "images_per_s": 12.5, "teacher_wait_frac": 0.125, "note": "text is skipped",
            "bad": float("nan")}


def test_scalar_items_tags_every_numeric_field_by_kind():
    assert scalar_items(_train(3, 1.5)) == [
        ("train/loss", 1.5), ("train/loss_global", 0.75), ("train/loss_local", 0.25), ("train/lr", 0.003),
        ("train/images_per_s", 12.5), ("train/teacher_wait_frac", 0.125)]
    assert scalar_items({"step": 4, "kind": "eval", "sIoU": 50.0, "uIoU": 20.0, "hIoU": 28.5}) == [
        ("eval/sIoU", 50.0), ("eval/uIoU", 20.0), ("eval/hIoU", 28.5)]


def test_event_files_hold_the_rows_and_a_resume_purges_the_redone_steps(tmp_path):
    first = CurveWriter(tmp_path)
    for step in (1, 2, 3, 4):
        first.add(_train(step, 1.0 / step))
    first.add({"step": 4, "kind": "eval", "sIoU": 50.0, "uIoU": 20.0, "hIoU": 28.5})
    first.close()
    curves = read_scalars(tmp_path)
    assert curves["train/loss"] == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3, 4: 0.25}, rel=1e-6)
    assert curves["train/lr"] == pytest.approx({1: 1e-3, 2: 2e-3, 3: 3e-3, 4: 4e-3}, rel=1e-6)
    assert curves["eval/hIoU"] == {4: 28.5}
    assert "train/note" not in curves and "train/bad" not in curves

    time.sleep(1.1)  # event file names carry the second they were opened in
    restarted = CurveWriter(tmp_path, start_step=2)  # restored the step-2 checkpoint: steps 3.. redone
    restarted.close()  # killed again before its first row: the old steps 3 and 4 are hidden already
    assert read_scalars(tmp_path)["train/loss"] == pytest.approx({1: 1.0, 2: 0.5})
    time.sleep(1.1)
    resumed = CurveWriter(tmp_path, start_step=2)
    resumed.add(_train(3, 9.0))
    resumed.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 3
    curves = read_scalars(tmp_path)
    assert curves["train/loss"] == pytest.approx({1: 1.0, 2: 0.5, 3: 9.0}, rel=1e-6)  # old 3, 4 hidden
    assert curves["eval/hIoU"] == {}
