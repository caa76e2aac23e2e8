"""Evaluation on every training worker (issue 15 item 4), end to end on one local Ray (2 CPUs).

Two Ray Train workers each evaluate their slice of the toy validation set (5 images: 3 + 2) and all-reduce
the confusion matrices over the process group Ray Train set up (gloo on CPU); the final metrics must equal
a single-process ``c2s eval`` of the saved checkpoint exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from c2s import evaluate
from c2s.config import load_config
from c2s.train.checkpoint import latest_checkpoint
from c2s.train.trainer import run_training

pytestmark = pytest.mark.integration


def test_two_worker_evaluation_equals_single_process_eval(ray_local, cache_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = load_config("toy_tiny", ["train.workers=2", "train.iters=2", "train.checkpoint_interval=2",
                                   "train.eval_interval=1", "data.world.images_val=5"])
    run_training(cfg, run_dir)
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2]  # one row per evaluation: rank 0 alone writes it
    assert all(r["images"] == 5 and r["eval_s"] > 0 for r in evals)
    final = json.loads((run_dir / "final" / "metrics.json").read_text())
    assert final["workers"] == 2 and final["images"] == 5

    checkpoint = latest_checkpoint(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers' thread count (num_cpus 0.5): the same float sums
    try:
        capsys.readouterr()
        assert evaluate.main([str(checkpoint), "--out", str(tmp_path / "single"), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert single["workers"] == 1 and single["step"] == final["step"] == 2
    keys = ("mIoU", "sIoU", "uIoU", "hIoU", "images")
    assert {k: final[k] for k in keys} == {k: single[k] for k in keys} == {k: printed[k] for k in keys}
    assert {k: evals[-1][k] for k in keys} == {k: single[k] for k in keys}
    trained = np.load(run_dir / "final" / "confusion.npy")
    assert np.array_equal(trained, np.load(tmp_path / "single" / "confusion.npy"))
    assert trained.sum() > 0
