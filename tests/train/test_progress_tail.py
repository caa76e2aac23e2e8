"""The driver's progress lines (c2s.train.trainer.ProgressTail) across a resume that rewrites metrics.jsonl."""

from __future__ import annotations

import json

from c2s.train.loop import append_jsonl, truncate_jsonl
from c2s.train.trainer import ProgressTail


def _row(step, loss):
    return {"step": step, "kind": "train", "loss": loss, "loss_global": 0.5, "lr": 1e-3, "images_per_s": 10.0,
            "teacher_wait_frac": 0.25}


def _printed_steps(capsys):
    return [line.split("step ")[1].split("/")[0] for line in capsys.readouterr().out.splitlines()]


def test_tail_prints_new_rows_once(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    tail = ProgressTail(path, 10, "run")
    tail.flush()  # no file yet
    append_jsonl(path, _row(1, 1.0))
    with path.open("a") as handle:
        handle.write(json.dumps(_row(2, 0.9))[:20])  # rank 0 is mid-write: not printed yet
    tail.flush()
    assert _printed_steps(capsys) == ["1"]
    with path.open("a") as handle:
        handle.write(json.dumps(_row(2, 0.9))[20:] + "\n")
    tail.flush()
    tail.flush()
    out = capsys.readouterr().out.splitlines()
    assert out == ["[run] step 2/10  loss 0.900 (global 0.500)  lr 1.0e-03  10.0 img/s  teacher-wait 25%"]


def test_tail_survives_the_truncation_of_a_resume(tmp_path, capsys):
    """Issue 14 item 8: the old tail kept its byte offset after truncate_jsonl shrank the file, then read
    from the middle of a row (JSONDecodeError: Extra data) and the progress thread died."""
    path = tmp_path / "metrics.jsonl"
    for step in range(1, 7):  # the stopped run: 6 logged steps, last checkpoint at step 4
        append_jsonl(path, _row(step, 1.0 / step))
    tail = ProgressTail(path, 8, "run")  # `c2s train --resume`: rows of the earlier attempt are not repeated
    truncate_jsonl(path, 4)  # rank 0 of the resumed run
    tail.flush()
    assert _printed_steps(capsys) == []
    append_jsonl(path, _row(5, 0.3))  # the redone step 5 is shorter than the old row 5
    tail.flush()
    append_jsonl(path, _row(6, 0.2))
    append_jsonl(path, _row(7, 0.1))
    tail.flush()
    assert _printed_steps(capsys) == ["5", "6", "7"]


def test_tail_prints_rows_rewritten_under_it_in_one_flush(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    for step in range(1, 7):
        append_jsonl(path, _row(step, 1.0))
    tail = ProgressTail(path, 9, "run")
    truncate_jsonl(path, 4)
    for step in range(5, 9):  # truncated and grown past the old size before the tail looks again
        append_jsonl(path, _row(step, 0.5))
    assert path.stat().st_size > 6 * len(json.dumps(_row(1, 1.0)))
    tail.flush()
    assert _printed_steps(capsys) == ["5", "6", "7", "8"]
