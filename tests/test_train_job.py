"""Integration tests of the training job on one local Ray (2 CPUs): 2 workers + 1 teacher actor.

Uses the random-weight test CLIP (c2s-test-vit) and a tiny toy world so each run takes seconds of
compute; most of the wall time is Ray starting actors.
"""

from __future__ import annotations

import json

import pytest
import torch

from c2s.config import load_config
from c2s.train.checkpoint import latest_checkpoint, load_state
from c2s.train.resolve import PreflightError
from c2s.train.trainer import run_training

pytestmark = pytest.mark.integration

TINY = ["train.workers=2", "train.checkpoint_interval=2", "train.max_failures=1"]  # on top of toy_tiny


def _rows(run_dir, kind="train"):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == kind]


def _fifo(objective_state):
    """Bank tokens oldest first, from the ring buffer in a checkpoint."""
    tokens, ptr, count = (objective_state[f"bank.{k}"] for k in ("tokens", "ptr", "count"))
    if int(count) < tokens.shape[0]:
        return tokens[: int(count)]
    return torch.cat([tokens[int(ptr):], tokens[: int(ptr)]])


def test_train_checkpoint_and_resume(ray_local, cache_root, tmp_path):
    run_dir = tmp_path / "run"
    summary = run_training(load_config("toy_tiny", [*TINY, "train.iters=4"]), run_dir)
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss", "loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce", "lr",
                "images_per_s", "teacher_wait_frac"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["teacher_wait_frac"] <= 1.0
    assert rows[0]["loss_global"] > 0 and rows[0]["loss_local"] > 0  # the teacher's tokens arrived
    assert summary["step"] == 4 and 0.0 <= summary["hIoU"] <= 100.0
    assert (run_dir / "final" / "per_class.parquet").exists() and (run_dir / "final" / "panels.png").exists()

    state = load_state(latest_checkpoint(run_dir))
    assert state["step"] == 4
    bank = _fifo(state["objective"])
    # 4 steps x 4 images, gathered from both workers each step, capped at bank.size = 12
    assert bank.shape == (12, 64)
    assert state["seen_text"].shape == (15, 64)  # training received the 15 seen classes only
    assert {"student", "optimizer", "scheduler", "rng", "config"} <= set(state)

    resumed = run_training(load_config("toy_tiny", [*TINY, "train.iters=6"]), run_dir, resume=True)
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


def test_killed_worker_resumes_from_checkpoint(ray_local, cache_root, tmp_path):
    run_dir = tmp_path / "fault"
    summary = run_training(load_config("toy_tiny", [*TINY, "train.iters=5", "train.crash_at_step=3"]), run_dir)
    assert (run_dir / ".crash_injected").read_text() == "3"  # the last worker really exited at step 3
    steps = [r["step"] for r in _rows(run_dir)]
    assert steps == [1, 2, 3, 4, 5]  # resumed from the step-2 checkpoint; step 3 redone, no duplicates
    assert summary["step"] == 5
    assert load_state(latest_checkpoint(run_dir))["step"] == 5


def test_early_errors_before_any_worker(ray_local, cache_root, tmp_path):
    missing_root = load_config("voc12_segformer_b4", [f"data.root={tmp_path / 'nope'}",
                                                      "teacher.checkpoint=/x/ViT-B-16.pt"])
    with pytest.raises(PreflightError, match="data.root = .*nope.* does not exist"):
        run_training(missing_root, tmp_path / "r1")
    (tmp_path / "voc").mkdir()
    missing_ckpt = load_config("voc12_segformer_b4", [f"data.root={tmp_path / 'voc'}",
                                                      "teacher.checkpoint=/x/ViT-B-16.pt"])
    with pytest.raises(PreflightError, match="teacher.checkpoint = '/x/ViT-B-16.pt' does not exist"):
        run_training(missing_ckpt, tmp_path / "r2")
    no_ckpt = load_config("voc12_segformer_b4", [f"data.root={tmp_path / 'voc'}"])
    with pytest.raises(PreflightError, match="teacher.checkpoint is not set"):
        run_training(no_ckpt, tmp_path / "r3")
    assert not list((tmp_path / "r1").glob("checkpoint_*"))
