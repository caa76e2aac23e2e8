"""Integration tests of the training job on one local Ray (2 CPUs): 2 workers + 1 teacher actor (the early
path errors, which need no Ray, are unit tests in test_train_units.py).

Uses the random-weight test CLIP (c2s-test-vit) and a tiny toy world so each run takes seconds of
compute; most of the wall time is Ray starting actors.
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from c2s import evaluate
from c2s.config import load_config
from c2s.train.checkpoint import latest_checkpoint, load_state
from c2s.train.schedule import lr_factor
from c2s.train.trainer import run_training

pytestmark = pytest.mark.integration

TINY = ["train.workers=2", "train.checkpoint_interval=2", "train.max_failures=1"]  # on top of toy_tiny
# Evaluation every 2 steps on 5 validation images: the two workers' slices are uneven (3 + 2).
EVAL = ["train.eval_interval=2", "data.world.images_val=5"]


def _rows(run_dir, kind="train"):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == kind]


def _fifo(objective_state):
    """Bank tokens oldest first, from the ring buffer in a checkpoint."""
    tokens, ptr, count = (objective_state[f"bank.{k}"] for k in ("tokens", "ptr", "count"))
    if int(count) < tokens.shape[0]:
        return tokens[: int(count)]
    return torch.cat([tokens[int(ptr):], tokens[: int(ptr)]])


def _metrics_from_table(path):
    """sIoU / uIoU / hIoU recomputed from the saved per-class table (NaN classes left out, as mmseg)."""
    table = pd.read_parquet(path)
    s = table[table["seen"]]["iou"].dropna().mean()
    u = table[~table["seen"]]["iou"].dropna().mean()
    return {"sIoU": s, "uIoU": u, "hIoU": 2 * s * u / (s + u) if s + u else 0.0}


def _batches_tracked(student_state):
    """BatchNorm's num_batches_tracked of every BN layer: +1 per training forward pass of the student."""
    return {int(v) for k, v in student_state.items() if k.endswith("num_batches_tracked")}


class _RowWatcher(threading.Thread):
    """Records metrics.jsonl's train rows as first written, before the injected crash (polls 20x a second)."""

    def __init__(self, run_dir):
        super().__init__(daemon=True)
        self.run_dir, self.before_crash, self.stop = run_dir, {}, threading.Event()

    def run(self):
        metrics, marker = self.run_dir / "metrics.jsonl", self.run_dir / ".crash_injected"
        while not self.stop.is_set() and not marker.exists():
            if metrics.exists():
                for line in metrics.read_text().splitlines():
                    row = json.loads(line) if line.strip().endswith("}") else {}
                    if row.get("kind") == "train":
                        self.before_crash.setdefault(row["step"], line)
            self.stop.wait(0.05)


def test_train_killed_worker_checkpoint_and_resume(ray_local, cache_root, tmp_path, capsys):
    """One run, four behaviours (each Train run here costs ~30 s of Ray start-up, so they share it): the last
    worker exits at step 3 and Train restarts from the step-2 checkpoint; the run's metrics, evaluation and
    step-4 checkpoint are complete; the two workers' sharded evaluation equals a single-process ``c2s eval``
    of that checkpoint exactly (issue 15 item 4); ``--resume`` continues it to step 6 with its state."""
    run_dir = tmp_path / "run"
    watcher = _RowWatcher(run_dir)
    watcher.start()
    try:
        summary = run_training(load_config("toy_tiny", [*TINY, *EVAL, "train.iters=4", "train.crash_at_step=3"]),
                               run_dir)
    finally:
        watcher.stop.set()
        watcher.join()
    assert (run_dir / ".crash_injected").read_text() == "3"  # the last worker really exited at step 3
    # train.torch_threads=0: Ray's OMP_NUM_THREADS for a 0.5-CPU worker, floor(0.5) raised to 1
    assert summary["worker_device"]["torch_threads"] == 1
    # The restart began at step 3, not step 0: rows 1 and 2 are still the ones the first attempt wrote
    # before the crash (a restart from 0 truncates and rewrites them, with new timings). Rank 0 may also
    # have logged step 3 while the crashing rank slept; that row is redone after the restart.
    assert {1, 2} <= set(watcher.before_crash) <= {1, 2, 3}
    lines = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    assert lines[:2] == [watcher.before_crash[1], watcher.before_crash[2]]
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # step 3 redone after the restart, no duplicate rows
    for key in ("loss", "loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce", "lr",
                "images_per_s", "teacher_wait_frac"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["teacher_wait_frac"] <= 1.0
    assert rows[0]["loss_global"] > 0 and rows[0]["loss_local"] > 0  # the teacher's tokens arrived
    assert summary["step"] == 4
    recomputed = _metrics_from_table(run_dir / "final" / "per_class.parquet")
    assert math.isfinite(summary["hIoU"])  # both sides had classes to evaluate
    for key in ("sIoU", "uIoU", "hIoU"):
        assert summary[key] == pytest.approx(recomputed[key]), key
    assert (run_dir / "final" / "per_class.parquet").exists() and (run_dir / "final" / "panels.png").exists()

    state = load_state(latest_checkpoint(run_dir))
    assert state["step"] == 4
    bank = _fifo(state["objective"])
    # 4 steps x 4 images (2 restored with the step-2 checkpoint, 2 after the restart), gathered from both
    # workers each step, capped at bank.size = 12
    assert bank.shape == (12, 64)
    assert state["seen_text"].shape == (15, 64)  # training received the 15 seen classes only
    assert {"student", "optimizer", "scheduler", "rng", "config"} <= set(state)
    assert state["scheduler"]["last_epoch"] == 4
    # Adam, the schedule and BatchNorm counted 4 steps: restored at 2 by the restart (a restart from
    # scratch would count 2, one that ignored the checkpoint's optimizer 2 as well)
    assert {int(v["step"]) for v in state["optimizer"]["state"].values()} == {4}
    assert _batches_tracked(state["student"]) == {4}

    _sharded_evaluation_equals_single_process(run_dir, tmp_path / "single", capsys)

    resumed = run_training(load_config("toy_tiny", [*TINY, *EVAL, "train.iters=6"]), run_dir, resume=True)
    steps = [r["step"] for r in _rows(run_dir)]
    assert steps == [1, 2, 3, 4, 5, 6]  # continued at the saved step, no duplicate rows
    assert resumed["step"] == 6
    after = load_state(latest_checkpoint(run_dir))
    assert after["step"] == 6
    # The resumed run started from the saved bank: steps 5 and 6 pushed 8 tokens, so the 4 newest tokens
    # of the step-4 bank are now the 4 oldest, in the same FIFO order.
    bank_after = _fifo(after["objective"])
    assert torch.equal(bank_after[:4], bank[-4:])
    assert not torch.equal(bank_after[4:], bank[:8])
    # Optimizer, schedule and student continued from their step-4 values (fresh ones would count 2):
    # Adam's step counters, the scheduler's epoch, BatchNorm's forward-pass counters.
    assert {int(v["step"]) for v in after["optimizer"]["state"].values()} == {6}
    assert after["scheduler"]["last_epoch"] == 6
    assert _batches_tracked(after["student"]) == {6}
    assert any(not torch.equal(after["student"][k], v) for k, v in state["student"].items() if v.is_floating_point())
    # The logged lr follows the restored schedule over the new total (6): lr_t = lr_0 * factor(t, 6)
    cfg6 = load_config("toy_tiny", [*TINY, *EVAL, "train.iters=6"])
    lr0 = state["optimizer"]["param_groups"][0]["initial_lr"]
    for row in _rows(run_dir)[4:]:
        assert row["lr"] == pytest.approx(lr0 * lr_factor(row["step"], 6, cfg6.optim)), row["step"]


def _sharded_evaluation_equals_single_process(run_dir, single_dir, capsys):
    """Two Ray Train workers each evaluated their slice of the 5 validation images and all-reduced the
    confusion matrices over the process group Ray Train set up (gloo on CPU): one eval row per evaluation
    (rank 0 alone writes it), and the final metrics equal a single-process ``c2s eval`` of the checkpoint."""
    evals = _rows(run_dir, kind="eval")
    assert [r["step"] for r in evals] == [2, 4]  # step 2 before the crash, 4 after the restart, none twice
    assert all(r["images"] == 5 and r["eval_s"] > 0 for r in evals)
    final = json.loads((run_dir / "final" / "metrics.json").read_text())
    assert final["workers"] == 2 and final["images"] == 5

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers' thread count (num_cpus 0.5): the same float sums
    try:
        capsys.readouterr()
        assert evaluate.main([str(latest_checkpoint(run_dir)), "--out", str(single_dir), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    single = json.loads((single_dir / "metrics.json").read_text())
    assert single["workers"] == 1 and single["step"] == final["step"] == 4
    keys = ("mIoU", "sIoU", "uIoU", "hIoU", "images")
    assert {k: final[k] for k in keys} == {k: single[k] for k in keys} == {k: printed[k] for k in keys}
    assert {k: evals[-1][k] for k in keys} == {k: single[k] for k in keys}
    trained = np.load(run_dir / "final" / "confusion.npy")
    assert np.array_equal(trained, np.load(single_dir / "confusion.npy"))
    assert trained.sum() > 0
